"""Rank samplers: which layer runs at which rank in the next training step.

Both draw from a ``random.Random`` seeded by the recipe, so every process of a distributed run draws
the same sequence, and both can save and restore their state as plain lists (checkpoints load with
``weights_only=True``).
"""

from __future__ import annotations

import random

from maestro_edge.lod.layers import lod_layers


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _set_rng_state(rng: random.Random, state: list) -> None:
    version, internal, gauss = state
    rng.setstate((int(version), tuple(int(i) for i in internal), gauss))


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

    def step(self) -> tuple[str, int] | None:
        """Set the sampled rank for the next forward pass; returns the (layer, rank) pair.

        A model without LoD layers trains as it is (None: nothing to sample).
        """
        if not self.layers:
            return None
        if not self._cycle:
            self._refill()
        name, rank = self._cycle.pop()
        for other in self.layers.values():
            other.sampled_rank = None
        self.layers[name].sampled_rank = rank
        return name, rank

    def reset(self) -> None:
        """Drop the rest of the cycle (after progressive shrinking changed the active ranks).

        A cycle built before shrinking may hold ranks above a layer's new active rank; those would
        train components that shrinking has just masked.
        """
        self._cycle = []

    def state_dict(self) -> dict:
        return {"cycle": [[name, rank] for name, rank in self._cycle], "rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict) -> None:
        self._cycle = [(str(name), int(rank)) for name, rank in state["cycle"]]
        _set_rng_state(self.rng, state["rng"])

    def clear(self) -> None:
        """Every layer back to its active rank."""
        for layer in self.layers.values():
            layer.sampled_rank = None


class IndependentSampler(SingleLayerSampler):
    """Every layer draws its own rank uniformly from 1..active_rank at every step."""

    def step(self) -> tuple[str, int]:
        for layer in self.layers.values():
            layer.sampled_rank = self.rng.randint(1, layer.active_rank)
        return "*", 0


SAMPLERS = {"single-layer": SingleLayerSampler, "independent": IndependentSampler}
