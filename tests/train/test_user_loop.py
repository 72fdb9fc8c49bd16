"""LoD in the user's own loop, beyond tests/train/test_lod_schedule.py: what the sampled truncation does
to the forward pass, conv layers, the independent sampler, resuming across shrinking, and train_lod's
options (own optimizer, clipping, output_fn, custom distill loss, a frozen teacher)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

import maestro_edge as me
from maestro_edge.errors import MaestroError
from maestro_edge.lod.layers import lod_layers
from tests.train.test_lod_schedule import mlp


def test_the_sampled_rank_is_what_the_forward_pass_uses():
    model, x = mlp(), torch.randn(5, 64)
    schedule = me.LoDSchedule(model, seed=4)
    for _ in range(10):
        with schedule.step():
            (name, rank), = [(n, l.sampled_rank) for n, l in lod_layers(model).items() if l.sampled_rank is not None]
            sampled = model(x)
        reference = copy.deepcopy(model)
        lod_layers(reference)[name].truncate_(rank)
        torch.testing.assert_close(sampled, reference(x))


def test_different_seeds_draw_different_sequences():
    model = mlp()
    first, second = me.LoDSchedule(model, seed=0), me.LoDSchedule(model, seed=1)
    assert [first.sample_() for _ in range(20)] != [second.sample_() for _ in range(20)]


def conv_net(channels, kernel, width):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, channels, kernel, padding=kernel // 2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(channels * 16, width))
    me.factorize_(model)
    return model


@settings(max_examples=20, deadline=None)
@given(channels=st.integers(1, 12), kernel=st.sampled_from([1, 3]), width=st.integers(1, 20),
       seed=st.integers(0, 2**31 - 1))
def test_a_cycle_visits_every_layer_rank_pair_once(channels, kernel, width, seed):
    model = conv_net(channels, kernel, width)
    layers = lod_layers(model)
    schedule = me.LoDSchedule(model, seed=seed)
    pairs = [schedule.sample_() for _ in range(sum(l.active_rank for l in layers.values()))]
    assert sorted(pairs) == sorted((n, r) for n, l in layers.items() for r in range(1, l.active_rank + 1))
    schedule.reset_()
    assert all(l.sampled_rank is None for l in layers.values())


def test_independent_sampler_truncates_every_layer_within_its_rank():
    model = mlp((20, 16, 12, 4))
    schedule = me.LoDSchedule(model, sampler="independent", seed=2)
    for _ in range(30):
        with schedule.step():
            assert all(1 <= l.sampled_rank <= l.active_rank for l in lod_layers(model).values())
    with pytest.raises(MaestroError, match="single-layer"):
        me.LoDSchedule(model, sampler="nope")


def test_step_resets_even_when_the_body_raises():
    model = mlp()
    schedule = me.LoDSchedule(model)
    with pytest.raises(RuntimeError):
        with schedule.step():
            raise RuntimeError("boom")
    assert all(l.sampled_rank is None for l in lod_layers(model).values())


def test_resume_after_shrinking_draws_only_live_ranks_and_the_same_sequence():
    model = mlp()
    schedule = me.LoDSchedule(model, seed=5)
    for _ in range(7):
        schedule.sample_()
    layer = lod_layers(model)["0"]
    with torch.no_grad():
        layer.u[:, 6:] = 0
        layer.v[6:] = 0
    assert schedule.end_epoch_() == {"0": (32, 6)}
    state = copy.deepcopy(schedule.state_dict())
    expected = [schedule.sample_() for _ in range(40)]
    assert all(r <= 6 for n, r in expected if n == "0")   # the pre-shrink cycle was dropped
    resumed = me.LoDSchedule(model, seed=123)
    resumed.load_state_dict(state)
    assert [resumed.sample_() for _ in range(40)] == expected


def test_penalty_gradient_is_finite_with_zeroed_components():
    model = mlp()
    with torch.no_grad():
        lod_layers(model)["0"].u[:, 20:] = 0
        lod_layers(model)["0"].v[20:] = 0
    me.LoDSchedule(model).penalty().backward()
    assert all(torch.isfinite(p.grad).all() for l in lod_layers(model).values() for p in (l.u, l.v))


def test_no_lod_layers_is_one_maestro_error():
    from maestro_edge.errors import MaestroError

    with pytest.raises(MaestroError, match=r"factorize_\(model\)"):
        me.LoDSchedule(nn.Sequential(nn.Linear(3, 3)))


class DictOut(nn.Module):
    """An HF-style model: two inputs, a dict output."""

    def __init__(self, widths=(12, 16, 3)):
        super().__init__()
        self.net = mlp(widths)

    def forward(self, first, second):
        return {"logits": self.net(torch.cat([first, second], 1))}


def two_blob_batches(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.randn(3, 12, generator=g) * 2
    x = centers[y] + torch.randn(n, 12, generator=g)
    return [((x[i:i + 32, :5], x[i:i + 32, 5:]), y[i:i + 32]) for i in range(0, n, 32)], x, y


def test_train_lod_with_own_optimizer_clipping_tuple_inputs_and_output_fn():
    batches, x, y = two_blob_batches()
    model = DictOut()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    messages = []
    history = me.train_lod(model, batches, F.cross_entropy, epochs=4, optimizer=optimizer, clip_grad_norm=1.0,
                           output_fn=lambda out: out["logits"], progress=messages.append,
                           schedule=me.LoDSchedule(model, seed=9))
    assert history["steps"] == 4 * len(batches) and len(history["shrunk"]) == 4 and history["seconds"] > 0
    assert history["epoch_loss"][-1] < history["epoch_loss"][0]
    assert len(messages) == 4 and "4/4" in messages[-1]
    assert not model.training
    with torch.no_grad():
        accuracy = (model(x[:, :5], x[:, 5:])["logits"].argmax(1) == y).float().mean().item()
    assert accuracy > 0.8   # chance is 1/3


def test_custom_distill_loss_and_a_teacher_that_stays_frozen():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4))
    teacher_state = copy.deepcopy(teacher.state_dict())
    student = copy.deepcopy(teacher)
    me.factorize_(student)
    with torch.no_grad():
        for layer in lod_layers(student).values():
            layer.u.mul_(0.3)
    x = torch.randn(96, 6)
    batches = [(x[i:i + 16], None) for i in range(0, 96, 16)]
    calls = []

    def l1(student_out, teacher_out):
        calls.append(teacher_out.requires_grad)
        return (student_out - teacher_out).abs().mean()

    def gap():
        with torch.no_grad():
            return (student(x) - teacher(x)).abs().mean().item()

    before = gap()
    teacher.train()
    me.train_lod(student, batches, None, epochs=15, lr=1e-2, teacher=teacher, distill_loss=l1,
                 distill_weight=2.0)
    assert gap() < 0.3 * before
    assert calls and not any(calls)          # the teacher ran under no_grad
    assert not teacher.training
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, teacher_state[key])
    assert all(p.grad is None for p in teacher.parameters())
