"""Estimated per-layer latency for devices not at hand: LoD layers as OpSpecs for the estimator.

Every figure from here is an ESTIMATE (``latency_source: "estimated"``); see latency/estimate.py for
the per-operator model and profiles/*.toml for the device figures it is scaled by.
"""

from __future__ import annotations

from maestro_edge.latency.estimate import estimate_ops_ms
from maestro_edge.latency.ops import OpSpec, low_rank_pair
from maestro_edge.lod.grid import DENSE
from maestro_edge.lod.layers import LoDConv2d



def dense_op(layer, in_shape: tuple[int, ...]) -> OpSpec:
    """The dense layer that a LoD layer stands for, with its real batch-1 input shape."""
    bias = layer.bias is not None
    if isinstance(layer, LoDConv2d):
        padding = layer.padding
        if isinstance(padding, str):   # "same" keeps the size; "valid" is zero padding
            padding = tuple((k - 1) // 2 for k in layer.kernel_size) if padding == "same" else (0, 0)
        return OpSpec.conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, tuple(in_shape[-2:]),
                             stride=layer.stride, padding=padding, bias=bias)
    tokens = 1
    for dim in in_shape[:-1]:
        tokens *= dim
    return OpSpec.linear(layer.in_features, layer.out_features, tokens=tokens, bias=bias)


def estimate_layer_ms(profile, layer, in_shape: tuple[int, ...], choice: int | str) -> float:
    op = dense_op(layer, in_shape)
    return estimate_ops_ms([op] if choice == DENSE else low_rank_pair(op, int(choice)), profile)


def layer_macs_total(layer, in_shape: tuple[int, ...], choice: int | str) -> int:
    """Multiply-accumulates of one layer at ``choice`` for a batch-1 input of ``in_shape``."""
    op = dense_op(layer, in_shape)
    return sum(o.macs() for o in ([op] if choice == DENSE else low_rank_pair(op, int(choice))))
