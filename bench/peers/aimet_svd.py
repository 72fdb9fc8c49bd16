"""AIMET spatial SVD (aimet-torch's ``ModelCompressor``) as a benchmark peer, on any plain nn.Module.

    compressed, info = spatial_svd_auto(model, example_input, eval_fn, target_ratio=0.5)   # greedy, eval callback
    compressed, info = spatial_svd_manual(model, example_input, 0.5)                      # given per-layer ratios

Spatial SVD (Jaderberg et al. 2014, as AIMET implements it) replaces a Conv2d k_h x k_w (C -> N) by a Conv2d
k_h x 1 (C -> r) followed by a Conv2d 1 x k_w (r -> N), from a truncated SVD of the weight reshaped to
(C*k_h, N*k_w); r <= min(C*k_h, N*k_w). AIMET applies it to Conv2d only: Linear layers are weight SVD's job
and stay dense here (ModelCompressor's spatial-SVD layer selector only picks ``Conv2d`` with ``groups == 1``).

Layers left out, by ``ineligible_convs``: grouped/depthwise convs (spatial SVD of a grouped weight is not defined),
and convs that AIMET's splitter would get wrong or refuse: dilation != 1 (it asserts), string padding ("same"),
padding_mode != "zeros" (the split layers would silently pad with zeros), Conv2d subclasses (their forward may
differ), and convs the example forward pass does not reach (AIMET's layer database only knows reached layers).

Both functions deep-copy the model first (the caller's model is untouched) and return a plain nn.Module: the
same class with each compressed Conv2d swapped for ``nn.Sequential(Conv2d, Conv2d)``, which torch.export accepts.
``info`` is JSON-able: the ranks chosen per layer, AIMET's CompressionStats (accuracies from the eval callback,
MAC and memory compression ratios over its Conv2d/Linear layers, per-layer ratios, the greedy eval table), and
MACs/params counted here by forward hooks on every Conv2d/Linear.

AIMET is imported lazily (``load_aimet``), through bench/peers/aimet_shim.py (no working torchvision here). If
``aimet_torch`` is not importable from this interpreter, the site-packages of the venv that
bench/peers/install_aimet.sh creates (``$AIMET_VENV``, default /opt/aimet-venv) is *appended* to sys.path, so the
benchmark can run from the system python: packages already there always win. AIMET writes pickles to ``./data``;
every call runs AIMET inside a temporary working directory so nothing lands in the caller's folder. AIMET's import
configures its loggers (INFO to stdout); load_aimet turns them down to $AIMET_LOG_LEVEL (default WARNING).
"""

from __future__ import annotations

import contextlib
import copy
import glob
import os
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from typing import Callable, Mapping

import torch
from torch import nn

try:   # imported as peers.aimet_svd (bench/bench_peers.py) or as a plain module from bench/peers/
    from .aimet_shim import import_aimet
except ImportError:
    from aimet_shim import import_aimet

AIMET_VENV = os.environ.get("AIMET_VENV", "/opt/aimet-venv")
_AIMET = {}


def _append_venv_site_packages() -> None:
    pattern = os.path.join(AIMET_VENV, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}",
                           "site-packages")
    for path in glob.glob(pattern):
        if path not in sys.path:
            sys.path.append(path)


def load_aimet():
    """(aimet_torch, compress, defs, common_defs); raises ImportError with the install hint if AIMET is absent."""
    if not _AIMET:
        import importlib.util

        if importlib.util.find_spec("aimet_torch") is None:
            _append_venv_site_packages()
            if importlib.util.find_spec("aimet_torch") is None:
                raise ImportError(f"aimet_torch is not importable and not in {AIMET_VENV}: "
                                  "run bench/peers/install_aimet.sh")
        _AIMET["modules"] = import_aimet()
        set_aimet_log_level(os.environ.get("AIMET_LOG_LEVEL", "WARNING"))
    return _AIMET["modules"]


def set_aimet_log_level(level: str | int) -> None:
    """AIMET's import configures its own loggers ("Svd", "CompRatioSelect", ...: INFO, to stdout, one line per
    candidate); load_aimet sets them to $AIMET_LOG_LEVEL (default WARNING)."""
    import logging

    from aimet_torch.common.utils import AimetLogger

    for area in AimetLogger.LogAreas:
        logging.getLogger(area.value).setLevel(level)


def available() -> bool:
    try:
        load_aimet()
        return True
    except Exception:  # noqa: BLE001  (any failure means: this peer is skipped)
        return False


# ----------------------------------------------------------------------------------------------------------------
# Layers, MACs


def _reached_modules(model: nn.Module, example_input) -> set[str]:
    """The Conv2d/Linear layers the example forward pass runs."""
    return set(count_macs(model, example_input, per_module=True)["modules"])


def _as_tuple(example_input) -> tuple:
    return tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)


def ineligible_convs(model: nn.Module, example_input) -> dict[str, str]:
    """{name: reason} for every Conv2d that spatial SVD must leave alone (see the module docstring)."""
    reached = _reached_modules(model, example_input)
    out = {}
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if type(m) is not nn.Conv2d:
            out[name] = f"Conv2d subclass {type(m).__name__}"
        elif m.groups != 1:
            out[name] = f"grouped conv (groups={m.groups})"
        elif tuple(m.dilation) != (1, 1):
            out[name] = f"dilation {tuple(m.dilation)} (AIMET's splitter asserts dilation 1)"
        elif isinstance(m.padding, str):
            out[name] = f"string padding {m.padding!r}"
        elif m.padding_mode != "zeros":
            out[name] = f"padding_mode {m.padding_mode!r} (the split layers pad with zeros)"
        elif name not in reached:
            out[name] = "not reached by the example input"
    return out


def eligible_convs(model: nn.Module, example_input) -> dict[str, nn.Conv2d]:
    bad = ineligible_convs(model, example_input)
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n not in bad}


def count_macs(model: nn.Module, example_input, per_module: bool = False) -> dict:
    """MACs and weight params per sample of every Conv2d/Linear the example forward pass runs (hooks); with
    per_module, also {"modules": {name: macs}}."""
    batch = _as_tuple(example_input)[0].shape[0]
    totals, modules, hooks = {"macs": 0, "params": 0}, {}, []

    def hook(name, m, output):
        macs = output.numel() // batch * m.weight[0].numel()   # (in/groups)*kh*kw for a conv, in_features for a Linear
        totals["macs"] += macs
        totals["params"] += m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        modules[name] = modules.get(name, 0) + macs

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(lambda mod, _i, out, n=name: hook(n, mod, out)))
    try:
        with torch.no_grad():
            model(*_as_tuple(example_input))
    finally:
        for h in hooks:
            h.remove()
    return {**totals, "modules": modules} if per_module else totals


def _ranks(original: nn.Module, compressed: nn.Module, example_input) -> dict[str, dict]:
    """Per original Conv2d that AIMET split: rank, full rank, the two convs, and the MAC ratio it reached."""
    comp = dict(compressed.named_modules())
    before = count_macs(original, example_input, per_module=True)["modules"]
    after = count_macs(compressed, example_input, per_module=True)["modules"]
    out = {}
    for name, m in original.named_modules():
        new = comp.get(name)
        if isinstance(m, nn.Conv2d) and isinstance(new, nn.Sequential) and len(new) == 2:
            a, b = new[0], new[1]
            kh, kw = m.kernel_size
            macs = after.get(f"{name}.0", 0) + after.get(f"{name}.1", 0)
            out[name] = {
                "rank": int(a.out_channels),
                "full_rank": int(min(m.in_channels * kh, m.out_channels * kw)),
                "split": [f"{a.in_channels}->{a.out_channels} {tuple(a.kernel_size)}",
                          f"{b.in_channels}->{b.out_channels} {tuple(b.kernel_size)}"],
                "macs_before": before.get(name, 0),
                "macs_after": macs,
                "mac_ratio": round(macs / before[name], 6) if before.get(name) else None,
            }
    return out


# ----------------------------------------------------------------------------------------------------------------
# AIMET calls


def _num(x):
    """AIMET formats its stats as strings ("0.500000"); NaN (no eval_fn in manual mode) becomes None."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return None if value != value else value


def _stats_dict(stats) -> dict:
    per_layer = {s.name: (None if s.compression_ratio is None else float(s.compression_ratio))
                 for s in stats.per_layer_stats}
    out = {
        "baseline_model_accuracy": _num(stats.baseline_model_accuracy),
        "compressed_model_accuracy": _num(stats.compressed_model_accuracy),
        "memory_compression_ratio": _num(stats.memory_compression_ratio),
        "mac_compression_ratio": _num(stats.mac_compression_ratio),
        "per_layer_comp_ratio": per_layer,
    }
    select = stats.compression_ratio_selection_stats
    table = getattr(select, "eval_scores_dictionary", None)
    if table is not None:
        out["greedy_eval_scores"] = {layer: {str(r): float(s) for r, s in sorted(scores.items())}
                                     for layer, scores in table.items()}
    return out


@contextlib.contextmanager
def _scratch_cwd():
    """AIMET pickles its eval table and chosen ratios to ./data: run it in a temporary folder."""
    old, tmp = os.getcwd(), tempfile.mkdtemp(prefix="aimet_svd_")
    os.chdir(tmp)
    try:
        yield tmp
    finally:
        os.chdir(old)
        shutil.rmtree(tmp, ignore_errors=True)


def _input_shape(example_input):
    shapes = [tuple(t.shape) for t in _as_tuple(example_input)]
    return shapes[0] if len(shapes) == 1 else shapes


def _compress(model, example_input, eval_callback, params, mode: str, extra: dict, eval_scores_path=None):
    aimet_torch, compress, _defs, common_defs = load_aimet()
    t0 = time.perf_counter()
    with _scratch_cwd() as tmp:
        compressed, stats = compress.ModelCompressor.compress_model(
            model=model,
            eval_callback=eval_callback,
            eval_iterations=None,   # our callbacks ignore it: eval_fn decides its own data
            input_shape=_input_shape(example_input),
            compress_scheme=common_defs.CompressionScheme.spatial_svd,
            cost_metric=common_defs.CostMetric.mac,
            parameters=params,
        )
        saved = os.path.join(tmp, "data", "greedy_selection_eval_scores_dict.pkl")
        if eval_scores_path and not os.path.exists(eval_scores_path) and os.path.exists(saved):
            shutil.copyfile(saved, eval_scores_path)
    seconds = time.perf_counter() - t0
    compressed.eval()
    info = {"method": "aimet_spatial_svd", "mode": mode, "aimet_torch": aimet_torch.__version__,
            "cost_metric": "mac", **extra, "seconds": round(seconds, 3)}
    return compressed, stats, info


def _finish(original, compressed, example_input, stats, info, eval_calls=None):
    info["layers"] = _ranks(original, compressed, example_input)
    info["aimet_stats"] = _stats_dict(stats)
    before, after = count_macs(original, example_input), count_macs(compressed, example_input)
    info.update(macs_before=before["macs"], macs_after=after["macs"], params_before=before["params"],
                params_after=after["params"], mac_ratio=after["macs"] / before["macs"])
    if eval_calls is not None:
        info["eval_calls"] = eval_calls[0]
    return compressed, info


def spatial_svd_auto(model: nn.Module, example_input, eval_fn: Callable[[nn.Module], float], target_ratio: float,
                     candidates: int = 10, *, modules_to_ignore: list[str] = (), multiplicity: int = 1,
                     use_monotonic_fit: bool = False, eval_scores_path: str | None = None):
    """AIMET auto mode: greedy per-layer ratio selection (``num_comp_ratio_candidates`` per layer, scored with
    ``eval_fn(model) -> float``, higher is better) so the model's MACs (over AIMET's Conv2d/Linear layers) are
    ``target_ratio`` of the original's, then the split.

    ``eval_scores_path``: a file for AIMET's greedy eval table; when it exists it is reused (no per-layer
    evaluations: ``candidates`` is then ignored, AIMET's ``saved_eval_scores_dict``), else it is written after the
    run. The table depends on the model, eval_fn and candidates only, not on ``target_ratio``.
    Returns (compressed model, info)."""
    _aimet_torch, _compress_mod, defs, common_defs = load_aimet()
    original = model
    model = copy.deepcopy(model).eval()
    bad = ineligible_convs(model, example_input)
    ignored_names = sorted(set(bad) | set(modules_to_ignore))
    named = dict(model.named_modules())
    unknown = [n for n in modules_to_ignore if n not in named]
    if unknown:
        raise ValueError(f"modules_to_ignore not in the model: {unknown}")
    calls = [0]

    def eval_callback(m, iterations=None, use_cuda=False) -> float:   # AIMET's EvalFunction (called by keyword)
        calls[0] += 1
        was_training = m.training
        m.eval()
        with torch.no_grad():
            score = float(eval_fn(m))
        m.train(was_training)
        return score

    eval_scores_path = os.path.abspath(eval_scores_path) if eval_scores_path else None   # AIMET runs in a temp cwd
    reuse = eval_scores_path if eval_scores_path and os.path.exists(eval_scores_path) else None
    greedy = common_defs.GreedySelectionParameters(
        target_comp_ratio=Decimal(str(target_ratio)), num_comp_ratio_candidates=candidates,
        use_monotonic_fit=use_monotonic_fit, saved_eval_scores_dict=reuse)
    params = defs.SpatialSvdParameters(
        defs.SpatialSvdParameters.Mode.auto,
        defs.SpatialSvdParameters.AutoModeParams(greedy, modules_to_ignore=[named[n] for n in ignored_names]),
        multiplicity=multiplicity)
    extra = {"target_comp_ratio": target_ratio, "num_comp_ratio_candidates": candidates,
             "reused_eval_scores": bool(reuse), "multiplicity": multiplicity,
             "ignored": {n: bad.get(n, "asked by the caller") for n in ignored_names},
             "not_considered": sorted(n for n, m in named.items() if isinstance(m, nn.Linear))}
    compressed, stats, info = _compress(model, example_input, eval_callback, params, "auto", extra, eval_scores_path)
    return _finish(original, compressed, example_input, stats, info, calls)


def spatial_svd_manual(model: nn.Module, example_input, layer_ratios: Mapping[str, float] | float,
                       eval_fn: Callable[[nn.Module], float] | None = None, *, multiplicity: int = 1):
    """AIMET manual mode: each named Conv2d compressed to the given MAC ratio (its cost after / before); a single
    float applies to every eligible Conv2d. ``eval_fn`` only fills AIMET's baseline/compressed accuracy stats
    (NaN without it). Returns (compressed model, info)."""
    _aimet_torch, _compress_mod, defs, _common_defs = load_aimet()
    original = model
    model = copy.deepcopy(model).eval()
    ok = eligible_convs(model, example_input)
    bad = ineligible_convs(model, example_input)
    if isinstance(layer_ratios, (int, float)):
        layer_ratios = {n: float(layer_ratios) for n in ok}
    wrong = {n: bad.get(n, "not a Conv2d of the model (spatial SVD takes Conv2d only)")
             for n in layer_ratios if n not in ok}
    if wrong:
        raise ValueError(f"layers spatial SVD cannot take: {wrong}")
    for n, r in layer_ratios.items():
        if not 0 < r <= 1:
            raise ValueError(f"ratio for {n} must be in (0, 1], got {r}")

    def eval_callback(m, iterations=None, use_cuda=False) -> float:   # (model, iterations, use_cuda=)
        if eval_fn is None:
            return float("nan")
        with torch.no_grad():
            return float(eval_fn(m.eval()))

    pairs = [defs.ModuleCompRatioPair(ok[n], Decimal(str(r))) for n, r in layer_ratios.items()]
    params = defs.SpatialSvdParameters(defs.SpatialSvdParameters.Mode.manual,
                                       defs.SpatialSvdParameters.ManualModeParams(pairs), multiplicity=multiplicity)
    extra = {"layer_ratios": {n: float(r) for n, r in layer_ratios.items()}, "multiplicity": multiplicity,
             "ignored": bad}
    compressed, stats, info = _compress(model, example_input, eval_callback, params, "manual", extra)
    return _finish(original, compressed, example_input, stats, info)
