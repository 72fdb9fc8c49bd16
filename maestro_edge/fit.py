"""``fit``: the most accurate truncation of a LoD model that meets a latency budget on one device.

latency table (measured or estimated) + importance table -> solve_ranks -> truncate -> BN recalibration
-> held-out accuracy -> .pte and .onnx, each run and compared with eager -> measured end to end when
the device is reachable; if the measurement misses the budget, the solver's budget is tightened and
the plan solved again (a bounded number of tries). Everything lands in the output folder at once, at
the end, or not at all.
"""

from __future__ import annotations

import contextlib
import json
import time
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch

from maestro_edge import validate
from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.errors import InfeasibleBudget, UsageError
from maestro_edge.export.artifact import ExportArtifact
from maestro_edge.export.bundle import bundle_pte, check_bundle
from maestro_edge.export.fit_report import FitReport
from maestro_edge.export.onnx_export import export_onnx_bytes
from maestro_edge.export.pte import PteExport, check_exportable, export_pte
from maestro_edge.export.truncate import deployable
from maestro_edge.export.verify import compare_onnx, compare_pte
from maestro_edge.latency.anchor import Anchor, anchored
from maestro_edge.latency.error_band import ErrorBand, band_ms, error_band, pessimistic_budget_ms
from maestro_edge.latency.load import busy_warning
from maestro_edge.latency.measure import Protocol, Timing
from maestro_edge.latency.probes import DENSE, layer_options
from maestro_edge.latency.profile import estimated_table, table_lock
from maestro_edge.latency.table import LatencyTable, cached_table_path, load_table
from maestro_edge.latency.target import Target
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.importance import penalty
from maestro_edge.lod.layers import lod_layers
from maestro_edge.outputs import claim_output_folder, write_outputs
from maestro_edge.progress import Reporter, as_reporter
from maestro_edge.quality import Score, quality_for
from maestro_edge.solve import LayerOptions, Option, solve_ranks
from maestro_edge.solve.alternatives import alternative_plans
from maestro_edge.user_files import read_user_text

MAX_TRIES = 4
UNIFORM_STEPS = 64   # resolution of the uniform-rank baseline's fraction
Progress = Callable[[str], None]


def latency_table_for(ckpt: LoDCheckpoint, profile: DeviceProfile, progress: Progress | None = None,
                      full_delegation: bool = False, allow_busy: bool = False) -> LatencyTable:
    """The measured table cached for this device and model, else measure it (a device whose profile says its
    latencies are measured, reachable with what its profile says: the host; a busy host refused unless
    ``allow_busy``), else estimate."""
    path = cached_table_path(profile, ckpt.latency_digest())
    if path.is_file():
        table = load_table(path, ckpt, profile)
        warning = busy_warning(table)
        if progress and warning:
            progress(f"warning: the cached table {path}: {warning}")
        return table
    target = Target.resolve(profile)
    if profile.latency_source == "measured" and target.measurable:
        with table_lock(profile, path):   # another process profiling this model here: refused now, not after the export
            if progress:
                progress("exporting the whole model once (a model ExecuTorch cannot take fails here)")
            check_exportable(ckpt, full_delegation)
            report = (lambda what, i, n: progress(f"profiling {what} ({i}/{n})")) if progress else None
            return target.measure_table(ckpt, progress=report, allow_busy=allow_busy)
    return estimated_table(ckpt, profile)


TIE_BREAK = 1e-6   # per unit of rank fraction cut: among truncations that cost nothing, keep the most rank


def solver_penalty(measured_drop: float, rank: int, active_rank: int) -> float:
    """A truncation never counts as a gain: a negative measured drop is held-out noise, so it is clamped at 0,
    and a tiny cost per rank cut makes a budget that does not bind keep the whole model."""
    return max(0.0, measured_drop) + TIE_BREAK * (1 - rank / active_rank)


def solver_layers(ckpt: LoDCheckpoint, table: LatencyTable) -> list[LayerOptions]:
    """Per layer: every rank that has both a latency and an importance entry, plus dense."""
    importance = ckpt.importance.get("layers", {})
    layers = []
    for name, layer in lod_layers(ckpt.model).items():
        entry = importance.get(name)
        if entry is None:
            raise UsageError(f"the checkpoint has no importance entry for layer {name}; retrain it with 'maestro-edge train'")
        penalties = {rank: solver_penalty(penalty(entry, i), rank, layer.active_rank)
                     for i, rank in enumerate(entry["ranks"])}
        options = [Option(DENSE, table.layers[name].dense_ms, 0.0)]
        options += [Option(rank, table.layers[name].option_ms(rank), penalties[rank])
                    for rank in layer_options(layer) if rank != DENSE and rank in penalties]
        layers.append(LayerOptions(name, tuple(options)))
    return layers


class Fitter:
    """One loaded model, fitted to any number of devices and budgets (data and the dense score loaded once)."""

    def __init__(self, ckpt: LoDCheckpoint, progress: Reporter | Progress | None = None, bundle: bool = False,
                 quality=None, full_delegation: bool = False, baselines: bool = False, pessimistic: bool = False,
                 plan_candidates: int = 0, recovery=None, allow_busy: bool = False):
        """``quality``: how truncated models are scored (maestro_edge.quality); by default held-out accuracy
        for a built-in model, the importance table's estimate for a user model (pass a UserMetric to measure).
        ``full_delegation``: refuse a model with any op outside XNNPACK instead of running it on portable kernels.
        ``baselines``: also score the uniform-rank model that meets each budget (one more model to score).
        ``pessimistic``: on an estimated device, solve so that the top of the estimate's error band meets
        the budget (the band of the device class, from the published validation suite).
        ``plan_candidates``: also score up to that many of the solver's next-best plans on validation data (the
        quality's ``select``) and keep the best that meets the budget: the importance table's summed drops are a
        guess at a plan's true drop (README), a validation score is a measurement. Costs one score per plan.
        ``recovery``: a train.recover.Recovery: the chosen truncated model is fine-tuned toward the dense one
        before it is scored and exported (the latency does not change: only weights move).
        ``allow_busy``: a table measured now on a busy host is kept (flagged) instead of refused.
        """
        self.ckpt = ckpt
        self.bundle = bundle   # also write model.bpte: the .pte with reference inputs/outputs (BundledProgram)
        self.progress = as_reporter(progress)
        self.say = self.progress.say
        self.example = ckpt.examples
        self.quality = quality or quality_for(ckpt)
        self.full_delegation = full_delegation
        self.baselines = baselines
        self.pessimistic = pessimistic
        self.plan_candidates = plan_candidates
        self.recovery = recovery
        self.allow_busy = allow_busy
        if plan_candidates and self.quality.source != "measured":
            raise UsageError("choosing among plans needs a measured metric: pass --eval with your validation "
                             "function (or drop --choose-among)")

    @cached_property
    def dense_score(self) -> Score:
        return self.quality.dense(self.progress)

    def truncated(self, choices: dict) -> torch.nn.Module:
        """The model truncated to ``choices``, built from standard layers, with its own BatchNorm statistics."""
        small = deployable(self.ckpt.model, choices)
        self.quality.calibrate_(small, self.progress)
        return small

    def score(self, small: torch.nn.Module, pte: PteExport) -> Score:
        """The held-out metric of the exported model (or of ``small``, for a function of the module)."""
        return self.quality.score(small, pte.buffer, self.progress)

    def accuracy_of(self, choices: dict) -> tuple[torch.nn.Module, Score]:
        """Truncate, recalibrate, export and score: what a plan gives."""
        small = self.truncated(choices)
        return small, self.score(small, export_pte(small, self.example, self.full_delegation))

    def fit(self, profile: DeviceProfile, budget_ms: float, out_dir: Path, table: LatencyTable | None = None,
            timer=None) -> dict:
        """Solve, export, verify and (where reachable) measure; write ``out_dir``; return fit.json's record.

        The exported model is measured through ``timer`` (a latency.profile.Timer, opened by a
        latency.target.Target), by default the device's own where its profile says how to reach it (the
        host: this process); else not at all.
        """
        started = time.perf_counter()
        out_dir = Path(out_dir)
        # one writer per folder (a killed writer's leftovers cleaned); the timer is closed after
        with claim_output_folder(out_dir), self._timer(profile, timer) as timer:
            table = table or latency_table_for(self.ckpt, profile, self.say, self.full_delegation, self.allow_busy)
            table, anchor = self._anchor(profile, table, timer)
            layers = solver_layers(self.ckpt, table)
            band = error_band(profile) if table.source == "estimated" else None
            solver_budget = pessimistic_budget_ms(budget_ms, band) if self.pessimistic and band else budget_ms
            plan, small, pte, tries = self._solve_and_measure(profile, budget_ms, table, layers, timer, solver_budget)
            plan_choice = None
            if self.plan_candidates:
                plan, small, pte, plan_choice = self._choose_plan(profile, budget_ms, table, layers, timer,
                                                                  plan, small, pte, tries)
            recovered = None
            if self.recovery:
                small, pte, recovered = self._recover(small)
            score, dense = self.score(small, pte), self.dense_score
            artifacts, verification = self._artifacts(small, pte)
            report = FitReport(
                device=profile.name,
                budget_ms=budget_ms,
                predicted_ms=plan.predicted_ms,
                **self._band_fields(plan.predicted_ms, band),
                solved_for_ms=solver_budget,
                latency_source=table.source,
                measured_ms=tries[-1]["measured_ms"],
                measured_p90_ms=tries[-1]["measured_p90_ms"],
                ranks=dict(plan.choices),
                layer_ms={name: table.layers[name].option_ms(choice) for name, choice in plan.choices.items()},
                overhead_ms=table.overhead_ms,
                anchor=anchor.to_dict() if anchor else None,
                accuracy=score.value,
                dense_accuracy=dense.value,
                scores={"fitted": score.to_dict(), "dense": dense.to_dict()},
                estimated_accuracy_drop=plan.penalty,
                metric={**self.quality.metric, "source": self.quality.source},
                budget_binding=table.predict_ms({name: DENSE for name in table.layers}) > solver_budget,
                test_loss=score.loss,
                runtime=profile.runtime,
                threads=table.threads,
                max_ranks={name: layer.active_rank for name, layer in lod_layers(self.ckpt.model).items()},
                baselines=self._baselines(table, budget_ms),
                tries=tries,
                plan_choice=plan_choice,
                recovery=recovered,
                delegation=pte.delegation(),
                verification=verification,
                model=self._model_info(),
                artifacts=artifacts,
            )
            return self._write(out_dir, report, started)

    def export(self, choices: dict, out_dir: Path) -> dict:
        """Truncate to ``choices``, export .pte and .onnx, verify both, write ``out_dir`` (no solving)."""
        started = time.perf_counter()
        out_dir = Path(out_dir)
        with claim_output_folder(out_dir):
            small = self.truncated(choices)
            self.say("exporting .pte (ExecuTorch, XNNPACK)")
            pte = export_pte(small, self.example, self.full_delegation)
            score, dense = self.score(small, pte), self.dense_score
            artifacts, verification = self._artifacts(small, pte)
            report = FitReport(kind="export", ranks=dict(choices), accuracy=score.value, dense_accuracy=dense.value,
                               scores={"exported": score.to_dict(), "dense": dense.to_dict()}, test_loss=score.loss,
                               metric={**self.quality.metric, "source": self.quality.source},
                               delegation=pte.delegation(), verification=verification, model=self._model_info(),
                               artifacts=artifacts)
            return self._write(out_dir, report, started)

    @staticmethod
    def _write(out_dir: Path, report: FitReport, started: float) -> dict:
        """The files and the report into ``out_dir``, all at once; the report's record."""
        def save(folder: Path) -> None:
            report.wall_time_s = round(time.perf_counter() - started, 2)
            report.save(folder / report.file_name)

        write_outputs(out_dir, {a.path: a.data for a in report.artifacts}, save)
        return report.to_dict()

    @staticmethod
    def _timer(profile: DeviceProfile, timer):
        """``timer``, or the device's own where its profile says how to reach it (the host), else None."""
        return contextlib.nullcontext(timer) if timer is not None else Target.resolve(profile).timer_if_measurable()

    def _artifacts(self, small, pte: PteExport) -> tuple[list[ExportArtifact], dict]:
        """The files to write (.pte, .onnx, and .bpte when bundling), each checked against PyTorch."""
        self.say("exporting .onnx and checking the exports against PyTorch")
        onnx_bytes = export_onnx_bytes(small, self.example)
        samples = self.quality.verification_samples()
        artifacts = [ExportArtifact.of("model.pte", pte.buffer, compare_pte(pte.buffer, small, samples)),
                     ExportArtifact.of("model.onnx", onnx_bytes, compare_onnx(onnx_bytes, small, samples))]
        verification = {"pte_max_abs_error": artifacts[0].max_abs_error,
                        "onnx_max_abs_error": artifacts[1].max_abs_error,
                        "samples": len(samples), "inputs": self.quality.info()["verify_inputs"]}
        if self.bundle:
            artifacts.append(ExportArtifact.of("model.bpte", bundle_pte(pte.buffer, small, samples)))
            verification["bpte_self_check"] = check_bundle(artifacts[-1].data)
        return artifacts, verification

    def _model_info(self) -> dict:
        info = {k: v for k, v in self.quality.info().items() if k != "verify_inputs"}
        return {"digest": self.ckpt.digest(), "arch": self.ckpt.arch["name"], "data": self.ckpt.data["name"], **info}

    def _measure(self, profile, small, pte: PteExport, timer) -> Timing | None:
        if timer is None:
            return None
        self.say(f"measuring the exported model on {profile.name}")
        return timer.time_model(small, pte.buffer, self.example, Protocol(threads=profile.threads))

    def _anchor(self, profile, table: LatencyTable, timer) -> tuple[LatencyTable, Anchor | None]:
        """A measured table scaled to the device's speed now: the dense model timed once where reachable."""
        if table.source != "measured" or timer is None:
            return table, None
        self.say(f"timing the dense model on {profile.name} (the table is scaled to the device's speed now)")
        table, anchor = anchored(table, self.ckpt, timer, Protocol(threads=profile.threads))
        warning = anchor and anchor.warning(profile.name)
        if warning:
            self.say(warning)
        return table, anchor

    @staticmethod
    def _band_fields(predicted_ms: float, band: ErrorBand | None) -> dict:
        if band is None:
            return {"predicted_low_ms": None, "predicted_high_ms": None, "error_band": None}
        low, high = band_ms(predicted_ms, band)
        return {"predicted_low_ms": low, "predicted_high_ms": high, "error_band": band._asdict()}

    def _solve_and_measure(self, profile, budget_ms, table, layers, timer, solver_budget):
        tries = []
        fastest_ms = table.overhead_ms + sum(min(o.latency_ms for o in layer.options) for layer in layers)
        for _ in range(MAX_TRIES):
            self.say(f"solving for {solver_budget:.4g} ms")
            try:
                plan = solve_ranks(layers, solver_budget, overhead_ms=table.overhead_ms)
            except InfeasibleBudget as e:
                pessimistic = (f" (--pessimistic solves for {solver_budget:.4g} ms, the top of the estimate's "
                               "error band)" if solver_budget < budget_ms and not tries else "")
                raise InfeasibleBudget(
                    f"budget {budget_ms:g} ms{pessimistic} is below the fastest possible model on {profile.name}: "
                    f"{e.min_ms:.4g} ms ({table.source}, {profile.runtime}, {table.threads} thread(s)); raise --ms "
                    f"to at least {e.min_ms * budget_ms / solver_budget:.4g}", min_ms=e.min_ms) from None
            small = self.truncated(dict(plan.choices))
            self.say("exporting .pte (ExecuTorch: XNNPACK where it takes the op)")
            pte = export_pte(small, self.example, self.full_delegation)
            timing = self._measure(profile, small, pte, timer)
            measured = timing.p50_ms if timing else None
            tries.append({"solver_budget_ms": solver_budget, "predicted_ms": plan.predicted_ms,
                          "measured_ms": measured, "measured_p90_ms": timing.p90_ms if timing else None,
                          "ranks": dict(plan.choices)})
            if measured is not None and measured > budget_ms:
                # a miss tightens the budget for every later try: time it again first (a spike only slows, so
                # the lower timing is the model's)
                again = self._measure(profile, small, pte, timer)
                tries[-1]["remeasured_ms"] = again.p50_ms
                measured = tries[-1]["measured_ms"] = min(measured, again.p50_ms)
            if measured is None or measured <= budget_ms:
                return plan, small, pte, tries
            # Missed: tighten the solver's budget by the observed prediction error (plus 2%) and try again.
            solver_budget = min(solver_budget - 1e-6, solver_budget * budget_ms / measured * 0.98)
            if solver_budget < fastest_ms:
                break
        raise InfeasibleBudget(f"the exported model measured {measured:.4g} ms on {profile.name} after {len(tries)} "
                               f"tries, above the {budget_ms:g} ms budget (the table predicts at least "
                               f"{fastest_ms:.4g} ms); raise --ms or profile again", min_ms=measured)

    def _recover(self, small):
        """The chosen model fine-tuned toward the dense one, BatchNorm recalibrated, exported again."""
        self.say(f"recovery: fine-tuning the fitted model for {self.recovery.epochs} epoch(s)")
        record = self.recovery.run(small, deployable(self.ckpt.model, {}), self.say)
        self.quality.calibrate_(small, self.progress)
        return small, export_pte(small, self.example, self.full_delegation), record

    def _choose_plan(self, profile, budget_ms, table, layers, timer, plan, small, pte, tries):
        """Quality-aware plan choice: the solver's plan and its next-best neighbours (solve.alternatives), each
        truncated, recalibrated and scored on validation data; the best is kept where it also measures within
        the budget (else the solver's plan, which did). Returns the plan, its model and .pte, and the record."""
        solver_budget = tries[-1]["solver_budget_ms"]
        others = alternative_plans(layers, solver_budget, table.overhead_ms, plan, self.plan_candidates)
        candidates = [(plan, small)] + [(alt, self.truncated(dict(alt.choices))) for alt in others]
        self.say(f"choosing among {len(candidates)} plans on validation data")
        record = [{"ranks": dict(p.choices), "predicted_ms": p.predicted_ms, "estimated_drop": p.penalty,
                   "validation_score": self.quality.select(m, self.progress)} for p, m in candidates]
        best = max(range(len(candidates)), key=lambda i: (record[i]["validation_score"], -i))   # ties: the solver's
        record[best]["chosen"] = True
        if best == 0:
            return plan, small, pte, record
        chosen, chosen_small = candidates[best]
        chosen_pte = export_pte(chosen_small, self.example, self.full_delegation)
        timing = self._measure(profile, chosen_small, chosen_pte, timer)
        record[best]["measured_ms"] = timing.p50_ms if timing else None
        if timing and timing.p50_ms > budget_ms:   # over budget when measured: keep the plan that met it
            record[best]["chosen"], record[0]["chosen"] = False, True
            return plan, small, pte, record
        if timing:
            tries.append({"solver_budget_ms": solver_budget, "predicted_ms": chosen.predicted_ms,
                          "measured_ms": timing.p50_ms, "measured_p90_ms": timing.p90_ms,
                          "ranks": dict(chosen.choices), "plan_choice": True})
        return chosen, chosen_small, chosen_pte, record

    def _baselines(self, table: LatencyTable, budget_ms: float) -> list[dict]:
        """What the user would get without the solver: the dense model, and (when asked: one more model to
        score) one rank fraction everywhere."""
        layers = lod_layers(self.ckpt.model)
        dense = {name: DENSE for name in layers}
        baselines = [{"name": "dense", "predicted_ms": table.predict_ms(dense), "accuracy": self.dense_score.value,
                      "score": self.dense_score.to_dict()}]
        if not self.baselines:
            return baselines
        for step in range(UNIFORM_STEPS, 0, -1):
            fraction = step / UNIFORM_STEPS
            uniform = uniform_choices(self.ckpt.model, fraction)
            predicted = table.predict_ms(uniform)
            if predicted <= budget_ms:
                self.say(f"scoring the uniform-rank baseline ({fraction:.0%} of every layer's rank)")
                _, score = self.accuracy_of(uniform)
                baselines.append({"name": "uniform-rank", "fraction": fraction, "predicted_ms": predicted,
                                  "accuracy": score.value, "score": score.to_dict()})
                break
        return baselines


def uniform_choices(model, fraction: float) -> dict:
    """One rank fraction in every layer, on the ranks the table measured: the largest grid rank at or below the
    fraction (the smallest where none is), dense where the fraction is past the grid's top (the break-even rank,
    above which the factor pair is slower than the dense layer). Off the grid the table interpolates, and
    XNNPACK's cost is not linear between grid ranks: off-grid uniform plans ran up to 18% slower than predicted."""
    choices = {}
    for name, layer in lod_layers(model).items():
        grid = [rank for rank in layer_options(layer) if rank != DENSE]
        target = layer.active_rank * fraction
        choices[name] = DENSE if target > max(grid) else max((r for r in grid if r <= target), default=min(grid))
    return choices


def fit(ckpt: LoDCheckpoint, profile: DeviceProfile, budget_ms: float, out_dir: Path,
        progress: Reporter | Progress | None = None) -> dict:
    """One fit (see Fitter.fit)."""
    return Fitter(ckpt, progress).fit(profile, budget_ms, out_dir)


def read_ranks(path: Path, ckpt: LoDCheckpoint) -> dict:
    """Ranks from a fit.json (or any JSON with "ranks"), refused if made for another model."""
    text = read_user_text(path, "plan", "the fit.json file that 'maestro-edge fit' wrote", UsageError)
    try:
        record = validate.parse_json(text)   # JSON nested too deep is malformed JSON too, not a traceback
        ranks = record["ranks"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UsageError(f"{path} is not a plan: expected a fit.json (JSON with \"ranks\"); pass the fit.json "
                         "that 'maestro-edge fit' wrote") from None
    digest = record.get("model", {}).get("digest") if isinstance(record.get("model"), dict) else None
    if digest and digest != ckpt.digest():
        raise UsageError(f"plan {path} was made for another model (digest {validate.show(digest)}, this model is "
                         f"{ckpt.digest()}); fit this model instead")
    if not isinstance(ranks, dict):
        raise UsageError(f"{path}: \"ranks\" must map layer names to ranks or \"dense\"")
    layers = lod_layers(ckpt.model)
    missing = [name for name in layers if name not in ranks]
    if missing and len(missing) < len(layers):   # none named: the unknown names are refused later
        raise UsageError(f"plan {path} names no rank for {len(missing)} of the model's layers ({', '.join(missing[:3])}"
                         f"{', ...' if len(missing) > 3 else ''}); give every layer a rank or \"dense\", as fit.json "
                         "does")
    return ranks
