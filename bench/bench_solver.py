"""Time solve_ranks on 100 layers x 64 options and check it against brute force; print markdown rows.

    python bench/bench_solver.py            # median of 20 runs per budget, 1000 brute-force instances
    python bench/bench_solver.py --quick    # median of 5 runs, 200 instances

Target: < 50 ms per solve for 100 layers x 64 options. Exits 1 if a solve misses the target or if any
small instance disagrees with brute force (penalty, then latency among ties, on true latencies).
The last row shows what the exact solver buys over the rounded-up DP fallback alone (resolution 2000).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import statistics
import sys
import time

import numpy as np

from maestro_edge.errors import InfeasibleBudget
from maestro_edge.solve import LayerOptions, Option, solve_ranks

TARGET_MS = 50.0
LAYERS, OPTIONS = 100, 64


def realistic_layers(seed: int) -> list[LayerOptions]:
    """Ranks 8..512 plus dense; latency ~ affine in rank with noise; penalty decays with rank."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, OPTIONS) * 8
    layers = []
    for i in range(LAYERS):
        fixed_ms, ms_per_rank = rng.uniform(0.01, 0.1), rng.uniform(1e-4, 1e-3)
        latency = fixed_ms + ms_per_rank * ranks * rng.uniform(0.9, 1.1, len(ranks))
        penalty = rng.uniform(0.1, 1.0) * np.exp(-ranks / rng.uniform(20, 200))
        options = [Option(int(r), float(ms), float(p)) for r, ms, p in zip(ranks, latency, penalty)]
        options.append(Option("dense", float(fixed_ms + ms_per_rank * 600), 0.0))
        layers.append(LayerOptions(f"features.{i}", tuple(options)))
    return layers


def budget_at(layers: list[LayerOptions], fraction: float) -> float:
    """A budget `fraction` of the way from the fastest to the slowest model."""
    fastest = sum(min(o.latency_ms for o in l.options) for l in layers)
    slowest = sum(max(o.latency_ms for o in l.options) for l in layers)
    return fastest + fraction * (slowest - fastest)


def time_solve(layers, budget_ms, runs, **kwargs) -> tuple[float, float, object]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        plan = solve_ranks(layers, budget_ms, **kwargs)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), max(times), plan


def brute_force_mismatches(count: int) -> int:
    """Random problems of 1-5 layers x 1-5 options, coarse values (ties, budgets on a plan's total)."""
    bad = 0
    for seed in range(count):
        rng = np.random.default_rng(seed)
        layers = [
            LayerOptions(f"l{i}", tuple(
                Option(r, round(float(rng.uniform(0, 3)), 1), round(float(rng.uniform(-0.1, 1)), 1))
                for r in range(int(rng.integers(1, 6)))))
            for i in range(int(rng.integers(1, 6)))
        ]
        overhead_ms = float(rng.choice([0.0, 0.5]))
        plans = []
        for combo in itertools.product(*(l.options for l in layers)):
            ms, pen = overhead_ms, 0.0
            for o in combo:  # summed as the solver reports: overhead first, layer by layer
                ms, pen = ms + o.latency_ms, pen + o.penalty
            plans.append((pen, ms))
        budget_ms = float(rng.choice([ms for _, ms in plans])) if seed % 2 else float(rng.uniform(0.5, 12))
        fits = [p for p in plans if p[1] <= budget_ms]
        # Least penalty; penalties within 1e-9 are float-noise ties, which go to the lower latency.
        least = min((pen for pen, _ in fits), default=None)
        best = None if least is None else min((p for p in fits if p[0] <= least + 1e-9), key=lambda p: p[1])
        try:
            plan = solve_ranks(layers, budget_ms, overhead_ms)
            got = (plan.penalty, plan.predicted_ms)
            ok = best is not None and plan.predicted_ms <= budget_ms and np.allclose(got, best, rtol=0, atol=1e-9)
        except InfeasibleBudget:
            ok = best is None
        bad += not ok
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and instances")
    args = parser.parse_args()
    runs, instances = (5, 200) if args.quick else (20, 1000)

    command = "python bench/bench_solver.py" + (" --quick" if args.quick else "")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    date = datetime.date.today().isoformat()
    layers = realistic_layers(seed=0)
    solve_ranks(layers, budget_at(layers, 0.5))  # warm up imports and caches

    print(f"| command | date | machine | case | median ms | max ms | penalty | result |")
    print(f"|---|---|---|---|---|---|---|---|")
    failed = False
    for fraction in (0.05, 0.3, 0.7):
        budget_ms = budget_at(layers, fraction)
        median, worst, plan = time_solve(layers, budget_ms, runs)
        ok = median < TARGET_MS and plan.predicted_ms <= budget_ms
        failed |= not ok
        case = f"{LAYERS}x{OPTIONS}, budget {budget_ms:.2f} ms ({fraction:.0%} fastest->slowest), {runs} runs"
        print(f"| `{command}` | {date} | {machine} | {case} | {median:.1f} | {worst:.1f} | {plan.penalty:.4f} "
              f"| {'ok' if ok else 'FAIL'} (< {TARGET_MS:g} ms) |")

    start = time.perf_counter()
    bad = brute_force_mismatches(instances)
    failed |= bad > 0
    print(f"| `{command}` | {date} | {machine} | exactness: {instances} small instances vs brute force "
          f"| | | | {'ok' if not bad else 'FAIL'}: {bad} mismatches ({time.perf_counter() - start:.1f} s) |")

    budget_ms = budget_at(layers, 0.3)
    exact = solve_ranks(layers, budget_ms)
    median, worst, fallback = time_solve(layers, budget_ms, runs, max_states=0)
    print(f"| `{command}` | {date} | {machine} | rounded-up DP alone (fallback), same 30% budget, {runs} runs "
          f"| {median:.1f} | {worst:.1f} | {fallback.penalty:.4f} | info: exact is "
          f"{(fallback.penalty - exact.penalty) / fallback.penalty:.1%} lower |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
