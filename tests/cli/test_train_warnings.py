"""train's divergence warning: when an epoch counts as diverging."""

from maestro_edge.train.loop import diverging


def epoch(loss, acc):
    return {"train_loss": loss, "val_accuracy": acc}


def test_a_doubled_loss_with_lost_accuracy_is_divergence():
    assert diverging(epoch(1.662, 0.400), epoch(19.246, 0.091))      # the measured ResNet-18 run (BENCHMARKS.md)
    assert diverging(epoch(1.0, 0.5), epoch(float("nan"), 0.1))


def test_a_loss_that_rises_at_the_end_of_the_warm_up_is_not():
    assert not diverging(epoch(0.3, 0.80), epoch(0.7, 0.82))        # truncated steps cost more, accuracy holds
    assert not diverging(epoch(1.0, 0.80), epoch(1.5, 0.50))        # worse, but not runaway
