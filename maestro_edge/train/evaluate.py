"""Held-out evaluation and BatchNorm recalibration."""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def core_count() -> int:
    """The cores this process may run on (its affinity; the machine's count where that is unknown)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextlib.contextmanager
def all_cores():
    """Run PyTorch on every core this process may use, then restore the thread count.

    Latency is measured single-threaded (or at a profile's threads), but held-out accuracy is plain
    throughput work: a 5-GMAC model's 1000 test images take minutes on one core.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(core_count())
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode (batches go to the model's device)."""
    was_training = model.training
    model.eval()
    device = _device(model)
    correct, loss = 0, 0.0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size].to(device)).float()
        target = y[start:start + batch_size].to(device)
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    model.train(was_training)
    return correct / len(x), loss / len(x)


@torch.no_grad()
def recalibrate_bn_(model: nn.Module, x: torch.Tensor, batch_size: int = 256,
                    on_batch: Callable[[int], None] | None = None) -> None:
    """Recompute BatchNorm running statistics for the model as it is now (e.g. truncated).

    Maestro shares one set of BN statistics across ranks; a truncated sub-model shifts activations,
    so its statistics are re-estimated as a cumulative average over ``x`` before evaluation.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was_training = model.training
    device = _device(model)
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for start in range(0, len(x), batch_size):
        model(x[start:start + batch_size].to(device))
        if on_batch:
            on_batch(len(x[start:start + batch_size]))
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def recalibrate_bn_batches_(model: nn.Module, batches: Iterable) -> int:
    """BatchNorm statistics recomputed (cumulative average) over the user's batches; returns how many ran.

    A batch is the model's input: a tensor, or a tuple of tensors (called as ``model(*batch)``).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was_training = model.training
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    count = 0
    try:
        with all_cores():
            for batch in batches:
                model(*_inputs(batch))
                count += 1
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
        model.train(was_training)
    return count


def _inputs(batch) -> tuple:
    return (batch,) if isinstance(batch, torch.Tensor) else tuple(batch)
