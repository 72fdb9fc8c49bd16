"""Print ESTIMATED whole-network latencies next to published figures, as a markdown table.

    python bench/bench_estimator.py > bench/results/estimator.md

Estimates are sums of per-op estimates (maestro_edge/latency/estimate.py) over the conv/linear ops of each
reference network; nothing in the estimator was fitted to the published numbers listed here. Each row says
what role its figure played: the two rpi4 *check* rows were seen before the shipped model was chosen; the
*held-out* rows were not used to choose it and decide whether it ships (see ROLES).
"""

from __future__ import annotations

import datetime
import math
import sys
from collections import defaultdict

from maestro_edge.devices.profile import find_profile
from maestro_edge.latency.estimate import estimate_op_ms, host_efficiency, op_time_terms, sustained_memory_gbs
from maestro_edge.latency.reference_nets import REFERENCE_NETS

CHECK_TOLERANCE = 0.25  # issue #4: rpi4 estimate within +-25% of the published range

XNNPACK_RPI = "XNNPACK fp32 4T, 32-bit / ARM64 OS (google/XNNPACK README, RPi table benchmarked 2022-02-08)"
NCNN_RPI4 = ("ncnn fp32 4T: 1.8 GHz board, newer ncnn / 1.5 GHz board, older ncnn (Tencent/ncnn benchmark/README.md); "
             "ncnn runs 3x3 s1 convs as Winograd")
ROLES = {
    "check": "check: seen before the shipped model was chosen",
    "held-out": "held-out: decides (same runtime as the check, not seen when choosing)",
    "held-out 2": "held-out, secondary: other runtime; reported, does not decide",
    "context": "context only: not fp32 or not a measurement",
}
# (device, network, low ms, high ms, role, what the figure is). Sources: shared/notes/peers.md 4.1 and the
# READMEs named; XNNPACK 2022-02-08 table: v1 72/77, v2 41/46, v3-Large 38/40, v3-Small 13/15 ms.
PUBLISHED = [
    ("rpi4", "mobilenet_v2", 41.0, 46.0, "check", XNNPACK_RPI),
    ("rpi4", "resnet18", 100.3, 123.12, "check",
     "PyTorch eager fp32 / ncnn fp32 4T (pytorch/tutorials realtime_rpi; Tencent/ncnn benchmark)"),
    ("rpi4", "mobilenet_v1", 72.0, 77.0, "held-out", XNNPACK_RPI),
    ("rpi4", "mobilenet_v3_large", 38.0, 40.0, "held-out", XNNPACK_RPI),
    ("rpi4", "mobilenet_v3_small", 13.0, 15.0, "held-out", XNNPACK_RPI),
    ("rpi4", "mobilenet_v1", 61.17, 72.08, "held-out 2", NCNN_RPI4),
    ("rpi4", "resnet50", 262.83, 335.34, "held-out 2", NCNN_RPI4),
    ("rpi4", "vgg16", 547.09, 873.71, "held-out 2", NCNN_RPI4),
    ("rpi5", "mobilenet_v2", 10.52, 10.52, "context", "ncnn **fp16** 4T (Tencent/ncnn benchmark); fp32 expected ~1.5-2x slower"),
    ("rpi5", "resnet18", 19.96, 19.96, "context", "ncnn **fp16** 4T; fp32 expected ~1.5-2x slower"),
    ("rpi5", "resnet50", 46.21, 46.21, "context", "ncnn **fp16** 4T; fp32 expected ~1.5-2x slower"),
    ("pixel7", "mobilenet_v2", 8.0, 15.0, "context", "prior, not a measurement: SD888 ncnn fp16 x1.5-2 (peers.md 4.1)"),
    ("pixel7", "resnet18", 20.0, 35.0, "context", "prior, not a measurement: SD888 ncnn fp16 x1.5-2"),
    ("pixel7", "resnet50", 45.0, 80.0, "context", "prior, not a measurement: SD888 ncnn fp16 x1.5-2"),
]
NOTES = """
Reading (written with the model, not generated):

- Nothing above was tuned to the published figures. The estimator's inputs are the host curves, the device peaks
  (peers.md 4.2), one published level (XNNPACK fp32 VGG-16 convs at ~0.71 of peak on a 4-core A76,
  XNNPACK#1905) and, new, each board's published sustained memory bandwidth (rpi4: STREAM 5.56 GB/s,
  sci-pi.org.uk; rpi5: tinymembench copy x2 = 9.74 GB/s, geerlingguy/sbc-reviews#21; pixel7: none found, the
  theoretical 44 GB/s is used).
- Previous model: `overhead + max(compute, bytes / theoretical bandwidth)`. Shipped model: `overhead + compute +
  bytes / sustained bandwidth`. The change was proposed on 2026-11-27 *after* seeing the rpi4 MobileNetV2 miss,
  so the two check rows are not evidence for it. Before any held-out estimate was computed, the rule was fixed:
  ship it only if, on the three held-out XNNPACK rows, its mean |log error| is lower than the previous model's
  and at least as many rows fall within +-25%. It passes: 0.33 vs 0.73, 0 vs 0 rows.
- It is still not good on those rows: MobileNet v1 / v3-Large / v3-Small come out at 0.62-0.75 of the published
  times, all outside +-25% (v3-Large and v3-Small by less than 1% of the published time; v1 would need
  +14%). They share the runtime, board
  and date of the check row, so they test other networks, not other devices. Likely causes not modelled: Pi 4
  thread scaling below 4x (google/XNNPACK#999; ncnn 1T/4T ratio ~1.5), the ops the reference nets leave out
  (h-swish and SE multiplies on most MobileNetV3 blocks, residual adds), and small 1x1 convs running below the
  host's curve on an A72.
- Secondary held-out (ncnn): the shipped model is within +-25% of all three (MobileNet v1, ResNet-50, VGG-16);
  the previous two of three. VGG-16 sits above ncnn's figures in both models, as expected against Winograd.
- rpi5 (ncnn **fp16**, fp32 expected 1.5-2x slower): the shipped model reads 1.3x (MobileNetV2) and 2.0-2.1x
  (ResNets) the fp16 figures, the previous 0.7x and 1.7x. Context only: no fp32 figure for a Pi 5 was found.
- pixel7 estimates remain ~1.6-4x below the peers.md priors, which are derived guesses; its peak (X1
  FLOP/cycle) and bandwidth are unverified, and phones do not hold peak clocks on all big cores.
"""


def previous_model_ms(ops, profile) -> float:
    """The estimator before 2026-11-27: memory overlapped with compute, at the theoretical bandwidth."""
    bandwidth = profile.hardware["memory_gbs"] * 1e6
    return sum(t.overhead_ms + max(t.compute_ms, t.memory_bytes / bandwidth) for t in (op_time_terms(op, profile) for op in ops))


def within(ms: float, low: float, high: float) -> bool:
    return low * (1 - CHECK_TOLERANCE) <= ms <= high * (1 + CHECK_TOLERANCE)


def log_error(ms: float, low: float, high: float) -> float:
    """|ln(estimate / nearest end of the published range)|; 0 inside the range."""
    return 0.0 if low <= ms <= high else abs(math.log(ms / (high if ms > high else low)))


def family(op) -> str:
    return "depthwise" if op.is_depthwise else ("1x1 / linear" if op.kernel == (1, 1) else "k x k conv")


def main() -> None:
    provenance = host_efficiency()["provenance"]
    lines = [
        "# Latency estimator vs published whole-model latencies",
        "",
        f"Command: `python bench/bench_estimator.py > bench/results/estimator.md`, {datetime.date.today().isoformat()}.",
        f"Host curves: `maestro_edge/latency/host_efficiency.json` ({provenance['command'].strip()}, {provenance['date']}; "
        f"{provenance['runtime']}, {provenance['threads']} thread; {provenance['machine']}).",
        "Every figure in the *previous* and *shipped* columns is an ESTIMATE (sum of per-op estimates over the network's",
        "conv and linear ops, fp32, at the profile's threads). *previous*: `overhead + max(compute, bytes / theoretical",
        "bandwidth)`; *shipped*: `overhead + compute + bytes / sustained bandwidth` (maestro_edge/latency/estimate.py).",
        "Ratios are estimate / published (a range where the published figure is one). ±25%: within 25% of the published",
        "range, previous / shipped.",
        "",
        "| device | threads | network | GMAC | published (ms) | previous (ms) | ratio | shipped (ms) | ratio | ±25% | role | published figure |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = defaultdict(lambda: [0, 0, 0.0, 0.0, 0])  # role -> [prev within, shipped within, prev err, shipped err, n]
    for device, net, low, high, role, what in PUBLISHED:
        profile = find_profile(device)
        ops = REFERENCE_NETS[net]()
        before = previous_model_ms(ops, profile)
        after = sum(estimate_op_ms(op, profile) for op in ops)
        published = f"{low:g}" if low == high else f"{low:g}–{high:g}"

        def ratio(ms: float) -> str:
            return f"{ms / low:.2f}" if low == high else f"{ms / high:.2f}–{ms / low:.2f}"

        mark = lambda ms: "in" if within(ms, low, high) else "**out**"  # noqa: E731
        macs = sum(op.macs() for op in ops) / 1e9
        lines.append(f"| {device} | {profile.threads} | {net} | {macs:.2f} | {published} | {before:.1f} | {ratio(before)} | "
                     f"{after:.1f} | {ratio(after)} | {mark(before)} / {mark(after)} | {role} | {what} |")
        s = summary[role]
        s[0] += within(before, low, high)
        s[1] += within(after, low, high)
        s[2] += log_error(before, low, high)
        s[3] += log_error(after, low, high)
        s[4] += 1
    lines += ["", "By role (rows within ±25%, mean |ln(estimate / nearest end of the published range)|):", "",
              "| role | rows | previous: within ±25% | shipped: within ±25% | previous: mean abs log error | shipped: mean abs log error |",
              "|---|---|---|---|---|---|"]
    for role, text in ROLES.items():
        prev_in, new_in, prev_err, new_err, n = summary[role]
        lines.append(f"| {text} | {n} | {prev_in} | {new_in} | {prev_err / n:.2f} | {new_err / n:.2f} |")

    rpi4 = find_profile("rpi4")
    lines += ["", f"rpi4 shipped estimate by op family and by term (ms; DRAM at {sustained_memory_gbs(rpi4):g} GB/s):", "",
              "| network | k x k conv | 1x1 conv / linear | depthwise | compute | DRAM | per-op overhead |", "|---|---|---|---|---|---|---|"]
    for net, build in REFERENCE_NETS.items():
        shares, terms = defaultdict(float), [0.0, 0.0, 0.0]
        for op in build():
            shares[family(op)] += estimate_op_ms(op, rpi4)
            t = op_time_terms(op, rpi4)
            terms[0] += t.compute_ms
            terms[1] += t.memory_bytes / (sustained_memory_gbs(rpi4) * 1e6)
            terms[2] += t.overhead_ms
        lines.append(f"| {net} | " + " | ".join(f"{shares[f]:.1f}" for f in ("k x k conv", "1x1 / linear", "depthwise"))
                     + " | " + " | ".join(f"{v:.1f}" for v in terms) + " |")
    sys.stdout.write("\n".join(lines) + "\n" + NOTES)


if __name__ == "__main__":
    main()
