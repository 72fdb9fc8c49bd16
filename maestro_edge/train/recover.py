"""Recovery after the fit: a short fine-tune of the chosen truncated model, distilled from the dense one.

LoD makes every rank prefix usable without retraining; a few hundred steps at the chosen ranks still buy back
part of what truncation cost (the same lever pruning tools use after every prune). It runs on the small model
``fit`` exports (plain layers, ``Fitter.truncated`` or ``export.truncate.deployable``), so the latency the plan
was chosen for does not change: only weights move.

    small = fitter.truncated(plan)                       # or deployable(ckpt.model, fit_json["ranks"])
    me.recover(small, loader, F.cross_entropy, teacher=dense, epochs=1, calibration=val_batches)
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from maestro_edge.errors import MaestroError
from maestro_edge.quality import recalibrate_bn_batches_
from maestro_edge.train.lod_schedule import _epochs


def recover(model: nn.Module, loader: Iterable, loss_fn: Callable | None = None, *, teacher: nn.Module | None = None,
            epochs: int = 1, max_steps: int | None = None, lr: float = 1e-3, distill_weight: float = 1.0,
            distill_loss: Callable = F.mse_loss, output_fn: Callable = lambda out: out,
            calibration: Iterable | None = None, clip_grad_norm: float = 0.0,
            progress: Callable[[str], None] | None = None) -> dict:
    """Fine-tune ``model`` in place over ``(inputs, target)`` batches; returns losses, steps and seconds.

    ``teacher``: the dense original (frozen), whose outputs the truncated model is pulled toward (MSE by
    default); ``loss_fn`` may then be None. ``max_steps`` caps the optimizer steps across epochs (an equal
    compute budget). ``calibration``: input batches over which BatchNorm statistics are recomputed at the
    end (what ``fit --calibrate`` uses), so the statistics match the fine-tuned weights.
    """
    if loss_fn is None and teacher is None:
        raise MaestroError("recover needs a loss_fn, a teacher to distil from, or both")
    if epochs < 1 or (max_steps is not None and max_steps < 0):
        raise MaestroError(f"recover: epochs must be >= 1 and max_steps >= 0 (got {epochs}, {max_steps})")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise MaestroError("recover: the model has no trainable parameters")
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    if teacher is not None:
        teacher.eval()
    history = {"epoch_loss": [], "steps": 0, "seconds": 0.0}
    started = time.perf_counter()
    _epochs(model, loader, loss_fn, epochs, optimizer, teacher, distill_weight, distill_loss, output_fn,
            None, clip_grad_norm, progress, history, max_steps)
    history["bn_batches"] = recalibrate_bn_batches_(model, calibration) if calibration is not None else 0
    model.eval()
    history["seconds"] = time.perf_counter() - started
    return history
