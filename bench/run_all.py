"""Run every benchmark (P1-P7 of BENCHMARKS.md) one after another; ``--quick`` is the smoke mode CI runs.

    python bench/run_all.py [--quick] [--allow-busy]

Each benchmark is a separate process (so thread settings and imports do not leak between them) and
prints its own markdown; this script stops at the first one that fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def suite(quick: bool, allow_busy: bool = False) -> list[list[str]]:
    """The benchmarks in order; the smoke mode skips P3 and P7 (they train models / profile ResNet-18).
    ``allow_busy``: the host profile is kept (flagged) beside busy processes: a smoke run checks that the suite
    runs, not its figures, and must pass on a machine with a browser open."""
    q = ["--quick"] if quick else []
    smoke = [
        ["bench_solver.py", *q],                                     # P4
        ["bench_estimator.py"],                                      # estimator vs published numbers
        ["bench_host.py", *q, *(["--allow-busy"] if allow_busy else [])],   # P1, P2, P5
        ["bench_train_step.py", *(["--rounds", "3", "--warmup", "1", "--no-write"] if quick else [])],  # P6
    ]
    full = [
        ["bench_profile.py"],                                        # P7
        ["bench_accuracy.py", "--work", str(Path.home() / ".cache" / "maestro-edge" / "p3")],  # P3 (trains twice)
    ]
    return smoke if quick else smoke + full


def main() -> int:
    quick, allow_busy = "--quick" in sys.argv[1:], "--allow-busy" in sys.argv[1:]
    for script, *args in suite(quick, allow_busy):
        print(f"\n## {script} {' '.join(args)}\n", flush=True)
        result = subprocess.run([sys.executable, str(HERE / script), *args])
        if result.returncode != 0:
            print(f"{script} failed with exit code {result.returncode}", file=sys.stderr)
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
