"""P8: the README's main job, ``maestro-edge fit --device pixel7 --ms 20``, as a fresh install runs it.

    python bench/bench_main_job.py [--runs 2]

Each run is a new process with an empty cache and no Fashion-MNIST package in sight (the shipped
held-out images are used, as on a fresh machine). Prints the wall time of each run (process start to
exit, imports included), the fit's own ``wall_time_s``, the accuracy it reports, and the CPU that
other processes used meanwhile: a run beside busy processes is flagged, its time is not the tool's.
Goal (issue 16): <= 60 s on the project's 2-vCPU machine, with the accuracy still measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from maestro_edge.latency.load import LoadMonitor

GOAL_S = 60.0


def run_once(work: Path) -> dict:
    env = {**os.environ, "MAESTRO_EDGE_CACHE": str(work / "cache"),
           "MAESTRO_EDGE_FASHION_MNIST_DIR": str(work / "no-dataset-here")}
    command = ["maestro-edge", "fit", "--device", "pixel7", "--ms", "20", "--out", str(work / "out"), "--json", "-q"]
    monitor = LoadMonitor(threads=os.cpu_count() or 1)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    load = monitor.check()
    if result.returncode != 0:
        raise SystemExit(f"the main job failed: {result.stderr.strip()[-500:]}")
    record = json.loads(result.stdout)
    return {"wall_s": wall, "fit_wall_s": record["wall_time_s"], "accuracy": record["accuracy"],
            "samples": record["scores"]["fitted"]["samples"], "dense": record["dense_accuracy"],
            "dense_how": record["scores"]["dense"]["how"],
            "others_cores": load.other_cores if load else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print("| run | wall (s) | fit's wall_time_s | accuracy (n) | dense | other processes (cores) | goal <= 60 s |")
    print("|---|---|---|---|---|---|---|")
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as work:
            r = run_once(Path(work))
        busy = r["others_cores"] is not None and r["others_cores"] > 0.5
        verdict = "busy: not a valid timing" if busy else ("met" if r["wall_s"] <= GOAL_S else "MISSED")
        others = "?" if r["others_cores"] is None else f"{r['others_cores']:.2f}"
        print(f"| {i + 1} | {r['wall_s']:.1f} | {r['fit_wall_s']:.1f} | {r['accuracy']:.3f} ({r['samples']}) | "
              f"{r['dense']:.3f} ({r['dense_how']}) | {others} | {verdict} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
