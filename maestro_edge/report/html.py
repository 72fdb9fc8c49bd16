"""``write_report``: one self-contained HTML page for a sweep of ``maestro-edge fit`` outputs.

The page holds three figures (accuracy-vs-latency Pareto curve per device, chosen rank per layer,
measured-vs-predicted latency) embedded as base64 PNGs, and a table of every fit. Nothing on it
is loaded from elsewhere: a Content-Security-Policy forbids any fetch, so the file can be mailed
or archived as is. The PNGs are also written beside the page.

Words on the page, used the same way everywhere:

* **measured**: the whole exported model timed on the device (``measured_ms``, the median run);
* **estimated**: not timed as a whole; the solver's prediction, the sum of a per-layer latency table
  (``predicted_ms``) whose entries were themselves measured on the device or estimated by the
  per-operator estimator (``latency_source``).

All fit.json files are read and checked before matplotlib is imported, so a bad sweep fails fast
with one line naming the file.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from maestro_edge.errors import MaestroError, UsageError

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
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"'{what}' must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"'{what}' must be positive, got {value!r}")
    return float(value)


def _rank(value, layer: str):
    if value == "dense":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"rank of layer {layer!r} must be a positive integer or \"dense\", got {value!r}")
    return value


def _parse_fit(path: Path, root: Path) -> Fit:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise MaestroError(f"cannot read {path} ({e.strerror or e}); check its permissions or {_FIX}") from None
    except UnicodeDecodeError:
        raise MaestroError(f"{path} is not UTF-8 text (corrupt?); {_FIX}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise MaestroError(f"{path} is not valid JSON (corrupt or half-written: {e.msg} at line {e.lineno}); "
                           f"{_FIX}") from None
    if not isinstance(d, dict):
        raise MaestroError(f"{path} is not a maestro-edge fit.json (a JSON {type(d).__name__}, not an object); {_FIX}")
    version = d.get("schema_version")
    if version != FIT_SCHEMA_VERSION:
        raise MaestroError(f"{path} has fit.json schema_version {version!r}, this maestro-edge reads "
                           f"{FIT_SCHEMA_VERSION}; re-run `maestro-edge fit` or use a matching maestro-edge")
    if d.get("accuracy") is None and isinstance(d.get("metric"), dict) and d["metric"].get("source") == "estimated":
        raise MaestroError(f"{path}: the fit's {d['metric'].get('name', 'metric')} was not measured (a model fitted "
                           "without --eval); the report plots measured quality: fit again with --eval")
    try:
        device = d["device"]
        if not isinstance(device, str) or not device:
            raise ValueError(f"'device' must be a non-empty string, got {device!r}")
        ranks = d["ranks"]
        if not isinstance(ranks, dict) or not ranks:
            raise ValueError("'ranks' must be a non-empty object of layer -> rank")
        ranks = {str(k): _rank(v, k) for k, v in ranks.items()}
        threads = d.get("threads")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"'threads' must be a positive integer, got {threads!r}")
        max_ranks = d.get("max_ranks") or {}
        if not isinstance(max_ranks, dict):
            raise ValueError("'max_ranks' must be an object of layer -> int")
        max_ranks = {str(k): int(_number(v, f"max_ranks.{k}", positive=True)) for k, v in max_ranks.items()}
        baselines = []
        for b in d.get("baselines") or []:
            if not isinstance(b, dict) or not isinstance(b.get("name"), str):
                raise ValueError(f"each of 'baselines' must be an object with a 'name', got {b!r}")
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
                raise ValueError(f"each of 'artifacts' must be an object with a 'path', got {a!r}")
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
            latency_source=str(d.get("latency_source") or "unknown"),
            runtime=str(d.get("runtime") or "unknown runtime"),
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

def _readable_mode() -> int:
    """rw-r--r-- less the umask: what a plain open() would have given (mkstemp gives rw-------)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o644 & ~umask


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _readable_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write a self-contained HTML report of every fit under ``folder``; return its path.

    ``out`` is the HTML file to write (default ``folder/report.html``); an existing folder means
    ``out/report.html``. pareto.png, ranks.png and latency.png are written beside it.
    Raises UsageError (no folder, no fit.json) or MaestroError (a corrupt fit.json, no matplotlib,
    an unwritable output) with a one-line message.
    """
    folder = Path(folder)
    fits = load_fits(folder)
    out = Path(out) if out is not None else folder / REPORT_NAME
    if out.is_dir():
        out = out / REPORT_NAME

    from maestro_edge.report import plots   # imports matplotlib: only once the sweep is known to be good

    pngs = {"pareto.png": plots.pareto_png(fits), "ranks.png": plots.ranks_png(fits),
            "latency.png": plots.latency_png(fits)}
    page = render_html(fits, folder, pngs).encode("utf-8")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for name, blob in pngs.items():
            _write_atomic(out.parent / name, blob)
        _write_atomic(out, page)
    except OSError as e:
        raise MaestroError(f"cannot write the report to {out} ({e.strerror or e}); pass a writable output path") from None
    return out


# -- the page ------------------------------------------------------------------------------------------

_CSS = """
body{font-family:"DejaVu Sans","Liberation Sans",Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222;
     line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ccc}
.meta{color:#555;font-size:.92em} .warn{background:#fff4d6;border-left:4px solid #e0a100;padding:6px 10px}
figure{margin:12px 0} figure img{max-width:100%;height:auto;border:1px solid #e4e4e4}
figcaption{color:#444;font-size:.9em;margin-top:4px}
.scroll{overflow-x:auto} table{border-collapse:collapse;font-size:.82em;width:100%}
th,td{border:1px solid #d8d8d8;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0} tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;white-space:nowrap} td.nw{white-space:nowrap}
.tag{display:inline-block;font-size:.78em;padding:0 4px;border-radius:3px;margin-left:3px;white-space:nowrap}
.measured{background:#d9f2dd;color:#14532d} .estimated{background:#fde8cc;color:#7a3e00}
.none{color:#888;font-style:italic} code{font-size:.95em}
dl.terms dt{font-weight:bold;float:left;clear:left;width:7em} dl.terms dd{margin-left:7.5em}
"""

# Sets data-images-loaded / data-images-total on <body> once every image has decoded (checked by the tests).
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesTotal = imgs.length;
  document.body.dataset.imagesLoaded = ok;
});
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _ms(value: float) -> str:
    return f"{value:.4g} ms"


def _tag(kind: str, text: str | None = None) -> str:
    return f'<span class="tag {kind}">{_e(text or kind)}</span>'


def _size(n: float | None) -> str:
    if n is None:
        return "size unknown"
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def _fit_name(fit: Fit, fits: list[Fit]) -> str:
    """'host 0.15 ms', or with the folder when two fits of a device share a budget."""
    name = f"{fit.device} {fit.budget_ms:g} ms"
    if sum(1 for f in fits if f.device == fit.device and f.budget_ms == fit.budget_ms) > 1:
        name += f" ({fit.label})"
    return name


def _series_summary(fits: list[Fit]) -> str:
    rows = []
    series: dict[tuple, list[Fit]] = {}
    for f in fits:
        series.setdefault(f.series, []).append(f)
    for key, group in series.items():
        n_meas = sum(f.is_measured for f in group)
        if n_meas == len(group):
            how = "latency <b>measured</b> on the device"
        elif n_meas == 0:
            how = (f"latency <b>estimated</b> (not measured on the device; per-layer table "
                   f"{_e(group[0].latency_source)})")
        else:
            how = f"latency <b>measured</b> for {n_meas}, <b>estimated</b> for {len(group) - n_meas}"
        rows.append(f"<li><b>{_e(device_context(*key))}</b>: {len(group)} fit{'s' if len(group) != 1 else ''}, "
                    f"budgets {', '.join(f'{f.budget_ms:g}' for f in group)} ms; {how}</li>")
    return "<ul>" + "".join(rows) + "</ul>"


def _artifacts_cell(fit: Fit) -> str:
    if not fit.artifacts:
        return '<span class="none">none listed</span>'
    parts = []
    for a in fit.artifacts:
        sha = a["sha256"][:12] if a["sha256"] else "no sha256"
        parts.append(f"<code>{_e(a['path'])}</code> {_e(_size(a['size_bytes']))} · <code>{_e(sha)}</code>")
    return "<br>".join(parts)


def _table(fits: list[Fit]) -> str:
    head = ("<tr><th>device</th><th>runtime · threads</th><th>budget</th><th>predicted latency</th>"
            "<th>measured latency</th><th>latency source</th><th>accuracy</th><th>dense accuracy</th>"
            "<th>tries</th><th>artifacts: size · sha256</th><th>folder</th></tr>")
    rows = []
    for f in fits:
        threads = "threads unknown" if f.threads is None else f"{f.threads} thread{'s' if f.threads != 1 else ''}"
        predicted = f"{_e(_ms(f.predicted_ms))}{_tag('estimated')}"
        if f.is_measured:
            measured = f"{_e(_ms(f.measured_ms))}{_tag('measured')}"
        else:
            measured = '<span class="none">not measured</span>'
        delta = (f.accuracy - f.dense_accuracy) * 100
        delta_text = "±0.00" if abs(delta) < 0.005 else f"{delta:+.2f}"
        rows.append(
            f'<tr><td>{_e(f.device)}</td><td class="nw">{_e(f.runtime)}<br>{_e(threads)}</td>'
            f'<td class="num">{_e(_ms(f.budget_ms))}</td><td class="num">{predicted}</td>'
            f'<td class="num">{measured}</td><td>{_e(f.latency_source)}</td>'
            f'<td class="num">{f.accuracy * 100:.2f}%<br><small>{delta_text} pt vs dense</small></td>'
            f'<td class="num">{f.dense_accuracy * 100:.2f}%</td><td class="num">{len(f.tries) or "–"}</td>'
            f'<td class="nw">{_artifacts_cell(f)}</td><td><code>{_e(f.label)}</code></td></tr>')
    return f'<div class="scroll"><table id="fits">{head}{"".join(rows)}</table></div>'


def _img(name: str, blob: bytes, alt: str) -> str:
    data = base64.b64encode(blob).decode("ascii")
    return f'<img id="{_e(name.removesuffix(".png"))}" src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def render_html(fits: list[Fit], folder: Path, pngs: dict[str, bytes]) -> str:
    """The page, as a string. ``pngs`` maps the names in FIGURES to PNG bytes."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    models = sorted({(f.arch, f.data, f.digest) for f in fits})
    model_text = "; ".join(f"{_e(a)} on {_e(d)} (digest <code>{_e(g)}</code>)" for a, d, g in models)
    warn = ""
    if len(models) > 1:
        warn = ('<p class="warn">This folder mixes fits of more than one model; accuracies and ranks of different '
                "models are not comparable.</p>")
    n_meas = sum(f.is_measured for f in fits)
    contexts = "; ".join(sorted({device_context(*f.series) for f in fits}))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>maestro-edge report: {_e(folder)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>maestro-edge fit report</h1>
<p class="meta">Folder <code>{_e(folder)}</code> · {len(fits)} fit{'s' if len(fits) != 1 else ''} ·
{n_meas} measured on the device, {len(fits) - n_meas} estimated only · model {model_text} · generated {now}</p>
{warn}
{_series_summary(fits)}
<dl class="terms">
<dt>measured</dt><dd>the whole exported model timed on the device (median run).</dd>
<dt>estimated</dt><dd>not timed as a whole: the solver's prediction, a sum of per-layer latencies that were
themselves measured on the device or estimated by the per-operator model (the fit's <i>latency source</i>).</dd>
</dl>

<h2>Accuracy vs latency</h2>
<figure>
{_img("pareto.png", pngs["pareto.png"], "accuracy versus latency, one panel per device")}
<figcaption>Test accuracy against latency, one panel per device ({_e(contexts)}). A filled marker's latency is
<b>measured</b> on the device; a hollow marker's is <b>estimated</b> (the solver's prediction). The line joins the
Pareto-optimal fits; the dashed line is the dense model's accuracy; baselines are drawn when fit.json holds
them. Points are labelled with their latency budget.</figcaption>
</figure>

<h2>Chosen rank per layer</h2>
<figure>
{_img("ranks.png", pngs["ranks.png"], "chosen rank per layer for each fit")}
<figcaption>One row per fit, one column per low-rank layer. The number is the rank kept; the colour is that
rank as a fraction of the layer's maximum rank (from fit.json's <code>max_ranks</code> where given, else of the
largest rank chosen for that layer in this sweep). Grey hatched cells are kept <b>dense</b> (not factorised).</figcaption>
</figure>

<h2>Predicted vs measured latency</h2>
<figure>
{_img("latency.png", pngs["latency.png"], "measured versus predicted latency")}
<figcaption>For fits <b>measured</b> on the device: the whole model's measured latency against the solver's
<b>estimate</b> ({n_meas} of {len(fits)} fits; the others were not measured and are not shown). The solid line is
y = x, the band ±5%. Small markers are earlier tries of the same fit, when the first plan missed the budget.</figcaption>
</figure>

<h2>Fits</h2>
<p class="meta">Predicted latency is the solver's <b>estimate</b>, the sum of the per-layer table (its entries
measured on the device or estimated: <i>latency source</i>); measured latency is the whole model timed on the
device. Artifacts are listed with their size and the first 12 hex digits of their sha256.</p>
{_table(fits)}
<script>{_SCRIPT}</script>
</body>
</html>
"""
