"""LatencyTable: per-layer latency for every rank on the grid (and dense), for one model on one device.

Predicted latency of a rank plan = ``overhead_ms`` + Σ per-layer latency of the chosen option, where
the overhead (everything that is not a factorized layer, plus the call itself) is measured on the
whole model; it can be negative where whole models run faster than the sum of their layer probes.
Tables are JSON with a schema version and provenance, written atomically.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from maestro_edge.errors import TableError
from maestro_edge.lod.grid import DENSE
from maestro_edge.user_files import read_user_text, write_json_atomic

SCHEMA_VERSION = 1


@dataclass
class LayerLatency:
    dense_ms: float
    rank_ms: dict[int, float]            # rank -> p50 latency in ms
    spread: dict[str, float] = field(default_factory=dict)   # option -> p90/p50 (measured only)

    def option_ms(self, choice: int | str) -> float:
        if choice == DENSE:
            return self.dense_ms
        if choice in self.rank_ms:
            return self.rank_ms[choice]
        return self._interpolate(int(choice))

    def _interpolate(self, rank: int) -> float:
        """Linear in rank between grid points, extended past the ends by the nearest segment.

        Latency is close to linear in rank (notes/toolchain.md §5); the grid stops at the break-even
        rank, so ranks above it are extrapolated (they are slower than dense, and never chosen).
        """
        ranks = sorted(self.rank_ms)
        if len(ranks) == 1:
            return self.rank_ms[ranks[0]]
        i = min(max(bisect.bisect_left(ranks, rank), 1), len(ranks) - 1)   # the segment holding rank, or the nearest
        lo, hi = ranks[i - 1], ranks[i]
        t = (rank - lo) / (hi - lo)
        return max(0.0, self.rank_ms[lo] * (1 - t) + self.rank_ms[hi] * t)


@dataclass
class LatencyTable:
    device: str
    model_digest: str
    source: str                      # "measured" | "estimated"
    runtime: str
    threads: int
    overhead_ms: float
    layers: dict[str, LayerLatency]
    full_model_ms: float | None = None       # measured whole model at full rank (measured tables)
    provenance: dict = field(default_factory=dict)

    def predict_ms(self, choices: dict[str, int | str]) -> float:
        return self.overhead_ms + sum(self.layers[name].option_ms(c) for name, c in choices.items())

    # ---- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        for entry in d["layers"].values():
            entry["rank_ms"] = {str(r): ms for r, ms in entry["rank_ms"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> "LatencyTable":
        if not isinstance(d, dict) or d.get("schema_version") != SCHEMA_VERSION:
            raise TableError(f"latency table {source} has an unknown schema; delete it and profile again")
        try:
            layers = {name: LayerLatency(float(e["dense_ms"]), {int(r): float(ms) for r, ms in e["rank_ms"].items()},
                                         dict(e.get("spread", {}))) for name, e in d["layers"].items()}
            table = cls(device=d["device"], model_digest=d["model_digest"], source=d["source"], runtime=d["runtime"],
                        threads=int(d["threads"]), overhead_ms=float(d["overhead_ms"]), layers=layers,
                        full_model_ms=d.get("full_model_ms"), provenance=dict(d.get("provenance", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TableError(f"latency table {source} is malformed ({type(e).__name__}: {e}); delete it and profile again") from None
        if table.threads < 1:
            raise TableError(f"latency table {source} says threads={table.threads}; it must be >= 1: profile again")
        values = [v for l in layers.values() for v in (l.dense_ms, *l.rank_ms.values())]
        if not all(math.isfinite(v) and v >= 0 for v in [*values, abs(table.overhead_ms)]) \
                or any(not l.rank_ms for l in layers.values()):
            raise TableError(f"latency table {source} holds negative, missing or non-finite latencies; profile again")
        # The overhead may be negative (whole models faster than their probes), but no plan may take no time.
        if table.overhead_ms < 0 and table.fastest_ms() <= 0:
            raise TableError(f"latency table {source} has overhead {table.overhead_ms:g} ms, which leaves its fastest "
                             "plan no time; profile again")
        return table

    def fastest_ms(self) -> float:
        """The prediction for the fastest plan: every layer at its cheapest option."""
        return self.overhead_ms + sum(min(l.dense_ms, *l.rank_ms.values()) for l in self.layers.values())

    def save(self, path: str | Path) -> None:
        """Validate (what load() would refuse is never written), then write atomically."""
        data = self.to_dict()
        LatencyTable.from_dict(json.loads(json.dumps(data)), source=str(path))
        write_json_atomic(path, data)

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        path = Path(path)
        text = read_user_text(path, "latency table", "the JSON file 'maestro-edge profile' wrote", TableError)
        try:
            d = json.loads(text)
        except json.JSONDecodeError:
            raise TableError(f"latency table {path} is not valid JSON (corrupt?); delete it and profile again") from None
        return cls.from_dict(d, source=str(path))


def cache_dir() -> Path:
    """Where measured tables are cached: $MAESTRO_EDGE_CACHE, else ~/.cache/maestro-edge."""
    env = os.environ.get("MAESTRO_EDGE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "maestro-edge"
    return base


def cached_table_path(device: str, model_digest: str) -> Path:
    return cache_dir() / "latency" / f"{device}-{model_digest}.json"
