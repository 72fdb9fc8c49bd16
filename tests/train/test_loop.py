"""LoD training: the step (slicing vs masking, distillation), determinism, resume, shrinking."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from maestro_edge.errors import UsageError
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.factorize import factorize_
from maestro_edge.lod.layers import lod_layers, set_constant_shapes
from maestro_edge.models import build_model
from maestro_edge.train.loop import Recipe, TrainStep, epoch_batches, make_optimizer, steps_per_epoch
from maestro_edge.train.run import train_checkpoint
from maestro_edge.train.sampler import SingleLayerSampler

TINY = {"widths": (8, 16), "hidden": 16}


def _model(seed=0):
    torch.manual_seed(seed)
    model = build_model("small_cnn", 1, 10, **TINY)
    factorize_(model)
    return model


def _batches(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(n)]


def _run_steps(model, recipe, batches):
    optimizer, schedule = make_optimizer(model, recipe, len(batches))
    step = TrainStep(model, optimizer, SingleLayerSampler(model, recipe.seed), recipe, schedule)
    losses = [step(x, y) for x, y in batches]
    return losses


def test_constant_shapes_step_equals_the_slicing_step():
    base = _model()
    sliced, masked = copy.deepcopy(base), copy.deepcopy(base)
    for layer in lod_layers(masked).values():
        layer.constant_shapes = True
    batches = _batches(6)
    a = _run_steps(sliced, Recipe(epochs=1, lr=0.05), batches)
    b = _run_steps(masked, Recipe(epochs=1, lr=0.05, constant_shapes=True), batches)
    torch.testing.assert_close(torch.stack(b), torch.stack(a), rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(sliced.named_parameters(), masked.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_compiled_step_equals_the_eager_masked_step():
    """Recipe.compile (inductor here; CUDA graphs on a GPU): same losses and weights, the same sampled ranks."""
    base = _model()
    set_constant_shapes(base, True)
    eager, compiled = copy.deepcopy(base), copy.deepcopy(base)
    batches = _batches(6)
    torch._dynamo.reset()
    a = _run_steps(eager, Recipe(epochs=1, lr=0.05, constant_shapes=True), batches)
    # Compiled once: a new rank each step must not recompile (the rank lives in the mask buffers).
    with torch._dynamo.config.patch(error_on_recompile=True):
        b = _run_steps(compiled, Recipe(epochs=1, lr=0.05, constant_shapes=True, compile=True), batches)
    torch.testing.assert_close(torch.stack(b), torch.stack(a), rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("clip", [0.0, 1e-3])
def test_gradients_are_clipped_before_the_step(clip):
    model = _model()
    recipe = Recipe(epochs=1, lr=0.05, clip_grad_norm=clip)
    optimizer, schedule = make_optimizer(model, recipe, 2)
    norms = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: norms.append(
        torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))))
    step = TrainStep(model, optimizer, SingleLayerSampler(model, 0), recipe, schedule)
    for x, y in _batches(2):
        step(x, y)
    if clip:
        assert all(n <= clip * (1 + 1e-4) for n in norms)
    else:
        assert all(n > 1e-2 for n in norms)                 # unclipped, the same steps have far larger gradients


def test_distillation_step_trains_full_and_truncated_nets():
    model = _model()
    recipe = Recipe(epochs=1, distill=True, gl_lambda=0)
    reference = copy.deepcopy(model)
    x, y = _batches(1)[0]
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append({n: l.sampled_rank for n, l in lod_layers(m).items()}))
    loss = _run_steps(model, recipe, [(x, y)])[0]
    assert len(calls) == 2
    assert all(r is None for r in calls[0].values())                   # full-rank pass first
    assert sum(r is not None for r in calls[1].values()) == 1          # then one truncated layer
    # the loss is CE(full, y) + CE(truncated, softmax(full)) on the weights before the step
    name, rank = next((n, r) for n, r in calls[1].items() if r is not None)
    reference.train()
    full = reference(x)
    lod_layers(reference)[name].sampled_rank = rank
    truncated = reference(x)
    expect = F.cross_entropy(full, y) + F.cross_entropy(truncated, full.detach().softmax(1))
    torch.testing.assert_close(loss, expect.detach(), rtol=1e-5, atol=1e-6)


def test_epoch_batches_are_disjoint_shards_of_the_same_global_batches():
    class Ctx:
        def __init__(self, rank):
            self.rank, self.world_size = rank, 2

    single = list(epoch_batches(21, 8, seed=3, epoch=1))
    shards = [list(epoch_batches(21, 8, seed=3, epoch=1, dist=Ctx(r))) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 3 == steps_per_epoch(21, 8, 2)
    for glob, s0, s1 in zip(single, *shards):
        assert not set(s0.tolist()) & set(s1.tolist())
        assert sorted(s0.tolist() + s1.tolist()) == sorted(glob.tolist())
    assert steps_per_epoch(17, 8, 2) == 2                                # a last batch of 1 is dropped
    assert not torch.equal(single[0], next(epoch_batches(21, 8, seed=3, epoch=2)))


def _recipe(**kw):
    base = dict(epochs=3, batch_size=32, lr=0.05, gl_lambda=1e-3, shrink_threshold=0.0, seed=0, bn_samples=64)
    base.update(kw)
    return Recipe(**base)


def _train(out, recipe, **kw):
    kw.setdefault("limit", 96)
    return train_checkpoint("small_cnn", "digits", recipe, out, arch_kwargs=dict(TINY), **kw)


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_same_seed_gives_identical_weights(tmp_path):
    a = _train(tmp_path / "a.pt", _recipe(epochs=1))
    b = _train(tmp_path / "b.pt", _recipe(epochs=1))
    _assert_same_weights(a.model, b.model)
    c = _train(tmp_path / "c.pt", _recipe(epochs=1, seed=1))
    assert not torch.equal(c.model.state_dict()["classifier.1.u"], a.model.state_dict()["classifier.1.u"])


class Stop(Exception):
    pass


def test_resume_after_an_epoch_equals_an_uninterrupted_run(tmp_path):
    recipe = _recipe(shrink_threshold=0.3, distill=True)
    seen = []
    full = _train(tmp_path / "full.pt", recipe, on_epoch=lambda e, m: seen.append(m))
    assert [m["epoch"] for m in seen] == [1, 2, 3]
    assert seen[0]["shrunk"]                                   # the sampler's cycle restarts after epoch 1

    def stop_after_first(epoch, metrics):
        if epoch == 0:
            raise Stop

    out = tmp_path / "resumed.pt"
    with pytest.raises(Stop):
        _train(out, recipe, on_epoch=stop_after_first)
    partial = LoDCheckpoint.load(out)                          # weights_only load of the training state
    assert partial.progress["epochs_done"] == 1 and partial.progress["complete"] is False
    assert {"optimizer", "scheduler", "sampler", "torch_rng"} <= set(partial.progress)
    with pytest.raises(UsageError, match="different recipe"):
        _train(out, _recipe(shrink_threshold=0.3, distill=True, lr=0.1))
    resumed = _train(out, recipe)
    _assert_same_weights(full.model, resumed.model)
    assert [l.active_rank for l in lod_layers(full.model).values()] == \
           [l.active_rank for l in lod_layers(resumed.model).values()]
    assert full.metrics["val_accuracy"] == resumed.metrics["val_accuracy"]
    final = LoDCheckpoint.load(out)
    assert final.progress["complete"] is True and "optimizer" not in final.progress
    assert [m["epoch"] for m in final.progress["history"]] == [1, 2, 3]
    assert final.importance["layers"].keys() == lod_layers(final.model).keys()
    assert final.metrics["factorized"] and "test_accuracy" in final.metrics


def test_progressive_shrinking_and_bn_recalibration(tmp_path):
    ckpt = _train(tmp_path / "s.pt", _recipe(epochs=1, shrink_threshold=0.5, sampler="independent"))
    ranks = {n: l.active_rank for n, l in lod_layers(ckpt.model).items()}
    assert ckpt.metrics["active_ranks"] == ranks
    assert any(l.active_rank < l.max_rank for l in lod_layers(ckpt.model).values())
    assert ckpt.metrics["shrunk"]
    bn = ckpt.model.features[0][1]
    assert int(bn.num_batches_tracked) == 1                   # recalibrated: 64 images, one batch


def test_a_data_set_without_train_split_is_refused(tmp_path, monkeypatch):
    from maestro_edge.data import fashion_mnist as fm
    from maestro_edge.data import ImageData

    empty = ImageData("fashion-mnist-heldout", 10, torch.empty(0, 1, 28, 28), torch.empty(0, dtype=torch.int64),
                      torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.int64),
                      torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.int64))
    monkeypatch.setattr(fm, "load_heldout", lambda seed=0, limit=None, path=None: empty)
    with pytest.raises(UsageError, match="no training split"):
        train_checkpoint("small_cnn", "fashion-mnist-heldout", _recipe(), tmp_path / "x.pt")


def test_recipe_round_trip_and_validation():
    recipe = _recipe(distill=True, constant_shapes=True)
    assert Recipe.from_dict({**recipe.to_dict(), "unknown": 1}) == recipe
    assert Recipe.from_dict({"epochs": 2}).distill is False               # older checkpoints
    with pytest.raises(ValueError):
        Recipe(sampler="random")
    with pytest.raises(ValueError):
        Recipe(gl_lambda=-1)
    with pytest.raises(ValueError, match="constant_shapes"):
        Recipe(compile=True)
    with pytest.raises(ValueError, match="clip_grad_norm"):
        Recipe(clip_grad_norm=-1.0)
    with pytest.raises(ValueError, match="distill"):
        Recipe(compile=True, constant_shapes=True, distill=True)


def test_an_architecture_that_cannot_take_the_images_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="architecture 'lenet5' cannot run on digits images of shape"):
        train_checkpoint("lenet5", "digits", _recipe(), tmp_path / "x.pt", limit=8)


def test_warmup_epochs_train_full_rank_then_resplit(tmp_path, monkeypatch):
    import maestro_edge.train.loop as loop

    resplits, probe = [], torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))

    def end_and_check(model, optimizer, dist=None):
        model.eval()
        with torch.no_grad():
            before = model(probe)
            real_end(model, optimizer, dist)
            after = model(probe)
        model.train()
        resplits.append((len(optimizer.state), float((after - before).abs().max())))

    real_end = loop.end_warmup_
    monkeypatch.setattr(loop, "end_warmup_", end_and_check)
    sampled = []
    real_step = SingleLayerSampler.step
    monkeypatch.setattr(SingleLayerSampler, "step", lambda self: sampled.append(real_step(self)))
    ckpt = _train(tmp_path / "w.pt", _recipe(epochs=2, warmup_epochs=1, shrink_threshold=0.5))
    from maestro_edge.data import load_dataset

    steps = steps_per_epoch(len(load_dataset("digits", 0, 96).train_x), 32)
    assert len(resplits) == 1                                    # once, at the end of the warm-up epoch
    state_left, change = resplits[0]
    assert state_left == 0 and change < 1e-4                     # fresh optimizer state; same function
    assert len(sampled) == steps                                 # only the second epoch drew ranks
    assert ckpt.progress["history"][0]["shrunk"] == {}           # and did not shrink


def test_resume_across_the_warmup_boundary_equals_an_uninterrupted_run(tmp_path):
    recipe = _recipe(epochs=2, warmup_epochs=1)
    full = _train(tmp_path / "full.pt", recipe)

    def stop_after_first(epoch, metrics):
        if epoch == 0:
            raise Stop

    with pytest.raises(Stop):
        _train(tmp_path / "resumed.pt", recipe, on_epoch=stop_after_first)
    _assert_same_weights(full.model, _train(tmp_path / "resumed.pt", recipe).model)
    with pytest.raises(ValueError, match="warmup_epochs"):
        _recipe(epochs=2, warmup_epochs=2)
