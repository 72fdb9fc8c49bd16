"""FitReport: what ``fit`` (fit.json) and ``export`` (export.json) wrote, one type with save and load.

A fit.json holds every field below, in this order; an export.json only ranks, scores, verification, the
model and the files (``EXPORT_KEYS``). Loading checks every field the report relies on and says in one
line, naming the file, what is wrong; fields it does not rely on are kept as they were written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePath

from maestro_edge import validate
from maestro_edge.errors import MaestroError
from maestro_edge.export.artifact import ExportArtifact
from maestro_edge.lod.grid import DENSE
from maestro_edge.user_files import write_json_atomic

SCHEMA_VERSION = 1
EXPORT_KEYS = ("ranks", "accuracy", "dense_accuracy", "scores", "test_loss", "metric", "delegation", "verification",
               "model", "artifacts", "wall_time_s")
FIX = "delete that fit's folder or re-run `maestro-edge fit` for its budget"


@dataclass
class FitReport:
    """One fit (or export): the plan (``ranks``), how it was predicted and measured, its scores and its files."""

    device: str | None = None
    budget_ms: float | None = None
    predicted_ms: float | None = None                # the plan's prediction: overhead + the chosen options
    # an estimate's error band: the true latency is expected within [low, high] (~80% of the published
    # validation rows of this device class fell inside theirs); None when measured
    predicted_low_ms: float | None = None
    predicted_high_ms: float | None = None
    error_band: dict | None = None
    solved_for_ms: float | None = None               # the budget the solver used (--pessimistic lowers it)
    latency_source: str = "unknown"                  # where the per-layer table came from: "measured" | "estimated"
    measured_ms: float | None = None                 # median of the round medians; None: not reachable
    measured_p90_ms: float | None = None
    ranks: dict = field(default_factory=dict)        # the plan: layer -> rank | "dense"
    layer_ms: dict | None = None                     # the chosen option's latency per layer (the table's)
    overhead_ms: float | None = None                 # the rest of the prediction
    anchor: dict | None = None                       # the measured table scaled to the device's speed now
    accuracy: float | None = None                    # None: not measured (a user model without --eval)
    dense_accuracy: float | None = None
    scores: dict = field(default_factory=dict)       # samples, 95% interval, how
    estimated_accuracy_drop: float | None = None     # the plan's penalty
    metric: dict = field(default_factory=dict)
    budget_binding: bool | None = None               # False when the untruncated model already meets the budget
    test_loss: float | None = None
    runtime: str = "unknown runtime"
    threads: int | None = None
    max_ranks: dict = field(default_factory=dict)
    baselines: list = field(default_factory=list)
    tries: list = field(default_factory=list)
    plan_choice: list | None = None                  # candidate plans scored on validation data (--choose-among)
    recovery: dict | None = None                     # the fine-tuning after the fit (--recover-epochs): steps, time
    delegation: dict | None = None
    verification: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    artifacts: list[ExportArtifact] = field(default_factory=list)
    wall_time_s: float | None = None
    kind: str = field(default="fit", compare=False)          # "fit" (fit.json) or "export" (export.json)
    path: Path | None = field(default=None, compare=False)   # the file it was loaded from

    @property
    def file_name(self) -> str:
        return f"{self.kind}.json"

    def _written_keys(self) -> tuple[str, ...]:
        if self.kind == "export":
            return EXPORT_KEYS
        return tuple(f.name for f in fields(self) if f.name not in ("kind", "path"))

    def to_dict(self) -> dict:
        """The JSON record, keys in the order fit.json has always had them."""
        record = {"schema_version": SCHEMA_VERSION}
        for key in self._written_keys():
            value = getattr(self, key)
            record[key] = [a.to_dict() for a in value] if key == "artifacts" else value
        return record

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "FitReport":
        """A fit.json (or export.json), checked: a one-line MaestroError naming the file when it is not right."""
        path = Path(path)
        what = path.name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise MaestroError(f"cannot read {path} ({e.strerror or e}); check its permissions or {FIX}") from None
        except UnicodeDecodeError:
            raise MaestroError(f"{path} is not UTF-8 text (corrupt?); {FIX}") from None
        try:
            d = validate.parse_json(text)
        except json.JSONDecodeError as e:
            raise MaestroError(f"{path} is not valid JSON (corrupt or half-written: {e.msg} at line {e.lineno}); "
                               f"{FIX}") from None
        if not isinstance(d, dict):
            raise MaestroError(f"{path} is not a maestro-edge {what} (a JSON {type(d).__name__}, not an object); {FIX}")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise MaestroError(f"{path} has {what} schema_version {validate.show(version)}, this maestro-edge reads "
                               f"{SCHEMA_VERSION}; re-run `maestro-edge fit` or use a matching maestro-edge")
        try:
            return cls.from_dict(d, kind="export" if what == "export.json" else "fit", path=path)
        except KeyError as e:
            raise MaestroError(f"{path} is not a complete {what} (no {e.args[0]!r} field); {FIX}") from None
        except (ValueError, TypeError) as e:
            raise MaestroError(f"{path} is not a valid {what} ({e}); {FIX}") from None

    @classmethod
    def from_dict(cls, d: dict, kind: str = "fit", path: Path | None = None) -> "FitReport":
        """The report of a record; KeyError for a missing field, ValueError or TypeError for a malformed one."""
        known = {f.name for f in fields(cls)} - {"kind", "path"}
        report = cls(**{k: v for k, v in d.items() if k in known}, kind=kind, path=path)
        report.ranks = _ranks(d["ranks"])
        report.accuracy = _number(d["accuracy"], "accuracy", none=True)
        report.dense_accuracy = _number(d["dense_accuracy"], "dense_accuracy", none=True)
        report.artifacts = [_artifact(a, d.get("verification")) for a in d.get("artifacts") or []]
        report.model = d["model"] if isinstance(d.get("model"), dict) else {}
        if kind == "fit":
            _check_fit_fields(report, d)
        return report


def _check_fit_fields(report: FitReport, d: dict) -> None:
    device = d["device"]
    if not isinstance(device, str) or not device:
        raise ValueError(f"'device' must be a non-empty string, got {validate.show(device)}")
    report.budget_ms = _milliseconds(d["budget_ms"], "budget_ms")
    report.predicted_ms = _milliseconds(d["predicted_ms"], "predicted_ms")
    report.measured_ms = _milliseconds(d.get("measured_ms"), "measured_ms", none=True)
    if (report.metric or {}).get("name") == "accuracy":   # the built-in models' metric: a fraction
        for key in ("accuracy", "dense_accuracy"):
            validate.number(getattr(report, key), key, low=0.0, high=1.0, none=True)
    report.latency_source = _text(d, "latency_source", "unknown")
    report.runtime = _text(d, "runtime", "unknown runtime")
    if report.threads is not None:
        validate.integer(report.threads, "threads", low=1, high=validate.MAX_THREADS)
    max_ranks = d.get("max_ranks") or {}
    if not isinstance(max_ranks, dict):
        raise ValueError("'max_ranks' must be an object of layer -> int")
    report.max_ranks = {str(k): validate.integer(v, f"max_ranks.{k}", low=1) for k, v in max_ranks.items()}
    for layer, rank in report.ranks.items():
        if rank != DENSE and rank > report.max_ranks.get(layer, rank):
            raise ValueError(f"rank of layer {validate.show(layer)} is {rank}, above its maximum "
                             f"{report.max_ranks[layer]}")
    report.baselines = [_baseline(b) for b in d.get("baselines") or []]
    report.tries = [{**t, "predicted_ms": _number(t.get("predicted_ms"), "tries.predicted_ms", none=True),
                     "measured_ms": _number(t.get("measured_ms"), "tries.measured_ms", none=True)}
                    for t in d.get("tries") or [] if isinstance(t, dict)]


MAX_MS = 1e6   # a thousand seconds per inference: more is not a latency this tool produced


def _milliseconds(value, what: str, none: bool = False) -> float | None:
    return validate.number(value, what, low=0.0, low_open=True, high=MAX_MS, none=none)


def _number(value, what: str, *, none: bool = False, positive: bool = False) -> float | None:
    return validate.number(value, what, low=0.0 if positive else None, low_open=True, none=none)


def _text(d: dict, key: str, default: str) -> str:
    value = d.get(key)
    return default if value is None or value == "" else validate.text(value, key)


def _ranks(ranks) -> dict:
    if not isinstance(ranks, dict) or not ranks:
        raise ValueError("'ranks' must be a non-empty object of layer -> rank")
    return {str(layer): _rank(value, layer) for layer, value in ranks.items()}


def _rank(value, layer: str):
    if value == DENSE:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"rank of layer {validate.show(layer)} must be a positive integer or \"dense\", "
                         f"got {validate.show(value)}")
    return value


def _baseline(b) -> dict:
    if not isinstance(b, dict) or not isinstance(b.get("name"), str):
        raise ValueError(f"each of 'baselines' must be an object with a 'name', got {validate.show(b)}")
    return {**b, "fraction": _number(b.get("fraction"), "baselines.fraction", none=True),
            "predicted_ms": _number(b.get("predicted_ms"), "baselines.predicted_ms", none=True),
            "measured_ms": _number(b.get("measured_ms"), "baselines.measured_ms", none=True),
            "accuracy": _number(b.get("accuracy"), "baselines.accuracy")}


def _artifact(a, verification) -> ExportArtifact:
    """An entry of "artifacts", with its verification error where "verification" has one for its format."""
    if not isinstance(a, dict) or not isinstance(a.get("path"), str):
        raise ValueError(f"each of 'artifacts' must be an object with a 'path', got {validate.show(a)}")
    size = _number(a.get("size_bytes"), "artifacts.size_bytes", none=True)
    key = f"{PurePath(a['path']).suffix[1:]}_max_abs_error"
    error = verification.get(key) if isinstance(verification, dict) else None
    if isinstance(error, bool) or not isinstance(error, (int, float)):
        error = None
    return ExportArtifact(a["path"], str(a.get("sha256", "")), None if size is None else int(size), error)
