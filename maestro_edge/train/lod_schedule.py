"""LoD in the user's own training loop (``LoDSchedule``) and a plain loop over any data (``train_lod``).

A user who already has a training loop adds four calls:

    schedule = LoDSchedule(model)                 # after maestro_edge.factorize_(model)
    for epoch in ...:
        for x, y in loader:
            with schedule.step():                 # one layer truncated to a sampled rank
                loss = loss_fn(model(x), y) + schedule.penalty()
                loss.backward()
            optimizer.step(); optimizer.zero_grad()
        schedule.end_epoch_()                     # progressive shrinking

``gl_lambda`` must suit the loss: the group lasso grows with the model (~3e5 for all-MiniLM-L6-v2 at full
rank), so print ``schedule.penalty()`` at the first step and keep it below the loss (a tenth to a third). A
penalty that dominates makes Adam push every component toward zero and the model drifts from its task
(examples/minilm: 1e-4 gave a penalty 1000x its distillation loss; it uses 3e-8).

Every random choice comes from ``seed``: construct the schedule with the same seed on every DDP process
and they truncate the same layer to the same rank at every step (each still reads its own shard).
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from maestro_edge.errors import MaestroError
from maestro_edge.lod.layers import lod_layers, set_compose_weights
from maestro_edge.lod.regularize import GroupLasso, shrink_
from maestro_edge.train.sampler import SAMPLERS


class LoDSchedule:
    """Rank sampling, the hierarchical group lasso and progressive shrinking for a factorized model."""

    def __init__(self, model: nn.Module, gl_lambda: float = 1e-4, shrink_threshold: float = 1e-7,
                 sampler: str = "single-layer", seed: int = 0):
        if not lod_layers(model):
            raise MaestroError("the model has no LoD layers; call maestro_edge.factorize_(model) first")
        if sampler not in SAMPLERS:
            raise MaestroError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
        self.model, self.gl_lambda, self.shrink_threshold = model, gl_lambda, shrink_threshold
        self.sampler = SAMPLERS[sampler](model, seed)
        self._lasso = GroupLasso(model)

    def sample_(self):
        """Truncate for the next forward pass; returns the (layer, rank) drawn."""
        return self.sampler.step()

    def reset_(self) -> None:
        """Every layer back to its active rank (after the backward pass)."""
        self.sampler.clear()

    @contextlib.contextmanager
    def step(self):
        """``sample_()`` on entry, ``reset_()`` on exit, even when the step raises."""
        self.sample_()
        try:
            yield self
        finally:
            self.reset_()

    def penalty(self) -> torch.Tensor:
        """``gl_lambda`` × the hierarchical group lasso: add it to the loss (orders the components)."""
        if not self.gl_lambda:
            return torch.zeros(())
        return self.gl_lambda * self._lasso()

    def end_epoch_(self) -> dict[str, tuple[int, int]]:
        """Progressive shrinking; returns layer -> (old, new) active rank for the layers that shrank."""
        if not self.shrink_threshold:
            return {}
        changed = shrink_(self.model, self.shrink_threshold)
        if changed:
            self.sampler.reset()   # the rest of the cycle may hold ranks above the new active ranks
        return changed

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])


def _call(model: nn.Module, inputs):
    return model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)


def train_lod(model: nn.Module, loader: Iterable, loss_fn: Callable | None, epochs: int = 1, *,
              optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3, teacher: nn.Module | None = None,
              distill_weight: float = 1.0, distill_loss: Callable = F.mse_loss,
              output_fn: Callable = lambda out: out, schedule: LoDSchedule | None = None,
              clip_grad_norm: float = 0.0, progress: Callable[[str], None] | None = None) -> dict:
    """LoD fine-tuning over any iterable of ``(inputs, target)`` batches (inputs: a tensor or a tuple).

    ``loss_fn(output, target)`` is the task loss. With ``teacher`` (the frozen dense original) the
    truncated model is also pulled toward the teacher's outputs by ``distill_loss`` (MSE by default:
    works for logits and embeddings); with a teacher, ``loss_fn`` may be None (unlabeled data, pure
    distillation). ``output_fn`` maps a model's output to a tensor (e.g. ``lambda o: o.last_hidden_state``).
    Returns per-epoch mean losses (task + distillation + penalty), what shrank, steps and seconds.
    Make the teacher with ``copy.deepcopy(model)`` *before* ``factorize_`` (which works in place).
    BatchNorm statistics are not recalibrated here: ``fit --calibrate`` does it per truncated model.
    """
    if loss_fn is None and teacher is None:
        raise MaestroError("train_lod needs a loss_fn, a teacher to distil from, or both")
    schedule = schedule or LoDSchedule(model)
    optimizer = optimizer or torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    if teacher is not None:
        teacher.eval()
    history = {"epoch_loss": [], "shrunk": [], "steps": 0, "seconds": 0.0}
    started = time.perf_counter()
    set_compose_weights(model, True)   # high ranks run as one dense op on U_r V_r: same function, fewer MACs
    try:
        _epochs(model, loader, loss_fn, epochs, optimizer, teacher, distill_weight, distill_loss, output_fn,
                schedule, clip_grad_norm, progress, history)
    finally:
        set_compose_weights(model, False)
    model.eval()
    history["seconds"] = time.perf_counter() - started
    return history


def _epochs(model, loader, loss_fn, epochs, optimizer, teacher, distill_weight, distill_loss, output_fn,
            schedule, clip_grad_norm, progress, history, max_steps: int | None = None) -> None:
    """The shared loop of ``train_lod`` and ``recover`` (``schedule`` None: plain fine-tuning, no truncation)."""
    for epoch in range(epochs):
        model.train()
        total, batches = 0.0, 0
        for inputs, target in loader:
            if max_steps is not None and history["steps"] + batches >= max_steps:
                break
            with torch.no_grad():
                reference = output_fn(_call(teacher, inputs)) if teacher is not None else None
            with schedule.step() if schedule else contextlib.nullcontext():
                output = output_fn(_call(model, inputs))
                loss = schedule.penalty() if schedule else torch.zeros(())
                if loss_fn is not None:
                    loss = loss + loss_fn(output, target)
                if reference is not None:
                    loss = loss + distill_weight * distill_loss(output, reference)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            if clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        history["epoch_loss"].append(total / max(1, batches))
        if schedule:
            history["shrunk"].append(schedule.end_epoch_())
        history["steps"] += batches
        if progress:
            what = "LoD epoch" if schedule else "recovery epoch"
            progress(f"{what} {epoch + 1}/{epochs}: loss {history['epoch_loss'][-1]:.4g}")
        if max_steps is not None and history["steps"] >= max_steps:
            break
