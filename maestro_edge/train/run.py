"""``maestro-edge train``: dense model -> factorize -> LoD training -> importance table -> checkpoint.

The checkpoint is written after every epoch with everything needed to resume (optimizer, schedule,
sampler and RNG state, as plain tensors and lists in ``progress``); the finished checkpoint drops that
state (``progress["complete"] = True``) and adds the test accuracy and the importance table. Under
``torchrun`` the same call trains data-parallel and only process 0 writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from maestro_edge.data import load_dataset
from maestro_edge.errors import CheckpointError, UsageError
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.factorize import FactorizeConfig, factorize_
from maestro_edge.train.importance import accuracy_importance_table
from maestro_edge.lod.layers import lod_layers
from maestro_edge.models import build_model
from maestro_edge.progress import Reporter
from maestro_edge.train import distributed
from maestro_edge.train.evaluate import evaluate
from maestro_edge.train.loop import Recipe, train_lod

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _existing_checkpoint(out: Path) -> LoDCheckpoint | None:
    """The checkpoint already at ``out`` (None: nothing there). Any other file there is someone's work: a
    UsageError, before any training, rather than a checkpoint over it."""
    if not os.path.exists(out):
        return None
    try:
        return LoDCheckpoint.load(out)
    except CheckpointError:
        raise UsageError(f"--out {str(out)!r} already exists and is not a maestro-edge checkpoint this version "
                         "reads; pass a new path with --out, or delete that file") from None


def _resume_state(ckpt: LoDCheckpoint | None, out: Path, arch: dict, data: dict,
                  recipe: Recipe) -> tuple[LoDCheckpoint | None, dict | None]:
    """``ckpt`` (saved at ``out``) if it is an unfinished run started with the same settings, else (None, None)."""
    if ckpt is None:
        return None, None
    progress = ckpt.progress
    if progress.get("complete", True) or "optimizer" not in progress:
        return None, None     # a finished model: train a new one over it
    saved = {"arch": ckpt.arch, "data": ckpt.data, "recipe": Recipe.from_dict(ckpt.recipe).to_dict()}
    wanted = {"arch": arch, "data": data, "recipe": recipe.to_dict()}
    if saved != wanted:
        diff = sorted(k for k in wanted if saved[k] != wanted[k])
        raise UsageError(f"{out} holds an unfinished run with different {' and '.join(diff)}; "
                         "repeat its settings to resume it, or start over (no resume, or another --out)")
    return ckpt, progress


def train_checkpoint(arch: str, data_name: str, recipe: Recipe, out: Path,
                     on_epoch: Callable[[int, dict], None] | None = None, arch_kwargs: dict | None = None, *,
                     resume: bool = True, limit: int | None = None, device: str = "cpu",
                     precision: str = "fp32", progress: Reporter = Reporter()) -> LoDCheckpoint:
    """Train a LoD model from scratch (SVD of a randomly initialised dense model) and save it to ``out``.

    resume: continue the unfinished run saved at ``out`` (same arch, data and recipe), if there is one.
    A finished checkpoint at ``out`` is trained over; a file there that is not a checkpoint is refused.
    limit: use at most this many samples per data split (fast runs).
    device: "cpu" or "cuda" ("cuda" means this process's GPU under torchrun).
    precision: "fp32", or "bf16"/"fp16" autocast for the forward passes (GPU).
    The checkpoint is saved after every epoch; ``on_epoch(epoch, metrics)`` is called after each save.
    """
    out = Path(out)
    if precision not in AUTOCAST:
        raise UsageError(f"precision must be one of {', '.join(AUTOCAST)}, got {precision!r}")
    existing = _existing_checkpoint(out)
    dist = distributed.setup(device)
    try:
        run_device = distributed.device_for(device, dist)
        data = load_dataset(data_name, recipe.seed, limit)
        if len(data.train_x) == 0:
            raise UsageError(f"data set '{data_name}' has no training split; train on the full data set")
        arch_spec = {"name": arch, "kwargs": arch_kwargs or {}, "in_channels": data.in_channels,
                     "num_classes": data.num_classes}
        data_spec = {"name": data_name, "seed": recipe.seed, "input_shape": list(data.input_shape)}
        if limit is not None:
            data_spec["limit"] = limit
        saved, state = _resume_state(existing, out, arch_spec, data_spec, recipe) if resume else (None, None)
        world = dist.world_size if dist else 1
        if state is not None and int(state.get("world_size", 1)) != world:
            raise UsageError(f"{out} holds an unfinished run of {state.get('world_size', 1)} processes; "
                             f"resume it with that many, not {world}")

        if torch.device(run_device).type == "cuda" and recipe.constant_shapes:
            torch.backends.cudnn.benchmark = True   # shapes never change: tune each conv once, not per step
        torch.manual_seed(recipe.seed)
        model = build_model(arch, data.in_channels, data.num_classes, **(arch_kwargs or {}))
        _check_input(model, arch, data)
        report = factorize_(model, FactorizeConfig())
        if saved is not None:
            model.load_state_dict(saved.model.state_dict())
            for name, layer in lod_layers(model).items():
                layer.active_rank = lod_layers(saved.model)[name].active_rank

        def checkpoint(metrics: dict, progress: dict) -> LoDCheckpoint:
            return LoDCheckpoint(model=model, arch=arch_spec, data=data_spec, recipe=recipe.to_dict(),
                                 metrics=metrics, progress=progress)

        main = dist is None or dist.is_main
        last: dict = {"progress": state or {}}

        def save_state(progress: dict) -> None:
            last["progress"] = progress
            if main:
                checkpoint(progress["history"][-1], progress).save(out)
            if dist is not None:
                dist.barrier()

        metrics = train_lod(model, data, recipe, on_epoch=on_epoch if main else None, state=state,
                            on_state=save_state, device=run_device, autocast=AUTOCAST[precision], dist=dist,
                            progress=progress if main else Reporter())
        # Final evaluation and the importance table run where the model trained (a GPU does the ~200 held-out
        # passes of a large model in seconds); fp32, no autocast. The checkpoint is saved from the CPU.
        model.eval()
        test_acc, test_loss = evaluate(model, data.test_x, data.test_y)
        if main:
            progress.say("importance table: each layer at each rank of its grid, on the validation images")
        importance = accuracy_importance_table(model, data.val_x, data.val_y) if main else None
        model.to("cpu")
        ckpt = checkpoint(
            {**metrics, "test_accuracy": test_acc, "test_loss": test_loss,
             "train_seconds": round(metrics.get("elapsed_s", 0.0), 1),
             "factorized": report.swapped, "skipped": report.skipped},
            {"epochs_done": recipe.epochs, "complete": True, "history": last["progress"].get("history", [])},
        )
        if main:
            ckpt.importance = importance
            ckpt.save(out)
        if dist is not None:
            dist.barrier()
        return ckpt
    finally:
        distributed.teardown(dist)


@torch.no_grad()
def _check_input(model, arch: str, data) -> None:
    """Fail early, in one line, when the architecture cannot take this data set's images."""
    try:
        model.eval()(data.train_x[:2])
    except RuntimeError as e:
        raise UsageError(f"architecture '{arch}' cannot run on {data.name} images of shape "
                         f"{tuple(data.train_x.shape[1:])} ({str(e).splitlines()[0][:100]})") from None
    finally:
        model.train()
