"""Importance table: what truncating one layer alone costs on held-out data.

For every LoD layer and every rank on its grid, the layer runs at that rank while all others stay at
their active rank, and the held-out accuracy and loss are compared with the untruncated model. The
solver assumes these costs add up across layers (measured in BENCHMARKS.md, not assumed true).
"""

from __future__ import annotations

import torch

from maestro_edge.lod.grid import rank_grid
from maestro_edge.lod.layers import lod_layers
from maestro_edge.train.evaluate import evaluate


@torch.no_grad()
def importance_table(model, x: torch.Tensor, y: torch.Tensor) -> dict:
    """``{"base": {...}, "layers": {name: {"ranks": [...], "acc_drop": [...], "loss_delta": [...]}}}``"""
    base_acc, base_loss = evaluate(model, x, y)
    layers = {}
    for name, layer in lod_layers(model).items():
        ranks = rank_grid(layer)
        drops, deltas = [], []
        for rank in ranks:
            layer.sampled_rank = rank
            acc, loss = evaluate(model, x, y)
            drops.append(base_acc - acc)
            deltas.append(loss - base_loss)
        layer.sampled_rank = None
        layers[name] = {"ranks": ranks, "acc_drop": drops, "loss_delta": deltas}
    return {"base": {"accuracy": base_acc, "loss": base_loss, "samples": len(x)}, "layers": layers}


def penalty(entry: dict, index: int) -> float:
    """The solver's cost of one grid point: accuracy drop, with the loss change breaking ties.

    Held-out sets are small, so many truncations tie on accuracy; the loss change orders them.
    """
    return entry["acc_drop"][index] + 0.01 * entry["loss_delta"][index]
