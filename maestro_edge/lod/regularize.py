"""Hierarchical group lasso (HGL) and progressive shrinking, as in Maestro.

For a layer with components k = 1..r (row k of V, column k of U), with tail norms
``‖V[b:]‖_F`` and ``‖U[:, b:]‖_F``:

    HGL = Σ_b ( ‖V[b:]‖_F + ‖U[:, b:]‖_F )        component k is penalised in k terms
    importance_b = ‖V[b:]‖_F · ‖U[:, b:]‖_F        non-increasing in b, so "keep ≥ ε" keeps a prefix
"""

from __future__ import annotations

import torch

from maestro_edge.lod.layers import lod_layers

# A tiny floor under the square roots: the norm's gradient is NaN at exactly zero.
_EPS = 1e-12


def _tail_norms(sq_norms: torch.Tensor) -> torch.Tensor:
    """‖x[b:]‖ for every b, from per-component squared norms, in one reversed cumsum."""
    return (sq_norms.flip(0).cumsum(0).flip(0) + _EPS).sqrt()


def group_lasso(model) -> torch.Tensor:
    """The HGL penalty summed over every LoD layer (all stored components, masked ones included)."""
    total = None
    for layer in lod_layers(model).values():
        v_sq, u_sq = layer.component_sq_norms()
        term = _tail_norms(v_sq).sum() + _tail_norms(u_sq).sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


@torch.no_grad()
def component_importance(layer) -> torch.Tensor:
    v_sq, u_sq = layer.component_sq_norms()
    return _tail_norms(v_sq) * _tail_norms(u_sq)


@torch.no_grad()
def shrink_(model, threshold: float) -> dict[str, tuple[int, int]]:
    """Progressive shrinking: set each layer's active rank to the prefix with importance ≥ threshold.

    Weights are masked, not removed, so optimizer state stays valid. Returns name -> (old, new) rank
    for the layers that shrank. A layer never shrinks below rank 1.
    """
    changed = {}
    for name, layer in lod_layers(model).items():
        keep = int((component_importance(layer) >= threshold).sum())
        new = max(1, min(layer.active_rank, keep))
        if new != layer.active_rank:
            changed[name] = (layer.active_rank, new)
            layer.active_rank = new
    return changed
