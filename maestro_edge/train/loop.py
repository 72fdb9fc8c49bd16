"""LoD training: one sampled truncation per step, hierarchical group lasso, progressive shrinking."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from maestro_edge.data import ImageData
from maestro_edge.lod.layers import lod_layers
from maestro_edge.lod.regularize import group_lasso, shrink_
from maestro_edge.train.evaluate import evaluate, recalibrate_bn_
from maestro_edge.train.sampler import SAMPLERS


@dataclass(frozen=True)
class Recipe:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gl_lambda: float = 1e-4          # weight of the hierarchical group lasso
    shrink_threshold: float = 1e-7   # progressive shrinking ε (the paper's value); 0 disables
    sampler: str = "single-layer"
    seed: int = 0

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")

    def to_dict(self) -> dict:
        return asdict(self)


def train_lod(model: nn.Module, data: ImageData, recipe: Recipe,
              on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """Train ``model`` (already factorized) in place; returns metrics of the final epoch."""
    torch.manual_seed(recipe.seed)
    sampler = SAMPLERS[recipe.sampler](model, seed=recipe.seed)
    # No weight decay on BatchNorm and biases (1-D parameters), unlike the official code.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=recipe.lr, momentum=recipe.momentum, nesterov=True)
    steps_per_epoch = math.ceil(len(data.train_x) / recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(recipe.seed)
    metrics: dict = {}
    started = time.perf_counter()
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(data.train_x), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), recipe.batch_size):
            batch = order[start:start + recipe.batch_size]
            sampler.step()
            loss = F.cross_entropy(model(data.train_x[batch]), data.train_y[batch])
            total_loss += loss.item() * len(batch)
            if recipe.gl_lambda:
                loss = loss + recipe.gl_lambda * group_lasso(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        sampler.clear()
        shrunk = shrink_(model, recipe.shrink_threshold) if recipe.shrink_threshold > 0 else {}
        recalibrate_bn_(model, data.train_x)
        val_acc, val_loss = evaluate(model, data.val_x, data.val_y)
        metrics = {"epoch": epoch + 1, "train_loss": total_loss / len(order), "val_accuracy": val_acc,
                   "val_loss": val_loss, "shrunk": {k: list(v) for k, v in shrunk.items()},
                   "active_ranks": {n: l.active_rank for n, l in lod_layers(model).items()},
                   "elapsed_s": time.perf_counter() - started}
        if on_epoch:
            on_epoch(epoch, metrics)
    return metrics
