"""Print ESTIMATED whole-network latencies next to published fp32 CPU figures, as a markdown table.

    python bench/bench_estimator.py > bench/results/estimator.md

Each row is a published whole-model latency (device, network, runtime, precision, threads, ms, source). The
estimate is the sum of per-op estimates (maestro_edge/latency/estimate.py) over the conv/linear ops of the
network as written out in maestro_edge/latency/reference_nets.py, on the device's profile (profiles/*.toml)
at the row's thread count: ``DeviceProfile.with_threads`` puts the threads on the fastest cores of the
profile's per-core table and derives the peak again. Nothing in the estimator or in any profile was set from
these rows (see ROLES: the *check* rows were seen before the shipped memory model was chosen; nothing was fitted
to them either). Threads are modelled (estimate.py, "Threads"); the published 1-thread / multi-thread pairs are
compared as speedups in their own table, and the scored rows give the error bands (``--write-bands`` writes
maestro_edge/latency/error_bands.json; error_band.py reads it).

    python bench/bench_estimator.py --write-bands > bench/results/estimator.md
"""

from __future__ import annotations

import dataclasses
import argparse
import datetime
import json
import math
import sys
from collections import defaultdict
from typing import NamedTuple

from maestro_edge.devices.profile import find_profile
from maestro_edge.latency.error_band import BANDS_FILE, FALLBACK_CLASS, decile_band, device_class
from maestro_edge.latency.estimate import (VGG16_REFERENCE_LAYERS, estimate_op_ms, estimate_ops_ms, host_efficiency,
                                           op_time_terms, sustained_memory_gbs)
from maestro_edge.latency.reference_nets import REFERENCE_NETS, vgg16

TOLERANCE = 0.25           # issue 15: a row is "within" when the estimate is within +-25% of the published range
GOAL_SHARE, GOAL_LOG_ERROR = 0.80, 0.20

# -- sources -------------------------------------------------------------------------------------------------
XNN = "google/XNNPACK@75db3c09:README.md"
XNN_PHONE = (f"{XNN}, Mobile phones tables (end2end_bench, benchmarked 2020-03-27, NDK r21, random weights; "
             "multi-thread = one thread per big core)")
XNN_RPI = (f"{XNN}, Raspberry Pi table (end2end-bench, benchmarked 2022-02-08, Raspbian Buster; "
           "range = 32-bit / ARM64 columns)")
TFLITE = ("tensorflow/tensorflow@00f0938a:tensorflow/lite/g3doc/performance/benchmarks.md (benchmark_model, "
          "CPU 4 threads pinned to the big cores, Android 10)")
NCNN = "Tencent/ncnn@a4d2ea1d:benchmark/README.md (benchncnn avg)"
NCNN_OLD = "Tencent/ncnn@d9e45ec7:benchmark/README.md, Pi 4 '1.5GHz x 4' table (replaced 2023-06-15; benchncnn avg)"
PYTORCH = "pytorch/tutorials@3c4e4e01:intermediate_source/realtime_rpi.rst (model time, default threads)"

ROLES = {
    "check": "seen before the shipped estimator (memory term) was chosen; not fitted",
    "validation": "not seen when anything in the estimator or the profiles was set",
    "context": "not fp32 arithmetic or not a measurement: printed, never scored",
}


class Row(NamedTuple):
    device: str
    threads: int
    net: str
    low: float
    high: float
    runtime: str
    precision: str
    role: str
    source: str


def xnn(device, threads, net, *ms, source=XNN_PHONE, role="validation"):
    """An XNNPACK README figure: whole milliseconds, so the published range is +-0.5 ms around it."""
    return Row(device, threads, net, min(ms) - 0.5, max(ms) + 0.5, "XNNPACK", "fp32", role, source)


def ncnn(device, threads, net, ms, source=NCNN, role="validation"):
    return Row(device, threads, net, ms, ms, "ncnn", "fp32", role, source)


V1, V2, V3L, V3S = "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"
R18, R50, VGG = "resnet18", "resnet50", "vgg16"

PUBLISHED = [
    # XNNPACK, phones (Pixel 2: Snapdragon 835; Pixel 3a: Snapdragon 670), 1 thread and one thread per big core
    xnn("pixel2", 1, V1, 86), xnn("pixel2", 1, V2, 53), xnn("pixel2", 1, V3L, 42), xnn("pixel2", 1, V3S, 14),
    xnn("pixel2", 4, V1, 27), xnn("pixel2", 4, V2, 18), xnn("pixel2", 4, V3L, 16), xnn("pixel2", 4, V3S, 6),
    xnn("pixel3a", 1, V1, 88), xnn("pixel3a", 1, V2, 55), xnn("pixel3a", 1, V3L, 44), xnn("pixel3a", 1, V3S, 14),
    xnn("pixel3a", 2, V1, 46), xnn("pixel3a", 2, V2, 28), xnn("pixel3a", 2, V3L, 24), xnn("pixel3a", 2, V3S, 8),
    # XNNPACK, Raspberry Pi boards, 4 threads (RPi 3+ column: 32-bit Raspbian only)
    xnn("rpi3bplus", 4, V1, 114, source=XNN_RPI), xnn("rpi3bplus", 4, V2, 79, source=XNN_RPI),
    xnn("rpi3bplus", 4, V3L, 67, source=XNN_RPI), xnn("rpi3bplus", 4, V3S, 22, source=XNN_RPI),
    xnn("rpi4", 4, V1, 72, 77, source=XNN_RPI), xnn("rpi4", 4, V2, 41, 46, source=XNN_RPI, role="check"),
    xnn("rpi4", 4, V3L, 38, 40, source=XNN_RPI), xnn("rpi4", 4, V3S, 13, 15, source=XNN_RPI),
    # TFLite CPU (its own kernels in 2019-20, not XNNPACK), 4 threads on the big cores
    Row("pixel3", 4, V1, 23.9, 23.9, "TFLite", "fp32", "validation", TFLITE),
    Row("pixel4", 4, V1, 14.0, 14.0, "TFLite", "fp32", "validation", TFLITE),
    # ncnn fp32 on ARMv8.0 cores (A53/A57/A72 have no fp16 arithmetic, so benchncnn's fp16 option is inert);
    # ncnn runs 3x3 stride-1 convs as Winograd, fewer multiplies than the direct convs the estimator counts
    ncnn("rpi4", 4, V1, 72.08, NCNN_OLD), ncnn("rpi4", 4, V2, 72.62, NCNN_OLD), ncnn("rpi4", 4, R18, 176.18, NCNN_OLD),
    ncnn("rpi4", 4, R50, 335.34, NCNN_OLD), ncnn("rpi4", 4, VGG, 873.71, NCNN_OLD),
    ncnn("rpi4", 1, V1, 145.94, NCNN_OLD), ncnn("rpi4", 1, V2, 110.10, NCNN_OLD), ncnn("rpi4", 1, R18, 226.49, NCNN_OLD),
    ncnn("rpi4", 1, R50, 636.02, NCNN_OLD), ncnn("rpi4", 1, VGG, 1307.79, NCNN_OLD),
    ncnn("rpi4-1.8ghz", 4, V1, 61.17), ncnn("rpi4-1.8ghz", 4, V2, 61.88), ncnn("rpi4-1.8ghz", 4, R18, 123.12, role="check"),
    ncnn("rpi4-1.8ghz", 4, R50, 262.83), ncnn("rpi4-1.8ghz", 4, VGG, 547.09),
    ncnn("rpi4-1.8ghz", 1, V1, 124.32), ncnn("rpi4-1.8ghz", 1, V2, 93.48), ncnn("rpi4-1.8ghz", 1, R18, 191.10),
    ncnn("rpi4-1.8ghz", 1, R50, 534.11), ncnn("rpi4-1.8ghz", 1, VGG, 1071.85),
    ncnn("rpi3bplus", 4, V1, 108.66), ncnn("rpi3bplus", 4, V2, 111.68), ncnn("rpi3bplus", 4, R18, 271.93),
    ncnn("rpi3bplus", 4, R50, 587.42),
    ncnn("rpi3bplus", 1, V1, 205.65), ncnn("rpi3bplus", 1, V2, 158.80), ncnn("rpi3bplus", 1, R18, 379.57),
    ncnn("rpi3bplus", 1, R50, 979.75),
    ncnn("jetson-nano", 4, V1, 42.05), ncnn("jetson-nano", 4, V2, 33.83), ncnn("jetson-nano", 4, R18, 83.44),
    ncnn("jetson-nano", 4, R50, 204.08), ncnn("jetson-nano", 4, VGG, 447.39),
    ncnn("jetson-nano", 1, V1, 137.63), ncnn("jetson-nano", 1, V2, 93.99), ncnn("jetson-nano", 1, R18, 221.60),
    ncnn("jetson-nano", 1, R50, 624.84), ncnn("jetson-nano", 1, VGG, 1242.90),
    # PyTorch eager
    Row("rpi4", 4, R18, 100.3, 100.3, "PyTorch", "fp32", "check", PYTORCH),
    # context: fp16 arithmetic (ARMv8.2+ cores under ncnn) or priors, never scored
    Row("rpi5", 4, V2, 10.52, 10.52, "ncnn", "fp16", "context", NCNN),
    Row("rpi5", 4, R18, 19.96, 19.96, "ncnn", "fp16", "context", NCNN),
    Row("rpi5", 4, R50, 46.21, 46.21, "ncnn", "fp16", "context", NCNN),
    Row("sd8gen2", 4, V2, 3.23, 3.23, "ncnn", "fp16", "context", NCNN + " (powersave=2: big cores)"),
    Row("sd8gen2", 4, R50, 18.94, 18.94, "ncnn", "fp16", "context",
        NCNN + " (powersave=2; 433 GFLOP/s, above the 236.8 fp32 peak: fp16)"),
    Row("pixel7", 4, V2, 8.0, 15.0, "prior", "fp32", "context", "peers.md 4.1 prior: SD888 ncnn fp16 x1.5-2, not a measurement"),
    Row("pixel7", 4, R18, 20.0, 35.0, "prior", "fp32", "context", "peers.md 4.1 prior, not a measurement"),
    Row("pixel7", 4, R50, 45.0, 80.0, "prior", "fp32", "context", "peers.md 4.1 prior, not a measurement"),
]

NOTES = """
Reading (2026-12-06, written after the numbers above were computed; no coefficient was moved to fit a row):

- Thread model (issue 15 item 2; maestro_edge/latency/estimate.py, "Threads"). Compute is split over the used cores;
  the shared DRAM stream and the per-op cost do not scale; weights larger than the last-level cache the cores
  share are streamed again from DRAM for every XNNPACK tile of mr output rows, overlapped with compute (roofline).
  Inputs per profile: last_level_cache_kib and gemm_mr (XNNPACK gemm-config.c), both cited; nothing fitted.
- How it was chosen, honestly: the published 1T/NT ratios were known (the previous reading and issue 15 name them)
  when the re-streaming term was written, so no row here is held out from it in the strict sense. The rule fixed
  before the suite was re-run: ship it if, on the scored rows, the within-+-25% count does not fall and the mean
  abs log error does not rise (it did neither: see the "without the re-streaming term" line). A variant that
  switched the term off for non-XNNPACK runtimes (on the argument that Goto-style GEMMs read weights once) was
  tried after seeing the ncnn ResNet-50 / VGG-16 rows go up; the 1T/NT pairs rejected it (ncnn pairs within
  +-25%: 3/19 with the term off, 12/19 with it on), so it is not shipped.
- What it fixes: the speedups. On the 27 published 1-thread / multi-thread pairs, the estimated speedup is within
  +-25% of the published one for 19 (10 before), mean abs log error 0.22 (0.45); boards 12/19 (3/19). MobileNet v1
  on the Pi 4 (XNNPACK, 4T) goes from 0.61-0.66 to 1.12-1.21 of published, the Pi 3 B+ from 0.50 to 0.95: their
  1-4 MB 1x1 layers do not fit the 1 MB / 512 KB L2 and turn DRAM-bound at 4 threads, at 1 thread they do not.
- What it does not fix, or makes worse: absolute levels on ncnn's ResNet / VGG rows. ncnn runs 3x3 stride-1
  convs as Winograd (several times fewer multiplies than the direct convs counted here), so those rows were
  already 1.6-3x slow at 1 thread; the thread model now carries that to 4 threads (Pi 4 ResNet-50 0.83 -> 1.59,
  VGG-16 1.19 -> 2.67), where the two errors used to cancel by luck. The PyTorch ResNet-18 check row (100.3 ms)
  goes out (121 -> 215 ms). MobileNet v2 on the Pi 4 under ncnn stays at 0.5 of published (its weights fit the
  cache; ncnn's multi-thread scaling there, 1.5x, is not explained). The Pixel 2's small nets scale less than
  estimated (v3-Small 2.3x published, 3.3x estimated): a per-op synchronisation cost would explain it, but no
  published figure for one was found, so none was set.
- Anchor check (google/XNNPACK#1905, the level's own source): the model gives 107 GFLOP/s on the layers the level
  was set on (published 110-120) and 102 on the 512-channel layers (published ~60). The re-streaming term points
  the right way there but is too weak at the Pixel 4's theoretical 34 GB/s; no sustained figure was found for it.
- By runtime: the XNNPACK rows (the project's runtime) are 16/24 within +-25%, mean abs log error 0.19; ncnn 15/38,
  0.44. The goal (80%, < 0.2 over all scored rows) is still missed, on the ncnn rows above all.
- Error bands (issue 15 item 5): the scored rows' published/estimate spread per device class is stored in
  maestro_edge/latency/error_bands.json (--write-bands); boards' band is wide ([0.42, 1.49] x the estimate) because
  the ncnn rows are, phones' narrow ([0.77, 1.13]).
"""


def within(ms: float, low: float, high: float) -> bool:
    return low * (1 - TOLERANCE) <= ms <= high * (1 + TOLERANCE)


def log_error(ms: float, low: float, high: float) -> float:
    """|ln(estimate / nearest end of the published range)|; 0 inside the range."""
    return 0.0 if low <= ms <= high else abs(math.log(ms / (high if ms > high else low)))


def family(op) -> str:
    return "depthwise" if op.is_depthwise else ("1x1 / linear" if op.kernel == (1, 1) else "k x k conv")


class Result(NamedTuple):
    row: Row
    klass: str
    peak: float
    macs: float
    estimate: float
    within: bool
    log_error: float


def row_profile(row: Row, restream: bool = True):
    """The row's device at the row's threads; ``restream=False``: as if its cache held every weight (the
    estimator before the thread model's re-streaming term)."""
    profile = find_profile(row.device).with_threads(row.threads)
    if restream:
        return profile
    hardware = {k: v for k, v in profile.hardware.items() if k != "last_level_cache_kib"}
    return dataclasses.replace(profile, hardware=hardware)


def evaluate(row: Row, restream: bool = True) -> Result:
    profile = row_profile(row, restream)
    ops = REFERENCE_NETS[row.net]()
    ms = sum(estimate_op_ms(op, profile) for op in ops)
    return Result(row, device_class(profile), profile.hardware["peak_gflops"], sum(op.macs() for op in ops) / 1e9, ms,
                  within(ms, row.low, row.high), log_error(ms, row.low, row.high))


def results() -> list[Result]:
    return [evaluate(row) for row in PUBLISHED]


def scored(rs: list[Result]) -> list[Result]:
    return [r for r in rs if r.row.role != "context"]


def summary(rs: list[Result]) -> tuple[int, int, float]:
    """(rows, rows within +-25%, mean |log error|)."""
    n = len(rs)
    return n, sum(r.within for r in rs), (sum(r.log_error for r in rs) / n if n else float("nan"))


def _table(rs: list[Result]) -> list[str]:
    lines = ["| device | class | threads | peak used (GFLOP/s) | network | GMAC | runtime | precision | published (ms) | "
             "estimate (ms) | ratio | abs log err | ±25% | role | source |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rs:
        row = r.row
        published = f"{row.low:g}" if row.low == row.high else f"{row.low:g}–{row.high:g}"
        ratio = (f"{r.estimate / row.low:.2f}" if row.low == row.high
                 else f"{r.estimate / row.high:.2f}–{r.estimate / row.low:.2f}")
        mark = "—" if row.role == "context" else ("in" if r.within else "**out**")
        lines.append(f"| {row.device} | {r.klass} | {row.threads} | {r.peak:g} | {row.net} | {r.macs:.2f} | {row.runtime} | "
                     f"{row.precision} | {published} | {r.estimate:.1f} | {ratio} | {r.log_error:.2f} | {mark} | "
                     f"{row.role} | {row.source} |")
    return lines


def _summary_table(title: str, groups: dict[str, list[Result]]) -> list[str]:
    lines = ["", title, "", "| group | rows | within ±25% | share | mean abs log error |", "|---|---|---|---|---|"]
    for name, rs in groups.items():
        n, k, err = summary(rs)
        if n:
            lines.append(f"| {name} | {n} | {k} | {k / n:.0%} | {err:.2f} |")
    return lines


def published_over_estimate(r: Result) -> float:
    """published / estimate, the published figure a range's geometric middle (error_band.py's ratio)."""
    return math.sqrt(r.row.low * r.row.high) / r.estimate


def bands(rs: list[Result]) -> dict:
    """error_bands.json: P10 / P90 of published/estimate over the scored rows, per device class and for all."""
    fp32 = scored(rs)
    groups = {klass: [r for r in fp32 if r.klass == klass] for klass in sorted({r.klass for r in fp32})}
    groups[FALLBACK_CLASS] = fp32
    classes = {}
    for klass, group in groups.items():
        ratios = [published_over_estimate(r) for r in group]
        low, high = (round(f, 4) for f in decile_band(ratios)[:2])
        coverage = sum(low <= r <= high for r in ratios) / len(ratios)   # of the factors as stored
        classes[klass] = {"device_class": klass, "low_factor": low, "high_factor": high,
                          "rows": len(group), "coverage": round(coverage, 4),
                          "median": round(sorted(ratios)[len(ratios) // 2], 4)}
    return {"command": "python bench/bench_estimator.py --write-bands", "date": datetime.date.today().isoformat(),
            "source": "the scored rows of bench/bench_estimator.py (bench/results/estimator.md)",
            "definition": "ratio = published / estimate (a published range: its geometric middle); low_factor = P10, "
                          "high_factor = P90 of the class's ratios; the truth of an estimate E is expected within "
                          "[E * low_factor, E * high_factor] (coverage: the share of the class's rows inside it)",
            "classes": classes}


class Pair(NamedTuple):
    """One published 1-thread / multi-thread pair: same device, network, runtime and source."""

    one: Result
    many: Result

    @property
    def published(self) -> float:
        return math.sqrt(self.one.row.low * self.one.row.high) / math.sqrt(self.many.row.low * self.many.row.high)

    @property
    def estimated(self) -> float:
        return self.one.estimate / self.many.estimate


def thread_pairs(rs: list[Result]) -> list[Pair]:
    key = lambda r: (r.row.device, r.row.net, r.row.runtime, r.row.source)  # noqa: E731
    ones = {key(r): r for r in scored(rs) if r.row.threads == 1}
    return [Pair(ones[key(r)], r) for r in scored(rs) if r.row.threads > 1 and key(r) in ones]


def _brief(rs: list[Result]) -> str:
    n, k, err = summary(rs)
    return f"{k}/{n} within, {err:.2f}"


def _pair_table(pairs: list[Pair]) -> list[str]:
    lines = ["| device | class | threads | network | runtime | published 1T / NT | estimated 1T / NT | estimated / published "
             "| ±25% |", "|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        ratio = p.estimated / p.published
        lines.append(f"| {p.many.row.device} | {p.many.klass} | {p.many.row.threads} | {p.many.row.net} | "
                     f"{p.many.row.runtime} | {p.published:.2f} | {p.estimated:.2f} | {ratio:.2f} | "
                     f"{'in' if abs(math.log(ratio)) <= math.log(1 / (1 - TOLERANCE)) else '**out**'} |")
    return lines


def _pair_summary(pairs: list[Pair]) -> list[str]:
    lines = ["| group | pairs | within ±25% | mean abs log error of the speedup |", "|---|---|---|---|"]
    for name in ["all", *sorted({p.many.klass for p in pairs}), *sorted({p.many.row.runtime for p in pairs})]:
        group = [p for p in pairs if name in ("all", p.many.klass, p.many.row.runtime)]
        errs = [abs(math.log(p.estimated / p.published)) for p in group]
        inside = sum(e <= math.log(1 / (1 - TOLERANCE)) for e in errs)
        lines.append(f"| {name} | {len(group)} | {inside} | {sum(errs) / len(errs):.2f} |")
    return lines


def anchor_check() -> list[str]:
    """The level's own anchor, google/XNNPACK#1905 (Pixel 4, XNNPACK, 4 threads): the model's GFLOP/s over the
    VGG-16 convs with < 512 output channels (published 110-120) and with 512 (published ~60)."""
    pixel4 = find_profile("pixel4").with_threads(4)
    wide = [op for op in vgg16() if op.kind == "conv2d" and op.out_channels == 512]
    rate = lambda ops: 2 * sum(op.macs() for op in ops) / (estimate_ops_ms(ops, pixel4) * 1e6)  # noqa: E731
    return [f"- < 512 output channels (the layers the 0.71 level was set on): {rate(VGG16_REFERENCE_LAYERS):.0f} "
            "GFLOP/s (published 110-120);",
            f"- 512 output channels (weights 4.7-9.4 MB, above the 2 MB L3): {rate(wide):.0f} GFLOP/s (published ~60)."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-bands", action="store_true",
                        help=f"also write the error bands to {BANDS_FILE} (maestro_edge/latency/error_band.py)")
    args = parser.parse_args()
    rs = results()
    provenance = host_efficiency()["provenance"]
    multi = [r for r in rs if r.row.threads > 1]
    single = [r for r in rs if r.row.threads == 1]
    fp32 = scored(rs)
    n, k, err = summary(fp32)
    met = k / n >= GOAL_SHARE and err < GOAL_LOG_ERROR
    devices = sorted({r.row.device for r in fp32})
    lines = [
        "# Latency estimator vs published whole-model fp32 CPU latencies",
        "",
        f"Command: `python bench/bench_estimator.py > bench/results/estimator.md`, {datetime.date.today().isoformat()}.",
        f"Host curves: `maestro_edge/latency/host_efficiency.json` ({provenance['command'].strip()}, {provenance['date']}; "
        f"{provenance['runtime']}, {provenance['threads']} thread; {provenance['machine']}).",
        "Every *estimate* is an ESTIMATE: the sum of per-op estimates over the network's conv and linear ops, fp32, on the",
        "device's profile at the row's threads (threads fill the fastest cores of the profile's per-core table; weights",
        "larger than the profile's last-level cache are re-streamed from DRAM: estimate.py, \"Threads\").",
        "*ratio* = estimate / published (a range where the published figure is one; XNNPACK's whole-ms figures are ±0.5 ms);",
        "*abs log err* = |ln(estimate / nearest end of the published range)|, 0 inside it; *±25%*: within 25% of the range.",
        "",
        f"**Goal (issue 15): ≥ {GOAL_SHARE:.0%} of scored rows within ±25% and mean abs log error < {GOAL_LOG_ERROR}. "
        f"Result: {k}/{n} = {k / n:.0%} within, mean abs log error {err:.2f}, over {len(devices)} devices "
        f"({', '.join(devices)}): goal {'MET' if met else 'MISSED'}.**",
        "",
        "## Multi-thread rows",
        "",
        *_table(multi),
        "",
        "## 1-thread rows",
        "",
        *_table(single),
    ]
    by = lambda key: {name: [r for r in fp32 if key(r) == name] for name in sorted({key(r) for r in fp32})}  # noqa: E731
    lines += _summary_table("Scored rows (fp32; context rows excluded), all and without the check rows:",
                            {"all scored": fp32, "validation only": [r for r in fp32 if r.row.role == "validation"],
                             "multi-thread": [r for r in fp32 if r.row.threads > 1],
                             "1 thread": [r for r in fp32 if r.row.threads == 1]})
    lines += _summary_table("By device class:", by(lambda r: r.klass))
    lines += _summary_table("By device class and threads:", by(lambda r: f"{r.klass}, {'1 thread' if r.row.threads == 1 else 'multi-thread'}"))
    lines += _summary_table("By runtime:", by(lambda r: r.row.runtime))
    lines += _summary_table("By device:", by(lambda r: r.row.device))
    lines += ["", "Roles: " + "; ".join(f"*{k}*: {v}" for k, v in ROLES.items()) + "."]

    pairs = thread_pairs(rs)
    lines += ["", "## Thread scaling: published 1-thread / multi-thread pairs", "",
              "Same device, network, runtime and source at 1 thread and at the row's threads; *estimated / published* is",
              "the estimated speedup over the published one (1.00: the thread model is exact; > 1: it scales too well).", "",
              *_pair_table(pairs), "", *_pair_summary(pairs)]

    lines += ["", "The same without the re-streaming term (every profile's cache taken to hold every weight: the estimator",
              "before this change), scored rows and pairs:", ""]
    before = [evaluate(row, restream=False) for row in PUBLISHED]
    bn, bk, berr = summary(scored(before))
    lines += [f"- scored rows: {bk}/{bn} = {bk / bn:.0%} within ±25%, mean abs log error {berr:.2f} "
              f"(board {_brief([r for r in scored(before) if r.klass == 'board'])}, "
              f"phone {_brief([r for r in scored(before) if r.klass == 'phone'])});", "",
              *_pair_summary(thread_pairs(before))]

    lines += ["", "The level's own anchor, google/XNNPACK#1905 (Pixel 4, XNNPACK, 4 threads), under the model shipped:", "",
              *anchor_check()]

    band_doc = bands(rs)
    lines += ["", "## Error bands (maestro_edge/latency/error_bands.json; `--write-bands`)", "",
              "published / estimate over the scored rows: the truth of an estimate E is expected within",
              "[E x P10, E x P90] (maestro_edge/latency/error_band.py).", "",
              "| class | rows | P10 (low_factor) | median | P90 (high_factor) | rows inside |", "|---|---|---|---|---|---|"]
    for klass, b in band_doc["classes"].items():
        lines.append(f"| {klass} | {b['rows']} | {b['low_factor']:.2f} | {b['median']:.2f} | {b['high_factor']:.2f} | "
                     f"{b['coverage']:.0%} |")

    rpi4 = find_profile("rpi4")
    gbs = sustained_memory_gbs(rpi4)
    lines += ["", f"rpi4 estimate by op family and by term at 4 threads (ms; DRAM at {gbs:g} GB/s; *re-streamed*: "
              "the time weight re-streaming adds over compute):", "",
              "| network | k x k conv | 1x1 conv / linear | depthwise | compute | DRAM | re-streamed | per-op overhead |",
              "|---|---|---|---|---|---|---|---|"]
    for net, build in REFERENCE_NETS.items():
        shares, terms = defaultdict(float), [0.0, 0.0, 0.0, 0.0]
        for op in build():
            shares[family(op)] += estimate_op_ms(op, rpi4)
            t = op_time_terms(op, rpi4)
            terms[0] += t.compute_ms
            terms[1] += t.memory_bytes / (gbs * 1e6)
            terms[2] += max(0.0, t.restream_bytes / (gbs * 1e6) - t.compute_ms)
            terms[3] += t.overhead_ms
        lines.append(f"| {net} | " + " | ".join(f"{shares[f]:.1f}" for f in ("k x k conv", "1x1 / linear", "depthwise"))
                     + " | " + " | ".join(f"{v:.1f}" for v in terms) + " |")
    sys.stdout.write("\n".join(lines) + "\n" + NOTES)
    if args.write_bands:
        BANDS_FILE.write_text(json.dumps(band_doc, indent=2) + "\n")
        print(f"wrote {BANDS_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
