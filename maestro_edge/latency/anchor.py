"""A measured table re-anchored to the device's speed at fit time.

A table is measured once and used for days; the device's speed moves meanwhile (another tenant on a
shared host, a warmer phone, a governor change). On BERT-mini every plan ran 2-6% slower than its table
predicted, minutes after the profile, and the dense model moved by the same 3.9% (BENCHMARKS.md, P1):
a speed shift, not a per-layer error. So before solving on a device it can reach, fit times the dense
model and scales the whole table (every layer and the overhead) by measured / predicted; a timing more than 5%
off the table is taken again and the lower one kept (noise only slows). What it found is recorded, and a large
shift is reported: the layers' relative costs may then no longer hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from maestro_edge.export.truncate import deployable
from maestro_edge.latency.measure import Protocol
from maestro_edge.latency.table import LatencyTable, LayerLatency
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.grid import DENSE

MOVED_FAR = math.log(1.15)   # beyond this the device is not the one that was profiled: say so
RETIME_BEYOND = math.log(1.05)   # a dense timing this far from the table is timed again (a spike, or a real shift?)


@dataclass(frozen=True)
class Anchor:
    predicted_dense_ms: float    # the table's prediction for the dense model
    measured_dense_ms: float     # the dense model timed now, on the device, in its runtime (the lower of its timings)
    timings_ms: tuple = ()       # every timing taken (two where the first disagreed with the table)

    @property
    def scale(self) -> float:
        return self.measured_dense_ms / self.predicted_dense_ms

    def to_dict(self) -> dict:
        return {"predicted_dense_ms": self.predicted_dense_ms, "measured_dense_ms": self.measured_dense_ms,
                "scale": self.scale, "timings_ms": list(self.timings_ms or (self.measured_dense_ms,))}

    def warning(self, device: str) -> str | None:
        if abs(math.log(self.scale)) <= MOVED_FAR:
            return None
        way = "slower" if self.scale > 1 else "faster"
        return (f"warning: {device} runs the dense model {abs(self.scale - 1):.0%} {way} than its latency table "
                f"predicts (busy, throttled, or another machine?); the table was scaled to match, but profile it "
                f"again with 'maestro-edge profile --force' for per-layer figures that hold")


def scaled(table: LatencyTable, anchor: Anchor) -> LatencyTable:
    """The table with every latency and the overhead multiplied by the anchor's scale."""
    s = anchor.scale
    layers = {name: LayerLatency(l.dense_ms * s, {r: ms * s for r, ms in l.rank_ms.items()}, dict(l.spread))
              for name, l in table.layers.items()}
    return replace(table, overhead_ms=table.overhead_ms * s, layers=layers,
                   provenance={**table.provenance, "anchor": anchor.to_dict()})


def anchored(table: LatencyTable, ckpt: LoDCheckpoint, timer, protocol: Protocol) -> tuple[LatencyTable, Anchor | None]:
    """Time the dense model through ``timer`` (a latency.profile.Timer) and scale ``table`` to it.

    An estimated table is left alone: it has no measurement to drift from, only its error band."""
    if table.source != "measured":
        return table, None
    dense = {name: DENSE for name in table.layers}
    predicted = table.predict_ms(dense)
    if not predicted > 0:
        return table, None
    module = deployable(ckpt.model, dense)
    timings = [timer.time({"model": (module, ckpt.examples)}, protocol, "model")["model"].p50_ms]
    if abs(math.log(timings[0] / predicted)) > RETIME_BEYOND:
        # One timing steers the whole table: a spike (another process woke up) scaled a ResNet-18 table by 1.33
        # and its fit used 75% of the budget (issue 27). Noise on a shared machine only slows a run, so the lower
        # of two timings is the device's speed; a real shift shows in both.
        timings.append(timer.time({"model": (module, ckpt.examples)}, protocol, "model")["model"].p50_ms)
    anchor = Anchor(predicted, min(timings), tuple(timings))
    return scaled(table, anchor), anchor
