"""A measured table re-anchored to the device's speed at fit time.

A table is measured once and used for days; the device's speed moves meanwhile (another tenant on a
shared host, a warmer phone, a governor change). On BERT-mini every plan ran 2-6% slower than its table
predicted, minutes after the profile, and the dense model moved by the same 3.9% (BENCHMARKS.md, P1):
a speed shift, not a per-layer error. So before solving on a device it can reach, fit times the dense
model once and scales the whole table (every layer and the overhead) by measured / predicted. What it
found is recorded, and a large shift is reported: the layers' relative costs may then no longer hold.
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


@dataclass(frozen=True)
class Anchor:
    predicted_dense_ms: float    # the table's prediction for the dense model
    measured_dense_ms: float     # the dense model timed now, on the device, in its runtime

    @property
    def scale(self) -> float:
        return self.measured_dense_ms / self.predicted_dense_ms

    def to_dict(self) -> dict:
        return {"predicted_dense_ms": self.predicted_dense_ms, "measured_dense_ms": self.measured_dense_ms,
                "scale": self.scale}

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
    measured = timer.time({"model": (module, ckpt.examples)}, protocol, "model")["model"].p50_ms
    anchor = Anchor(predicted, measured)
    return scaled(table, anchor), anchor
