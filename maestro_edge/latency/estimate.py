"""Per-operator latency ESTIMATES for devices maestro-edge cannot reach (Raspberry Pi 4/5, Pixel 7, ...).

Nothing here is a measurement of the target. An op's estimated time is its compute time plus its DRAM time,
plus a fixed per-op cost:

    ms = per_op_overhead_ms + compute_ms + memory_ms          (+ weights re-streamed: see "Threads" below)
    compute_ms = 2 * MACs / device_gflops(op)
    memory_ms  = (weight bytes + activation bytes) / sustained memory bandwidth   (each byte moved once)

``per_op_overhead_ms`` is a fixed cost per conv/linear op (dispatch, thread join); a network's total is the sum
over its conv and linear ops only. Other ops (pools, residual adds, non-fused activations such as h-swish, the
squeeze-and-excitation multiply) are not counted at all, so whole-network totals lean low for nets with many
of them.

How fast an op of a given shape computes, relative to a large convolution, is measured on the host
(``bench/fit_efficiency.py`` → ``host_efficiency.json``: ExecuTorch XNNPACK, 1 thread). That shape curve is
carried to the device unchanged and anchored to an absolute level by one published figure: XNNPACK fp32 ran
the VGG-16 convolutions with < 512 output channels at ~0.71 of peak on a 4-core Cortex-A76 at 4 threads
(google/XNNPACK#1905). So, for a device whose profile gives ``[hardware] peak_gflops, peak_cores,
memory_gbs`` (optionally ``memory_gbs_sustained``) and ``[estimate] reference_fraction_of_peak,
per_op_overhead_ms``:

    device_gflops(op) = peak_gflops * min(threads, peak_cores) / peak_cores      (compute scales with cores used)
                        * reference_fraction_of_peak                              (level of the VGG reference layers)
                        * host_gflops(op) / host_gflops(VGG reference layers)     (shape dependence, from the host)

capped at the peak of the cores used. Memory bandwidth is shared, so it does not grow with threads:
more threads never make an estimate slower.

Why memory is added, at a measured bandwidth (changed 2026-11-27; before, ``ms = overhead + max(compute_ms,
bytes / memory_gbs)`` with the theoretical bandwidth): the host curves contain no DRAM time (the host's
32 MB L3 holds every activation of the reference nets), while a Pi's 1 MB L2 holds few, so the bytes are
counted on top of the compute, at what the board sustains (``memory_gbs_sustained``: a published STREAM-style
measurement, cited in the profile), not its bus peak. Where a profile has no sustained figure, the theoretical
``memory_gbs`` is used and memory time is optimistic. The change was proposed after seeing the Pi 4
MobileNetV2 miss and shipped only after it beat the previous model on published figures it was not chosen
on (bench/results/estimator.md).

Threads (issue 15 item 2). What scales with threads is compute only: it is split over the used cores of the
per-core table (XNNPACK's pthreadpool hands tiles to whichever thread is free, so each core contributes its own
peak). What does not scale is everything the cores share: the DRAM bandwidth (the bytes above, one stream
whatever the thread count) and a fixed cost per op (``per_op_overhead_ms``: dispatch and join). A third term
makes the scaling depend on the device's cache: XNNPACK's GEMM and IGEMM walk the output in tiles of ``mr``
rows, and every tile reads the op's whole packed weight matrix (its parallel loop is ``M`` tiles outside, ``N``
tiles inside; src/configs/gemm-config.c sets ``mr``). Weights that fit in the last-level cache the cores share
are read from DRAM once; weights larger than that cache are streamed from DRAM again for every tile:

    restream_bytes = weight_bytes * (ceil(M / mr) - 1)    if weight_bytes > last-level cache, else 0

A hardware prefetcher streams those weights while the cores compute (the roofline of Williams, Waterman and
Patterson, CACM 2009), so they cost time only where the cores together ask for more than the DRAM gives:

    ms = per_op_overhead_ms + memory_ms + max(compute_ms, restream_bytes / sustained bandwidth)

At 1 thread compute usually dominates; at 4 threads on a board with a 1 MB cache and ~5.6 GB/s (Pi 4), ops
with large weights turn memory-bound and the speedup stays well under 4. ``thread_speedup`` reports it.
The figures come from the profile: ``[hardware] last_level_cache_kib`` (absent: weights assumed to fit, the
term is 0) and ``[estimate] gemm_mr`` (absent: 6, XNNPACK's arm64 default). Nothing here is fitted.
The term is derived from XNNPACK's loop order and applied to every runtime: onnxruntime's MLAS blocks its GEMMs
differently, and no 1-thread / multi-thread pair of it was found to check. On ncnn's published pairs (another
loop order again) it predicts the 1T/4T ratios of the boards far better than no term at all
(bench/results/estimator.md, "Thread scaling"): that is a finding, not part of the derivation.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from maestro_edge.errors import ProfileError
from maestro_edge.latency.ops import OpSpec

EFFICIENCY_FILE = Path(__file__).with_name("host_efficiency.json")

# The layers of the published anchor: VGG-16 convs with < 512 output channels, 224x224 input
# (conv1_1 .. conv3_3); XNNPACK ran them at 110-120 GFLOP/s on a Pixel 4 at 4 threads (google/XNNPACK#1905).
VGG16_REFERENCE_LAYERS = tuple(
    OpSpec.conv2d(cin, cout, 3, hw)
    for cin, cout, hw in [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56), (256, 256, 56), (256, 256, 56)]
)


def _saturation(x: float, x0: float) -> float:
    """Fraction of full speed at size x: small GEMM dimensions waste vector lanes, tiles and loop overhead."""
    return x / (x + x0)


def host_gflops(op: OpSpec, params: dict) -> float:
    """The host's fitted compute rate for ``op`` (GFLOP/s at 1 thread, per-op floor excluded)."""
    m, n, k = op.gemm_shape()
    if op.is_depthwise:
        return params["G_dw"] * _saturation(m, params["m0_dw"]) * _saturation(op.groups, params["c0_dw"])
    peak = params["G_igemm"] if op.kernel != (1, 1) else params["G_gemm"]
    return peak * _saturation(m, params["m0"]) * _saturation(n, params["n0"]) * _saturation(k, params["k0"])


def reference_gflops(params: dict) -> float:
    """The host's fitted rate over the VGG-16 reference layers, time-weighted (total FLOP / total time)."""
    flops = [2 * op.macs() for op in VGG16_REFERENCE_LAYERS]
    seconds = [f / host_gflops(op, params) for f, op in zip(flops, VGG16_REFERENCE_LAYERS)]
    return sum(flops) / sum(seconds)


@lru_cache(maxsize=1)
def host_efficiency() -> dict:
    """The fitted host curves with their provenance; read on first use, not at import."""
    try:
        return json.loads(EFFICIENCY_FILE.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{EFFICIENCY_FILE} is missing; regenerate it with: python bench/fit_efficiency.py") from None


def _number(profile, table: str, key: str) -> float:
    value = getattr(profile, table).get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ProfileError(
            f"device profile {profile.path or profile.name}: [{table}] {key} must be a positive number to estimate "
            f"latency (got {value!r}); see profiles/rpi4.toml"
        )
    return float(value)


class OpTime(NamedTuple):
    """The parts of one op's estimate: fixed cost and compute time (ms), the DRAM bytes it moves once, and the
    weight bytes it streams from DRAM again because they do not stay in the cache (0 when they do)."""

    overhead_ms: float
    compute_ms: float
    memory_bytes: int
    restream_bytes: int = 0

    def ms(self, gbs: float, times: int = 1) -> float:
        """The op's ESTIMATED time (ms) at ``gbs`` GB/s, run ``times`` times in one dispatch (see the docstring)."""
        memory_ms, restream_ms = self.memory_bytes / (gbs * 1e6), self.restream_bytes / (gbs * 1e6)
        return self.overhead_ms + times * (memory_ms + max(self.compute_ms, restream_ms))


# XNNPACK's arm64 f32 GEMM rows per tile when a profile does not say (the default branch of gemm-config.c).
DEFAULT_GEMM_MR = 6


def op_time_terms(op: OpSpec, profile) -> OpTime:
    """The terms ``estimate_op_ms`` combines, at the profile's threads, fp32 (see the module docstring)."""
    model = host_efficiency()["model"]
    peak = _number(profile, "hardware", "peak_gflops")
    cores_used = min(profile.threads, _number(profile, "hardware", "peak_cores")) / _number(profile, "hardware", "peak_cores")
    usable_peak = peak * cores_used
    relative_speed = host_gflops(op, model["params"]) / model["reference_gflops"]
    gflops = min(usable_peak, usable_peak * _number(profile, "estimate", "reference_fraction_of_peak") * relative_speed)
    compute_ms = 2 * op.macs() / (gflops * 1e6)
    return OpTime(per_op_overhead_ms(profile), compute_ms, op.weight_bytes() + op.activation_bytes(),
                  restream_bytes(op, profile))


def last_level_cache_bytes(profile) -> int | None:
    """``[hardware] last_level_cache_kib`` in bytes: the largest cache the used cores share; None if unstated."""
    if "last_level_cache_kib" not in profile.hardware:
        return None
    return int(_number(profile, "hardware", "last_level_cache_kib") * 1024)


def gemm_mr(profile) -> int:
    """Output rows per XNNPACK GEMM tile on the profile's big cores (``[estimate] gemm_mr``, default 6)."""
    if "gemm_mr" not in profile.estimate:
        return DEFAULT_GEMM_MR
    return int(_number(profile, "estimate", "gemm_mr"))


def restream_bytes(op: OpSpec, profile) -> int:
    """Weight bytes read from DRAM again because they do not fit in the last-level cache (module docstring).

    Depthwise convs are not GEMMs (each channel has its own few weights), so they re-read nothing."""
    cache = last_level_cache_bytes(profile)
    weights = op.weight_bytes()
    if op.is_depthwise or cache is None or weights <= cache:
        return 0
    m, _, _ = op.gemm_shape()
    return weights * (math.ceil(m / gemm_mr(profile)) - 1)


def per_op_overhead_ms(profile) -> float:
    """The fixed cost every op pays on ``profile``'s device (dispatch, thread join), ms."""
    return _number(profile, "estimate", "per_op_overhead_ms")


def sustained_memory_gbs(profile) -> float:
    """``[hardware] memory_gbs_sustained`` where the profile has it, else the theoretical ``memory_gbs``."""
    if "memory_gbs_sustained" in profile.hardware:
        return _number(profile, "hardware", "memory_gbs_sustained")
    return _number(profile, "hardware", "memory_gbs")


def estimate_op_ms(op: OpSpec, profile) -> float:
    """ESTIMATED latency of one op on ``profile``'s device, in ms, at the profile's threads, fp32.

    Not a measurement: callers must label the figure as estimated (see the module docstring for the model).
    """
    return op_time_terms(op, profile).ms(sustained_memory_gbs(profile))


def estimate_ops_ms(ops, profile) -> float:
    """ESTIMATED total latency (ms) of ops run one after another, e.g. a whole network or a low-rank pair."""
    return sum(estimate_op_ms(op, profile) for op in ops)


def thread_speedup(ops, profile, threads: int) -> float:
    """ESTIMATED speedup of ``ops`` at ``threads`` threads over 1 thread on the same device (fastest core first).

    At most the ratio of the cores' peaks (so below ``threads``), at least 1: compute is the only part that
    scales, and it never slows down when a core is added."""
    ops = list(ops)
    return estimate_ops_ms(ops, profile.with_threads(1)) / estimate_ops_ms(ops, profile.with_threads(threads))
