"""LoD in the user's own loop: LoDSchedule and train_lod over any batches and loss."""

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


def mlp(widths=(64, 32, 10), seed=0):
    """A factorized MLP (also used by test_user_loop.py)."""
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    me.factorize_(model)
    return model


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32) / 16, torch.tensor(d.target)


def test_one_layer_truncated_per_step_then_reset():
    model = mlp()
    schedule = me.LoDSchedule(model, seed=3)
    for _ in range(20):
        with schedule.step():
            truncated = [n for n, l in lod_layers(model).items() if l.sampled_rank is not None]
            assert len(truncated) == 1
        assert all(l.sampled_rank is None for l in lod_layers(model).values())


@settings(max_examples=15, deadline=None)
@given(widths=st.lists(st.integers(2, 24), min_size=2, max_size=4), seed=st.integers(0, 2**31 - 1))
def test_sampled_ranks_are_valid_and_reproducible(widths, seed):
    model = mlp(tuple(widths))
    first, second = me.LoDSchedule(model, seed=seed), me.LoDSchedule(model, seed=seed)
    for _ in range(10):
        name, rank = first.sample_()
        assert 1 <= rank <= lod_layers(model)[name].active_rank
        assert second.sample_() == (name, rank)   # every DDP process draws the same


def test_state_dict_resumes_the_same_sequence():
    model = mlp()
    schedule = me.LoDSchedule(model, seed=1)
    for _ in range(5):
        schedule.sample_()
    state = copy.deepcopy(schedule.state_dict())
    expected = [schedule.sample_() for _ in range(5)]
    resumed = me.LoDSchedule(model, seed=99)
    resumed.load_state_dict(state)
    assert [resumed.sample_() for _ in range(5)] == expected


def test_penalty_is_a_differentiable_nonnegative_term():
    model = mlp()
    penalty = me.LoDSchedule(model, gl_lambda=1e-3).penalty()
    assert penalty.item() > 0
    penalty.backward()
    assert all(l.u.grad is not None for l in lod_layers(model).values())
    assert me.LoDSchedule(model, gl_lambda=0).penalty().item() == 0


def test_end_epoch_shrinks_a_layer_whose_tail_is_zero():
    model = mlp()
    layer = lod_layers(model)["0"]
    with torch.no_grad():
        layer.u[:, 10:] = 0
        layer.v[10:] = 0
    assert me.LoDSchedule(model).end_epoch_()["0"] == (32, 10)
    assert layer.active_rank == 10


def test_a_model_without_lod_layers_is_refused():
    with pytest.raises(MaestroError, match="factorize_"):
        me.LoDSchedule(nn.Linear(3, 3))
    with pytest.raises(MaestroError, match="loss_fn"):
        me.train_lod(mlp(), [], None)


def test_train_lod_learns_digits_and_stays_good_truncated():
    x, y = digits()
    model = mlp()
    history = me.train_lod(model, list(zip(x[:1400].split(32), y[:1400].split(32))), F.cross_entropy, epochs=6,
                           lr=3e-3)
    assert history["epoch_loss"][-1] < history["epoch_loss"][0] and history["steps"] == 6 * 44

    def accuracy(m):
        with torch.no_grad():
            return (m(x[1400:]).argmax(1) == y[1400:]).float().mean().item()

    assert accuracy(model) > 0.85
    for layer in lod_layers(model).values():
        layer.sampled_rank = max(1, layer.active_rank // 2)
    assert accuracy(model) > 0.6   # LoD keeps half-rank models useful


def test_distillation_alone_pulls_the_student_to_the_teacher():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).eval()
    student = copy.deepcopy(teacher)
    me.factorize_(student)
    with torch.no_grad():
        for layer in lod_layers(student).values():
            layer.u.mul_(0.5)   # start away from the teacher
    a, b = torch.randn(64, 8), torch.randn(64, 3)
    batches = [((a[i:i + 16], b[i:i + 16]), None) for i in range(0, 64, 16)]   # tuple inputs, no labels

    class TwoInputs(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, first, second):
            return self.net(first) + second.sum(1, keepdim=True)

    def gap():
        with torch.no_grad():
            return F.mse_loss(TwoInputs(student)(a, b), TwoInputs(teacher)(a, b)).item()

    before = gap()
    me.train_lod(TwoInputs(student), batches, None, epochs=20, lr=1e-2, teacher=TwoInputs(teacher))
    assert gap() < 0.2 * before
