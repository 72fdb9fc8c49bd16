"""What bench_peers needs from a model to compare methods on it (a registry entry per model: cnn_task, minilm_task),
and what a peer is.

A task owns its model's data and metrics: the dense start model and its example inputs, the validation score
every choice rests on (importance, knobs, plans), the test scores the report shows (each with its 95% interval),
how maestro-edge trains it once (LoD) and how any method's model is fine-tuned per budget, and the peers that
apply to it. The bench (bench_peers.py) owns the protocol: budgets, latency pairing, fairness, the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from torch import nn


@dataclass(frozen=True)
class Peer:
    """A tool a user would pick instead: its knob families (Torch-Pruning's round_to values or head ratios,
    AIMET's modes), each with a grid of knobs from its slow end (nearest the dense model) to its fast end, and how
    to build a model from (family, knob)."""
    key: str
    label: str
    families: list[dict]
    build: Callable[[dict, float], nn.Module]


class Task(Protocol):
    key: str                          # --model's name
    dense: nn.Module                  # the one start model every method begins from
    example: tuple                    # its inputs, batch 1: what every method exports with
    metrics: tuple[str, ...]          # the test scores, in report order
    maestro_starts: tuple[str, ...]   # "svd" (no LoD training, a baseline) and/or "lod"
    levers: tuple[str, ...]           # maestro-edge's levers run besides recovery: "plan choice"
    fine_tuning: str                  # what "equal fine-tuning" gives every method, in words

    def val_score(self, model: nn.Module) -> float: ...
    def test_scores(self, model: nn.Module) -> dict[str, dict]: ...   # name -> {"value", "low", "high"}
    def calibration(self) -> list | None: ...                          # BatchNorm batches, None without BN
    def factorize_(self, model: nn.Module) -> None: ...
    def train_lod_(self, model: nn.Module) -> None: ...
    def importance(self, model: nn.Module): ...
    def finetune(self, model: nn.Module, seed: int, max_steps: int | None = None) -> dict: ...
    def steps_per_finetune(self) -> int: ...
    def peers(self, grid: Callable[[float, float], list[float]], work) -> list[Peer]: ...


def interval(score: dict) -> str:
    """0.8821 [0.8756, 0.8883]: a score with its 95% interval (old rows say "accuracy" for "value")."""
    value = score.get("value", score.get("accuracy"))
    return f"{value:.4f} [{score['low']:.4f}, {score['high']:.4f}]"
