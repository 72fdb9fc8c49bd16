"""How ``fit`` scores a truncated model: one interface, three sources.

- ``HeldOutAccuracy``: the built-in models, on the held-out images of their data set, run in the
  exported ``.pte`` itself (ExecuTorch, all cores): the accuracy of the file that ships (measured);
- ``UserMetric``: the user's own ``eval_fn(model) -> float`` on their held-out data, and optionally
  BatchNorm recalibrated on their own batches (measured);
- ``ImportanceEstimate``: a user model with no eval function at hand: the importance table's predicted
  drop from the metric stored at save time (estimated, and fit.json says so).

Every score says how many samples it rests on and, for accuracy, its 95% interval, so a fitted model
never seems to "beat dense" by noise. The dense model is scored after the same BatchNorm
recalibration as the truncated ones; its score can be stored in the checkpoint once
(``python -m maestro_edge.quality store-dense CKPT``), keyed by the exact held-out images and protocol.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from maestro_edge.data import load_eval_data
from maestro_edge.entry_points import checked_batches
from maestro_edge.errors import UsageError
from maestro_edge.lod.importance import score_model
from maestro_edge.progress import Reporter
from maestro_edge.train.evaluate import all_cores, core_count, recalibrate_bn_, recalibrate_bn_batches_  # noqa: F401 (public here too)

EVAL_IMAGES = 1000    # the first 1000 test images: the ones shipped in assets/, the same ones when the full set is
                      # installed; ±2.3 pp (95%) at 84% accuracy, and the interval is reported with every score
BN_SAMPLES = 200      # held-out validation images BatchNorm is recalibrated on (a train-mode forward each): the
                      # default's 20 ms pixel7 model scored 0.844 / 0.835 / 0.839 after 100 / 200 / 500 (within
                      # the ±2.3 pp of 1000 test images) while 500 cost 2.5x the time of 200
BN_BATCH = 50         # BatchNorm statistics need larger batches than inference; bigger ones only add page faults
VERIFY_SAMPLES = 16
DENSE_RECORDS = "heldout_dense"   # key in a checkpoint's metrics: protocol key -> the dense model's Score


@dataclass(frozen=True)
class Score:
    """A model's held-out metric and what it rests on."""

    value: float | None
    loss: float | None = None
    samples: int | None = None                   # held-out samples it was measured on
    ci95: tuple[float, float] | None = None      # 95% interval (accuracy: Wilson); None where unknown
    how: str = ""                                # e.g. "ExecuTorch .pte, 2 threads", "stored in the checkpoint"

    def to_dict(self) -> dict:
        record = asdict(self)
        record["ci95"] = list(self.ci95) if self.ci95 else None
        return record

    @classmethod
    def from_dict(cls, record: dict) -> "Score":
        ci = record.get("ci95")
        return cls(value=float(record["value"]), loss=record.get("loss"), samples=int(record["samples"]),
                   ci95=(float(ci[0]), float(ci[1])) if ci else None, how=str(record.get("how", "")))


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a proportion (Wilson score): honest near 0 and 1 and for small n."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))   # exact at 0 and 1, not 1 - 1e-16


class HeldOutAccuracy:
    """Accuracy of a built-in model on its data set's held-out images."""

    source = "measured"

    def __init__(self, ckpt):
        self.ckpt = ckpt
        self.metric = {"name": "accuracy", "higher_is_better": True}

    @cached_property
    def data(self):
        return load_eval_data(self.ckpt.data["name"], self.ckpt.data.get("seed", 0), limit=EVAL_IMAGES)

    @cached_property
    def protocol_key(self) -> str:
        """Names the exact images and recalibration a score was measured with: a stored dense score is
        used only by a fit that would have measured it the same way."""
        h = hashlib.sha256()
        for tensor in (self.data.test_x, self.data.test_y, self.data.val_x[:BN_SAMPLES]):
            h.update(tensor.contiguous().numpy().tobytes())
        return f"{h.hexdigest()[:16]}-test{len(self.data.test_x)}-bn{min(BN_SAMPLES, len(self.data.val_x))}x{BN_BATCH}"

    def calibrate_(self, model: nn.Module, progress: Reporter = Reporter()) -> None:
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            return   # nothing to recalibrate: no pass over the images, no "0/200" progress line
        images = self.data.val_x[:BN_SAMPLES]
        # channels-last convs ran ~1.6x faster in eager on this CPU; the model goes back to the default
        # layout before anything exports it
        fast = images.dim() == 4
        if fast:
            model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        try:
            with progress.count("recalibrating BatchNorm", len(images), "images") as counter, all_cores():
                recalibrate_bn_(model, images, BN_BATCH, on_batch=counter.advance)
        finally:
            if fast:
                model.to(memory_format=torch.contiguous_format)

    def score(self, model: nn.Module, pte: bytes | None = None, progress: Reporter = Reporter()) -> Score:
        """Accuracy of the exported ``pte`` when given (what ships), else of the eager ``model``."""
        x, y = self.data.test_x, self.data.test_y
        with progress.count("scoring", len(x), "images") as counter:
            if pte is not None:
                logits, how = _pte_logits(pte, x, counter.advance), f"ExecuTorch .pte, {core_count()} threads"
            else:
                logits, how = _eager_logits(model, x, counter.advance), f"PyTorch eager, {core_count()} threads"
        correct = int((logits.argmax(1) == y).sum())
        loss = float(F.cross_entropy(logits, y))
        return Score(correct / len(x), loss, len(x), wilson_interval(correct, len(x)), how)

    def select(self, model: nn.Module, progress: Reporter = Reporter()) -> float:
        """Accuracy on the validation images (never the test images a fit reports): what chooses among plans."""
        x, y = self.data.val_x, self.data.val_y
        with progress.count("scoring on validation images", len(x), "images") as counter:
            logits = _eager_logits(model, x, counter.advance)
        return float((logits.argmax(1) == y).float().mean())

    def dense(self, progress: Reporter = Reporter()) -> Score:
        """The untruncated model after the same recalibration, in its exported form; stored when the
        checkpoint carries a score of this very protocol."""
        stored = self.ckpt.metrics.get(DENSE_RECORDS, {})
        if isinstance(stored, dict) and isinstance(stored.get(self.protocol_key), dict):
            try:
                record = Score.from_dict(stored[self.protocol_key])
                return Score(record.value, record.loss, record.samples, record.ci95,
                             f"{record.how}; stored in the checkpoint")
            except (KeyError, TypeError, ValueError):
                pass   # a malformed record is measured again, never trusted
        from maestro_edge.export.pte import export_pte
        from maestro_edge.export.truncate import deployable

        progress.say("scoring the dense model (after the same BatchNorm recalibration as the fitted ones)")
        model = deployable(self.ckpt.model, {})
        self.calibrate_(model, progress)
        return self.score(model, export_pte(model, self.ckpt.examples).buffer, progress)

    def verification_samples(self):
        return self.data.test_x[:VERIFY_SAMPLES]

    def info(self) -> dict:
        return {"eval_data": self.data.name, "test_samples": len(self.data.test_x),
                "bn_samples": min(BN_SAMPLES, len(self.data.val_x)),
                "verify_inputs": "held-out test images, batch 1"}


class UserMetric:
    """The user's ``eval_fn(model) -> float`` (higher is better, unless the stored metric says otherwise)."""

    source = "measured"

    def __init__(self, ckpt, eval_fn: Callable[[nn.Module], float],
                 calibration: Callable[[], Iterable] | None = None, name: str | None = None):
        self.ckpt, self.eval_fn, self.calibration = ckpt, eval_fn, calibration
        self.metric = {**ckpt.metric, "name": name or ckpt.metric.get("name", "metric")}

    @classmethod
    def from_specs(cls, ckpt, eval_spec: str, calibrate_spec: str | None = None) -> UserMetric:
        """The functions named ``MODULE:FUNCTION`` by --eval (and --calibrate), importable from the current folder;
        a model of the user's own takes the eval function's name as its metric's."""
        from maestro_edge.entry_points import load_callable

        calibration = load_callable(calibrate_spec, "--calibrate") if calibrate_spec else None
        return cls(ckpt, load_callable(eval_spec, "--eval"), calibration,
                   name=eval_spec.partition(":")[2] if ckpt.program is None else None)

    def calibrate_(self, model: nn.Module, progress: Reporter = Reporter()) -> None:
        if self.calibration is not None:
            progress.say("recalibrating BatchNorm on your batches (--calibrate)")
            recalibrate_bn_batches_(model, checked_batches(self.calibration(), "--calibrate"))

    def score(self, model: nn.Module, pte: bytes | None = None, progress: Reporter = Reporter()) -> Score:
        """The user's function of the eager model (it takes a module; the .pte is checked against it)."""
        progress.say(f"scoring with your function ({self.metric['name']})")
        with all_cores():
            value = score_model(self.eval_fn, model, self.metric["name"], "the truncated model")
        return Score(value, how="your eval function on the PyTorch model")

    def select(self, model: nn.Module, progress: Reporter = Reporter()) -> float:
        """Your function chooses among plans too: give --eval validation data, not the data you report on."""
        return self.score(model, progress=progress).value

    def dense(self, progress: Reporter = Reporter()) -> Score:
        from maestro_edge.export.truncate import deployable

        model = deployable(self.ckpt.model, {})
        self.calibrate_(model, progress)
        return self.score(model, progress=progress)

    def verification_samples(self):
        return [self.ckpt.examples]

    def info(self) -> dict:
        return {"eval_data": f"user eval function {self.metric['name']}",
                "verify_inputs": "the checkpoint's example inputs"}


class ImportanceEstimate:
    """No eval function: the metric is not measured; the importance table predicts its drop."""

    source = "estimated"

    def __init__(self, ckpt):
        self.ckpt = ckpt
        self.metric = dict(ckpt.metric)

    def calibrate_(self, model: nn.Module, progress: Reporter = Reporter()) -> None:
        pass

    def score(self, model: nn.Module, pte: bytes | None = None, progress: Reporter = Reporter()) -> Score:
        return Score(None)

    def select(self, model: nn.Module, progress: Reporter = Reporter()) -> float:
        raise UsageError("choosing among plans needs a measured metric: pass --eval with your validation "
                         "function (or drop --choose-among)")

    def dense(self, progress: Reporter = Reporter()) -> Score:
        value = self.ckpt.importance.get("base", {}).get("metric")
        return Score(value, how="stored when the checkpoint was saved" if value is not None else "")

    def verification_samples(self):
        return [self.ckpt.examples]

    def info(self) -> dict:
        return {"eval_data": None, "verify_inputs": "the checkpoint's example inputs"}


def quality_for(ckpt, eval_fn=None, calibration=None):
    """The scorer ``fit`` uses for ``ckpt``: the user's function when given, else what the checkpoint allows."""
    if eval_fn is not None:
        return UserMetric(ckpt, eval_fn, calibration)
    if ckpt.program is None:
        return HeldOutAccuracy(ckpt)
    return ImportanceEstimate(ckpt)


@torch.no_grad()
def _eager_logits(model: nn.Module, x: torch.Tensor, advance: Callable[[int], None], batch: int = 25) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = []
    with all_cores():
        for start in range(0, len(x), batch):
            out.append(model(x[start:start + batch]).float())
            advance(len(out[-1]))
    model.train(was_training)
    return torch.cat(out)


def _pte_logits(pte: bytes, x: torch.Tensor, advance: Callable[[int], None]) -> torch.Tensor:
    """The exported program on every image (batch 1, as it was exported), on all cores."""
    from maestro_edge._quiet import quiet
    from maestro_edge.latency.measure import executorch_threads

    with executorch_threads(core_count()):
        with quiet():   # loading and the first call print cpuinfo lines from C++; the progress after them must show
            from executorch.runtime import Runtime

            method = Runtime.get().load_program(pte).load_method("forward")
            out = [method.execute((x[:1],))[0].float()]
        advance(1)
        for i in range(1, len(x)):
            out.append(method.execute((x[i:i + 1],))[0].float())
            advance(1)
    return torch.cat(out)


def store_dense_score(path: str, progress: Reporter = Reporter()) -> Score:
    """Measure a built-in checkpoint's dense held-out accuracy once and store it in the file's metrics
    (the file is rewritten atomically with nothing else changed: same tensors, same dtypes)."""
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    ckpt = LoDCheckpoint.load(path)
    if ckpt.program is not None:
        from maestro_edge.errors import UsageError

        raise UsageError(f"{path} is a user model: its metric is your --eval function's, measured by each fit; "
                         "store-dense takes a checkpoint written by 'maestro-edge train'")
    quality = HeldOutAccuracy(ckpt)
    ckpt.metrics = {k: v for k, v in ckpt.metrics.items() if k != DENSE_RECORDS}   # measure, never reuse
    score = quality.dense(progress)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    records = dict(blob.get("metrics", {}).get(DENSE_RECORDS, {}))
    records[quality.protocol_key] = {**score.to_dict(), "data": quality.data.name}
    blob["metrics"] = {**blob.get("metrics", {}), DENSE_RECORDS: records}
    LoDCheckpoint.save_dict(blob, path)
    return score


def main(argv: list[str] | None = None) -> int:
    """``python -m maestro_edge.quality store-dense CKPT``: store the dense held-out score in a checkpoint."""
    parser = argparse.ArgumentParser(prog="python -m maestro_edge.quality")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("store-dense", help=store_dense_score.__doc__.split("\n")[0]).add_argument("checkpoint")
    args = parser.parse_args(argv)
    from maestro_edge.errors import MaestroError
    from maestro_edge.progress import TerminalReporter

    try:
        score = store_dense_score(args.checkpoint, TerminalReporter())
    except MaestroError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(f"stored in {args.checkpoint}: dense accuracy {score.value:.4f} on {score.samples} images "
          f"(95% {score.ci95[0]:.3f}-{score.ci95[1]:.3f}; {score.how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
