"""The whole-model half of a measured profile: overhead calibration and the check that the layers still hold.

After every layer is timed, three whole models (dense / fastest / half plans) are timed *side by side
with the layer probes they are made of*, in one interleaved batch. So:

- the overhead (whole model minus the sum of its layers, the part of a model that is not additive) is
  taken from timings made in the same minute, not from layer timings made minutes earlier under
  another load (a user CNN's overhead once came out 0.65 ms where re-timing gave 0.54);
- every layer is timed a second time, so a layer whose first timing no longer holds (the machine got
  busier or quieter meanwhile) is found and measured again instead of silently kept.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from maestro_edge.export.truncate import deployable
from maestro_edge.latency.measure import Protocol
from maestro_edge.latency.probes import DENSE, call_probe, layer_options, probe_module, probe_name
from maestro_edge.latency.table import LatencyTable
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.layers import lod_layers

CALL = "call"
PLANS = ("dense", "fastest", "half")
MODEL = "model:"                 # whole models' names in a calibration batch; layer probes keep theirs
WHOLE_DRIFT = math.log(1.07)     # all layers together re-timed > 7% off: the whole table no longer holds
LAYER_DRIFT = math.log(1.20)     # one layer > 20% off ...
LAYER_DRIFT_FLOOR_MS = 0.01      # ... and by more than timer noise on a tiny layer


def calibration_plans(ckpt: LoDCheckpoint, table: LatencyTable) -> dict[str, dict]:
    layers = lod_layers(ckpt.model)
    return {
        "dense": {n: DENSE for n in layers},
        "fastest": {n: min(layer_options(l), key=lambda c: table.layers[n].option_ms(c)) for n, l in layers.items()},
        "half": {n: layer_options(l)[len(layer_options(l)) // 2 - 1] for n, l in layers.items()},
    }


@dataclass
class Calibration:
    overhead_ms: float           # median over the plans of (whole model - its re-timed layers)
    full_model_ms: float         # the dense plan, measured
    plans: list[dict]            # per plan: measured, sum of re-timed layers, sum of the table's layers
    retimed: dict[str, dict]     # layer -> option -> ms re-timed beside the whole models (call cost removed)
    drift: float                 # sum over all re-timed options / the table's sum for them (1.0: unchanged)
    drifted: list[str]           # layers whose table entry no longer holds


def calibrate(ckpt: LoDCheckpoint, table: LatencyTable, timer, protocol: Protocol, shapes: dict) -> Calibration:
    """Time the three plans' whole models beside their layer probes; overhead and drift from one batch."""
    plans = calibration_plans(ckpt, table)
    layers = lod_layers(ckpt.model)
    modules, kinds = {}, {}
    for plan, choices in plans.items():
        modules[MODEL + plan], kinds[MODEL + plan] = (deployable(ckpt.model, choices), ckpt.examples), "model"
        for name, choice in choices.items():
            modules[probe_name(name, choice)] = (probe_module(layers[name], choice), shapes[name])
            kinds[probe_name(name, choice)] = "layer"
    modules[CALL], kinds[CALL] = call_probe(), "layer"
    timings = timer.time(modules, protocol, kinds)
    call_ms = timings[CALL].p50_ms
    retimed: dict[str, dict] = {}
    for plan, choices in plans.items():
        for name, choice in choices.items():
            retimed.setdefault(name, {})[choice] = max(0.0, timings[probe_name(name, choice)].p50_ms - call_ms)
    rows = [{"plan": plan, "measured_ms": timings[MODEL + plan].p50_ms,
             "sum_of_layers_ms": sum(retimed[n][c] for n, c in choices.items()),
             "table_sum_of_layers_ms": sum(table.layers[n].option_ms(c) for n, c in choices.items())}
            for plan, choices in plans.items()]
    overhead = statistics.median(r["measured_ms"] - r["sum_of_layers_ms"] for r in rows)
    return Calibration(overhead, timings[MODEL + "dense"].p50_ms, rows, retimed, *drift(table, retimed))


def drift(table: LatencyTable, retimed: dict[str, dict]) -> tuple[float, list[str]]:
    """How far the re-timed layers are from the table: overall ratio, and the layers to measure again.

    Where the whole set moved (the machine's speed changed: a busy or a throttled spell), every layer
    that moved by more than that threshold; else only those that moved alone by clearly more than noise."""
    old = {n: sum(table.layers[n].option_ms(c) for c in options) for n, options in retimed.items()}
    new = {n: sum(options.values()) for n, options in retimed.items()}
    ratio = sum(new.values()) / sum(old.values()) if sum(old.values()) > 0 else 1.0
    threshold = WHOLE_DRIFT if abs(_log(ratio)) > WHOLE_DRIFT else LAYER_DRIFT
    moved = [n for n in retimed
             if abs(new[n] - old[n]) > LAYER_DRIFT_FLOOR_MS and abs(_log(new[n] / old[n] if old[n] else 1e9)) > threshold]
    return ratio, moved


def _log(x: float) -> float:
    return math.log(max(x, 1e-9))


def trusted_overhead(overhead_ms: float, calibration: list[dict]) -> float:
    """The calibrated overhead, or 0 where a negative one is more likely noise than a real effect.

    A whole model can run faster than the sum of its layer probes: a probe pays for bringing its input in
    and its output out, which inside a whole model pass from layer to layer while still in cache. Such a
    gap is real and has one sign on every plan; a gap negative on only some plans is noise, and is dropped.
    The fastest plan is a calibration plan and the cheapest of all, so it alone says whether a correction
    would leave some plan with no time at all.
    """
    if overhead_ms >= 0:
        return overhead_ms
    gaps = [c["measured_ms"] - c["sum_of_layers_ms"] for c in calibration]
    fastest_sum = min(c["sum_of_layers_ms"] for c in calibration)
    if max(gaps) < 0 and fastest_sum + overhead_ms > 0:
        return overhead_ms
    return 0.0
