"""Host benchmarks P1, P2, P5 (issue #6): prediction accuracy, budget sweep, speedup vs MAC reduction.

    python bench/bench_host.py [--model CKPT] [--plans 24] [--budgets 10] [--quick]

The model defaults to tests/fixtures/digits.lod.pt, the small digits CNN that was the embedded default
when P1/P2/P5 were first measured (the ResNet-18 default takes ~1 h here: pass its path with --model).

P1: random rank plans of the model; the latency table's prediction vs the exported .pte measured end
    to end (all plans timed in one interleaved session, 1 thread, ExecuTorch XNNPACK). The prediction is
    the one fit solves with: the table anchored to the host's speed by one timing of the dense model
    made before the plans (latency/anchor.py); the table's raw prediction is shown beside it.
P2: budgets spread between the fastest and the dense model; `fit` on each; measured / budget.
P5: for the P1 plans, measured speedup over the dense model vs the MAC reduction.
Prints markdown rows (command, date, machine) for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from maestro_edge.devices.profile import find_profile
from maestro_edge.export.pte import lower_to_pte
from maestro_edge.export.truncate import deployable
from maestro_edge.fit import Fitter, latency_table_for
from maestro_edge.latency.anchor import anchored
from maestro_edge.latency.measure import Protocol, time_programs
from maestro_edge.latency.profile import HostTimer
from maestro_edge.latency.probes import layer_input_shapes, layer_macs_total, layer_options
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.layers import lod_layers

SMALL_MODEL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "digits.lod.pt"

def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    import os

    return f"{cpu}, {os.cpu_count()} vCPU, {platform.system()}"


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_prediction(ckpt, table, n_plans: int, protocol: Protocol, seed: int = 0):
    """P1 and P5."""
    rng = random.Random(seed)
    layers = lod_layers(ckpt.model)
    plans = {"dense": {n: "dense" for n in layers}}
    while len(plans) < n_plans + 1:
        plans[f"plan{len(plans)}"] = {n: rng.choice(layer_options(l)) for n, l in layers.items()}
    x = ckpt.examples   # real inputs: token ids and masks for a user's encoder
    # as fit does: one timing of the dense model, before (not beside) the plans, scales the table
    anchored_table, anchor = anchored(table, ckpt, HostTimer(), protocol)
    programs = {name: (lower_to_pte(deployable(ckpt.model, plan), x, full_delegation=False), x)
                for name, plan in plans.items()}
    measured = {name: t.p50_ms for name, t in time_programs(programs, protocol).items()}
    shapes = layer_input_shapes(ckpt.model, ckpt.examples)
    macs = {name: sum(layer_macs_total(layers[n], shapes[n], c) for n, c in plan.items()) for name, plan in plans.items()}
    rows = []
    for name, plan in plans.items():
        predicted, raw = anchored_table.predict_ms(plan), table.predict_ms(plan)
        rows.append({"plan": name, "predicted": predicted, "measured": measured[name], "raw": raw,
                     "error": (predicted - measured[name]) / measured[name],
                     "raw_error": (raw - measured[name]) / measured[name],
                     "speedup": measured["dense"] / measured[name], "mac_ratio": macs["dense"] / macs[name]})
    return rows, anchor


def bench_sweep(ckpt, table, n_budgets: int, out: Path):
    """P2."""
    fitter = Fitter(ckpt)
    fastest = table.overhead_ms + sum(min(l.dense_ms, *l.rank_ms.values()) for l in table.layers.values())
    dense = table.predict_ms({n: "dense" for n in table.layers})
    budgets = [round(fastest + (dense - fastest) * (i + 1) / (n_budgets + 1), 4) for i in range(n_budgets)]
    rows = []
    for budget in budgets:
        started = time.perf_counter()
        record = fitter.fit(find_profile("host"), budget, out / f"{budget:g}", table=table)
        rows.append({"budget": budget, "predicted": record["predicted_ms"], "measured": record["measured_ms"],
                     "tries": len(record["tries"]), "accuracy": record["accuracy"],
                     "estimated_drop": record["estimated_accuracy_drop"],
                     "true_drop": record["dense_accuracy"] - record["accuracy"],
                     "uniform": next((b for b in record["baselines"] if b["name"] == "uniform-rank"), None),
                     "seconds": time.perf_counter() - started})
    return rows, fastest, dense


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SMALL_MODEL))
    parser.add_argument("--plans", type=int, default=24)
    parser.add_argument("--budgets", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="smoke mode: 4 plans, 2 budgets, short protocol")
    parser.add_argument("--p1-only", action="store_true", help="P1 and P5 only (no fits: a user model without --eval)")
    parser.add_argument("--allow-busy", action="store_true",
                        help="profile even beside busy processes (the table is flagged; for smoke runs, not figures)")
    args = parser.parse_args(argv)
    if args.quick:
        args.plans, args.budgets = 4, 2
    torch.set_num_threads(1)
    protocol = Protocol(rounds=7, calls=10) if args.quick else Protocol(rounds=21, calls=20)
    command = "python bench/bench_host.py " + " ".join(sys.argv[1:] if argv is None else argv)
    ckpt = LoDCheckpoint.load(args.model)
    table = latency_table_for(ckpt, find_profile("host"), progress=lambda m: print(f"  {m}", file=sys.stderr),
                              allow_busy=args.allow_busy)
    print(f"command: `{command}`; date {date.today()}; machine: {machine()}; ExecuTorch XNNPACK, 1 thread; "
          f"model {ckpt.arch['name']} ({ckpt.digest()})\n")

    rows, anchor = bench_prediction(ckpt, table, args.plans, protocol)
    print(f"anchor: the dense model timed before the plans {anchor.measured_dense_ms:.4f} ms, the table predicted "
          f"{anchor.predicted_dense_ms:.4f} ms: scale {anchor.scale:.4f}" if anchor else "anchor: none (estimated)")
    for label, key in (("anchored (what fit solves with)", "error"), ("the table as profiled", "raw_error")):
        errors = [abs(r[key]) for r in rows]
        within = sum(e <= 0.05 for e in errors)
        print(f"P1 prediction, {label}, vs measured .pte, {len(rows)} plans (incl. dense): within ±5%: {within}/"
              f"{len(rows)} = {within / len(rows):.0%}; |error| median {statistics.median(errors):.1%}, "
              f"p95 {percentile(errors, 0.95):.1%}, max {max(errors):.1%}")
    print("\n| plan | predicted ms | measured ms | error | raw table error | speedup vs dense | MAC reduction | "
          "speedup / MAC |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['plan']} | {r['predicted']:.4f} | {r['measured']:.4f} | {r['error']:+.1%} | {r['raw_error']:+.1%} | "
              f"{r['speedup']:.2f}x | {r['mac_ratio']:.2f}x | {r['speedup'] / r['mac_ratio']:.2f} |")
    ratios = [r["speedup"] / r["mac_ratio"] for r in rows if r["plan"] != "dense"]
    print(f"\nP5 speedup / MAC reduction over the random plans: median {statistics.median(ratios):.2f}, "
          f"min {min(ratios):.2f}")

    if args.p1_only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        sweep, fastest, dense = bench_sweep(ckpt, table, args.budgets, Path(tmp))
    ratio = [r["measured"] / r["budget"] for r in sweep]
    print(f"\nP2 budget sweep ({len(sweep)} budgets between the fastest plan {fastest:.4f} ms and dense {dense:.4f} ms, "
          f"predicted): measured/budget min {min(ratio):.3f}, max {max(ratio):.3f}; all <= 1.0: {max(ratio) <= 1.0}; "
          f"all >= 0.9: {min(ratio) >= 0.9}")
    print("\n| budget ms | predicted ms | measured ms | measured/budget | tries | accuracy | estimated / true accuracy drop "
          "| uniform-rank accuracy (fraction) | fit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sweep:
        u = r["uniform"]
        uniform = f"{u['accuracy']:.4f} ({u['fraction']:.2f})" if u else "none fits"
        print(f"| {r['budget']:.4f} | {r['predicted']:.4f} | {r['measured']:.4f} | {r['measured'] / r['budget']:.3f} | "
              f"{r['tries']} | {r['accuracy']:.4f} | {r['estimated_drop']:+.4f} / {r['true_drop']:+.4f} | {uniform} | "
              f"{r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
