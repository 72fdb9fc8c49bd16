"""``write_report``: one self-contained HTML page for a sweep of ``maestro-edge fit`` outputs.

The page holds three figures (accuracy-vs-latency Pareto curve per device, chosen rank per layer,
measured-vs-predicted latency) embedded as base64 PNGs, and a table of every fit. Nothing on it
is loaded from elsewhere: a Content-Security-Policy forbids any fetch, so the file can be mailed
or archived as is. Nothing is written beside it, and an existing file is replaced only if it is a
report this tool wrote (it carries GENERATOR in its head).

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
import os
from pathlib import Path

from maestro_edge.errors import MaestroError, UsageError
from maestro_edge.outputs import check_output_file, shown
from maestro_edge.report.fits import REPORT_NAME, Fit, device_context, load_fits
from maestro_edge.user_files import write_atomic

GENERATOR = '<meta name="generator" content="maestro-edge report">'
# Reports written before GENERATOR existed are known by their title; both sit at the top of <head>.
OUR_MARKERS = (GENERATOR.encode(), b"<title>maestro-edge report: ")
HEAD_BYTES = 4096


def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write a self-contained HTML report of every fit under ``folder``; return its path.

    ``out`` is the HTML file to write (default ``folder/report.html``); an existing folder means
    ``out/report.html``. Only that file is written (the figures are inside it).
    Raises UsageError (no folder, no fit.json, an output path that cannot be written or holds a file
    that is not a report) or MaestroError (a corrupt fit.json, no matplotlib, a failed write) with a
    one-line message.
    """
    folder = Path(folder)
    fits = load_fits(folder)
    out = Path(out) if out is not None else folder / REPORT_NAME
    if os.path.isdir(out):
        out = out / REPORT_NAME
    check_report_target(out)

    from maestro_edge.report import plots   # imports matplotlib: only once the sweep is known to be good

    pngs = {"pareto.png": plots.pareto_png(fits), "ranks.png": plots.ranks_png(fits),
            "latency.png": plots.latency_png(fits)}
    page = render_html(fits, folder, pngs).encode("utf-8")
    try:
        write_atomic(out, page)
    except OSError as e:
        raise MaestroError(f"cannot write the report to {out} ({e.strerror or e}); pass a writable output path") from None
    return out


def check_report_target(out: Path) -> None:
    """Refuse, before the figures are drawn, an output path that cannot be written, or an existing file
    that is not a report we wrote (someone's page would be lost)."""
    check_output_file(out)
    if os.path.lexists(out) and not _is_our_report(out):
        raise UsageError(f"{shown(out)} already exists and is not a maestro-edge report; pass another --out, "
                         "or delete that file")


def _is_our_report(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return False
    return any(marker in head for marker in OUR_MARKERS)


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
        sha = a.sha256[:12] if a.sha256 else "no sha256"
        parts.append(f"<code>{_e(a.path)}</code> {_e(_size(a.size_bytes))} · <code>{_e(sha)}</code>")
    return "<br>".join(parts)


def _table(fits: list[Fit]) -> str:
    head = ("<tr><th>device</th><th>runtime · threads</th><th>budget</th><th>predicted latency</th>"
            "<th>measured latency</th><th>latency source</th><th>accuracy</th><th>dense accuracy</th>"
            "<th>tries</th><th>artifacts: size · sha256</th><th>folder</th></tr>")
    rows = []
    for f in fits:
        threads = "threads unknown" if f.threads is None else f"{f.threads} thread{'s' if f.threads != 1 else ''}"
        predicted = f"{_e(_ms(f.predicted_ms))}{_tag('estimated')}{_band(f)}"
        if f.is_measured:
            p90 = f.measured_p90_ms
            measured = (f"median {_e(_ms(f.measured_ms))}{_tag('measured')}"
                        + (f"<br><small>p90 {_e(_ms(p90))}</small>" if isinstance(p90, (int, float)) else ""))
        else:
            measured = '<span class="none">not measured</span>'
        delta = (f.accuracy - f.dense_accuracy) * 100
        delta_text = "±0.00" if abs(delta) < 0.005 else f"{delta:+.2f}"
        interval = _interval(f.scores.get("fitted") if isinstance(f.scores, dict) else None)
        rows.append(
            f'<tr><td>{_e(f.device)}</td><td class="nw">{_e(f.runtime)}<br>{_e(threads)}</td>'
            f'<td class="num">{_e(_ms(f.budget_ms))}</td><td class="num">{predicted}</td>'
            f'<td class="num">{measured}</td><td>{_e(f.latency_source)}</td>'
            f'<td class="num">{f.accuracy * 100:.2f}%{interval}<br><small>{delta_text} pt vs dense</small></td>'
            f'<td class="num">{f.dense_accuracy * 100:.2f}%</td><td class="num">{len(f.tries) or "–"}</td>'
            f'<td class="nw">{_artifacts_cell(f)}</td><td><code>{_e(f.label)}</code></td></tr>')
    return f'<div class="scroll"><table id="fits">{head}{"".join(rows)}</table></div>'


def _band(fit: Fit) -> str:
    """An estimate's error band, where fit.json has one: '<br>band 15.4-22.5 ms'."""
    low, high = fit.predicted_low_ms, fit.predicted_high_ms
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))):
        return ""
    return f"<br><small>band {low:.3g}–{high:.3g} ms</small>"


def _interval(score) -> str:
    """'<br>95% 81.1–85.7%, n=1000' from a fit.json score, where it has one."""
    if not isinstance(score, dict) or not isinstance(score.get("ci95"), list) or len(score["ci95"]) != 2:
        return ""
    low, high = score["ci95"]
    if not all(isinstance(v, (int, float)) for v in (low, high)):
        return ""
    return f"<br><small>95% {low * 100:.1f}–{high * 100:.1f}%, n={_e(score.get('samples'))}</small>"


def _delegation(d) -> str:
    """'XNNPACK: 3 delegate calls; on portable kernels: 2 ops (aten.upsample..)' from fit.json's delegation."""
    if not isinstance(d, dict):
        return '<span class="none">not recorded</span>'
    ops = d.get("undelegated_ops") if isinstance(d.get("undelegated_ops"), dict) else {}
    text = f"{_e(d.get('backend', '?'))}: {_e(d.get('delegate_calls', '?'))} delegate call(s)"
    if not ops:
        return text + "; every op delegated"
    listed = ", ".join(f"<code>{_e(op)}</code>×{_e(n)}" for op, n in ops.items())
    return f"{text}; on ExecuTorch's portable kernels: {listed}"


def _layer_latency(fits: list[Fit]) -> str:
    """Per fit, the chosen rank and the table's latency of each layer, and the overhead term."""
    blocks = []
    for f in fits:
        layer_ms = f.layer_ms
        if not isinstance(layer_ms, dict):
            continue
        rows = "".join(
            f'<tr><td><code>{_e(name)}</code></td><td class="num">{_e(f.ranks.get(name, "?"))}</td>'
            f'<td class="num">{ms:.4g}</td></tr>' for name, ms in layer_ms.items() if isinstance(ms, (int, float)))
        overhead = f.overhead_ms
        if isinstance(overhead, (int, float)):
            rows += f'<tr><td><i>everything else (overhead term)</i></td><td></td><td class="num">{overhead:.4g}</td></tr>'
        blocks.append(f"<details><summary>{_e(_fit_name(f, fits))}: {_e(_ms(f.predicted_ms))} predicted "
                      f"({_e(f.latency_source)} table) · {_delegation(f.delegation)}</summary>"
                      f'<table class="layers"><tr><th>layer</th><th>rank</th><th>ms</th></tr>{rows}</table></details>')
    if not blocks:
        return '<p class="none">No fit.json here records per-layer latency (written by maestro-edge fit since 2026-12-06).</p>'
    return "".join(blocks)


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
{GENERATOR}
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

<h2>Per-layer latency and delegation of each fit</h2>
<p class="meta">The latency the table gives each layer at the chosen rank (the solver's inputs), the overhead term
(everything the solver cannot change), and which ops ExecuTorch runs outside XNNPACK.</p>
{_layer_latency(fits)}
<script>{_SCRIPT}</script>
</body>
</html>
"""
