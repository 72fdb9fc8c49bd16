"""``fit``: the most accurate truncation of a LoD model that meets a latency budget on one device.

latency table (measured or estimated) + importance table -> solve_ranks -> truncate -> BN recalibration
-> held-out accuracy -> .pte and .onnx, each run and compared with eager -> measured end to end when
the device is reachable; if the measurement misses the budget, the solver's budget is tightened and
the plan solved again (a bounded number of tries). Everything lands in the output folder at once, at
the end, or not at all.
"""

from __future__ import annotations

import json
import math
import time
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch

from maestro_edge.data import load_eval_data
from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.errors import InfeasibleBudget, TableError, UsageError
from maestro_edge.export.bundle import bundle_pte, check_bundle
from maestro_edge.export.onnx_export import export_onnx_bytes
from maestro_edge.export.pte import lower_to_pte
from maestro_edge.export.truncate import deployable
from maestro_edge.export.verify import compare_onnx, compare_pte
from maestro_edge.latency.measure import Protocol, time_programs
from maestro_edge.latency.probes import DENSE, layer_options
from maestro_edge.latency.profile import estimated_table, measure_host_table
from maestro_edge.latency.table import LatencyTable, cached_table_path
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.importance import penalty
from maestro_edge.lod.layers import lod_layers
from maestro_edge.outputs import check_output_folder, write_outputs
from maestro_edge.solve import LayerOptions, Option, solve_ranks
from maestro_edge.train.evaluate import all_cores, evaluate, recalibrate_bn_
from maestro_edge.user_files import read_user_text

SCHEMA_VERSION = 1
MAX_TRIES = 4
VERIFY_SAMPLES = 16
EVAL_IMAGES = 2000    # at most this many test (and validation) images: ±0.7 pp at 90% accuracy, and each fit
                      # scores 3 models (dense, fitted, uniform baseline): a 5-GMAC model costs ~45 ms per image here
EVAL_BATCH = 8        # CPU batches: big ones of a 96x96 model spend as much time in page faults as in convs
BN_SAMPLES = 500      # held-out images BatchNorm is recalibrated on (each pass costs a forward of the model)
BN_BATCH = 64         # BatchNorm statistics need larger batches than evaluation
UNIFORM_STEPS = 64   # resolution of the uniform-rank baseline's fraction
Progress = Callable[[str], None]


def load_table(path: Path, ckpt: LoDCheckpoint, profile: DeviceProfile) -> LatencyTable:
    """A latency table from a file, refused unless it was made for this model and device."""
    table = LatencyTable.load(path)
    if table.model_digest != ckpt.digest():
        raise TableError(f"latency table {path} was made for another model (digest {table.model_digest}, this "
                         f"model is {ckpt.digest()}); profile this model with 'maestro-edge profile'")
    if table.device != profile.name:
        raise TableError(f"latency table {path} was made for device {table.device!r}, not {profile.name!r}; pass "
                         f"--device {table.device}, or profile {profile.name} with 'maestro-edge profile'")
    missing = set(lod_layers(ckpt.model)) - set(table.layers)
    if missing:
        raise TableError(f"latency table {path} lacks layers {', '.join(sorted(missing))}; profile again")
    return table


def latency_table_for(ckpt: LoDCheckpoint, profile: DeviceProfile, progress: Progress | None = None) -> LatencyTable:
    """The measured table cached for this device and model, else measure it (host), else estimate."""
    path = cached_table_path(profile.name, ckpt.digest())
    if path.is_file():
        return load_table(path, ckpt, profile)
    if profile.is_host:
        report = (lambda what, i, n: progress(f"profiling {what} ({i}/{n})")) if progress else None
        return measure_host_table(ckpt, profile, progress=report)
    return estimated_table(ckpt, profile)


def solver_layers(ckpt: LoDCheckpoint, table: LatencyTable) -> list[LayerOptions]:
    """Per layer: every rank that has both a latency and an importance entry, plus dense."""
    importance = ckpt.importance.get("layers", {})
    layers = []
    for name, layer in lod_layers(ckpt.model).items():
        entry = importance.get(name)
        if entry is None:
            raise UsageError(f"the checkpoint has no importance entry for layer {name}; retrain it with 'maestro-edge train'")
        penalties = {rank: penalty(entry, i) for i, rank in enumerate(entry["ranks"])}
        options = [Option(DENSE, table.layers[name].dense_ms, 0.0)]
        options += [Option(rank, table.layers[name].option_ms(rank), penalties[rank])
                    for rank in layer_options(layer) if rank != DENSE and rank in penalties]
        layers.append(LayerOptions(name, tuple(options)))
    return layers


class Fitter:
    """One loaded model, fitted to any number of devices and budgets (data and baselines loaded once)."""

    def __init__(self, ckpt: LoDCheckpoint, progress: Progress | None = None, bundle: bool = False):
        self.ckpt = ckpt
        self.bundle = bundle   # also write model.bpte: the .pte with reference inputs/outputs (BundledProgram)
        self.say = progress or (lambda message: None)
        self.example = (torch.zeros(ckpt.input_shape),)

    @cached_property
    def data(self):
        return load_eval_data(self.ckpt.data["name"], self.ckpt.data.get("seed", 0), limit=EVAL_IMAGES)

    @cached_property
    def dense_accuracy(self) -> float:
        with all_cores():
            return evaluate(self.ckpt.model, self.data.test_x, self.data.test_y, EVAL_BATCH)[0]

    def accuracy_of(self, choices: dict) -> tuple[torch.nn.Module, float, float]:
        """The truncated model (own BatchNorm statistics) and its held-out accuracy and loss."""
        small = deployable(self.ckpt.model, choices)
        with all_cores():
            recalibrate_bn_(small, self.data.val_x[:BN_SAMPLES], BN_BATCH)
            accuracy, loss = evaluate(small, self.data.test_x, self.data.test_y, EVAL_BATCH)
        return small, accuracy, loss

    def fit(self, profile: DeviceProfile, budget_ms: float, out_dir: Path, table: LatencyTable | None = None,
            timer=None) -> dict:
        """Solve, export, verify and (where reachable) measure; write ``out_dir``; return the fit record.

        The exported model is measured on this host for the host profile, or through ``timer`` (a
        latency.profile.Timer, e.g. a RemoteTimer over ssh) for a reachable device; else not at all.
        """
        started = time.perf_counter()
        out_dir = Path(out_dir)
        check_output_folder(out_dir)
        table = table or latency_table_for(self.ckpt, profile, self.say)
        layers = solver_layers(self.ckpt, table)
        plan, (small, accuracy, loss), pte, tries = self._solve_and_measure(profile, budget_ms, table, layers, timer)
        files, verification = self._artifacts(small, pte)
        record = {
            "schema_version": SCHEMA_VERSION,
            "device": profile.name,
            "budget_ms": budget_ms,
            "predicted_ms": plan.predicted_ms,
            "latency_source": table.source,
            "measured_ms": tries[-1]["measured_ms"],
            "ranks": dict(plan.choices),
            "accuracy": accuracy,
            "dense_accuracy": self.dense_accuracy,
            "estimated_accuracy_drop": plan.penalty,
            # False when the untruncated model already meets the budget (nothing had to give).
            "budget_binding": table.predict_ms({name: DENSE for name in table.layers}) > budget_ms,
            "test_loss": loss,
            "runtime": profile.runtime,
            "threads": table.threads,
            "max_ranks": {name: layer.active_rank for name, layer in lod_layers(self.ckpt.model).items()},
            "baselines": self._baselines(table, budget_ms),
            "tries": tries,
            "verification": verification,
            "model": self._model_info(),
            "artifacts": [],
            "wall_time_s": None,
        }
        write_outputs(out_dir, files, record, "fit.json", started)
        return record

    def export(self, choices: dict, out_dir: Path) -> dict:
        """Truncate to ``choices``, export .pte and .onnx, verify both, write ``out_dir`` (no solving)."""
        started = time.perf_counter()
        out_dir = Path(out_dir)
        check_output_folder(out_dir)
        small, accuracy, loss = self.accuracy_of(choices)
        self.say("exporting .pte (ExecuTorch, XNNPACK)")
        pte = lower_to_pte(small, self.example)
        files, verification = self._artifacts(small, pte)
        record = {"schema_version": SCHEMA_VERSION, "ranks": dict(choices), "accuracy": accuracy,
                  "dense_accuracy": self.dense_accuracy, "test_loss": loss, "verification": verification,
                  "model": self._model_info(), "artifacts": [], "wall_time_s": None}
        write_outputs(out_dir, files, record, "export.json", started)
        return record

    def _artifacts(self, small, pte: bytes) -> tuple[dict[str, bytes], dict]:
        """The files to write (.pte, .onnx, and .bpte when bundling), each checked against PyTorch."""
        self.say("exporting .onnx and checking the exports against PyTorch")
        onnx_bytes = export_onnx_bytes(small, self.example)
        samples = self.data.test_x[:VERIFY_SAMPLES]
        files = {"model.pte": pte, "model.onnx": onnx_bytes}
        verification = {"pte_max_abs_error": compare_pte(pte, small, samples),
                        "onnx_max_abs_error": compare_onnx(onnx_bytes, small, samples),
                        "samples": len(samples), "inputs": "held-out test images, batch 1"}
        if self.bundle:
            files["model.bpte"] = bundle_pte(pte, small, samples)
            verification["bpte_self_check"] = check_bundle(files["model.bpte"])
        return files, verification

    def _model_info(self) -> dict:
        return {"digest": self.ckpt.digest(), "arch": self.ckpt.arch["name"], "data": self.ckpt.data["name"],
                "eval_data": self.data.name, "test_samples": len(self.data.test_x)}

    def _measure(self, profile, small, pte: bytes, timer) -> float | None:
        protocol = Protocol(threads=profile.threads)
        if timer is not None:
            self.say(f"measuring the exported model on {profile.name}")
            return timer.time({"model": (small, self.ckpt.input_shape)}, protocol, "model")["model"].p50_ms
        if profile.is_host:
            self.say("measuring the exported model on this host")
            return time_programs({"model": (pte, self.ckpt.input_shape)}, protocol)["model"].p50_ms
        return None

    def _solve_and_measure(self, profile, budget_ms, table, layers, timer):
        tries, solver_budget = [], budget_ms
        fastest_ms = table.overhead_ms + sum(min(o.latency_ms for o in layer.options) for layer in layers)
        for _ in range(MAX_TRIES):
            self.say(f"solving for {solver_budget:.4g} ms")
            try:
                plan = solve_ranks(layers, solver_budget, overhead_ms=table.overhead_ms)
            except InfeasibleBudget as e:
                raise InfeasibleBudget(
                    f"budget {budget_ms:g} ms is below the fastest possible model on {profile.name}: {e.min_ms:.4g} ms "
                    f"({table.source}, {profile.runtime}, {table.threads} thread(s)); raise --ms to at least "
                    f"{e.min_ms:.4g}", min_ms=e.min_ms) from None
            self.say("measuring held-out accuracy")
            scored = self.accuracy_of(dict(plan.choices))
            small = scored[0]
            self.say("exporting .pte (ExecuTorch, XNNPACK)")
            pte = lower_to_pte(small, self.example)
            measured = self._measure(profile, small, pte, timer)
            tries.append({"solver_budget_ms": solver_budget, "predicted_ms": plan.predicted_ms,
                          "measured_ms": measured, "ranks": dict(plan.choices)})
            if measured is None or measured <= budget_ms:
                return plan, scored, pte, tries
            # Missed: tighten the solver's budget by the observed prediction error (plus 2%) and try again.
            solver_budget = min(solver_budget - 1e-6, solver_budget * budget_ms / measured * 0.98)
            if solver_budget < fastest_ms:
                break
        raise InfeasibleBudget(f"the exported model measured {measured:.4g} ms on {profile.name} after {len(tries)} "
                               f"tries, above the {budget_ms:g} ms budget (the table predicts at least "
                               f"{fastest_ms:.4g} ms); raise --ms or profile again", min_ms=measured)

    def _baselines(self, table: LatencyTable, budget_ms: float) -> list[dict]:
        """What the user would get without the solver: the dense model, and one rank fraction everywhere."""
        layers = lod_layers(self.ckpt.model)
        dense = {name: DENSE for name in layers}
        baselines = [{"name": "dense", "predicted_ms": table.predict_ms(dense), "accuracy": self.dense_accuracy}]
        for step in range(UNIFORM_STEPS, 0, -1):
            fraction = step / UNIFORM_STEPS
            uniform = {name: max(1, math.ceil(layer.active_rank * fraction)) for name, layer in layers.items()}
            predicted = table.predict_ms(uniform)
            if predicted <= budget_ms:
                _, accuracy, _ = self.accuracy_of(uniform)
                baselines.append({"name": "uniform-rank", "fraction": fraction, "predicted_ms": predicted,
                                  "accuracy": accuracy})
                break
        return baselines


def fit(ckpt: LoDCheckpoint, profile: DeviceProfile, budget_ms: float, out_dir: Path,
        progress: Progress | None = None) -> dict:
    """One fit (see Fitter.fit)."""
    return Fitter(ckpt, progress).fit(profile, budget_ms, out_dir)


def read_ranks(path: Path, ckpt: LoDCheckpoint) -> dict:
    """Ranks from a fit.json (or any JSON with "ranks"), refused if made for another model."""
    text = read_user_text(path, "plan", "the fit.json file that 'maestro-edge fit' wrote", UsageError)
    try:
        record = json.loads(text)
        ranks = record["ranks"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UsageError(f"{path} is not a plan: expected a fit.json (JSON with \"ranks\")") from None
    digest = record.get("model", {}).get("digest") if isinstance(record.get("model"), dict) else None
    if digest and digest != ckpt.digest():
        raise UsageError(f"plan {path} was made for another model (digest {digest}, this model is "
                         f"{ckpt.digest()}); fit this model instead")
    if not isinstance(ranks, dict):
        raise UsageError(f"{path}: \"ranks\" must map layer names to ranks or \"dense\"")
    return ranks
