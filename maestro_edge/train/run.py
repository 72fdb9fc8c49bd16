"""``maestro-edge train``: dense model -> factorize -> LoD training -> importance table -> checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from maestro_edge.data import load_dataset
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.factorize import FactorizeConfig, factorize_
from maestro_edge.lod.importance import importance_table
from maestro_edge.models import build_model
from maestro_edge.train.evaluate import evaluate
from maestro_edge.train.loop import Recipe, train_lod


def train_checkpoint(arch: str, data_name: str, recipe: Recipe, out: Path,
                     on_epoch: Callable[[int, dict], None] | None = None, arch_kwargs: dict | None = None) -> LoDCheckpoint:
    """Train a LoD model from scratch (SVD of a randomly initialised dense model) and save it to ``out``."""
    torch.manual_seed(recipe.seed)
    data = load_dataset(data_name, recipe.seed)
    model = build_model(arch, data.in_channels, data.num_classes, **(arch_kwargs or {}))
    report = factorize_(model, FactorizeConfig())
    started = time.perf_counter()
    metrics = train_lod(model, data, recipe, on_epoch=on_epoch)
    train_s = time.perf_counter() - started
    test_acc, test_loss = evaluate(model, data.test_x, data.test_y)
    ckpt = LoDCheckpoint(
        model=model.eval(),
        arch={"name": arch, "kwargs": arch_kwargs or {}, "in_channels": data.in_channels, "num_classes": data.num_classes},
        data={"name": data_name, "seed": recipe.seed, "input_shape": list(data.input_shape)},
        recipe=recipe.to_dict(),
        metrics={**metrics, "test_accuracy": test_acc, "test_loss": test_loss, "train_seconds": round(train_s, 1),
                 "factorized": report.swapped, "skipped": report.skipped},
        importance=importance_table(model, data.val_x, data.val_y),
    )
    ckpt.save(out)
    return ckpt
