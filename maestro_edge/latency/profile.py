"""Build a LatencyTable: measured on the host (ExecuTorch, in process) or estimated from a profile.

Measured tables are built layer by layer; each finished layer is appended to a journal beside the
table, so an interrupted profile (Ctrl-C, kill -9) resumes where it stopped and loses nothing.
"""

from __future__ import annotations

import json
import platform
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from maestro_edge._quiet import quiet
from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.export.pte import lower_to_pte
from maestro_edge.export.truncate import deployable
from maestro_edge.latency.measure import Protocol, time_programs
from maestro_edge.latency.probes import DENSE, layer_input_shapes, layer_options, probe_module, probe_name
from maestro_edge.latency.table import LatencyTable, LayerLatency, cached_table_path
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.layers import lod_layers

Progress = Callable[[str, int, int], None]   # (what, done, total)


def fingerprint() -> dict:
    with quiet():
        import executorch.version

    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"machine": platform.machine(), "cpu": cpu or platform.processor(), "system": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "executorch": executorch.version.__version__}


def measure_host_table(ckpt: LoDCheckpoint, profile: DeviceProfile, protocol: Protocol | None = None,
                       table_path: Path | None = None, progress: Progress | None = None) -> LatencyTable:
    """Time every layer option and a few whole models on this machine; save and return the table."""
    protocol = protocol or Protocol(threads=profile.threads)
    digest = ckpt.digest()
    table_path = table_path or cached_table_path(profile.name, digest)
    journal = table_path.with_suffix(".partial.jsonl")
    done = _read_journal(journal, digest)
    layers = lod_layers(ckpt.model)
    shapes = layer_input_shapes(ckpt.model, ckpt.input_shape)
    total = len(layers) + 1
    for index, (name, layer) in enumerate(layers.items()):
        if progress:
            progress(f"layer {name}", index, total)
        if name in done:
            continue
        shape = shapes[name]
        programs = {probe_name(name, c): (lower_to_pte(probe_module(layer, c), (torch.zeros(shape),)), shape)
                    for c in layer_options(layer)}
        programs[CALL] = _call_probe()
        timings = time_programs(programs, protocol)
        # Every probe pays the runtime's per-call cost, which a whole model pays once: subtract the
        # cost of an empty-ish call timed in the same rounds, and leave it to the overhead term.
        call_ms = timings[CALL].p50_ms
        entry = {str(c): _minus(timings[probe_name(name, c)].to_dict(), call_ms) for c in layer_options(layer)}
        entry[CALL] = timings[CALL].to_dict()
        _append_journal(journal, digest, name, entry)
        done[name] = entry
    if progress:
        progress("whole models", len(layers), total)
    table_layers = {
        name: LayerLatency(dense_ms=entry[DENSE]["p50_ms"],
                           rank_ms={int(c): t["p50_ms"] for c, t in entry.items() if c not in (DENSE, CALL)},
                           spread={c: t["p90_ms"] - t["p50_ms"] for c, t in entry.items()})
        for name, entry in done.items()
    }
    table = LatencyTable(device=profile.name, model_digest=digest, source="measured", runtime=profile.runtime,
                         threads=protocol.threads, overhead_ms=0.0, layers=table_layers)
    table.overhead_ms, table.full_model_ms, calibration = _calibrate_overhead(ckpt, table, protocol)
    table.provenance = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "fingerprint": fingerprint(), "protocol": protocol.to_dict(),
                        "statistic": "median of round medians", "calibration": calibration}
    table.save(table_path)
    journal.unlink(missing_ok=True)
    if progress:
        progress("done", total, total)
    return table


CALL = "call"


def _call_probe() -> tuple[bytes, tuple[int, ...]]:
    """A one-weight Linear: what a runtime call costs with (almost) no work in it."""
    return lower_to_pte(torch.nn.Linear(1, 1), (torch.zeros(1, 1),)), (1, 1)


def _minus(timing: dict, call_ms: float) -> dict:
    """Layer time without the per-call cost, never below zero (noise can make tiny layers dip)."""
    return {**timing, **{k: max(0.0, timing[k] - call_ms) for k in ("p50_ms", "p90_ms", "min_ms")}}


def _calibrate_overhead(ckpt, table, protocol) -> tuple[float, float, list]:
    """Whole-model time minus the sum of its layers, at three plans: the non-additive part."""
    layers = lod_layers(ckpt.model)
    plans = {
        "dense": {n: DENSE for n in layers},
        "fastest": {n: min(layer_options(l), key=lambda c: table.layers[n].option_ms(c)) for n, l in layers.items()},
        "half": {n: layer_options(l)[len(layer_options(l)) // 2 - 1] for n, l in layers.items()},
    }
    x = (torch.zeros(ckpt.input_shape),)
    programs = {name: (lower_to_pte(deployable(ckpt.model, plan), x), ckpt.input_shape) for name, plan in plans.items()}
    timings = time_programs(programs, protocol)
    calibration = [{"plan": name, "measured_ms": timings[name].p50_ms,
                    "sum_of_layers_ms": sum(table.layers[n].option_ms(c) for n, c in plan.items())}
                   for name, plan in plans.items()]
    overhead = statistics.median(c["measured_ms"] - c["sum_of_layers_ms"] for c in calibration)
    return overhead, timings["dense"].p50_ms, calibration


def _read_journal(journal: Path, digest: str) -> dict:
    done = {}
    if journal.is_file():
        for line in journal.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue   # a line cut short by a kill: that layer is measured again
            if record.get("model_digest") == digest:
                done[record["layer"]] = record["timings"]
    return done


def _append_journal(journal: Path, digest: str, layer: str, timings: dict) -> None:
    journal.parent.mkdir(parents=True, exist_ok=True)
    with open(journal, "a") as f:
        f.write(json.dumps({"model_digest": digest, "layer": layer, "timings": timings}) + "\n")
        f.flush()


def estimated_table(ckpt: LoDCheckpoint, profile: DeviceProfile) -> LatencyTable:
    """Per-layer latencies predicted from the profile's compute figures (no device needed)."""
    from maestro_edge.latency.estimated import estimate_layer_ms

    shapes = layer_input_shapes(ckpt.model, ckpt.input_shape)
    layers = {}
    for name, layer in lod_layers(ckpt.model).items():
        options = layer_options(layer)
        layers[name] = LayerLatency(
            dense_ms=estimate_layer_ms(profile, layer, shapes[name], DENSE),
            rank_ms={c: estimate_layer_ms(profile, layer, shapes[name], c) for c in options if c != DENSE})
    return LatencyTable(device=profile.name, model_digest=ckpt.digest(), source="estimated", runtime=profile.runtime,
                        threads=profile.threads, overhead_ms=float(profile.estimate.get("model_overhead_ms", 0.0)),
                        layers=layers, provenance={"estimated_from": profile.path, "profile": profile.provenance})
