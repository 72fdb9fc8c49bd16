"""Fixtures for the report tests: a synthetic but realistic sweep of fit.json folders, and headless Chromium.

The chromium fixture skips when Chromium is not installed, except under CI (env var CI set), where a
silent skip would hide that the page was never rendered: there it fails instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

LAYERS = ("features.0.0", "features.1.0", "features.3.0", "features.4.0", "classifier.1", "classifier.3")
MAX_RANKS = {"features.0.0": 27, "features.1.0": 288, "features.3.0": 576, "features.4.0": 576,
             "classifier.1": 256, "classifier.3": 10}
DENSE_ACCURACY = 0.9777158774373259


def fit_record(device: str, budget_ms: float, *, runtime: str, threads: int, latency_source: str,
               predicted_ms: float, measured_ms: float | None, accuracy: float, ranks: dict,
               tries: list | None = None, baselines: list | None = None, max_ranks: dict | None = None) -> dict:
    """A fit.json as maestro_edge.fit writes it (schema_version 1), artifacts filled in by write_fit."""
    record = {
        "schema_version": 1, "device": device, "budget_ms": budget_ms, "predicted_ms": predicted_ms,
        "latency_source": latency_source, "measured_ms": measured_ms, "ranks": ranks, "accuracy": accuracy,
        "dense_accuracy": DENSE_ACCURACY, "estimated_accuracy_drop": 0.034, "test_loss": 0.046,
        "runtime": runtime, "threads": threads,
        "tries": tries or [{"solver_budget_ms": budget_ms, "predicted_ms": predicted_ms,
                            "measured_ms": measured_ms, "ranks": ranks}],
        "verification": {"pte_max_abs_error": 9.5e-06, "onnx_max_abs_error": 8.6e-06, "samples": 16},
        "model": {"digest": "f1063682d2562bef", "arch": "small_cnn", "data": "digits", "test_samples": 359},
        "artifacts": [], "wall_time_s": 71.5,
    }
    if baselines is not None:
        record["baselines"] = baselines
    if max_ranks is not None:
        record["max_ranks"] = max_ranks
    return record


def write_fit(root: Path, record: dict) -> Path:
    """Write ``record`` the way fit does: out/<device>-<ms>ms/{model.pte, model.onnx, fit.json}."""
    folder = root / f"{record['device']}-{record['budget_ms']:g}ms"
    folder.mkdir(parents=True)
    for name in ("model.pte", "model.onnx"):
        blob = hashlib.sha256(f"{folder.name}/{name}".encode()).digest() * 64
        (folder / name).write_bytes(blob)
        record["artifacts"].append({"path": name, "format": name.split(".")[1],
                                    "sha256": hashlib.sha256(blob).hexdigest(),
                                    "size_bytes": 2_780_968 if name.endswith("pte") else 2_804_266})
    (folder / "fit.json").write_text(json.dumps(record, indent=2) + "\n")
    return folder / "fit.json"


def _ranks(r3, r4, c1, f1="dense"):
    return {"features.0.0": "dense", "features.1.0": f1, "features.3.0": r3, "features.4.0": r4,
            "classifier.1": c1, "classifier.3": "dense"}


HOST_BASELINES = [
    {"name": "dense", "fraction": 1.0, "predicted_ms": 0.262, "measured_ms": 0.268, "accuracy": DENSE_ACCURACY},
    {"name": "uniform-rank", "fraction": 0.25, "predicted_ms": 0.118, "measured_ms": 0.121, "accuracy": 0.9415},
    {"name": "uniform-rank", "fraction": 0.5, "predicted_ms": 0.171, "measured_ms": 0.176, "accuracy": 0.9666},
]


def sweep_records() -> list[dict]:
    """Two devices, five budgets: host measured (with baselines, max_ranks, one retried fit); rpi4 estimated only."""
    host = dict(runtime="executorch-xnnpack", threads=1, latency_source="measured")
    rpi4 = dict(runtime="onnxruntime", threads=4, latency_source="estimated")
    return [
        fit_record("host", 0.1, predicted_ms=0.0968, measured_ms=0.0991, accuracy=0.9387, ranks=_ranks(48, 32, 24, 96),
                   baselines=HOST_BASELINES, max_ranks=MAX_RANKS, **host,
                   tries=[{"solver_budget_ms": 0.1, "predicted_ms": 0.0996, "measured_ms": 0.1063, "ranks": {}},
                          {"solver_budget_ms": 0.0917, "predicted_ms": 0.0968, "measured_ms": 0.0991, "ranks": {}}]),
        fit_record("host", 0.15, predicted_ms=0.1499435, measured_ms=0.149232, accuracy=0.9805013927576601,
                   ranks=_ranks(184, 120, 96), baselines=HOST_BASELINES, max_ranks=MAX_RANKS, **host),
        fit_record("host", 0.3, predicted_ms=0.2581, measured_ms=0.2650, accuracy=0.9777,
                   ranks=_ranks(576, 480, 256), baselines=HOST_BASELINES, max_ranks=MAX_RANKS, **host),
        fit_record("rpi4", 1.5, predicted_ms=1.4712, measured_ms=None, accuracy=0.9638, ranks=_ranks(96, 64, 48), **rpi4),
        fit_record("rpi4", 3.0, predicted_ms=2.9204, measured_ms=None, accuracy=0.9791,
                   ranks=_ranks(320, 224, 160), **rpi4),
    ]


@pytest.fixture
def sweep(tmp_path) -> Path:
    """out/ with host-0.1ms, host-0.15ms, host-0.3ms (measured) and rpi4-1.5ms, rpi4-3ms (estimated only)."""
    root = tmp_path / "out"
    for record in sweep_records():
        write_fit(root, record)
    return root


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        message = "Chromium is not installed; apt-get install chromium fonts-dejavu-core (or set CHROMIUM=/path)"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must not skip the browser rendering test)")
        pytest.skip(message)
    return path
