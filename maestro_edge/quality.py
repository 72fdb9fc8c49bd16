"""How ``fit`` scores a truncated model: one interface, three sources.

- ``HeldOutAccuracy``: the built-in models, on the held-out images of their data set (measured);
- ``UserMetric``: the user's own ``eval_fn(model) -> float`` on their held-out data, and optionally
  BatchNorm recalibrated on their own batches (measured);
- ``ImportanceEstimate``: a user model with no eval function at hand: the importance table's predicted
  drop from the metric stored at save time (estimated, and fit.json says so).
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable, Iterable

import torch
from torch import nn

from maestro_edge.data import load_eval_data
from maestro_edge.lod.importance import score_model
from maestro_edge.train.evaluate import all_cores, evaluate, recalibrate_bn_

EVAL_IMAGES = 2000    # at most this many test (and validation) images: ±0.7 pp at 90% accuracy, and each fit
                      # scores 3 models (dense, fitted, uniform baseline): a 5-GMAC model costs ~45 ms per image here
EVAL_BATCH = 8        # CPU batches: big ones of a 96x96 model spend as much time in page faults as in convs
BN_SAMPLES = 500      # held-out images BatchNorm is recalibrated on (each pass costs a forward of the model)
BN_BATCH = 64         # BatchNorm statistics need larger batches than evaluation
VERIFY_SAMPLES = 16


class HeldOutAccuracy:
    """Accuracy of a built-in model on its data set's held-out images."""

    source = "measured"

    def __init__(self, ckpt):
        self.ckpt = ckpt
        self.metric = {"name": "accuracy", "higher_is_better": True}

    @cached_property
    def data(self):
        return load_eval_data(self.ckpt.data["name"], self.ckpt.data.get("seed", 0), limit=EVAL_IMAGES)

    def calibrate_(self, model: nn.Module) -> None:
        with all_cores():
            recalibrate_bn_(model, self.data.val_x[:BN_SAMPLES], BN_BATCH)

    def score(self, model: nn.Module) -> tuple[float, float | None]:
        with all_cores():
            return evaluate(model, self.data.test_x, self.data.test_y, EVAL_BATCH)

    def dense(self) -> float:
        return self.score(self.ckpt.model)[0]

    def verification_samples(self):
        return self.data.test_x[:VERIFY_SAMPLES]

    def info(self) -> dict:
        return {"eval_data": self.data.name, "test_samples": len(self.data.test_x),
                "verify_inputs": "held-out test images, batch 1"}


class UserMetric:
    """The user's ``eval_fn(model) -> float`` (higher is better, unless the stored metric says otherwise)."""

    source = "measured"

    def __init__(self, ckpt, eval_fn: Callable[[nn.Module], float],
                 calibration: Callable[[], Iterable] | None = None, name: str | None = None):
        self.ckpt, self.eval_fn, self.calibration = ckpt, eval_fn, calibration
        self.metric = {**ckpt.metric, "name": name or ckpt.metric.get("name", "metric")}

    def calibrate_(self, model: nn.Module) -> None:
        if self.calibration is not None:
            recalibrate_bn_batches_(model, self.calibration())

    def score(self, model: nn.Module) -> tuple[float, None]:
        with all_cores():
            return score_model(self.eval_fn, model, self.metric["name"], "the truncated model"), None

    def dense(self) -> float:
        from maestro_edge.export.truncate import deployable

        model = deployable(self.ckpt.model, {})
        self.calibrate_(model)
        return self.score(model)[0]

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

    def calibrate_(self, model: nn.Module) -> None:
        pass

    def score(self, model: nn.Module) -> tuple[None, None]:
        return None, None

    def dense(self) -> float | None:
        return self.ckpt.importance.get("base", {}).get("metric")

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
def recalibrate_bn_batches_(model: nn.Module, batches: Iterable) -> int:
    """BatchNorm statistics recomputed (cumulative average) over the user's batches; returns how many ran.

    A batch is the model's input: a tensor, or a tuple of tensors (called as ``model(*batch)``).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was_training = model.training
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    count = 0
    try:
        with all_cores():
            for batch in batches:
                model(*_inputs(batch))
                count += 1
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
        model.train(was_training)
    return count


def _inputs(batch) -> tuple:
    return (batch,) if isinstance(batch, torch.Tensor) else tuple(batch)
