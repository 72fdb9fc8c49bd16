"""The built-in models' importance table: held-out accuracy and loss per layer and rank (see lod/importance.py)."""

from __future__ import annotations

import torch

from maestro_edge.lod.grid import rank_grid
from maestro_edge.lod.layers import lod_layers
from maestro_edge.train.evaluate import evaluate


@torch.no_grad()
def accuracy_importance_table(model, x: torch.Tensor, y: torch.Tensor) -> dict:
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
