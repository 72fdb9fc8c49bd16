"""A LoD checkpoint's metadata (both formats), checked field by field before a model is built from it.

Pure checks (no torch): a shape, seed, rank or importance entry of the wrong type or length is a
``validate.FieldError`` naming the key, which the loader (lod/checkpoint.py) turns into one line naming the
file. What is checked is what the loader and ``fit`` read later; free-form records (``recipe``,
``metrics``, ``progress``) need only be tables.
"""

from __future__ import annotations

import math
from functools import partial

from maestro_edge import validate
from maestro_edge.validate import FieldError, flag, integer, list_of, number, require, table, text

MAX_SEED = 2**32 - 1            # what every seeded generator maestro-edge uses accepts (also train --seed's range)
MAX_INPUT_ELEMENTS = 1 << 24    # of one example input (batch 1): 64 MB of float32, far above any model here
BATCH_NORM_KINDS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
# (channels, height, width) of the images of each built-in data set (maestro_edge/data; a test keeps the two in
# step): a built-in model's example input must be one of them, or its export and its scoring disagree.
IMAGE_SHAPES = {"digits": [1, 8, 8], "fashion-mnist": [1, 28, 28], "fashion-mnist-heldout": [1, 28, 28]}
_positive_int = partial(integer, low=1)


def check_builtin(blob: dict) -> None:
    """The metadata of a ``torch.save`` checkpoint (``blob`` less its state_dict is checked)."""
    validate.check_depth({k: v for k, v in blob.items() if k != "state_dict"}, "the metadata")
    arch = table(require(blob, "arch"), "arch")
    text(require(arch, "name", "arch."), "arch.name")
    # Wide bounds against damage; whether the sizes fit the weights is checked on the meta device (checkpoint.py).
    integer(require(arch, "in_channels", "arch."), "arch.in_channels", low=1, high=1 << 16)
    integer(require(arch, "num_classes", "arch."), "arch.num_classes", low=1, high=1 << 24)
    table(arch.get("kwargs", {}), "arch.kwargs")
    _data(require(blob, "data"), builtin=True)
    for name, spec in table(require(blob, "lod_layers"), "lod_layers").items():
        where = f"lod_layers.{name}."
        table(spec, where[:-1])
        top = integer(require(spec, "max_rank", where), f"{where}max_rank", low=1)
        integer(require(spec, "active_rank", where), f"{where}active_rank", low=1, high=top)
    table(require(blob, "state_dict"), "state_dict")
    for key in ("recipe", "metrics", "progress"):
        table(blob.get(key, {}), key)
    importance(blob.get("importance", {}))


def check_program(meta: dict) -> None:
    """The JSON metadata of a user model's program archive (lod/program.py)."""
    validate.check_depth(meta, "the metadata")
    text(require(table(require(meta, "arch"), "arch"), "name", "arch."), "arch.name")
    _data(require(meta, "data"), builtin=False)
    for name, spec in table(require(meta, "lod_layers"), "lod_layers").items():
        where = f"lod_layers.{name}."
        table(require(table(spec, where[:-1]), "config", where), f"{where}config")
        integer(require(spec, "active_rank", where), f"{where}active_rank", low=1)
    for name, config in table(require(meta, "batch_norms"), "batch_norms").items():
        where = f"batch_norms.{name}."
        table(config, where[:-1])
        text(require(config, "kind", where), f"{where}kind", BATCH_NORM_KINDS)
        integer(require(config, "num_features", where), f"{where}num_features", low=1)
        number(require(config, "eps", where), f"{where}eps", low=0.0, low_open=True)
        number(require(config, "momentum", where), f"{where}momentum", low=0.0, high=1.0, none=True)
        flag(require(config, "affine", where), f"{where}affine")
    inputs = require(meta, "example_inputs")
    list_of(inputs, "example_inputs", _encoded_tensor)
    if not inputs:
        raise FieldError("'example_inputs' must hold at least one input")
    _metric(meta.get("metric", {"name": "metric", "higher_is_better": True}), "metric")
    table(meta.get("metrics", {}), "metrics")
    importance(meta.get("importance", {}))


def importance(value) -> None:
    """The importance table ``fit`` solves with: per layer, ranks and a finite cost per rank.

    Built-in models: ``acc_drop`` and ``loss_delta``; a user's metric: ``metric_drop`` (lod/importance.py).
    """
    table(value, "importance")
    if "metric" in value:
        _metric(value["metric"], "importance.metric")
    for key, figure in table(value.get("base", {}), "importance.base").items():
        number(figure, f"importance.base.{key}")
    for name, entry in table(value.get("layers", {}), "importance.layers").items():
        where = f"importance.layers.{name}"
        table(entry, where)
        ranks = list_of(require(entry, "ranks", f"{where}."), f"{where}.ranks", _positive_int)
        costs = ("metric_drop",) if "metric_drop" in entry else ("acc_drop", "loss_delta")
        for key in costs:
            list_of(require(entry, key, f"{where}."), f"{where}.{key}", number, length=len(ranks))


def _data(value, builtin: bool) -> None:
    """``data``: a built-in model's input is one image of its data set; a user's examples may have any shape."""
    data = table(value, "data")
    text(require(data, "name", "data."), "data.name")
    if "seed" in data:
        integer(data["seed"], "data.seed", low=0, high=MAX_SEED)
    shape = list_of(require(data, "input_shape", "data."), "data.input_shape", partial(integer, low=0))
    if not shape or builtin and shape[0] != 1 or math.prod(shape) > MAX_INPUT_ELEMENTS:
        batch = "batch 1 ([1, ...]), " if builtin else ""
        raise FieldError(f"'data.input_shape' must be the shape of one input ({batch}at most {MAX_INPUT_ELEMENTS} "
                         f"values), got {validate.show(shape)}")
    images = IMAGE_SHAPES.get(data["name"]) if builtin else None
    if images and shape[1:] != images:
        raise FieldError(f"'data.input_shape' is {shape}, but data set {validate.show(data['name'])} holds images of "
                         f"{'x'.join(map(str, images))} (channels x height x width)")


def _encoded_tensor(value, key: str) -> None:
    text(require(table(value, key), "npy", f"{key}."), f"{key}.npy")   # decoded (and checked) by lod/program.py


def _metric(value, key: str) -> None:
    text(require(table(value, key), "name", f"{key}."), f"{key}.name")
    flag(require(value, "higher_is_better", f"{key}."), f"{key}.higher_is_better")
