"""Latency estimator: op shapes, reference-network MACs, monotonicity, and the Raspberry Pi 4 check.

Every latency here is an ESTIMATE. The rpi4 check compares it with published whole-model latencies that were
NOT used to set any estimator parameter (see profiles/rpi4.toml provenance and bench/results/estimator.md).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from maestro_edge.devices.profile import find_profile
from maestro_edge.errors import ProfileError
from maestro_edge.latency.estimate import estimate_op_ms, estimate_ops_ms, host_efficiency
from maestro_edge.latency.ops import OpSpec, low_rank_pair
from maestro_edge.latency.reference_nets import mobilenet_v2, resnet18, resnet50

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

@pytest.mark.parametrize("build, expected", [(mobilenet_v2, 300.8e6), (resnet18, 1.814e9), (resnet50, 4.089e9)])
def test_reference_net_macs(build, expected):
    assert total_macs(build()) == pytest.approx(expected, rel=0.01)


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


def test_rpi4_resnet18_within_25_percent_of_published():
    # ncnn 123.12 ms, PyTorch 100.3 ms at 4 threads.
    profile = find_profile("rpi4")
    assert profile.threads == 4
    estimate = estimate_ops_ms(resnet18(), profile)
    assert within(estimate, 100.0, 123.0), f"ResNet-18 on rpi4 estimated at {estimate:.1f} ms"


@pytest.mark.xfail(strict=True, reason=(
    "KNOWN MISS, reported rather than tuned: the estimator puts MobileNetV2 on a Pi 4 at ~23 ms vs the published "
    "XNNPACK 41-46 ms. The model scales compute linearly to 4 cores at the Pixel 4 level (XNNPACK#1905), while "
    "Pi 4 multi-thread speed-ups are ~1.3-1.55x (XNNPACK#999, ncnn 1T/4T); see bench/results/estimator.md."))
def test_rpi4_mobilenet_v2_within_25_percent_of_published():
    # XNNPACK fp32 at 4 threads: 41 ms (32-bit OS) / 46 ms (ARM64).
    estimate = estimate_ops_ms(mobilenet_v2(), find_profile("rpi4"))
    assert within(estimate, 43.5, 43.5), f"MobileNetV2 on rpi4 estimated at {estimate:.1f} ms"
