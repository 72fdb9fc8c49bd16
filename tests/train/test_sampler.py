"""Rank samplers: the shuffled (layer, rank) cycle, restorable state, the independent sampler."""

from __future__ import annotations

import io
from collections import Counter

import torch
from torch import nn

from maestro_edge.lod.layers import LoDLinear
from maestro_edge.train.sampler import IndependentSampler, SingleLayerSampler


def _model():
    return nn.Sequential(LoDLinear(4, 3, 3), LoDLinear(3, 5, 2), LoDLinear(5, 2, 2))


def test_one_cycle_visits_every_layer_rank_pair_once_one_layer_at_a_time():
    model = _model()
    sampler = SingleLayerSampler(model, seed=0)
    seen = []
    for _ in range(7):                                   # Σ r_i = 3 + 2 + 2
        name, rank = sampler.step()
        truncated = {n: layer.sampled_rank for n, layer in zip("012", model) if layer.sampled_rank is not None}
        assert truncated == {name: rank}
        seen.append((name, rank))
    assert Counter(seen) == Counter([("0", 1), ("0", 2), ("0", 3), ("1", 1), ("1", 2), ("2", 1), ("2", 2)])
    sampler.clear()
    assert all(layer.sampled_rank is None for layer in model)


def test_same_seed_same_sequence_and_state_round_trip_through_weights_only_load():
    a, b = SingleLayerSampler(_model(), seed=5), SingleLayerSampler(_model(), seed=5)
    assert [a.step() for _ in range(10)] == [b.step() for _ in range(10)]
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    restored = SingleLayerSampler(_model(), seed=99)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert [restored.step() for _ in range(20)] == [a.step() for _ in range(20)]


def test_cycle_follows_shrinking_after_reset():
    model = _model()
    sampler = SingleLayerSampler(model, seed=0)
    sampler.step()
    model[0].active_rank = 1
    sampler.reset()
    pairs = [sampler.step() for _ in range(5)]
    assert ("0", 2) not in pairs and ("0", 3) not in pairs and len(set(pairs)) == 5


def test_independent_sampler_truncates_every_layer_within_its_active_rank():
    model = _model()
    model[0].active_rank = 2
    sampler = IndependentSampler(model, seed=1)
    ranks = set()
    for _ in range(50):
        sampler.step()
        assert all(1 <= layer.sampled_rank <= layer.active_rank for layer in model)
        ranks.add(model[0].sampled_rank)
    assert ranks == {1, 2}
    state = sampler.state_dict()
    twin = _model()
    twin[0].active_rank = 2
    other = IndependentSampler(twin, seed=2)
    other.load_state_dict(state)
    for _ in range(5):
        sampler.step()
        other.step()
        assert [l.sampled_rank for l in twin] == [l.sampled_rank for l in model]


def test_a_model_without_lod_layers_samples_nothing():
    sampler = SingleLayerSampler(nn.Sequential(nn.Linear(2, 2)), seed=0)
    assert sampler.step() is None
