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
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from maestro_edge.entry_points import checked_batches
from maestro_edge.errors import MaestroError
from maestro_edge.train.evaluate import all_cores, recalibrate_bn_batches_
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


@dataclass(frozen=True)
class Recovery:
    """Recovery as a stage of ``fit`` (``Fitter(recovery=...)``, ``fit --recover-epochs``): where the training
    batches come from (a function, called once per fit: ``(inputs, target)`` batches with ``loss_fn``, batches of
    model inputs without it), the task loss (None: distillation from the dense model alone, for a model whose
    task loss maestro-edge does not know), and how long."""

    batches: Callable[[], Iterable]
    loss_fn: Callable | None = None
    epochs: int = 1
    lr: float = 1e-3
    max_steps: int | None = None

    def run(self, small: nn.Module, teacher: nn.Module, progress: Callable[[str], None] | None = None) -> dict:
        """Fine-tune ``small`` in place toward ``teacher``; the record fit.json keeps."""
        batches = checked_batches(self.batches(), "--train-data")
        if self.loss_fn is None:   # inputs only (what --calibrate returns too): the dense model gives the targets
            batches = [(inputs, None) for inputs in batches]
        with all_cores():   # fit runs torch at 1 thread (latency); fine-tuning is throughput work
            history = recover(small, batches, self.loss_fn, teacher=teacher, epochs=self.epochs,
                              max_steps=self.max_steps, lr=self.lr, progress=progress)
        if not history["steps"]:
            raise MaestroError("recovery: the training data gave no batch; check what --train-data returns")
        return {"epochs": self.epochs, "steps": history["steps"], "lr": self.lr,
                "loss": "task + distillation" if self.loss_fn else "distillation from the dense model",
                "final_loss": history["epoch_loss"][-1], "seconds": round(history["seconds"], 2)}


def image_batches(name: str, seed: int = 0, batch: int = 64) -> Callable[[], list]:
    """A built-in data set's training split as shuffled (images, labels) batches (``fit --recover-epochs``)."""
    def batches() -> list:
        from maestro_edge.data import load_dataset

        data = load_dataset(name, seed)
        if not len(data.train_x):
            raise MaestroError(f"recovery needs the training images of {name}, which this machine does not have; "
                               "install them (Fashion-MNIST: apt-get install dataset-fashion-mnist)")
        order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed))
        return [(data.train_x[i], data.train_y[i]) for i in order.split(batch)]
    return batches
