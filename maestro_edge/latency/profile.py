"""Build a LatencyTable: measured on a target (this host, or a remote one) or estimated from a profile.

Measured tables are built layer by layer by one implementation, :func:`measure_table`, whatever the
target: a :class:`Timer` says how a batch of probe modules is timed there (in this process for the
host, through a transport and the agent for a remote target, see latency/remote.py). Each finished
layer is appended to a journal beside the table (latency/journal.py), so an interrupted profile
(Ctrl-C, kill -9, a dropped connection) resumes where it stopped and loses nothing; the table itself
is written atomically at the end and the journal deleted.
"""

from __future__ import annotations

import platform
import time
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.errors import ProfileError
from maestro_edge.latency.calibration import CALL, PLANS, calibrate, trusted_overhead
from maestro_edge.latency.journal import append_journal, canonical, journal_path, read_journal
from maestro_edge.latency.load import LoadCheck, LoadMonitor
from maestro_edge.latency.measure import Protocol, Timing, inputs_for, kind_of, time_programs
from maestro_edge.latency.probes import (DENSE, call_probe, layer_input_shapes, layer_options, probe_module,
                                         probe_name)
from maestro_edge.latency.table import LatencyTable, LayerLatency, cached_table_path, check_table_folder
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.layers import lod_layers
from maestro_edge.outputs import hold_lock, shown
from maestro_edge.progress import Eta

Progress = Callable[[str, int, int], None]   # (what, done, total); `what` carries the ETA once known
Modules = dict[str, tuple[nn.Module, tuple]]   # probe name -> (module, input shape or real inputs)

EARLY_LOAD_CHECK_S = 10.0   # a busy machine is refused after a layer once this much of the run has passed
REMEASURE_PASSES = 1   # layers found off when re-timed are measured once more, then kept (and recorded)


class Timer(ABC):
    """Times batches of probe modules on one target, in the target's runtime format."""

    runtime: str          # the profile's runtime ("executorch-xnnpack" | "onnxruntime")

    @abstractmethod
    def fingerprint(self) -> dict:
        """What machine and runtime produce the numbers (also keys the journal: no mixing of devices)."""

    @abstractmethod
    def time(self, modules: Modules, protocol: Protocol, kind: str | dict[str, str]) -> dict[str, Timing]:
        """Export, run and time every module in one interleaved batch. ``kind``: "layer" or "model", for all
        modules or per name (see latency/measure.py:kind_of)."""

    def provenance(self) -> dict:
        """Extra provenance for the table (transport, interpreter, exporter...)."""
        return {}

    def load_monitor(self, threads: int) -> LoadMonitor | None:
        """What watches the target's load while it is profiled; None where it cannot be seen from here."""
        return None

    def time_model(self, module: nn.Module, program: bytes, inputs: tuple, protocol: Protocol) -> Timing:
        """An exported model on the target; ``program`` is its .pte, which a timer in another format exports again
        from ``module``."""
        return self.time({"model": (module, inputs)}, protocol, "model")["model"]

    @property
    def started(self) -> bool:
        """Whether the target answered (before that, a failure leaves nothing to resume)."""
        return True

    def cleanup(self) -> None:
        """Remove what this timer left on the target; best effort."""


# ------------------------------------------------------------------------------------------ host


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


class HostTimer(Timer):
    """This process, ExecuTorch runtime, XNNPACK-lowered .pte programs."""

    runtime = "executorch-xnnpack"

    def fingerprint(self) -> dict:
        return fingerprint()

    def time(self, modules: Modules, protocol: Protocol, kind: str | dict[str, str]) -> dict[str, Timing]:
        from maestro_edge.export.pte import lower_to_pte

        programs = {name: (lower_to_pte(module, inputs_for(spec), full_delegation=kind_of(kind, name) == "layer"), spec)
                    for name, (module, spec) in modules.items()}
        return time_programs(programs, protocol)

    def provenance(self) -> dict:
        return {"runtime_version": fingerprint()["executorch"], "probe_format": "pte (XNNPACK)"}

    def load_monitor(self, threads: int) -> LoadMonitor | None:
        return LoadMonitor(threads)

    def time_model(self, module: nn.Module, program: bytes, inputs: tuple, protocol: Protocol) -> Timing:
        return time_programs({"model": (program, inputs)}, protocol)["model"]   # the very program, not a re-export


def measure_host_table(ckpt: LoDCheckpoint, profile: DeviceProfile, protocol: Protocol | None = None,
                       table_path: Path | None = None, progress: Progress | None = None,
                       allow_busy: bool = False) -> LatencyTable:
    """Time every layer option and a few whole models on this machine; save and return the table."""
    return measure_table(ckpt, profile, HostTimer(), protocol, table_path, progress, allow_busy)


# ------------------------------------------------------------------------------- one implementation


def measure_table(ckpt: LoDCheckpoint, profile: DeviceProfile, timer: Timer, protocol: Protocol | None = None,
                  table_path: Path | None = None, progress: Progress | None = None,
                  allow_busy: bool = False) -> LatencyTable:
    """Measure every layer option on ``timer``'s target (resumable), calibrate, save atomically, return.

    Per layer: every option of ``layer_options(layer)`` plus a trivial call probe, timed in one
    interleaved batch; the call probe's p50 is subtracted from each option (a whole model pays the
    per-call cost once; it goes to the overhead term). Finished layers go to the journal
    ``<table>.partial.jsonl``; a rerun with the same model, runtime, threads, protocol and device
    fingerprint skips them (records made under another setup, and a line cut short by a kill, are
    ignored). Then three whole models are timed beside their layers (latency/calibration.py): that
    gives ``overhead_ms`` and finds layers whose timing no longer holds, which are measured once more.
    Where the timer can see the machine's load (the host), a profile taken while other processes ran
    is refused (ProfileError; the journal stays, and the next run's re-check measures again whatever it
    finds off), or with ``allow_busy`` kept, flagged in the table's provenance (``load``) and reported.
    A second process measuring the same table is refused at once (UsageError), before any timing.
    """
    protocol = protocol or Protocol(threads=profile.threads)
    table_path = Path(table_path or cached_table_path(profile, ckpt.latency_digest()))
    check_table_folder(table_path.parent)
    with table_lock(profile, table_path):
        return _measure_table(ckpt, profile, timer, protocol, table_path, progress, allow_busy)


def table_lock(profile: DeviceProfile, table_path: Path):
    """Hold ``table_path`` for this process (re-entrant): one profile per table at a time, since two would time
    each other's load; the second learns it at once, with a one-line UsageError."""
    Path(table_path).parent.mkdir(parents=True, exist_ok=True)
    busy = (f"another maestro-edge process is measuring {profile.name} for this model into {shown(table_path)}; "
            "wait for it to finish, then run again (its table is reused)")
    return hold_lock(Path(table_path), busy)


def _measure_table(ckpt: LoDCheckpoint, profile: DeviceProfile, timer: Timer, protocol: Protocol, table_path: Path,
                   progress: Progress | None, allow_busy: bool) -> LatencyTable:
    """measure_table, with the table's lock held."""
    digest = ckpt.latency_digest()
    journal = journal_path(table_path)
    device = timer.fingerprint()
    setup = canonical({"model_digest": digest, "runtime": profile.runtime, "threads": protocol.threads,
                        "protocol": protocol.to_dict(), "fingerprint": device})
    layers = lod_layers(ckpt.model)
    # a record missing one of a layer's options is not complete: that layer is measured again
    done = read_journal(journal, setup, {name: [str(c) for c in layer_options(layer)] for name, layer in layers.items()})
    shapes = layer_input_shapes(ckpt.model, ckpt.examples)
    total = len(layers) + 1
    monitor = timer.load_monitor(protocol.threads)
    eta = Eta(total - sum(name in done for name in layers))

    def measure(names: list[str], why: str = "") -> None:
        for index, name in enumerate(layers):
            if name not in names:
                continue
            if name in done:
                if progress:
                    progress(f"layer {name}: measured before (journal)", index, total)
                continue
            layer = layers[name]
            modules = {probe_name(name, c): (probe_module(layer, c), shapes[name]) for c in layer_options(layer)}
            modules[CALL] = call_probe()
            if progress:
                progress(f"layer {name}: {len(modules)} probes{why}{eta.text()}", index, total)
            started = time.monotonic()
            entry = layer_entry(name, layer, timer.time(modules, protocol, "layer"))
            append_journal(journal, setup, name, entry)
            done[name] = entry
            eta.finished(time.monotonic() - started)
            refuse_if_busy(monitor, allow_busy, EARLY_LOAD_CHECK_S)

    measure(list(layers))
    history = []
    for attempt in range(REMEASURE_PASSES + 1):
        if progress:
            progress(f"whole models ({', '.join(PLANS)} plans) beside their layers{eta.text()}", len(layers), total)
        table = LatencyTable(device=profile.name, model_digest=digest, source="measured", runtime=profile.runtime,
                             threads=protocol.threads, overhead_ms=0.0,
                             layers={name: layer_latency(done[name]) for name in layers})
        calibration = calibrate(ckpt, table, timer, protocol, shapes)
        history.append({"drift": round(calibration.drift, 4), "drifted_layers": calibration.drifted})
        if not calibration.drifted or attempt == REMEASURE_PASSES:
            break
        for name in calibration.drifted:
            done.pop(name)
        eta.left += len(calibration.drifted)
        measure(calibration.drifted, f" again (re-timed {calibration.drift - 1:+.0%} off overall)")
    table.overhead_ms = trusted_overhead(calibration.overhead_ms, calibration.plans)
    table.full_model_ms = calibration.full_model_ms
    load = refuse_if_busy(monitor, allow_busy)
    table.provenance = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "fingerprint": device, "runtime": profile.runtime, **timer.provenance(),
                        "threads": protocol.threads, "protocol": protocol.to_dict(),
                        "statistic": "median of round medians", "call_overhead": "subtracted per layer",
                        "calibration": calibration.plans, "overhead_raw_ms": calibration.overhead_ms,
                        "layer_recheck": history, "load": load.to_dict() if load else "not observable on this target"}
    table.save(table_path)
    journal.unlink(missing_ok=True)
    if progress:
        if load and load.busy:
            progress(f"warning: {load.warning()}", total, total)
        progress("done", total, total)
    return table


def refuse_if_busy(monitor: LoadMonitor | None, allow_busy: bool, after_s: float = 0.0) -> LoadCheck | None:
    """The load so far; a ProfileError if other processes kept the cores busy (once ``after_s`` have passed:
    a short window says more about one spike than about the run)."""
    load = monitor.check() if monitor else None
    if load and load.busy and not allow_busy and load.seconds >= after_s:
        raise ProfileError(f"{load.warning()} (or pass --allow-busy to keep such a table, flagged)")
    return load


def layer_entry(name: str, layer, timings: dict[str, Timing]) -> dict:
    """Journal entry for one layer: option -> timing dict, less the call cost; plus the call itself."""
    call_ms = timings[CALL].p50_ms
    entry = {str(c): _minus(timings[probe_name(name, c)].to_dict(), call_ms) for c in layer_options(layer)}
    entry[CALL] = timings[CALL].to_dict()
    return entry


def layer_latency(entry: dict) -> LayerLatency:
    return LayerLatency(dense_ms=entry[DENSE]["p50_ms"],
                        rank_ms={int(c): t["p50_ms"] for c, t in entry.items() if c not in (DENSE, CALL)},
                        spread={c: t["p90_ms"] - t["p50_ms"] for c, t in entry.items()})


def _minus(timing: dict, call_ms: float) -> dict:
    """Layer time without the per-call cost, never below zero (noise can make tiny layers dip)."""
    return {**timing, **{k: max(0.0, timing[k] - call_ms) for k in ("p50_ms", "p90_ms", "min_ms")}}


# ------------------------------------------------------------------------------------- estimated


def estimated_table(ckpt: LoDCheckpoint, profile: DeviceProfile) -> LatencyTable:
    """Per-layer latencies predicted from the profile's compute figures (no device needed)."""
    from maestro_edge.latency.estimated import estimate_layer_ms
    from maestro_edge.latency.program_ops import estimate_other_ops_ms

    shapes = layer_input_shapes(ckpt.model, ckpt.examples)
    layers = {}
    for name, layer in lod_layers(ckpt.model).items():
        options = layer_options(layer)
        layers[name] = LayerLatency(
            dense_ms=estimate_layer_ms(profile, layer, shapes[name], DENSE),
            rank_ms={c: estimate_layer_ms(profile, layer, shapes[name], c) for c in options if c != DENSE})
    # Every other op of the exported program (attention matmuls, softmax, norms, adds, pooling, resize...)
    # is estimated too and goes to the overhead term: the solver cannot change it, but the budget pays it.
    other = estimate_other_ops_ms(ckpt.model, ckpt.examples, profile, set(layers))
    return LatencyTable(device=profile.name, model_digest=ckpt.latency_digest(), source="estimated", runtime=profile.runtime,
                        threads=profile.threads,
                        overhead_ms=float(profile.estimate.get("model_overhead_ms", 0.0)) + other.total_ms,
                        layers=layers, provenance={"estimated_from": profile.path, "profile": profile.provenance,
                                                   "other_ops_ms": other.by_target,
                                                   "other_ops_unclassified": other.unclassified})
