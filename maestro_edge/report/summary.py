"""The one-screen summary ``maestro-edge fit`` prints: a row per fit, then what the columns mean."""

from __future__ import annotations

import json


def score_text(score: dict | None, value) -> str:
    """'0.838 (0.814-0.860, n=1000)': a metric with its 95% interval and sample count where known."""
    if value is None:
        return "-"
    score = score or {}
    if score.get("ci95") and score.get("samples"):
        low, high = score["ci95"]
        return f"{value:.3f} ({low:.3f}-{high:.3f}, n={score['samples']})"
    return f"{value:.4f}"


def predicted_text(record: dict) -> str:
    """'19.98 [15.4-22.6]': an estimate with its error band; a measured device's prediction alone."""
    text = f"{record['predicted_ms']:.4g}"
    if record.get("predicted_low_ms") is not None:
        text += f" [{record['predicted_low_ms']:.3g}-{record['predicted_high_ms']:.3g}]"
    return text


def summary_lines(records: list[dict], folders: dict) -> list[str]:
    """The table ``maestro-edge fit`` prints, and what its columns mean; ``folders``: (device, budget) -> folder."""
    lines = []
    metric = records[0].get("metric", {}) if records else {}
    name = str(metric.get("name", "accuracy"))[:12]
    rows = [(r["device"], f"{r['budget_ms']:g}", predicted_text(r),
             f"{r['measured_ms']:.4g}" if r["measured_ms"] is not None else "-", r["latency_source"],
             score_text(r.get("scores", {}).get("fitted"), r["accuracy"]),
             score_text(r.get("scores", {}).get("dense"), r["dense_accuracy"]),
             f"{folders[(r['device'], r['budget_ms'])]}/") for r in records]
    header = ("device", "budget", "predicted [band]", "measured", "source", f"{name} (95%)", "dense", "folder")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(cell.rjust(w) if i in (1, 2, 3) else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    lines.append("latencies in ms; measured = the exported model timed on the device, '-' = device not reachable")
    for band in {json.dumps(r["error_band"], sort_keys=True) for r in records if r.get("error_band")}:
        band = json.loads(band)
        lines.append(f"band of an estimate ({band['device_class']}s): the true latency fell within "
                     f"[{band['low_factor']:.2f}x, {band['high_factor']:.2f}x] the estimate for "
                     f"{band['coverage']:.0%} of {band['rows']} published measurements; "
                     "--pessimistic solves for the top")
    fitted = records[0].get("scores", {}).get("fitted", {}) if records else {}
    dense = records[0].get("scores", {}).get("dense", {}) if records else {}
    if fitted.get("samples"):
        info = records[0].get("model", {})
        lines.append(f"{name}: {fitted['how']} on {fitted['samples']} held-out images ({info.get('eval_data')}), "
                     f"BatchNorm recalibrated on {info.get('bn_samples')}; dense: {dense.get('how')}")
    if metric.get("source") == "estimated":
        lines.append(f"{metric.get('name')} not measured (no --eval): the plan's estimated drop is in fit.json")
    loose = sorted({f"{r['device']} at {r['budget_ms']:g} ms" for r in records if not r["budget_binding"]})
    if loose:
        lines.append(f"not binding (the dense model already fits): {', '.join(loose)}")
    return lines
