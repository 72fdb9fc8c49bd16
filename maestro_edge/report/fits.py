"""fit.json files as the report reads them: every field checked, one line naming the file when one is not right."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from maestro_edge import validate
from maestro_edge.errors import MaestroError, UsageError
from maestro_edge.lod.grid import DENSE

FIT_SCHEMA_VERSION = 1
REPORT_NAME = "report.html"
FIGURES = ("pareto.png", "ranks.png", "latency.png")
_FIX = "delete that fit's folder or re-run `maestro-edge fit` for its budget"


# -- reading the sweep ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fit:
    """One fit.json, checked. ``record`` keeps the whole JSON for fields the report does not model."""

    path: Path                       # the fit.json
    label: str                       # its folder relative to the scanned folder ("." for the folder itself)
    device: str
    budget_ms: float
    predicted_ms: float
    measured_ms: float | None
    latency_source: str              # where the per-layer table came from: "measured" | "estimated"
    runtime: str
    threads: int | None
    accuracy: float
    dense_accuracy: float
    ranks: dict                      # layer -> int rank | "dense"
    max_ranks: dict = field(default_factory=dict)
    baselines: tuple = ()
    artifacts: tuple = ()
    tries: tuple = ()
    digest: str = ""
    arch: str = "?"
    data: str = "?"
    record: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_measured(self) -> bool:
        return self.measured_ms is not None

    @property
    def latency_ms(self) -> float:
        """What the Pareto curve plots: measured when there is a measurement, else the estimate."""
        return self.measured_ms if self.measured_ms is not None else self.predicted_ms

    @property
    def series(self) -> tuple:
        """Fits that share a curve: same device, runtime and threads."""
        return (self.device, self.runtime, self.threads)


def device_context(device: str, runtime: str, threads: int | None) -> str:
    """'host · executorch-xnnpack · 1 thread': who ran (or would run) the model."""
    if threads is None:
        return f"{device} · {runtime} · threads unknown"
    return f"{device} · {runtime} · {threads} thread{'s' if threads != 1 else ''}"


def _number(value, what: str, *, allow_none: bool = False, positive: bool = False) -> float | None:
    return validate.number(value, what, low=0.0 if positive else None, low_open=True, none=allow_none)


def _rank(value, layer: str):
    if value == DENSE:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"rank of layer {validate.show(layer)} must be a positive integer or \"dense\", "
                         f"got {validate.show(value)}")
    return value


def _optional_text(d: dict, key: str, default: str) -> str:
    value = d.get(key)
    return default if value is None or value == "" else validate.text(value, key)


def _parse_fit(path: Path, root: Path) -> Fit:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise MaestroError(f"cannot read {path} ({e.strerror or e}); check its permissions or {_FIX}") from None
    except UnicodeDecodeError:
        raise MaestroError(f"{path} is not UTF-8 text (corrupt?); {_FIX}") from None
    try:
        d = validate.parse_json(text)
    except json.JSONDecodeError as e:
        raise MaestroError(f"{path} is not valid JSON (corrupt or half-written: {e.msg} at line {e.lineno}); "
                           f"{_FIX}") from None
    if not isinstance(d, dict):
        raise MaestroError(f"{path} is not a maestro-edge fit.json (a JSON {type(d).__name__}, not an object); {_FIX}")
    version = d.get("schema_version")
    if version != FIT_SCHEMA_VERSION:
        raise MaestroError(f"{path} has fit.json schema_version {validate.show(version)}, this maestro-edge reads "
                           f"{FIT_SCHEMA_VERSION}; re-run `maestro-edge fit` or use a matching maestro-edge")
    if d.get("accuracy") is None and isinstance(d.get("metric"), dict) and d["metric"].get("source") == "estimated":
        raise MaestroError(f"{path}: the fit's {d['metric'].get('name', 'metric')} was not measured (a model fitted "
                           "without --eval); the report plots measured quality: fit again with --eval")
    try:
        device = d["device"]
        if not isinstance(device, str) or not device:
            raise ValueError(f"'device' must be a non-empty string, got {validate.show(device)}")
        ranks = d["ranks"]
        if not isinstance(ranks, dict) or not ranks:
            raise ValueError("'ranks' must be a non-empty object of layer -> rank")
        ranks = {str(k): _rank(v, k) for k, v in ranks.items()}
        threads = d.get("threads")
        if threads is not None:
            validate.integer(threads, "threads", low=1, high=validate.MAX_THREADS)
        max_ranks = d.get("max_ranks") or {}
        if not isinstance(max_ranks, dict):
            raise ValueError("'max_ranks' must be an object of layer -> int")
        max_ranks = {str(k): validate.integer(v, f"max_ranks.{k}", low=1) for k, v in max_ranks.items()}
        baselines = []
        for b in d.get("baselines") or []:
            if not isinstance(b, dict) or not isinstance(b.get("name"), str):
                raise ValueError(f"each of 'baselines' must be an object with a 'name', got {validate.show(b)}")
            baselines.append({
                "name": b["name"],
                "fraction": _number(b.get("fraction"), "baselines.fraction", allow_none=True),
                "predicted_ms": _number(b.get("predicted_ms"), "baselines.predicted_ms", allow_none=True),
                "measured_ms": _number(b.get("measured_ms"), "baselines.measured_ms", allow_none=True),
                "accuracy": _number(b.get("accuracy"), "baselines.accuracy"),
            })
        artifacts = []
        for a in d.get("artifacts") or []:
            if not isinstance(a, dict) or not isinstance(a.get("path"), str):
                raise ValueError(f"each of 'artifacts' must be an object with a 'path', got {validate.show(a)}")
            artifacts.append({"path": a["path"], "format": str(a.get("format", "")),
                              "sha256": str(a.get("sha256", "")),
                              "size_bytes": _number(a.get("size_bytes"), "artifacts.size_bytes", allow_none=True)})
        tries = []
        for t in d.get("tries") or []:
            if isinstance(t, dict):
                tries.append({"predicted_ms": _number(t.get("predicted_ms"), "tries.predicted_ms", allow_none=True),
                              "measured_ms": _number(t.get("measured_ms"), "tries.measured_ms", allow_none=True)})
        model = d.get("model") if isinstance(d.get("model"), dict) else {}
        folder = path.parent.relative_to(root).as_posix()
        return Fit(
            path=path, label=folder, device=device,
            budget_ms=_number(d["budget_ms"], "budget_ms", positive=True),
            predicted_ms=_number(d["predicted_ms"], "predicted_ms", positive=True),
            measured_ms=_number(d.get("measured_ms"), "measured_ms", allow_none=True, positive=True),
            latency_source=_optional_text(d, "latency_source", "unknown"),
            runtime=_optional_text(d, "runtime", "unknown runtime"),
            threads=threads,
            accuracy=_number(d["accuracy"], "accuracy"),
            dense_accuracy=_number(d["dense_accuracy"], "dense_accuracy"),
            ranks=ranks, max_ranks=max_ranks, baselines=tuple(baselines), artifacts=tuple(artifacts),
            tries=tuple(tries), digest=str(model.get("digest") or "?"), arch=str(model.get("arch") or "?"),
            data=str(model.get("data") or "?"), record=d,
        )
    except KeyError as e:
        raise MaestroError(f"{path} is not a complete fit.json (no {e.args[0]!r} field); {_FIX}") from None
    except (ValueError, TypeError) as e:
        raise MaestroError(f"{path} is not a valid fit.json ({e}); {_FIX}") from None


def load_fits(folder: str | Path) -> list[Fit]:
    """Every fit.json under ``folder`` (recursively), checked, sorted by device then budget.

    Hidden folders are skipped: ``fit`` stages its output in ``.<name>.tmp*`` before renaming it.
    """
    folder = Path(folder)
    if not folder.exists():
        raise UsageError(f"{folder} does not exist; pass the folder `maestro-edge fit` wrote to (e.g. out/)")
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; pass the folder that holds the fit output folders (e.g. out/)")
    root = folder.resolve()
    paths = sorted(p for p in root.rglob("fit.json")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts[:-1]))
    if not paths:
        raise UsageError(f"no fit.json found under {folder}; run `maestro-edge fit` first, or pass the folder it "
                         f"wrote to (default out/)")
    fits = [_parse_fit(p, root) for p in paths]
    return sorted(fits, key=lambda f: (f.device, f.runtime, f.threads or 0, f.budget_ms, f.label))


# -- writing -------------------------------------------------------------------------------------------
