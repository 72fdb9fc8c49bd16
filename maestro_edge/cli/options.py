"""What several commands share: options, the budget parser, progress output, the default model."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import click


@dataclass(frozen=True)
class Defaults:
    """What the command group hands its commands (``ctx.obj``)."""

    model: Path   # the model a command loads without --model


def default_model() -> Path:
    """The embedded model (maestro_edge.cli.DEFAULT_MODEL, as the group read it for this run)."""
    return click.get_current_context().find_root().obj.model


def echo_progress(quiet: bool):
    """Status lines and counted steps with an ETA on stderr; nothing with --quiet."""
    from maestro_edge.progress import Reporter, TerminalReporter

    return Reporter() if quiet else TerminalReporter()


bundle_option = click.option(
    "--bundle", is_flag=True,
    help="Also write model.bpte: the .pte with 16 held-out inputs and expected outputs (ExecuTorch BundledProgram) "
         "so the target can check itself.")


def quality_options(command):
    for option in reversed([
        click.option("--eval", "eval_spec", default=None, metavar="MODULE:FUNCTION",
                     help="Score each truncated model with your function of the model (returns a float, higher is "
                          "better), importable from the current folder, e.g. myproject.evals:score."),
        click.option("--calibrate", "calibrate_spec", default=None, metavar="MODULE:FUNCTION",
                     help="With --eval: a function returning batches of model inputs to recalibrate BatchNorm on."),
        click.option("--full-delegation", is_flag=True,
                     help="Refuse a model with any op XNNPACK does not take (default: those run on ExecuTorch's "
                          "portable CPU kernels, and fit.json lists them)."),
    ]):
        command = option(command)
    return command


def quality(ckpt, eval_spec, calibrate_spec):
    """The user's --eval / --calibrate functions as fit's scorer (None: the checkpoint's default)."""
    if calibrate_spec and not eval_spec:
        raise click.BadParameter("--calibrate needs --eval (recalibrated BatchNorm only matters to a measured "
                                 "metric); pass --eval too")
    if not eval_spec:
        return None
    from maestro_edge.quality import UserMetric

    return UserMetric.from_specs(ckpt, eval_spec, calibrate_spec)


def recovery(ckpt, epochs: int, train_data_spec: str | None):
    """fit's recovery stage: a built-in model's own training images (cross-entropy + distillation), or the
    batches of your --train-data function (distillation from the dense model); None without --recover-epochs."""
    if train_data_spec and not epochs:
        raise click.BadParameter("--train-data is what --recover-epochs fine-tunes on; pass --recover-epochs too")
    if not epochs:
        return None
    import torch.nn.functional as F

    from maestro_edge.train.recover import Recovery, image_batches

    if train_data_spec:
        from maestro_edge.entry_points import load_callable

        return Recovery(load_callable(train_data_spec, "--train-data"), None, epochs)
    if ckpt.program is not None:
        raise click.BadParameter("recovery needs training data for your model: pass --train-data MODULE:FUNCTION "
                                 "(a function returning batches of model inputs)")
    return Recovery(image_batches(ckpt.data["name"], ckpt.data.get("seed", 0)), F.cross_entropy, epochs)


# a budget as people write it: ASCII digits, an optional fraction and exponent (no "1_0", no fullwidth digits,
# no "nan": float() takes all of those)
_MILLISECONDS = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def parse_budgets(ctx, param, value):
    """'20' or '10,15,20' -> [20.0] or [10.0, 15.0, 20.0], each a positive, finite number of ms, each once."""
    budgets = []
    for part in value.split(","):
        text = part.strip()
        if not _MILLISECONDS.fullmatch(text):
            raise click.BadParameter(f"{text!r} is not a number of milliseconds (use plain digits, e.g. 20, 7.5 or "
                                     "10,15,20)")
        budget = float(text)
        if not math.isfinite(budget) or budget <= 0:
            raise click.BadParameter(f"the budget must be a positive, finite number of milliseconds, got {text}")
        if budget in budgets:
            raise click.BadParameter(f"{text} ms is given twice (each budget is one output folder); give it once")
        budgets.append(budget)
    return budgets

