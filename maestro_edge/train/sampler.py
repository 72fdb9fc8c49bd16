"""Rank samplers: which layer runs at which rank in the next training step."""

from __future__ import annotations

import random

from maestro_edge.lod.layers import lod_layers


class SingleLayerSampler:
    """Maestro's sampler: a shuffled cycle over all (layer, rank) pairs, one layer truncated per step.

    Over a cycle every pair appears once, so layer i is picked with probability r_i / Σ r_j and its
    rank is uniform on 1..r_i. The cycle is rebuilt from the current active ranks when it runs out
    (so after progressive shrinking the new ranks are used). Same seed, same sequence on every process.
    """

    def __init__(self, model, seed: int = 0):
        self.layers = lod_layers(model)
        self.rng = random.Random(seed)
        self._cycle: list[tuple[str, int]] = []

    def _refill(self) -> None:
        self._cycle = [(name, b) for name, layer in self.layers.items() for b in range(1, layer.active_rank + 1)]
        self.rng.shuffle(self._cycle)

    def step(self) -> tuple[str, int]:
        """Set the sampled rank for the next forward pass; returns the (layer, rank) pair."""
        if not self._cycle:
            self._refill()
        name, rank = self._cycle.pop()
        for other in self.layers.values():
            other.sampled_rank = None
        self.layers[name].sampled_rank = rank
        return name, rank

    def state_dict(self) -> dict:
        return {"cycle": [list(p) for p in self._cycle], "rng": repr(self.rng.getstate())}

    def clear(self) -> None:
        for layer in self.layers.values():
            layer.sampled_rank = None


class IndependentSampler(SingleLayerSampler):
    """Every layer draws its own rank uniformly from 1..active_rank at every step."""

    def step(self) -> tuple[str, int]:
        for layer in self.layers.values():
            layer.sampled_rank = self.rng.randint(1, layer.active_rank)
        return "*", 0


SAMPLERS = {"single-layer": SingleLayerSampler, "independent": IndependentSampler}
