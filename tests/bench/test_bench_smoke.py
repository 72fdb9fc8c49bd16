"""The benchmark suite's smoke mode runs end to end (figures are not asserted: they live in BENCHMARKS.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_run_all_quick(tmp_path):
    env = {**os.environ, "MAESTRO_EDGE_CACHE": str(tmp_path)}   # profile from scratch, not the user's cache
    # --allow-busy: this checks that the suite runs, not its figures; it must pass with a browser open
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--allow-busy"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    for marker in ("P1 prediction", "P2 budget sweep", "P5 speedup"):
        assert marker in result.stdout
