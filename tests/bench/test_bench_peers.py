"""bench/bench_peers.py --smoke runs end to end: one row per method and budget, each with a measured latency
ratio and a test accuracy with its interval (the figures themselves live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

ROW = re.compile(r"^\| (\d+)% \| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([\d.]+)% \| ([\d.]+) \[([\d.]+), ([\d.]+)\] \|")


@pytest.mark.slow
def test_bench_peers_smoke(tmp_path):
    pytest.importorskip("torch_pruning", reason="the bench extra: pip install -e '.[test]' installs it")
    from peers import aimet_svd

    env = {**os.environ, "MAESTRO_EDGE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_peers.py"), "--smoke", "--work",
                             str(tmp_path / "work"), "--allow-busy"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [ROW.match(line).groups() for line in result.stdout.splitlines() if ROW.match(line)]
    methods = {"maestro-edge (LoD once)", "maestro-edge + recovery", "maestro-edge + plan choice", "SVD + solver",
               "uniform rank", "Torch-Pruning magnitude", "Torch-Pruning taylor"}
    methods |= {"AIMET spatial SVD"} if aimet_svd.available() else set()
    for budget in ("75", "50", "35"):
        assert {m.strip() for b, m, *_ in rows if b == budget} == methods, result.stdout
    for _, _, _, _, ratio, accuracy, low, high in rows:
        assert 0 < float(ratio) < 200 and 0 <= float(low) <= float(accuracy) <= float(high) <= 1
    seeds = {(m.strip(), s.strip()) for b, m, setting, s, *_ in rows if b == "35" and setting.strip() != "equal compute"}
    assert ("Torch-Pruning magnitude", "1") in seeds   # two fine-tuning seeds at the tightest budget
    costs = json.loads((tmp_path / "work" / "cost.json").read_text())
    assert costs["lod:train"]["cpu_s"] > 0 and "CPU-seconds" in result.stdout
