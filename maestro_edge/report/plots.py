"""The report's three figures, as PNG bytes.

Uses matplotlib's object API with the Agg canvas directly (never pyplot), so importing this module
neither needs a display nor changes the backend of a program that also uses pyplot.
"""

from __future__ import annotations

import io
import math

try:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
except ImportError:   # pragma: no cover - exercised only without the extra
    from maestro_edge.errors import MaestroError

    raise MaestroError("the report needs matplotlib; install it with: pip install 'maestro-edge[report]'") from None

from maestro_edge.lod.grid import DENSE
from maestro_edge.report.fits import Fit, device_context

DPI = 110
BAND = 0.05                       # the ± band on the predicted-vs-measured plot
DENSE_COLOR = "#c8c8c8"
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _series(fits: list[Fit]) -> dict[tuple, list[Fit]]:
    out: dict[tuple, list[Fit]] = {}
    for f in fits:
        out.setdefault(f.series, []).append(f)
    return out


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _latency_word(group: list[Fit]) -> str:
    n = sum(f.is_measured for f in group)
    if n == len(group):
        return "measured on device"
    if n == 0:
        return "estimated, not measured"
    return "filled: measured, hollow: estimated"


def _frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto-optimal points (no other point is both faster and at least as accurate), by latency."""
    best, out = -math.inf, []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            out.append((x, y))
            best = y
    return out


# -- accuracy vs latency -------------------------------------------------------------------------------

def pareto_png(fits: list[Fit]) -> bytes:
    series = _series(fits)
    n = len(series)
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.2 * ncols if n > 1 else 9.0, 4.4 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for i, (key, group) in enumerate(series.items()):
            _pareto_panel(axes[i], key, group, _color(i))
        for ax in axes[n:]:
            ax.set_visible(False)
        fig.suptitle("Accuracy vs latency per device  (filled = measured on device, hollow = estimated)",
                     fontsize=11)
        return _png(fig)


def _pareto_panel(ax, key: tuple, group: list[Fit], color: str) -> None:
    xs = [f.latency_ms for f in group]
    ys = [f.accuracy * 100 for f in group]
    front = _frontier(list(zip(xs, ys)))
    ax.plot([p[0] for p in front], [p[1] for p in front], "-", color=color, lw=1.6, alpha=0.8,
            label="Pareto front of the fits", zorder=2)
    for f, x, y in zip(group, xs, ys):
        ax.plot([x], [y], "o", ms=7, mec=color, mew=1.6, mfc=color if f.is_measured else "white", zorder=3)
        ax.annotate(f"budget {f.budget_ms:g} ms", (x, y), textcoords="offset points", xytext=(5, -11), fontsize=7,
                    color="#333")
    # legend proxies for the two marker kinds actually present
    if any(f.is_measured for f in group):
        ax.plot([], [], "o", mec=color, mfc=color, label="fit, latency measured")
    if not all(f.is_measured for f in group):
        ax.plot([], [], "o", mec=color, mfc="white", mew=1.6, label="fit, latency estimated")

    for j, dense in enumerate(sorted({f.dense_accuracy for f in group})):
        ax.axhline(dense * 100, ls="--", color="#555", lw=1,
                   label=f"dense model accuracy ({dense * 100:.2f}%)" if j == 0 else None, zorder=1)

    # baselines: deduplicated across the sweep (every fit of a device may carry the same ones)
    seen, dense_pts, uniform = set(), [], []
    for f in group:
        for b in f.baselines:
            lat = b["measured_ms"] if b["measured_ms"] is not None else b["predicted_ms"]
            if lat is None:
                continue
            k = (b["name"], b["fraction"], round(lat, 9), round(b["accuracy"], 9))
            if k in seen:
                continue
            seen.add(k)
            (dense_pts if b["name"] == "dense" else uniform).append((lat, b["accuracy"] * 100, b))
    for lat, acc, b in dense_pts:
        word = "measured" if b["measured_ms"] is not None else "estimated"
        ax.plot([lat], [acc], "*", ms=13, color="#222", mfc="#ffd54f", zorder=4, label=f"dense baseline ({word})")
    by_name: dict[str, list] = {}
    for p in uniform:
        by_name.setdefault(p[2]["name"], []).append(p)
    for name, pts in by_name.items():
        pts.sort(key=lambda p: p[0])
        measured = all(p[2]["measured_ms"] is not None for p in pts)
        word = "measured" if measured else ("estimated" if not any(p[2]["measured_ms"] is not None for p in pts)
                                            else "measured/estimated")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "x--", color="#666", ms=7, mew=1.6, lw=1,
                zorder=3, label=f"{name} baseline ({word})")
        for lat, acc, b in pts:
            if b["fraction"] is not None:
                ax.annotate(f"{b['fraction']:.0%} rank", (lat, acc), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color="#666")

    ax.set_title(device_context(*key))
    ax.set_xlabel(f"latency, ms ({_latency_word(group)})")
    ax.set_ylabel("test accuracy, %")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12, y=0.15)
    ax.legend(loc="best", framealpha=0.9)


# -- ranks ---------------------------------------------------------------------------------------------

def ranks_png(fits: list[Fit]) -> bytes:
    layers: list[str] = []
    for f in fits:
        layers.extend(k for k in f.ranks if k not in layers)
    # A layer's maximum rank is a property of the model: take it from any fit of the same model that lists it.
    known_max: dict[tuple, int] = {}
    for f in fits:
        for layer, m in f.max_ranks.items():
            known_max[(f.digest, layer)] = m
    sweep_max = {l: max([r for f in fits for k, r in f.ranks.items() if k == l and r != DENSE], default=1)
                 for l in layers}
    int_cells = [(f.digest, l) for f in fits for l, r in f.ranks.items() if r != DENSE]
    n_known = sum(c in known_max for c in int_cells)
    if n_known == len(int_cells):
        scale_label = "rank / layer's maximum rank"
    elif n_known == 0:
        scale_label = "rank / largest rank chosen\nfor the layer in this sweep"
    else:
        scale_label = "rank / layer's maximum rank\n(where unknown: largest chosen in sweep)"
    names = []
    for f in fits:
        name = f"{f.device} · {f.budget_ms:g} ms"
        if sum(1 for g in fits if g.device == f.device and g.budget_ms == f.budget_ms) > 1:
            name += f" ({f.label})"
        names.append(name)

    nrows, ncols = len(fits), len(layers)
    width = min(22.0, max(8.0, 0.95 * ncols + 3.6))
    height = max(2.6, 0.42 * nrows + 1.9)
    cmap = matplotlib.colormaps["viridis"]
    norm = Normalize(0.0, 1.0)
    fontsize = 8 if ncols <= 16 else 6
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        ax = fig.subplots()
        for i, f in enumerate(fits):
            for j, layer in enumerate(layers):
                r = f.ranks.get(layer)
                if r is None:
                    ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fc="white", ec="#e0e0e0", lw=.5))
                    ax.text(j, i, "–", ha="center", va="center", fontsize=fontsize, color="#999")
                elif r == DENSE:
                    ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fc=DENSE_COLOR, ec="white", hatch="///", lw=.8))
                    ax.text(j, i, "dense", ha="center", va="center", fontsize=fontsize, color="#222",
                            bbox={"fc": DENSE_COLOR, "ec": "none", "pad": 0.6})
                else:
                    frac = r / known_max.get((f.digest, layer), sweep_max[layer])
                    rgba = cmap(norm(min(frac, 1.0)))
                    ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fc=rgba, ec="white", lw=.8))
                    lum = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
                    ax.text(j, i, str(r), ha="center", va="center", fontsize=fontsize,
                            color="black" if lum > 0.5 else "white")
        ax.set_xlim(-.5, ncols - .5)
        ax.set_ylim(nrows - .5, -.5)
        ax.set_xticks(range(ncols), layers, rotation=30 if ncols > 4 else 0, ha="right" if ncols > 4 else "center")
        ax.set_yticks(range(nrows), names)
        ax.set_xlabel("layer")
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
        sm = ScalarMappable(norm=norm, cmap=cmap)
        cb = fig.colorbar(sm, ax=ax, fraction=0.04, pad=0.01)
        cb.set_label(scale_label)
        ax.legend(handles=[Patch(fc=DENSE_COLOR, hatch="///", ec="white", label="dense (not factorised)")],
                  loc="upper left", bbox_to_anchor=(0, -0.02 - 0.9 / height), frameon=False, fontsize=8)
        ax.set_title("Chosen rank per layer (number = rank kept)")
        return _png(fig)


# -- predicted vs measured -----------------------------------------------------------------------------

def latency_png(fits: list[Fit]) -> bytes:
    series = _series(fits)
    measured = [f for f in fits if f.is_measured]
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.0, 6.2) if measured else (7.0, 1.6), layout="constrained")
        ax = fig.subplots()
        ax.set_title("Measured vs estimated latency, whole exported model")
        if not measured:
            ax.text(0.5, 0.5, "No fit was measured on its device:\nevery latency in this sweep is estimated.",
                    ha="center", va="center", fontsize=12, transform=ax.transAxes, color="#7a3e00")
            ax.set_xticks([])
            ax.set_yticks([])
            return _png(fig)
        pts = [(f.predicted_ms, f.measured_ms) for f in measured]
        pts += [(t["predicted_ms"], t["measured_ms"]) for f in measured for t in f.tries
                if t["predicted_ms"] is not None and t["measured_ms"] is not None]
        lo = min(min(p) for p in pts)
        hi = max(max(p) for p in pts)
        log = hi / lo > 10
        lo, hi = (lo / 1.3, hi * 1.3) if log else (lo - 0.12 * (hi - lo) - 0.05 * lo, hi + 0.12 * (hi - lo) + 0.05 * hi)
        lo = max(lo, 1e-9)
        line = [lo, hi]
        ax.fill_between(line, [v * (1 - BAND) for v in line], [v * (1 + BAND) for v in line], color="#999",
                        alpha=0.2, lw=0, label=f"±{BAND:.0%} of the estimate")
        ax.plot(line, line, "-", color="#444", lw=1, label="y = x (estimate exact)")
        inside = 0
        for i, (key, group) in enumerate(series.items()):
            group = [f for f in group if f.is_measured]
            if not group:
                continue
            color = _color(i)
            src = "/".join(sorted({f.latency_source for f in group}))
            ax.plot([f.predicted_ms for f in group], [f.measured_ms for f in group], "o", color=color, ms=7,
                    label=f"{device_context(*key)} (layer table {src})", zorder=3)
            earlier = [(t["predicted_ms"], t["measured_ms"]) for f in group for t in f.tries[:-1]
                       if t["predicted_ms"] is not None and t["measured_ms"] is not None]
            if earlier:
                ax.plot([p[0] for p in earlier], [p[1] for p in earlier], "o", mfc="none", mec=color, ms=5,
                        alpha=0.7, label=f"{key[0]}: earlier tries", zorder=2)
            for f in group:
                inside += abs(f.measured_ms - f.predicted_ms) <= BAND * f.predicted_ms
                ax.annotate(f"budget {f.budget_ms:g} ms", (f.predicted_ms, f.measured_ms), textcoords="offset points",
                            xytext=(5, -10), fontsize=7, color="#333")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):   # 0.2, 0.5, 1, 2, 5 rather than 2x10^-1
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                axis.set_minor_formatter(NullFormatter())
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("estimated latency, ms (solver's prediction from the per-layer table)")
        ax.set_ylabel("measured latency, ms (whole model on the device, median)")
        ax.grid(True, alpha=0.3, which="both")
        ax.text(0.02, 0.98, f"{inside} of {len(measured)} measured fits within ±{BAND:.0%}"
                + (f"\n{len(fits) - len(measured)} estimated-only fits not shown" if len(fits) > len(measured) else ""),
                transform=ax.transAxes, va="top", fontsize=8,
                bbox={"fc": "white", "ec": "#ccc", "alpha": 0.9})
        ax.legend(loc="lower right", framealpha=0.9)
        return _png(fig)
