"""The fit.json files of a sweep, read through FitReport.load (every field checked, one line naming the file
when one is not right), with what the report plots them by."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from maestro_edge.errors import MaestroError, UsageError
from maestro_edge.export.fit_report import FIX, FitReport

REPORT_NAME = "report.html"
FIGURES = ("pareto.png", "ranks.png", "latency.png")


# -- reading the sweep ---------------------------------------------------------------------------------

@dataclass
class Fit(FitReport):
    """One fit.json of a sweep (a FitReport, checked) and its folder relative to the scanned folder."""

    label: str = "."

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

    @property
    def digest(self) -> str:
        return str(self.model.get("digest") or "?")

    @property
    def arch(self) -> str:
        return str(self.model.get("arch") or "?")

    @property
    def data(self) -> str:
        return str(self.model.get("data") or "?")


def device_context(device: str, runtime: str, threads: int | None) -> str:
    """'host · executorch-xnnpack · 1 thread': who ran (or would run) the model."""
    if threads is None:
        return f"{device} · {runtime} · threads unknown"
    return f"{device} · {runtime} · {threads} thread{'s' if threads != 1 else ''}"


def _load_fit(path: Path, root: Path) -> Fit:
    """FitReport.load, and what the report plots must be there: a measured metric."""
    report = FitReport.load(path)
    for key in ("accuracy", "dense_accuracy"):
        if getattr(report, key) is not None:
            continue
        metric = report.metric if isinstance(report.metric, dict) else {}
        if key == "accuracy" and metric.get("source") == "estimated":
            raise MaestroError(f"{path}: the fit's {metric.get('name', 'metric')} was not measured (a model fitted "
                               "without --eval); the report plots measured quality: fit again with --eval")
        raise MaestroError(f"{path} is not a valid fit.json ('{key}' must be a finite number, got None); {FIX}")
    fields_ = {f.name: getattr(report, f.name) for f in fields(FitReport)}
    return Fit(**fields_, label=path.parent.relative_to(root).as_posix())


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
    fits = [_load_fit(p, root) for p in paths]
    return sorted(fits, key=lambda f: (f.device, f.runtime, f.threads or 0, f.budget_ms, f.label))
