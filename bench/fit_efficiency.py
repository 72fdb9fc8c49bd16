"""Measure per-operator time on this host and fit the efficiency curves the latency estimator scales to devices.

    python bench/fit_efficiency.py [--rounds 21] [--out maestro_edge/latency/host_efficiency.json]

Each grid shape (conv / 1x1 conv / depthwise / linear, including low-rank halves) is exported alone to an
ExecuTorch XNNPACK .pte and run in-process with the threadpool at 1 thread. The time of the XNNPACK
compute op itself (ETDump event "Convolution ..." or "Fully Connected ...") is used, so Python call
overhead and the NCHW<->NHWC transposes a lone op needs (a whole network pays them once) are excluded.
Shapes are interleaved in shuffled rounds; each shape's value is the 25th percentile of its round medians,
because this 2-core machine is shared and noise only ever adds time.

Fitted model (host, 1 thread):  t = t_op + 2*MACs / G(op), with
    conv/linear:  G = G_family * s(M, m0) * s(N, n0) * s(K, k0)   family: "gemm" (1x1 conv, linear) or "igemm" (k x k conv)
    depthwise:    G = G_dw * s(M, m0_dw) * s(C, c0_dw)
    s(x, x0) = x / (x + x0): efficiency saturates as the GEMM grows (M rows, N out channels, K reduction).
Takes about two minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from maestro_edge.latency.estimate import host_gflops, reference_gflops
from maestro_edge.latency.ops import OpSpec

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "maestro_edge/latency/host_efficiency.json"
WARMUP_CALLS = 3
ROUND_TARGET_MS = 8.0  # time per shape per round; enough calls for a stable median, short enough to interleave


def grid() -> list[OpSpec]:
    """Shapes spanning what MobileNet/ResNet-style nets and their low-rank factors contain."""
    C = OpSpec.conv2d
    ops = []
    # k x k convs (IGEMM): stems (K=27/147), ResNet/VGG bodies, strided, and low-rank first halves (small N).
    for cin, cout, k, hw, s in [(3, 32, 3, 224, 2), (3, 64, 7, 224, 2), (3, 64, 3, 112, 1), (16, 16, 3, 112, 1),
                                (32, 32, 3, 56, 1), (64, 64, 3, 56, 1), (64, 64, 3, 112, 1), (64, 128, 3, 56, 2),
                                (128, 128, 3, 28, 1), (128, 256, 3, 28, 2), (256, 256, 3, 14, 1), (256, 512, 3, 14, 2),
                                (512, 512, 3, 7, 1), (64, 8, 3, 56, 1), (128, 32, 3, 28, 1), (256, 16, 3, 16, 1),
                                (256, 64, 3, 16, 1), (256, 128, 3, 14, 1), (512, 32, 3, 7, 1), (512, 128, 3, 7, 1)]:
        ops.append(C(cin, cout, k, hw, stride=s))
    # 1x1 convs (GEMM): MobileNetV2 expand/project, ResNet downsample/bottleneck, low-rank second halves (small K).
    for cin, cout, hw in [(32, 16, 112), (16, 96, 112), (96, 24, 56), (24, 144, 56), (144, 32, 28), (32, 192, 28),
                          (192, 64, 14), (64, 384, 14), (384, 96, 14), (576, 160, 7), (160, 960, 7), (320, 1280, 7),
                          (64, 256, 56), (256, 128, 28), (1024, 256, 14), (512, 2048, 7), (8, 64, 56), (16, 256, 16),
                          (64, 256, 16), (32, 512, 7), (128, 512, 7)]:
        ops.append(C(cin, cout, 1, hw))
    # depthwise 3x3, stride 1 and 2.
    for c, hw, s in [(32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (192, 28, 2),
                     (384, 14, 1), (576, 14, 1), (576, 14, 2), (960, 7, 1), (64, 56, 1), (256, 28, 1), (32, 16, 1)]:
        ops.append(C(c, c, 3, hw, stride=s, groups=c))
    # linear: GEMV (1 token) to GEMM (128 tokens), dense and low-rank halves.
    for n, m, t in [(1024, 1024, 1), (1024, 1024, 8), (1024, 1024, 32), (1024, 1024, 128), (1280, 1000, 1),
                    (4096, 1024, 1), (768, 3072, 128), (1024, 16, 32), (16, 1024, 32), (1024, 64, 1), (64, 1024, 1),
                    (1024, 128, 32), (128, 1024, 32), (512, 64, 128), (64, 512, 128)]:
        ops.append(OpSpec.linear(n, m, tokens=t))
    # tiny ops: their time is the per-op floor.
    ops += [OpSpec.linear(8, 8), C(8, 8, 1, 1), C(8, 8, 3, 4, groups=8)]
    return ops


def to_module(op: OpSpec):
    import torch

    if op.kind == "linear":
        return torch.nn.Linear(op.in_channels, op.out_channels, bias=op.bias), torch.randn(op.tokens, op.in_channels)
    conv = torch.nn.Conv2d(op.in_channels, op.out_channels, op.kernel, op.stride, op.padding, groups=op.groups, bias=op.bias)
    return conv, torch.randn(1, op.in_channels, *op.in_hw)


def export(op: OpSpec, path: Path):
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    module, x = to_module(op)
    ep = torch.export.export(module.eval(), (x,))
    path.write_bytes(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    return x


def is_compute_event(name: str) -> bool:
    return name.startswith("Convolution") or name.startswith("Fully Connected")


def measure(ops: list[OpSpec], rounds: int, workdir: Path, seed: int = 0) -> list[dict]:
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(1)  # before any program loads: 1 thread, reproducible on a shared host
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    runs = []
    for i, op in enumerate(ops):
        pte = workdir / f"op{i}.pte"
        x = export(op, pte)
        program = Runtime.get().load_program(str(pte), enable_etdump=True, debug_buffer_size=0)
        method = program.load_method("forward")
        start = time.perf_counter()
        for _ in range(WARMUP_CALLS):
            method.execute((x,))
        per_call_ms = (time.perf_counter() - start) * 1e3 / WARMUP_CALLS
        calls = int(min(40, max(3, ROUND_TARGET_MS / per_call_ms)))
        runs.append(dict(op=op, x=x, program=program, method=method, calls=calls))
        print(f"  exported {i + 1}/{len(ops)}", end="\r", file=sys.stderr)
    rng = random.Random(seed)
    for r in range(rounds):
        for run in rng.sample(runs, len(runs)):
            for _ in range(run["calls"]):
                run["method"].execute((run["x"],))
        print(f"  round {r + 1}/{rounds}      ", end="\r", file=sys.stderr)
    print(file=sys.stderr)

    results = []
    for i, run in enumerate(runs):
        etdump = workdir / f"op{i}.etdp"
        run["program"].write_etdump_result_to_file(str(etdump), str(workdir / f"op{i}.bin"))
        inspector = Inspector(etdump_path=str(etdump))
        events = [ev for block in inspector.event_blocks for ev in block.events if is_compute_event(ev.name)]
        per_call = np.sum([ev.perf_data.raw for ev in events], axis=0)[WARMUP_CALLS:]  # ms, one per execute
        medians = [statistics.median(chunk) for chunk in np.split(per_call, rounds)]
        low, high = np.quantile(medians, [0.25, 0.75])
        results.append(dict(op=run["op"], ms=max(float(low), 0.0005),  # 1 us ticks: a sub-tick op reads 0, count half a tick
                            spread=float(high / max(low, 1e-6)), xnnpack_ops=sorted({ev.name.split(" #")[0] for ev in events})))
    return results


def family(op: OpSpec) -> str:
    if op.is_depthwise:
        return "dwconv"
    return "igemm" if op.kernel != (1, 1) else "gemm"


PARAMS = ("t_op_ms", "G_gemm", "G_igemm", "G_dw", "m0", "n0", "k0", "m0_dw", "c0_dw")


def fit(results: list[dict]) -> dict:
    """Least squares on log time, so a 10% miss weighs the same for a 5 us op and a 5 ms op; soft-L1 beyond
    ~10% so one shape slowed by a noisy neighbour for a whole run cannot drag the curve."""
    from scipy.optimize import least_squares

    ops = [r["op"] for r in results]
    measured = np.array([r["ms"] for r in results])

    def predict(theta):
        p = dict(zip(PARAMS, np.exp(theta)))
        return np.array([p["t_op_ms"] + 2 * op.macs() / (host_gflops(op, p) * 1e6) for op in ops])

    start = np.log([0.001, 200, 200, 50, 64, 16, 64, 64, 32])
    solution = least_squares(lambda th: np.log(predict(th)) - np.log(measured), start, loss="soft_l1", f_scale=0.1)
    params = dict(zip(PARAMS, (float(v) for v in np.exp(solution.x))))
    errors = predict(solution.x) / measured - 1
    for r, e in zip(results, errors):
        r["fit_error"] = float(e)
    quality = {f: float(np.median(np.abs([e for r, e in zip(results, errors) if family(r["op"]) == f])))
               for f in ("gemm", "igemm", "dwconv")}
    quality["all"] = float(np.median(np.abs(errors)))
    quality["worst"] = float(np.max(np.abs(errors)))
    return params, quality


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    model = fields.get("Model name", platform.processor()).strip()
    cpus = fields.get("CPU(s)", "?").strip()
    simd = "avx512f" if "avx512f" in fields.get("Flags", "") else ("neon" if platform.machine() == "aarch64" else "avx2?")
    return f"{model}, {cpus} vCPU ({fields.get('Hypervisor vendor', 'bare metal').strip()}), {platform.machine()}, {simd}, Python {platform.python_version()}"


def to_row(r: dict) -> dict:
    op = r["op"]
    row = dict(kind=op.kind, family=family(op), in_channels=op.in_channels, out_channels=op.out_channels,
               kernel=op.kernel[0], stride=op.stride[0], groups=op.groups, in_hw=op.in_hw[0], tokens=op.tokens,
               macs=op.macs(), ms=round(r["ms"], 5), round_spread_p75_p25=round(r["spread"], 3), xnnpack_ops=r["xnnpack_ops"])
    if "fit_error" in r:
        row["fit_error"] = round(r["fit_error"], 3)
    return row


def from_row(row: dict) -> dict:
    if row["kind"] == "linear":
        op = OpSpec.linear(row["in_channels"], row["out_channels"], tokens=row["tokens"])
    else:
        op = OpSpec.conv2d(row["in_channels"], row["out_channels"], row["kernel"], row["in_hw"], stride=row["stride"], groups=row["groups"])
    return dict(op=op, ms=row["ms"], spread=row["round_spread_p75_p25"], xnnpack_ops=row["xnnpack_ops"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--refit", action="store_true", help="re-fit the measurements already in --out; time nothing")
    args = parser.parse_args(argv)

    if args.refit:
        doc = json.loads(args.out.read_text())
        results = [from_row(row) for row in doc["measurements"]]
        doc["provenance"]["refit"] = f"python bench/fit_efficiency.py --refit, {datetime.date.today().isoformat()}"
    else:
        import executorch.version

        began = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            results = measure(grid(), args.rounds, Path(tmp))
        doc = {
            "what": "Host-measured XNNPACK per-op efficiency curves; maestro_edge/latency/estimate.py scales them to "
                    "devices. Every latency derived from this file is an ESTIMATE.",
            "provenance": {
                "command": " ".join(["python bench/fit_efficiency.py", *(argv if argv is not None else sys.argv[1:])]),
                "date": datetime.date.today().isoformat(),
                "machine": machine(),
                "runtime": f"executorch-xnnpack {executorch.version.__version__} (in-process pybindings; one .pte per op)",
                "threads": 1,
                "timing": f"ETDump kernel time of the XNNPACK compute op (1 us ticks); {args.rounds} shuffled rounds of "
                          f"~{ROUND_TARGET_MS:.0f} ms per shape after {WARMUP_CALLS} warm-up calls; value = p25 of round medians",
                "duration_s": round(time.time() - began),
            },
        }
        doc["measurements"] = [to_row(r) for r in results]
        args.out.write_text(json.dumps(doc, indent=1) + "\n")  # keep the timings even if the fit fails
    params, quality = fit(results)
    doc["model"] = {
        "form": "t_ms = t_op_ms + 2*MACs / (G * 1e6); G = G_family*s(M,m0)*s(N,n0)*s(K,k0) for gemm (1x1 conv, linear) "
                "and igemm (k x k conv), G_dw*s(M,m0_dw)*s(C,c0_dw) for depthwise; s(x,x0) = x/(x+x0); G in GFLOP/s; "
                "M, N, K as in OpSpec.gemm_shape()",
        "params": params,
        "reference_gflops": reference_gflops(params),
        "reference": "host rate over estimate.VGG16_REFERENCE_LAYERS, the layers of google/XNNPACK#1905",
        "fit_median_abs_error": quality,
    }
    doc["measurements"] = [to_row(r) for r in results]
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}: fit median |error| {quality['all']:.1%} (gemm {quality['gemm']:.1%}, igemm {quality['igemm']:.1%}, "
          f"dwconv {quality['dwconv']:.1%}), worst {quality['worst']:.1%}; reference {doc['model']['reference_gflops']:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
