"""Importance table: what truncating one layer alone costs on held-out data.

For every LoD layer and every rank on its grid, the layer runs at that rank while all others stay at
their active rank, and the held-out metric is compared with the untruncated model's. A user's
model uses the user's own metric (``importance_table``: ``eval_fn(model) -> float``); the built-in
models use accuracy and loss (train/importance.py). The solver assumes these costs add up
across layers (measured in BENCHMARKS.md, not assumed true).
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import torch

from maestro_edge.errors import MaestroError
from maestro_edge.lod.grid import rank_grid
from maestro_edge.lod.layers import lod_layers


def importance_table(model, eval_fn: Callable, example_inputs=None, *, higher_is_better: bool = True,
                            metric_name: str | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Per layer and rank, how much the user's metric drops when that layer alone is truncated.

    ``eval_fn(model) -> float`` scores the model on the user's held-out data (accuracy, negative loss,
    cosine to a reference...); ``higher_is_better=False`` for a loss. ``example_inputs`` (optional) are
    run once first, so a model that cannot take them fails before the long scoring loop.
    Returns ``{"metric": {...}, "base": {"metric": v}, "layers": {name: {"ranks", "metric", "metric_drop"}}}``.
    """
    layers = lod_layers(model)
    if not layers:
        raise MaestroError("the model has no LoD layers; call maestro_edge.factorize_(model) first")
    name = metric_name or getattr(eval_fn, "__name__", "metric")
    if example_inputs is not None:
        inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
        with torch.no_grad():
            model.eval()(*inputs)
    sign = 1.0 if higher_is_better else -1.0
    base = score_model(eval_fn, model, name, "the untruncated model")
    table = {}
    total = sum(len(rank_grid(layer)) for layer in layers.values())
    done = 0
    for layer_name, layer in layers.items():
        values = []
        for rank in rank_grid(layer):
            layer.sampled_rank = rank
            try:
                values.append(score_model(eval_fn, model, name, f"layer {layer_name} at rank {rank}"))
            finally:
                layer.sampled_rank = None
            done += 1
            if progress:
                progress(f"importance: {layer_name} rank {rank} ({done}/{total})")
        table[layer_name] = {"ranks": rank_grid(layer), "metric": values,
                             "metric_drop": [sign * (base - v) for v in values]}
    return {"metric": {"name": name, "higher_is_better": higher_is_better}, "base": {"metric": base},
            "layers": table}


def score_model(eval_fn, model, name: str, what: str) -> float:
    """``eval_fn(model)`` as a finite float, or one MaestroError naming the function and what it scored."""
    try:
        with torch.no_grad():
            value = eval_fn(model)
    except MaestroError:   # already one line (a fenced --eval function names itself)
        raise
    except Exception as e:
        raise MaestroError(f"eval function {name!r} raised {type(e).__name__} on {what}: "
                           f"{' '.join(str(e).split())[:160]}; fix the function") from None
    except SystemExit as e:
        raise MaestroError(f"eval function {name!r} called exit({e.code!r}) on {what}; it must return a number, "
                           "not exit") from None
    if isinstance(value, torch.Tensor) and value.numel() == 1:   # a 0-d (or 1-element) tensor: its number
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):   # "0.9" and True are not scores
        raise MaestroError(f"eval function {name!r} returned {type(value).__name__}, not a number, on {what}; "
                           "it must return one float (higher is better)")
    value = float(value)
    if not math.isfinite(value):
        raise MaestroError(f"eval function {name!r} returned {value} on {what}; it must return a finite float")
    return value


def penalty(entry: dict, index: int) -> float:
    """The solver's cost of one grid point.

    A user metric: its drop. Accuracy (built-in models): its drop, with the loss change breaking ties
    (held-out sets are small, so many truncations tie on accuracy; the loss change orders them).
    """
    if "metric_drop" in entry:
        return entry["metric_drop"][index]
    return entry["acc_drop"][index] + 0.01 * entry["loss_delta"][index]
