"""``fit``: the most accurate truncation of a LoD model that meets a latency budget on one device.

latency table (measured or estimated) + importance table -> solve_ranks -> truncate -> BN recalibration
-> held-out accuracy -> .pte and .onnx, each run and compared with eager -> measured end to end when
the device is reachable; if the measurement misses the budget, the solver's budget is tightened and
the plan solved again (a bounded number of tries). Everything lands in the output folder at once, at
the end, or not at all.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from maestro_edge.data import load_dataset
from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.errors import InfeasibleBudget, TableError, UsageError
from maestro_edge.export.onnx_export import export_onnx_bytes
from maestro_edge.export.pte import lower_to_pte
from maestro_edge.export.truncate import deployable
from maestro_edge.export.verify import compare_onnx, compare_pte
from maestro_edge.latency.measure import Protocol, time_programs
from maestro_edge.latency.probes import DENSE, layer_options
from maestro_edge.latency.profile import estimated_table, measure_host_table
from maestro_edge.latency.table import LatencyTable, cached_table_path, readable_mode, write_json_atomic
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.importance import penalty
from maestro_edge.lod.layers import lod_layers
from maestro_edge.solve.knapsack import solve_ranks
from maestro_edge.solve.plan import LayerOptions, Option
from maestro_edge.train.evaluate import evaluate, recalibrate_bn_

SCHEMA_VERSION = 1
MAX_TRIES = 4
VERIFY_SAMPLES = 16
Progress = Callable[[str], None]


def latency_table_for(ckpt: LoDCheckpoint, profile: DeviceProfile, progress: Progress | None = None) -> LatencyTable:
    """The measured table cached for this device and model, else measure it (host), else estimate."""
    path = cached_table_path(profile.name, ckpt.digest())
    if path.is_file():
        table = LatencyTable.load(path)
        if table.model_digest != ckpt.digest():
            raise TableError(f"latency table {path} was made for another model; delete it and profile again")
        return table
    if profile.is_host:
        return measure_host_table(ckpt, profile, progress=(lambda what, i, n: progress(f"profiling {what} ({i}/{n})"))
                                  if progress else None)
    return estimated_table(ckpt, profile)


def solver_layers(ckpt: LoDCheckpoint, table: LatencyTable) -> list[LayerOptions]:
    """Per layer: every rank that has both a latency and an importance entry, plus dense."""
    importance = ckpt.importance.get("layers", {})
    layers = []
    for name, layer in lod_layers(ckpt.model).items():
        entry = importance.get(name)
        if entry is None:
            raise UsageError(f"the checkpoint has no importance entry for layer {name}; retrain it with 'maestro-edge train'")
        penalties = {rank: penalty(entry, i) for i, rank in enumerate(entry["ranks"])}
        options = [Option(DENSE, table.layers[name].dense_ms, 0.0)]
        options += [Option(rank, table.layers[name].option_ms(rank), penalties[rank])
                    for rank in layer_options(layer) if rank != DENSE and rank in penalties]
        layers.append(LayerOptions(name, tuple(options)))
    return layers


def fit(ckpt: LoDCheckpoint, profile: DeviceProfile, budget_ms: float, out_dir: Path,
        progress: Progress | None = None) -> dict:
    """Solve, export, verify and (where reachable) measure; write ``out_dir``; return the fit record."""
    say = progress or (lambda message: None)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output path {out_dir} is a file; pass --out with a folder path")
    table = latency_table_for(ckpt, profile, say)
    layers = solver_layers(ckpt, table)
    data = load_dataset(ckpt.data["name"], ckpt.data.get("seed", 0))
    dense_accuracy, _ = evaluate(ckpt.model, data.test_x, data.test_y)
    example = (torch.zeros(ckpt.input_shape),)

    tries, solver_budget = [], budget_ms
    for attempt in range(MAX_TRIES):
        say(f"solving for {solver_budget:.3f} ms")
        try:
            plan = solve_ranks(layers, solver_budget, overhead_ms=table.overhead_ms)
        except InfeasibleBudget as e:
            raise InfeasibleBudget(f"budget {budget_ms:g} ms is below the fastest possible model on {profile.name}: "
                                   f"{e.min_ms:.4g} ms ({table.source}, {profile.runtime}, {table.threads} thread(s)); "
                                   f"raise --ms to at least {e.min_ms:.4g}", min_ms=e.min_ms) from None
        small = deployable(ckpt.model, dict(plan.choices))
        recalibrate_bn_(small, data.val_x)   # the truncated model's own BatchNorm statistics
        say("exporting .pte (ExecuTorch, XNNPACK)")
        pte = lower_to_pte(small, example)
        measured = None
        if profile.is_host:
            say("measuring the exported model on this host")
            measured = time_programs({"model": (pte, ckpt.input_shape)}, Protocol(threads=profile.threads))["model"].p50_ms
        tries.append({"solver_budget_ms": solver_budget, "predicted_ms": plan.predicted_ms, "measured_ms": measured,
                      "ranks": dict(plan.choices)})
        if measured is None or measured <= budget_ms:
            break
        # Missed: tighten the solver's budget by the observed prediction error (plus 2%) and try again.
        solver_budget = min(solver_budget - 1e-6, solver_budget * budget_ms / measured * 0.98)
        if solver_budget <= table.overhead_ms + sum(min(o.latency_ms for o in l.options) for l in layers):
            raise InfeasibleBudget(f"the fastest model measured {measured:.3f} ms on {profile.name}, above the "
                                   f"{budget_ms:g} ms budget; raise --ms above {measured:.3f}", min_ms=measured)
    else:
        raise InfeasibleBudget(f"after {MAX_TRIES} tries the exported model still measured {measured:.3f} ms on "
                               f"{profile.name}, above the {budget_ms:g} ms budget; raise --ms", min_ms=measured)

    say("measuring held-out accuracy")
    accuracy, loss = evaluate(small, data.test_x, data.test_y)
    say("exporting .onnx and checking both exports against PyTorch")
    onnx_bytes = export_onnx_bytes(small, example)
    samples = data.test_x[:VERIFY_SAMPLES]
    pte_error, onnx_error = compare_pte(pte, small, samples), compare_onnx(onnx_bytes, small, samples)

    record = {
        "schema_version": SCHEMA_VERSION,
        "device": profile.name,
        "budget_ms": budget_ms,
        "predicted_ms": plan.predicted_ms,
        "latency_source": table.source,
        "measured_ms": tries[-1]["measured_ms"],
        "ranks": dict(plan.choices),
        "accuracy": accuracy,
        "dense_accuracy": dense_accuracy,
        "estimated_accuracy_drop": plan.penalty,
        "test_loss": loss,
        "runtime": profile.runtime,
        "threads": table.threads,
        "tries": tries,
        "verification": {"pte_max_abs_error": pte_error, "onnx_max_abs_error": onnx_error,
                         "samples": len(samples)},
        "model": {"digest": ckpt.digest(), "arch": ckpt.arch["name"], "data": ckpt.data["name"],
                  "test_samples": len(data.test_x)},
        "artifacts": [],
        "wall_time_s": None,
    }
    _write_outputs(out_dir, {"model.pte": pte, "model.onnx": onnx_bytes}, record, started)
    return record


def _write_outputs(out_dir: Path, files: dict[str, bytes], record: dict, started: float) -> None:
    """Write every file into a temporary sibling folder, then swap it in: all or nothing."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
    try:
        staging.chmod(readable_mode() | 0o111)   # mkdtemp makes rwx------; a plain mkdir would not
        for name, blob in files.items():
            (staging / name).write_bytes(blob)
            record["artifacts"].append({"path": name, "format": Path(name).suffix[1:],
                                        "sha256": hashlib.sha256(blob).hexdigest(), "size_bytes": len(blob)})
        record["wall_time_s"] = round(time.perf_counter() - started, 2)
        write_json_atomic(staging / "fit.json", record)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
