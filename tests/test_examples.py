"""examples/user_cnn end to end at test size: the user's own project, then the CLI in fresh processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from maestro_edge.devices.profile import find_profile
from maestro_edge.latency.table import LatencyTable, cached_table_path
from maestro_edge.lod.checkpoint import LoDCheckpoint
from tests.test_user_models import EXAMPLE, check_exports, cli

pytestmark = pytest.mark.slow


def test_user_cnn_project(tmp_path):
    model = tmp_path / "mynet.lod"
    trained = subprocess.run([sys.executable, "finetune.py", "--out", str(model), "--dense-epochs", "2",
                              "--lod-epochs", "1", "--width", "32"], cwd=EXAMPLE, capture_output=True, text=True,
                             timeout=900)
    assert trained.returncode == 0, trained.stderr
    assert "skipped depthwise" in trained.stdout   # grouped convs stay dense, and are reported
    ckpt = LoDCheckpoint.load(model)

    profiled = cli("profile", "--device", "host", "--model", str(model), "--allow-busy", "--quiet")
    assert profiled.returncode == 0, profiled.stderr
    table = LatencyTable.load(cached_table_path(find_profile("host"), ckpt.latency_digest()))
    fastest = table.overhead_ms + sum(min(l.dense_ms, *l.rank_ms.values()) for l in table.layers.values())
    budget = round(fastest + 0.8 * (table.full_model_ms - fastest), 4)   # binding: the full model does not fit

    host = cli("fit", "--model", str(model), "--device", "host", "--ms", str(budget), "--eval", "mynet:score",
               "--calibrate", "mynet:calibration", "--out", str(tmp_path / "host"), "--quiet", cwd=EXAMPLE)
    assert host.returncode == 0, host.stderr
    sys.path.insert(0, str(EXAMPLE))
    try:
        import mynet
    finally:
        sys.path.remove(str(EXAMPLE))
    record = check_exports(tmp_path / "host", ckpt, calibration=mynet.calibration())
    # seen once in a full-suite run on the shared host (2026-12-06), not reproduced: say what was off
    assert record["budget_binding"] and record["measured_ms"] <= budget, (
        {k: record.get(k) for k in ("budget_binding", "measured_ms", "predicted_ms", "anchor", "tries")}, budget)
    assert any(rank != "dense" for rank in record["ranks"].values())
    assert record["metric"]["source"] == "measured" and 0.3 < record["accuracy"] <= 1

    phone = cli("fit", "--model", str(model), "--device", "pixel7", "--ms", "1", "--out", str(tmp_path / "pixel7"),
                "--quiet")
    assert phone.returncode == 0, phone.stderr
    record = check_exports(tmp_path / "pixel7", ckpt)
    assert record["latency_source"] == "estimated" and record["metric"]["source"] == "estimated"
    assert json.loads((tmp_path / "pixel7" / "fit.json").read_text())["measured_ms"] is None
