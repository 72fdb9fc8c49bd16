"""Estimated per-layer latency for devices not at hand: LoD layers as OpSpecs for the estimator.

Every figure from here is an ESTIMATE (``latency_source: "estimated"``); see latency/estimate.py for
the per-operator model and profiles/*.toml for the device figures it is scaled by.
"""

from __future__ import annotations

from typing import Callable

from maestro_edge.errors import TableError

from maestro_edge.latency.estimate import estimate_ops_ms
from maestro_edge.latency.ops import OpSpec, low_rank_pair
from maestro_edge.lod.grid import DENSE
from maestro_edge.lod.layers import LoDConv2d, LoDLinear



def _conv2d_op(layer, in_shape: tuple[int, ...], bias: bool) -> OpSpec:
    padding = layer.padding
    if isinstance(padding, str):   # "same" keeps the size; "valid" is zero padding
        padding = tuple((k - 1) // 2 for k in layer.kernel_size) if padding == "same" else (0, 0)
    return OpSpec.conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, tuple(in_shape[-2:]),
                         stride=layer.stride, padding=padding, bias=bias)


def _linear_op(layer, in_shape: tuple[int, ...], bias: bool) -> OpSpec:
    tokens = 1
    for dim in in_shape[:-1]:
        tokens *= dim
    return OpSpec.linear(layer.in_features, layer.out_features, tokens=tokens, bias=bias)


# LoD layer type -> the dense op it stands for (layer, batch-1 input shape, has bias): the estimator's view of a
# layer. A new LoD layer type registers its own (lod/registry.py registers the layer itself).
DENSE_OPS: dict[type, Callable[[object, tuple[int, ...], bool], OpSpec]] = {LoDConv2d: _conv2d_op,
                                                                            LoDLinear: _linear_op}


def register_dense_op(lod_type: type, op: Callable[[object, tuple[int, ...], bool], OpSpec]) -> None:
    DENSE_OPS[lod_type] = op


def dense_op(layer, in_shape: tuple[int, ...]) -> OpSpec:
    """The dense layer that a LoD layer stands for, with its real batch-1 input shape."""
    for cls in type(layer).__mro__:   # a subclass of a registered type is estimated as its parent
        if cls in DENSE_OPS:
            return DENSE_OPS[cls](layer, in_shape, layer.bias is not None)
    raise TableError(f"no latency estimate for {type(layer).__name__} layers; register one with "
                     "maestro_edge.latency.estimated.register_dense_op, or profile the device")


def estimate_layer_ms(profile, layer, in_shape: tuple[int, ...], choice: int | str) -> float:
    op = dense_op(layer, in_shape)
    return estimate_ops_ms([op] if choice == DENSE else low_rank_pair(op, int(choice)), profile)
