"""LatencyTable: per-layer latency for every rank on the grid (and dense), for one model on one device.

Predicted latency of a rank plan = ``overhead_ms`` + Σ per-layer latency of the chosen option, where
the overhead (everything that is not a factorized layer, plus the call itself) is measured on the
whole model; it can be negative where whole models run faster than the sum of their layer probes.
Tables are JSON with a schema version and provenance, written atomically.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from maestro_edge import validate
from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.errors import TableError, UsageError
from maestro_edge.lod.grid import DENSE
from maestro_edge.outputs import folder_problem, shown
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
            d = validate.parse_json(text)
        except json.JSONDecodeError as e:
            raise TableError(f"latency table {path} is not valid JSON (corrupt? {e.msg}); delete it and profile "
                             "again") from None
        if isinstance(d, dict) and d.get("schema_version") == SCHEMA_VERSION:   # else from_dict names the schema
            try:
                _check_fields(d)
            except validate.FieldError as e:
                raise TableError(f"latency table {path} is malformed ({e}); delete it and profile again") from None
        return cls.from_dict(d, source=str(path))


def _check_fields(d: dict) -> None:
    """The type of every field ``from_dict`` reads, and the ranges it does not check itself (it refuses
    negative and non-finite latencies): a string, null, list or bool where a number goes, a rank key that
    is not a positive integer, a thread count no device has."""
    for key in ("device", "model_digest", "runtime"):
        validate.text(validate.require(d, key), key)
    validate.text(validate.require(d, "source"), "source", ("measured", "estimated"))
    validate.integer(validate.require(d, "threads"), "threads", low=1, high=validate.MAX_THREADS)
    _latency(validate.require(d, "overhead_ms"), "overhead_ms")
    validate.number(d.get("full_model_ms"), "full_model_ms", low=0.0, none=True)
    validate.table(d.get("provenance", {}), "provenance")
    for name, entry in validate.table(validate.require(d, "layers"), "layers").items():
        where = f"layers.{name}."
        validate.table(entry, where[:-1])
        _latency(validate.require(entry, "dense_ms", where), f"{where}dense_ms")
        for rank, ms in validate.table(validate.require(entry, "rank_ms", where), f"{where}rank_ms").items():
            if not (rank.isdecimal() and int(rank) >= 1):
                raise validate.FieldError(f"rank {validate.show(rank)} in '{where}rank_ms' is not a positive integer")
            _latency(ms, f"{where}rank_ms.{rank}")
        for option, value in validate.table(entry.get("spread", {}), f"{where}spread").items():
            validate.number(value, f"{where}spread.{option}")


def _latency(value, key: str) -> None:
    """A JSON number that converts to a float (its sign and finiteness are from_dict's to check)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            isinstance(value, int) and abs(value) > 1e300:   # float() of a huge int overflows
        raise validate.FieldError(f"'{key}' must be a number of milliseconds, got {validate.show(value)}")


def cache_dir() -> Path:
    """Where measured tables are cached: $MAESTRO_EDGE_CACHE, else ~/.cache/maestro-edge; refused in one line
    when it (or its latency/ folder) is a file, a dangling link, under a file, or a name too long."""
    env = os.environ.get("MAESTRO_EDGE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "maestro-edge"
    for folder in (base, base / "latency"):
        problem = folder_problem(folder, writable=False)
        if problem:
            what = "MAESTRO_EDGE_CACHE" if env and folder == base else "the latency cache"
            raise UsageError(f"{what} {shown(folder)} {problem}; point MAESTRO_EDGE_CACHE at a folder this process "
                             "can write, or unset it")
    return base


def check_table_folder(folder: Path) -> None:
    """Refuse, before any timing, a folder that a measured table and its journal cannot be written to."""
    problem = folder_problem(folder)
    if problem:
        raise UsageError(f"latency tables cannot be written to {shown(folder)}: it {problem}; point "
                         "MAESTRO_EDGE_CACHE at a folder this process can write, or unset it")


def profile_digest(profile: DeviceProfile) -> str:
    """8 hex digits of what in a device profile decides its measured latencies: a copied profile that kept
    another's name (a 4-thread phone called "host") must not read that device's table."""
    key = {"runtime": profile.runtime, "threads": profile.threads, "precision": profile.precision,
           "transport": profile.transport, "hardware": profile.hardware}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]


def cached_table_path(profile: DeviceProfile, model_digest: str) -> Path:
    """The cached measured table of this model on this device: keyed by the device's name (to be read by
    people), its profile's content and the model's latency_digest (architecture and ranks, not weights)."""
    return cache_dir() / "latency" / f"{profile.name}-{profile_digest(profile)}-{model_digest}.json"


def load_table(path: Path, ckpt, profile: DeviceProfile) -> LatencyTable:
    """A latency table from a file, refused unless it was made for ``ckpt`` (a LoDCheckpoint) and this device."""
    from maestro_edge.lod.layers import lod_layers   # torch: imported only once there is a model

    table = LatencyTable.load(path)
    # tables before latency_digest were keyed by the weights' digest; those still load for their model
    if table.model_digest != ckpt.latency_digest() and table.model_digest != ckpt.digest():   # hashes weights: last
        raise TableError(f"latency table {path} was made for another model (digest {table.model_digest}, this "
                         f"model is {ckpt.latency_digest()}); profile this model with 'maestro-edge profile'")
    if table.device != profile.name:
        raise TableError(f"latency table {path} was made for device {table.device!r}, not {profile.name!r}; pass "
                         f"--device {table.device}, or profile {profile.name} with 'maestro-edge profile'")
    missing = set(lod_layers(ckpt.model)) - set(table.layers)
    if missing:
        raise TableError(f"latency table {path} lacks layers {', '.join(sorted(missing))}; profile again")
    return table
