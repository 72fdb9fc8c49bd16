"""LoD training: one sampled truncation per step, hierarchical group lasso, progressive shrinking.

Per step (``TrainStep``): the rank sampler truncates one layer (Maestro's default) or every layer;
the loss is cross-entropy on the truncated network plus ``gl_lambda`` × HGL, one SGD step. Layers
whose rank is above break-even run as one dense op on the composed weight U_r V_r
(``compose_weights``, same function and gradients), so a LoD step costs about a dense step. With
``distill`` the full-rank network also runs: CE(full, labels) + CE(truncated, softmax(full).detach())
(FjORD/Maestro self-distillation, about 2× the compute). After every epoch: progressive shrinking,
BatchNorm recalibration on training images, validation, and a resumable state (``progress``).
With ``warmup_epochs`` the first epochs train the full-rank factor pairs alone (no sampling, penalty or
shrinking), then every layer is re-split by SVD, so LoD starts from a trained network whose components
are ordered by strength. This is close to Maestro's ``--full-training-epochs`` (dense training, then
SVD), not the same: the warm-up trains U and V, on which weight decay acts like a nuclear-norm penalty
on W = UV rather than an L2 penalty on W.

Determinism: everything random comes from the recipe's seed (data order per epoch, rank sampler),
so two runs with the same seed and thread count give the same weights, a run resumed from its
per-epoch state equals an uninterrupted one, and every process of a distributed run draws the same
ranks while reading its own shard of each batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from maestro_edge.data import ImageData
from maestro_edge.lod.layers import lod_layers, set_compose_weights, set_constant_shapes
from maestro_edge.lod.regularize import GroupLasso, shrink_
from maestro_edge.progress import Reporter
from maestro_edge.train.distributed import DistContext
from maestro_edge.train.evaluate import evaluate, recalibrate_bn_
from maestro_edge.train.sampler import SAMPLERS


@dataclass(frozen=True)
class Recipe:
    epochs: int = 30
    batch_size: int = 64             # global: split across processes in a distributed run
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gl_lambda: float = 1e-4          # weight of the hierarchical group lasso
    shrink_threshold: float = 1e-7   # progressive shrinking ε (the paper's value); 0 disables
    sampler: str = "single-layer"
    seed: int = 0
    distill: bool = False            # also run the full-rank net and distil the truncated one from it
    constant_shapes: bool = False    # mask components beyond the sampled rank instead of slicing (GPU)
    compose_weights: bool = True     # run a layer as one dense op on U_r V_r where that costs fewer MACs
    bn_samples: int = 10000          # training images for BatchNorm recalibration per epoch (0 = all)
    warmup_epochs: int = 0           # first epochs at full rank (no sampling, penalty, shrinking), then SVD re-split
    compile: bool = False            # torch.compile the step's loss (CUDA graphs on a GPU); needs constant_shapes
    clip_grad_norm: float = 0.0      # clip the gradient's global L2 norm to this before each step (0 = off)

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if self.gl_lambda < 0 or self.shrink_threshold < 0 or self.bn_samples < 0:
            raise ValueError("gl_lambda, shrink_threshold and bn_samples must be >= 0")
        if not self.clip_grad_norm >= 0:
            raise ValueError(f"clip_grad_norm must be >= 0 (0: off), got {self.clip_grad_norm}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be in 0..epochs-1 ({self.epochs - 1}), got {self.warmup_epochs}")
        if self.compile and (self.distill or not self.constant_shapes):
            raise ValueError("compile needs constant_shapes (sliced ranks would recompile every step) and no distill")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Recipe":
        """A recipe from ``to_dict`` output; fields it lacks (older checkpoints) take their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def make_optimizer(model: nn.Module, recipe: Recipe, steps_per_epoch: int):
    """Nesterov SGD (no weight decay on 1-D parameters: BatchNorm and biases) and a one-cycle schedule."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=recipe.lr, momentum=recipe.momentum, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.epochs * steps_per_epoch)
    return optimizer, schedule


class TrainStep:
    """One LoD optimizer step on a batch; returns the batch's task loss as a 0-d tensor (no sync).

    ``net`` is what runs the forward pass (the DDP wrapper in a distributed run), ``model`` the plain
    module whose LoD layers the sampler and the penalty see. ``autocast`` (e.g. torch.bfloat16) runs
    the forward passes under mixed precision; the penalty stays in the parameters' dtype.
    """

    def __init__(self, model: nn.Module, optimizer, sampler, recipe: Recipe, scheduler=None,
                 net: nn.Module | None = None, autocast: torch.dtype | None = None):
        self.model, self.net = model, net or model
        self.optimizer, self.scheduler, self.sampler, self.recipe = optimizer, scheduler, sampler, recipe
        self.penalty = GroupLasso(model) if recipe.gl_lambda else None
        self.autocast = autocast
        self.warming_up = False   # full-rank steps: no sampling, no penalty (Recipe.warmup_epochs)
        self._losses, self._graphs = self._task_and_total, False
        if recipe.compile:
            if self.penalty is not None:
                self.penalty()    # builds its index eagerly: data-dependent shapes would break the graph
            self._graphs = next(model.parameters()).device.type == "cuda"
            # CUDA graphs replay the whole forward, loss and backward as one launch each: the LoD step's
            # extra cost over a dense one is many small kernels, not FLOPs.
            self._losses = torch.compile(self._task_and_total, mode="reduce-overhead" if self._graphs else None)

    def _forward(self, x):
        device_type = x.device.type
        ctx = torch.autocast(device_type, self.autocast) if self.autocast is not None else contextlib.nullcontext()
        with ctx:
            return self.net(x)

    def _task_and_total(self, x: torch.Tensor, y: torch.Tensor, penalised: bool) -> tuple[torch.Tensor, torch.Tensor]:
        task = F.cross_entropy(self._forward(x), y)
        if not penalised:
            return task.detach(), task
        return task.detach(), task + self.recipe.gl_lambda * self.penalty()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        penalised = self.penalty is not None and not self.warming_up
        if self.recipe.distill and not self.warming_up:
            self.sampler.clear()
            full = self._forward(x)
            self.sampler.step()
            truncated = self._forward(x)
            loss = F.cross_entropy(full, y) + F.cross_entropy(truncated, full.detach().float().softmax(1))
            task = loss.detach()
            if penalised:
                loss = loss + self.recipe.gl_lambda * self.penalty()
        else:
            if self.warming_up:
                self.sampler.clear()
            else:
                self.sampler.step()
            if self._graphs:
                torch.compiler.cudagraph_mark_step_begin()
            task, loss = self._losses(x, y, penalised)
            if self._graphs:
                task = task.clone()   # the next replay overwrites the graph's outputs
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.recipe.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.clip_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return task


def end_warmup_(model: nn.Module, optimizer, dist: DistContext | None = None) -> None:
    """After the full-rank warm-up: SVD re-split of every LoD layer, and fresh optimizer state.

    Momentum buffers of the old factors mean nothing for the re-split ones (Maestro rebuilds its
    optimizer after its dense warm-up too); the lr schedule goes on. In a distributed run process 0's
    split is broadcast: DDP never re-syncs parameters, and SVD signs need not agree across devices.
    """
    layers = lod_layers(model).values()
    for layer in layers:
        layer.resplit_()
    if dist:
        dist.broadcast_([p.data for layer in layers for p in (layer.u, layer.v)])
    optimizer.state.clear()


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of one epoch: a permutation seeded by (seed, epoch), the same in every process."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, dist: DistContext | None = None):
    """This process's index batches for one epoch.

    Each global batch of ``batch_size`` is split round-robin over the processes (disjoint shards, same
    number of steps everywhere); a last batch smaller than the number of processes is dropped.
    """
    order = epoch_order(n, seed, epoch)
    world, rank = (dist.world_size, dist.rank) if dist else (1, 0)
    for start in range(0, n, batch_size):
        batch = order[start:start + batch_size]
        if len(batch) < world:
            break
        yield batch[rank::world]


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    steps = math.ceil(n / batch_size)
    last = n - (steps - 1) * batch_size
    return steps - (1 if last < world else 0)


def bn_subset(data: ImageData, recipe: Recipe) -> torch.Tensor:
    """The training images BatchNorm is recalibrated on: a seeded subset, the same in every process."""
    n = len(data.train_x)
    if recipe.bn_samples == 0 or recipe.bn_samples >= n:
        return data.train_x
    order = torch.randperm(n, generator=torch.Generator().manual_seed(recipe.seed + 7919))
    return data.train_x[order[:recipe.bn_samples]]


def train_lod(model: nn.Module, data: ImageData, recipe: Recipe,
              on_epoch: Callable[[int, dict], None] | None = None, *,
              state: dict | None = None, on_state: Callable[[dict], None] | None = None,
              device: str | torch.device = "cpu", autocast: torch.dtype | None = None,
              dist: DistContext | None = None, progress: Reporter = Reporter()) -> dict:
    """Train ``model`` (already factorized) in place; returns metrics of the final epoch.

    Metrics: ``train_loss`` is the task loss of what was trained (the truncated networks; with
    ``distill`` the sum of both terms), ``val_*`` the full current-rank model after shrinking and
    BatchNorm recalibration.

    state: a ``progress`` dict from ``on_state`` to resume from (the model must hold the weights and
        active ranks saved with it).
    on_state: called after every epoch with the resumable state (plain tensors, lists and numbers),
        before ``on_epoch``; ``train_checkpoint`` saves it in the checkpoint.
    dist: a distributed context (``maestro_edge.train.distributed.setup``); gradients are averaged
        with DistributedDataParallel, each process reads its shard of every batch.
    progress: counts each epoch's batches, with an ETA (maestro_edge.progress).
    """
    torch.manual_seed(recipe.seed)
    if len(data.train_x) == 0:
        raise ValueError(f"data set '{data.name}' has no training split")
    model.to(device)
    sampler = SAMPLERS[recipe.sampler](model, seed=recipe.seed)
    world = dist.world_size if dist else 1
    n_steps = steps_per_epoch(len(data.train_x), recipe.batch_size, world)
    optimizer, schedule = make_optimizer(model, recipe, n_steps)
    history: list[dict] = []
    first_epoch = 0
    if state:
        if int(state.get("world_size", 1)) != world:
            raise ValueError(f"the saved state comes from {state.get('world_size', 1)} processes, not {world}: "
                             "resume with the same number of processes")
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        history = list(state.get("history", []))
        first_epoch = int(state["epochs_done"])
    net = model
    if dist:
        device_ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
        # No per-step buffer broadcast: BatchNorm statistics are recalibrated on the same images in every
        # process after each epoch, which makes them identical again.
        net = nn.parallel.DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)
    step = TrainStep(model, optimizer, sampler, recipe, schedule, net=net, autocast=autocast)
    calibration = bn_subset(data, recipe)
    set_constant_shapes(model, recipe.constant_shapes)
    set_compose_weights(model, recipe.compose_weights)
    metrics: dict = history[-1] if history else {}
    started = time.perf_counter() - (metrics.get("elapsed_s", 0.0) if metrics else 0.0)
    try:
        for epoch in range(first_epoch, recipe.epochs):
            model.train()
            step.warming_up = epoch < recipe.warmup_epochs
            total = torch.zeros((), dtype=torch.float64, device=device)
            count = 0
            with progress.count(f"epoch {epoch + 1}/{recipe.epochs}", n_steps, "batches") as counter:
                for batch in epoch_batches(len(data.train_x), recipe.batch_size, recipe.seed, epoch, dist):
                    x = data.train_x[batch].to(device, non_blocking=True)
                    y = data.train_y[batch].to(device, non_blocking=True)
                    total += step(x, y).double() * len(batch)
                    count += len(batch)
                    counter.advance()
            sampler.clear()
            if dist:
                total, count = dist.all_reduce_sum(total, count)
            if epoch + 1 == recipe.warmup_epochs:
                end_warmup_(model, optimizer, dist)
            shrinking = recipe.shrink_threshold > 0 and not step.warming_up
            shrunk = shrink_(model, recipe.shrink_threshold) if shrinking else {}
            if shrunk:
                sampler.reset()
            recalibrate_bn_(model, calibration)
            val_acc, val_loss = evaluate(model, data.val_x, data.val_y)
            metrics = {"epoch": epoch + 1, "train_loss": float(total) / max(count, 1), "val_accuracy": val_acc,
                       "val_loss": val_loss, "lr": schedule.get_last_lr()[0],
                       "shrunk": {k: list(v) for k, v in shrunk.items()},
                       "active_ranks": {n: l.active_rank for n, l in lod_layers(model).items()},
                       "elapsed_s": time.perf_counter() - started}
            history.append(metrics)
            if on_state:
                on_state({"epochs_done": epoch + 1, "complete": False, "world_size": world,
                          "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
                          "sampler": sampler.state_dict(), "torch_rng": torch.get_rng_state(), "history": history})
            if on_epoch:
                on_epoch(epoch, metrics)
    finally:
        sampler.clear()
        set_constant_shapes(model, False)
        set_compose_weights(model, False)
    return metrics


def diverging(before: dict, after: dict) -> bool:
    """An epoch (its metrics) that more than doubled the train loss (or made it NaN) and lost validation accuracy."""
    return not after["train_loss"] <= 2 * before["train_loss"] and not after["val_accuracy"] >= before["val_accuracy"]
