"""Latency estimator: op shapes, reference-network MACs, monotonicity, and the Raspberry Pi 4 checks.

Every latency here is an ESTIMATE. The rpi4 checks compare it with published whole-model latencies that were
NOT used to set any estimator parameter (see profiles/rpi4.toml provenance and bench/results/estimator.md).
The MobileNetV2 / ResNet-18 check was seen before the estimator's memory term was chosen; the held-out checks
(other networks, same board) were not: they are the out-of-sample evidence for it. All of them had been seen when
the thread model (weights re-streamed past the cache) was written; its known misses are strict xfails below.
The thread model's own tests are in test_threads.py.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from maestro_edge.devices.profile import find_profile
from maestro_edge.errors import ProfileError
from maestro_edge.latency.estimate import (estimate_op_ms, estimate_ops_ms, host_efficiency, op_time_terms,
                                           sustained_memory_gbs)
from maestro_edge.latency.ops import OpSpec, low_rank_pair
from maestro_edge.latency.reference_nets import (REFERENCE_NETS, mobilenet_v1, mobilenet_v2, mobilenet_v3_large,
                                                 mobilenet_v3_small, resnet18, resnet50, vgg16)

DEVICES = ("rpi4", "rpi5", "pixel7")


def total_macs(ops) -> int:
    return sum(op.macs() for op in ops)


# -- op shapes ----------------------------------------------------------------------------------------

def test_conv_shapes_and_counts():
    conv = OpSpec.conv2d(64, 128, 3, 56, stride=2)
    assert conv.out_hw() == (28, 28)
    assert conv.macs() == 28 * 28 * 128 * 64 * 9
    assert conv.weight_bytes() == 4 * (128 * 64 * 9 + 128)
    assert conv.activation_bytes() == 4 * (56 * 56 * 64 + 28 * 28 * 128)
    depthwise = OpSpec.conv2d(96, 96, 3, 112, stride=2, groups=96)
    assert depthwise.is_depthwise and depthwise.macs() == 56 * 56 * 96 * 9
    linear = OpSpec.linear(1024, 512, tokens=32)
    assert linear.macs() == 32 * 1024 * 512 and linear.gemm_shape() == (32, 512, 1024)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        OpSpec.conv2d(30, 64, 3, 56, groups=4)
    with pytest.raises(ValueError):
        OpSpec("pool", 8, 8)


def test_low_rank_pair_macs():
    conv = OpSpec.conv2d(256, 256, 3, 16)
    first, second = low_rank_pair(conv, 64)
    assert (first.kernel, first.out_channels, second.kernel, second.in_channels) == ((3, 3), 64, (1, 1), 64)
    assert total_macs([first, second]) == 64 * 16 * 16 * (256 * 9 + 256)
    assert total_macs(low_rank_pair(OpSpec.linear(1024, 1024, tokens=32), 16)) == 32 * 16 * 2048


# -- reference networks -------------------------------------------------------------------------------

@pytest.mark.parametrize("build, expected", [(mobilenet_v2, 300.8e6), (resnet18, 1.814e9), (resnet50, 4.089e9),
                                             (mobilenet_v1, 569e6), (mobilenet_v3_large, 217e6),
                                             (mobilenet_v3_small, 56.5e6), (vgg16, 15.47e9)])
def test_reference_net_macs(build, expected):
    # The papers: MobileNet v1 569 M, MobileNetV3-Large 219 M and -Small 56 M (Howard et al. 2019 round up), VGG-16 15.5 G.
    assert total_macs(build()) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("build, params", [(mobilenet_v1, 4.23e6), (mobilenet_v3_large, 5.48e6),
                                           (mobilenet_v3_small, 2.54e6), (vgg16, 138.36e6)])
def test_reference_net_parameters(build, params):
    # torchvision's parameter counts, less BatchNorm (folded here into conv biases)
    weights = sum(op.weight_bytes() for op in build()) / 4
    assert weights == pytest.approx(params, rel=0.01)


# -- the estimator ------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", [OpSpec.conv2d(256, 256, 3, 16), OpSpec.conv2d(64, 64, 3, 56),
                                OpSpec.linear(1024, 1024, tokens=1), OpSpec.linear(1024, 1024, tokens=32)])
def test_estimate_grows_with_rank(device, op):
    profile = find_profile(device)
    times = [estimate_ops_ms(low_rank_pair(op, r), profile) for r in (4, 8, 16, 32, 64, 128, 256, 512)]
    assert all(a < b for a, b in zip(times, times[1:])), times


@pytest.mark.parametrize("device", DEVICES)
def test_more_threads_never_slower(device):
    profile = find_profile(device)
    for op in resnet18()[:4] + mobilenet_v2()[:4]:
        times = [estimate_op_ms(op, dataclasses.replace(profile, threads=t)) for t in range(1, 9)]
        assert all(b <= a for a, b in zip(times, times[1:])), (op, times)


def test_estimate_is_overhead_plus_compute_plus_memory():
    profile = find_profile("rpi4")
    op = OpSpec.conv2d(64, 64, 3, 56)            # 147 KB of weights: they stay in the Pi 4's 1 MB L2
    t = op_time_terms(op, profile)
    assert t.restream_bytes == 0
    assert sustained_memory_gbs(profile) == profile.hardware["memory_gbs_sustained"] < profile.hardware["memory_gbs"]
    assert estimate_op_ms(op, profile) == pytest.approx(t.overhead_ms + t.compute_ms + t.memory_bytes / (5.56 * 1e6))


def test_weights_larger_than_the_cache_overlap_with_compute():
    # 512x512 1x1 conv at 14x14: 1 MB + bias of weights, just over the Pi 4's 1 MB L2; XNNPACK's A72 kernels
    # take 4 output rows per tile, so the weights stream 49 times, 48 of them again.
    profile = find_profile("rpi4")
    op = OpSpec.conv2d(512, 512, 1, 14)
    t = op_time_terms(op, profile)
    assert t.restream_bytes == op.weight_bytes() * (math.ceil(196 / 4) - 1)
    restream_ms = t.restream_bytes / (5.56 * 1e6)
    assert estimate_op_ms(op, profile) == pytest.approx(
        t.overhead_ms + t.memory_bytes / (5.56 * 1e6) + max(t.compute_ms, restream_ms))


def test_sustained_bandwidth_falls_back_to_theoretical():
    pixel7 = find_profile("pixel7")   # no published sustained figure for the Tensor G2
    assert "memory_gbs_sustained" not in pixel7.hardware and sustained_memory_gbs(pixel7) == pixel7.hardware["memory_gbs"]
    broken = dataclasses.replace(pixel7, hardware={**pixel7.hardware, "memory_gbs_sustained": 0})
    with pytest.raises(ProfileError, match="memory_gbs_sustained"):
        estimate_op_ms(OpSpec.linear(8, 8), broken)


def test_profile_without_hardware_figures_is_refused():
    with pytest.raises(ProfileError, match="peak_gflops"):
        estimate_op_ms(OpSpec.linear(8, 8), find_profile("host"))


def test_host_efficiency_has_provenance():
    doc = host_efficiency()
    for key in ("command", "date", "machine", "runtime", "threads"):
        assert doc["provenance"][key], key
    assert doc["provenance"]["threads"] == 1
    assert doc["model"]["reference_gflops"] > 0 and len(doc["measurements"]) >= 30


def test_host_efficiency_is_loaded_lazily():
    code = ("import maestro_edge.latency.estimate as e, maestro_edge.latency.reference_nets;"
            "assert e.host_efficiency.cache_info().currsize == 0")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the check: rpi4, 4 threads, fp32, against published latencies (peers.md 4.1) ----------------------

def within(estimate_ms: float, low_ms: float, high_ms: float, tolerance: float = 0.25) -> bool:
    return low_ms * (1 - tolerance) <= estimate_ms <= high_ms * (1 + tolerance)


@pytest.mark.xfail(strict=True, reason=(
    "KNOWN MISS since the thread model (2026-12-06): its weight re-streaming term makes ResNet-18's 2.4-9.4 MB "
    "layer3/4 weights DRAM-bound on a Pi 4 at 4 threads, 121 -> 215 ms, where ncnn published 123-176 ms and "
    "PyTorch 100 ms (both may run 3x3 convs as Winograd). Reported in bench/results/estimator.md, not tuned."))
def test_rpi4_resnet18_within_25_percent_of_published():
    # ncnn 123.12 ms, PyTorch 100.3 ms at 4 threads.
    profile = find_profile("rpi4")
    assert profile.threads == 4
    estimate = estimate_ops_ms(resnet18(), profile)
    assert within(estimate, 100.0, 123.0), f"ResNet-18 on rpi4 estimated at {estimate:.1f} ms"


def test_rpi4_mobilenet_v2_within_25_percent_of_published():
    # XNNPACK fp32 at 4 threads: 41 ms (32-bit OS) / 46 ms (ARM64). Seen before the memory term was chosen.
    estimate = estimate_ops_ms(mobilenet_v2(), find_profile("rpi4"))
    assert within(estimate, 41.0, 46.0), f"MobileNetV2 on rpi4 estimated at {estimate:.1f} ms"


# -- out-of-sample: published rpi4 figures NOT used to choose the estimator ------------------------------
# google/XNNPACK README, Raspberry Pi table benchmarked 2022-02-08 (end2end-bench, 4 threads, fp32),
# 32-bit Raspbian / ARM64 columns -- the same table as the MobileNetV2 check above.
HELD_OUT_XNNPACK = {"mobilenet_v1": (72.0, 77.0), "mobilenet_v3_large": (38.0, 40.0), "mobilenet_v3_small": (13.0, 15.0)}
# Tencent/ncnn benchmark/README.md, benchncnn 4 threads fp32: "1.8GHz x 4" section (newer ncnn) / "1.5GHz x 4"
# section (older ncnn). Another runtime (Winograd 3x3), so secondary.
HELD_OUT_NCNN = {"mobilenet_v1": (61.17, 72.08), "resnet50": (262.83, 335.34), "vgg16": (547.09, 873.71)}


def log_error(estimate_ms: float, low_ms: float, high_ms: float) -> float:
    return 0.0 if low_ms <= estimate_ms <= high_ms else abs(math.log(estimate_ms / (high_ms if estimate_ms > high_ms else low_ms)))


def previous_model_ms(ops, profile) -> float:
    """The estimator before 2026-11-27: memory overlapped with compute (max), at the theoretical bandwidth."""
    bandwidth = profile.hardware["memory_gbs"] * 1e6
    return sum(t.overhead_ms + max(t.compute_ms, t.memory_bytes / bandwidth) for t in (op_time_terms(op, profile) for op in ops))


def test_held_out_xnnpack_error_below_previous_model():
    # The rule fixed before these rows were estimated: ship the memory change only if it is closer than the previous
    # model on them (mean |log error|; 0.33 vs 0.73 when shipped) and has at least as many within +-25% (0 vs 0).
    profile = find_profile("rpi4")
    shipped = [log_error(estimate_ops_ms(REFERENCE_NETS[n](), profile), lo, hi) for n, (lo, hi) in HELD_OUT_XNNPACK.items()]
    previous = [log_error(previous_model_ms(REFERENCE_NETS[n](), profile), lo, hi) for n, (lo, hi) in HELD_OUT_XNNPACK.items()]
    assert sum(shipped) / 3 < sum(previous) / 3, (shipped, previous)
    assert sum(e <= math.log(1 / 0.75) for e in shipped) >= sum(e <= math.log(1 / 0.75) for e in previous)


XNNPACK_MISS = pytest.mark.xfail(strict=True, reason=(
    "KNOWN MISS, reported rather than tuned: v3-Large 28.2 ms (published 38/40), v3-Small 9.7 (13/15), 0.65-0.74 of "
    "published: their weights fit the Pi 4's L2, so the thread model changes nothing there; likely the h-swish / SE "
    "/ add ops the reference nets leave out; see bench/results/estimator.md."))
NCNN_MISS = pytest.mark.xfail(strict=True, reason=(
    "KNOWN MISS since the thread model: ResNet-50 533 ms (published 263-335) and VGG-16 2332 ms (547-874) on a Pi 4 "
    "at 4 threads; their large 3x3 weights are re-streamed, and ncnn runs 3x3 convs as Winograd (fewer multiplies "
    "than counted here; their 1-thread rows were already 1.6-3x slow). See bench/results/estimator.md."))


# MobileNet v1 came within +-25% on both runtimes with the thread model's weight re-streaming (XNNPACK: 86.5 ms vs
# 72/77, was 47.5).
@pytest.mark.parametrize("published, net", [
    (HELD_OUT_XNNPACK, "mobilenet_v1"), pytest.param(HELD_OUT_XNNPACK, "mobilenet_v3_large", marks=XNNPACK_MISS),
    pytest.param(HELD_OUT_XNNPACK, "mobilenet_v3_small", marks=XNNPACK_MISS),
    (HELD_OUT_NCNN, "mobilenet_v1"), pytest.param(HELD_OUT_NCNN, "resnet50", marks=NCNN_MISS),
    pytest.param(HELD_OUT_NCNN, "vgg16", marks=NCNN_MISS)])
def test_held_out_within_25_percent(published, net):
    estimate = estimate_ops_ms(REFERENCE_NETS[net](), find_profile("rpi4"))
    assert within(estimate, *published[net]), f"{net} on rpi4 estimated at {estimate:.1f} ms"
