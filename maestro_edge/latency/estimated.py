"""Estimated per-layer latency for devices not at hand (first-order model; every figure is an estimate).

    ms = ops × per_op_overhead_ms + 2 × MACs / (effective_gflops × 1e6)

with ``effective_gflops`` and ``per_op_overhead_ms`` from the profile's ``[estimate]`` table.
"""

from __future__ import annotations

from maestro_edge.errors import ProfileError
from maestro_edge.lod.layers import LoDConv2d

DENSE = "dense"


def _out_pixels(layer, in_shape: tuple[int, ...]) -> int:
    """Output positions per sample: H_out·W_out for a conv, product of leading dims for a linear."""
    if isinstance(layer, LoDConv2d):
        size = 1
        for dim, k, s, p, d in zip(in_shape[-2:], layer.kernel_size, layer.stride, _pad(layer), layer.dilation):
            size *= (dim + 2 * p - d * (k - 1) - 1) // s + 1
        return size * in_shape[0]
    pixels = 1
    for dim in in_shape[:-1]:
        pixels *= dim
    return pixels


def _pad(layer) -> tuple[int, int]:
    if isinstance(layer.padding, str):   # "same" keeps the size; "valid" is zero padding
        return tuple((k - 1) // 2 for k in layer.kernel_size) if layer.padding == "same" else (0, 0)
    return layer.padding


def layer_macs(layer, in_shape: tuple[int, ...], choice: int | str) -> int:
    per_pixel = layer.dense_macs_per_pixel() if choice == DENSE else layer.factor_macs_per_pixel(int(choice))
    return per_pixel * _out_pixels(layer, in_shape)


def estimate_layer_ms(profile, layer, in_shape: tuple[int, ...], choice: int | str) -> float:
    try:
        gflops = float(profile.estimate["effective_gflops"])
        overhead = float(profile.estimate.get("per_op_overhead_ms", 0.0))
    except (KeyError, TypeError, ValueError):
        raise ProfileError(f"device profile {profile.path} has no usable [estimate] effective_gflops; "
                           "add it or measure the device with 'maestro-edge profile'") from None
    ops = 1 if choice == DENSE else 2
    return ops * overhead + 2 * layer_macs(layer, in_shape, choice) / (gflops * 1e6)
