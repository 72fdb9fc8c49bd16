"""The thread model of the estimator (issue 15 item 2): what scales with threads, what does not, and the profile
figures it reads. Every latency here is an ESTIMATE; nothing here is compared with a published figure (that is
bench/bench_estimator.py's job)."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maestro_edge.devices.profile import find_profile, profiles_dir
from maestro_edge.errors import ProfileError
from maestro_edge.latency.estimate import (DEFAULT_GEMM_MR, estimate_ops_ms, gemm_mr, op_time_terms, restream_bytes,
                                           thread_speedup)
from maestro_edge.latency.ops import OpSpec
from maestro_edge.latency.reference_nets import mobilenet_v1, mobilenet_v3_large, resnet18

ESTIMATED = sorted(p.stem for p in profiles_dir().glob("*.toml")
                   if tomllib.loads(p.read_text())["latency_source"] == "estimated")
DEVICES = ("rpi4", "rpi3bplus", "rpi5", "jetson-nano", "pixel2", "pixel7", "sd8gen2", "orin-nano")

ops = st.one_of(
    st.builds(lambda cin, cout, k, hw, s: OpSpec.conv2d(cin, cout, k, hw, stride=s),
              st.integers(1, 1024), st.integers(1, 1024), st.sampled_from([1, 3, 5]), st.integers(5, 112),
              st.sampled_from([1, 2])),
    st.builds(lambda c, k, hw: OpSpec.conv2d(c, c, k, hw, groups=c), st.integers(1, 1024), st.sampled_from([3, 5]),
              st.integers(5, 112)),
    st.builds(lambda i, o, t: OpSpec.linear(i, o, tokens=t), st.integers(1, 4096), st.integers(1, 4096),
              st.integers(1, 256)),
)


@given(op=ops, device=st.sampled_from(DEVICES))
@settings(max_examples=150, deadline=None)
def test_more_threads_never_slower_and_speedup_below_the_peak_ratio(op, device):
    profile = find_profile(device)
    cores = sum(c["count"] for c in profile.hardware["cores"])
    times = [estimate_ops_ms([op], profile.with_threads(t)) for t in range(1, cores + 2)]
    assert all(b <= a for a, b in zip(times, times[1:])), times
    for threads in range(2, cores + 1):
        speedup = thread_speedup([op], profile, threads)
        peaks = profile.with_threads(threads).hardware["peak_gflops"] / profile.with_threads(1).hardware["peak_gflops"]
        assert 1.0 <= speedup < threads and speedup <= peaks * (1 + 1e-9), (threads, speedup, peaks)


def test_only_compute_scales():
    # Doubling threads on the Pi 4 halves compute, leaves the overhead, the DRAM bytes and the re-streamed bytes.
    op = OpSpec.conv2d(256, 256, 3, 28)
    one, two = (op_time_terms(op, find_profile("rpi4").with_threads(t)) for t in (1, 2))
    assert two.compute_ms == pytest.approx(one.compute_ms / 2)
    assert (two.overhead_ms, two.memory_bytes, two.restream_bytes) == (one.overhead_ms, one.memory_bytes, one.restream_bytes)


def test_restream_term_follows_the_cache_and_the_tile_height():
    rpi4, jetson = find_profile("rpi4"), find_profile("jetson-nano")
    big = OpSpec.conv2d(512, 512, 3, 14)                     # 9.4 MB of weights, 196 output rows
    assert restream_bytes(big, rpi4) == big.weight_bytes() * (math.ceil(196 / 4) - 1)        # A72: 4-row tiles
    assert restream_bytes(big, jetson) == big.weight_bytes() * (math.ceil(196 / 6) - 1)      # A57: 6-row tiles
    assert restream_bytes(OpSpec.conv2d(128, 128, 3, 56), rpi4) == 0                        # 590 KB: fits 1 MB
    assert restream_bytes(OpSpec.conv2d(1024, 1024, 5, 14, groups=1024), rpi4) == 0         # depthwise: no GEMM
    assert restream_bytes(OpSpec.linear(4096, 4096), rpi4) == 0                              # one row: one pass
    no_cache = dataclasses.replace(rpi4, hardware={k: v for k, v in rpi4.hardware.items() if k != "last_level_cache_kib"})
    assert restream_bytes(big, no_cache) == 0                # a user's profile without the figure: nothing assumed
    assert gemm_mr(dataclasses.replace(rpi4, estimate={k: v for k, v in rpi4.estimate.items() if k != "gemm_mr"})) \
        == DEFAULT_GEMM_MR
    with pytest.raises(ProfileError, match="last_level_cache_kib"):
        restream_bytes(big, dataclasses.replace(rpi4, hardware={**rpi4.hardware, "last_level_cache_kib": -1}))


def test_weights_over_the_cache_scale_worse_on_a_small_cache_and_slow_dram():
    # The same network scales less on a Pi 4 (1 MB L2, 5.6 GB/s sustained) than on a Jetson Nano (2 MB, 25.6 GB/s),
    # and on the Pi 4 a net with 1-4 MB layers (MobileNet v1) less than one whose weights all fit (v3-Large).
    assert thread_speedup(resnet18(), find_profile("rpi4"), 4) < thread_speedup(resnet18(), find_profile("jetson-nano"), 4)
    assert thread_speedup(mobilenet_v1(), find_profile("rpi4"), 4) < thread_speedup(mobilenet_v3_large(), find_profile("rpi4"), 4)
    # 1 thread: the A72 computes a 1 MB 1x1 layer more slowly than the DRAM re-streams it, so nothing is added
    op = OpSpec.conv2d(512, 512, 1, 14)
    one = op_time_terms(op, find_profile("rpi4").with_threads(1))
    assert one.restream_bytes / (5.56 * 1e6) < one.compute_ms
    four = op_time_terms(op, find_profile("rpi4").with_threads(4))
    assert four.restream_bytes / (5.56 * 1e6) > four.compute_ms     # 4 threads: DRAM-bound


@pytest.mark.parametrize("name", ESTIMATED)
def test_every_estimated_profile_states_its_cache_and_tile_with_a_source(name):
    text = (profiles_dir() / f"{name}.toml").read_text()
    profile = find_profile(name)
    assert profile.hardware["last_level_cache_kib"] >= 256
    assert profile.estimate["gemm_mr"] in (4, 6)             # the f32 tile heights of XNNPACK's arm64 kernels
    for key in ("last_level_cache_kib", "gemm_mr"):
        line = next(line for line in text.splitlines() if line.startswith(key))
        assert re.search(r"#\s*\S.{20,}", line), f"{name}.toml: {key} has no source comment"
