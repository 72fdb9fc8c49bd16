"""Which dense layer types ``factorize_`` swaps for LoD layers, and how: one registration per type.

    register_layer(nn.Linear, LoDLinear, LoDLinear.from_linear)

A new LoD layer type subclasses ``LoDLayer`` (lod/layers.py), has a ``kind`` and a ``from_config`` (how a
saved checkpoint rebuilds it) and a ``to_sequential`` (the standard layers it exports as), and registers
here; the estimator and MAC counting take their own registrations (latency/estimated.py, latency/probes.py).
Types match exactly: a subclass of nn.Linear is not factorized unless it is registered itself, since its
parent may read its ``weight`` directly (nn.MultiheadAttention's out_proj does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from maestro_edge.lod.layers import LOD_LAYER_TYPES, LoDConv2d, LoDLayer, LoDLinear

Factorize = Callable[[nn.Module, "int | None", bool], LoDLayer]   # (dense layer, max_rank, svd_init) -> LoD layer


@dataclass(frozen=True)
class LayerHandler:
    dense_type: type[nn.Module]
    lod_type: type[LoDLayer]
    factorize: Factorize


_HANDLERS: dict[type[nn.Module], LayerHandler] = {}


def register_layer(dense_type: type[nn.Module], lod_type: type[LoDLayer], factorize: Factorize) -> None:
    """``factorize_`` swaps every module of exactly ``dense_type`` for ``factorize(module, max_rank, svd_init)``."""
    if not (isinstance(lod_type, type) and issubclass(lod_type, LoDLayer)):
        raise TypeError(f"{lod_type!r} is not a LoD layer type (subclass maestro_edge.lod.layers.LoDLayer)")
    _HANDLERS[dense_type] = LayerHandler(dense_type, lod_type, factorize)
    LOD_LAYER_TYPES[lod_type.kind] = lod_type   # so a saved checkpoint of it is rebuilt on load


def handler_for(module: nn.Module) -> LayerHandler | None:
    return _HANDLERS.get(type(module))


def registered_dense_types() -> tuple[type[nn.Module], ...]:
    return tuple(_HANDLERS)


register_layer(nn.Linear, LoDLinear, LoDLinear.from_linear)
register_layer(nn.Conv2d, LoDConv2d, LoDConv2d.from_conv2d)
