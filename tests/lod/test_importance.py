"""The importance table (lod/importance.py) over the rank grid, on a factorized reference model."""

from __future__ import annotations

import torch

from maestro_edge.lod.factorize import factorize_
from maestro_edge.lod.grid import rank_grid
from maestro_edge.train.importance import accuracy_importance_table
from maestro_edge.lod.layers import lod_layers
from maestro_edge.models import build_model


def test_importance_table_covers_every_layer_on_its_rank_grid():
    torch.manual_seed(0)
    model = build_model("lenet5", 1, 10)
    factorize_(model)
    lod_layers(model)["classifier.1"].active_rank = 40          # a shrunk layer: grid follows active rank
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    table = accuracy_importance_table(model, x, y)
    assert table["base"]["samples"] == 32
    for name, layer in lod_layers(model).items():
        entry = table["layers"][name]
        assert entry["ranks"] == rank_grid(layer)
        assert len(entry["acc_drop"]) == len(entry["loss_delta"]) == len(entry["ranks"])
        assert layer.sampled_rank is None
    assert max(table["layers"]["classifier.1"]["ranks"]) <= 40
