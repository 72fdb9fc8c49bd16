"""Hierarchical group lasso (HGL) and progressive shrinking, as in Maestro.

For a layer with components k = 1..r (row k of V, column k of U), with tail norms
``‖V[b:]‖_F`` and ``‖U[:, b:]‖_F``:

    HGL = Σ_b ( ‖V[b:]‖_F + ‖U[:, b:]‖_F )        component k is penalised in k terms
    importance_b = ‖V[b:]‖_F · ‖U[:, b:]‖_F        non-increasing in b, so "keep ≥ ε" keeps a prefix

``GroupLasso(model)`` computes the same penalty for every layer at once: the per-component squared
norms of all factors are padded into one (2·layers × max rank) tensor and the tail sums, square roots
and sum run once on it, a constant number of kernels instead of ~20 per layer (a Python loop over
layers is launch-bound on a GPU).
"""

from __future__ import annotations

import torch

from maestro_edge.lod.layers import lod_layers

# A tiny floor under the square roots: the norm's gradient is NaN at exactly zero.
_EPS = 1e-12


def _tail_norms(sq_norms: torch.Tensor) -> torch.Tensor:
    """‖x[b:]‖ for every b, from per-component squared norms, in one reversed cumsum."""
    return (sq_norms.flip(0).cumsum(0).flip(0) + _EPS).sqrt()


def group_lasso(model, fused: bool = True) -> torch.Tensor:
    """The HGL penalty summed over every LoD layer (all stored components, masked ones included)."""
    if fused:
        return GroupLasso(model)()
    total = None
    for layer in lod_layers(model).values():
        v_sq, u_sq = layer.component_sq_norms()
        term = _tail_norms(v_sq).sum() + _tail_norms(u_sq).sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


class GroupLasso:
    """The HGL penalty of ``model``'s LoD layers as one fused computation; call it once per step.

    The padding index is built once and rebuilt only when a layer's stored rank, device or dtype
    changes (after ``truncate_`` or ``.to()``).
    """

    def __init__(self, model):
        self.layers = list(lod_layers(model).values())
        self._key = None

    def _layout(self, device, dtype):
        key = (tuple(layer.max_rank for layer in self.layers), device, dtype)
        if key != self._key:
            ranks = torch.tensor([r for layer in self.layers for r in (layer.max_rank, layer.max_rank)])
            width = int(ranks.max())
            columns = torch.arange(width)
            valid = columns[None, :] < ranks[:, None]                        # (2L, R): real components
            self._positions = valid.flatten().nonzero().squeeze(1).to(device)
            self._valid = valid.to(device=device, dtype=dtype)
            self._key = key
        return self._positions, self._valid

    def __call__(self) -> torch.Tensor:
        if not self.layers:
            return torch.zeros(())
        norms = [sq for layer in self.layers for sq in layer.component_sq_norms()]
        flat = torch.cat(norms)
        positions, valid = self._layout(flat.device, flat.dtype)
        padded = flat.new_zeros(valid.numel()).index_copy(0, positions, flat).view_as(valid)
        tails = padded.flip(1).cumsum(1).flip(1)          # ‖x[b:]‖² for every row and every b
        return ((tails + _EPS).sqrt() * valid).sum()


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
