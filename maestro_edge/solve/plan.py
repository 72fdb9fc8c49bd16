"""Data types of the rank solver: the options per layer and the chosen plan."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from maestro_edge.errors import UsageError
from maestro_edge.lod.grid import DENSE

SCHEMA_VERSION = 1

Choice = int | str  # a rank, or "dense"


@dataclass(frozen=True)
class Option:
    """One choice for one layer."""

    choice: Choice  # a rank (int) or the string "dense"
    latency_ms: float  # predicted latency of the layer with this choice (>= 0)
    penalty: float  # estimated accuracy loss; lower is better, may be 0 or slightly negative


@dataclass(frozen=True)
class LayerOptions:
    name: str  # module name, e.g. "features.3"
    options: tuple[Option, ...]  # at least one


@dataclass(frozen=True)
class RankPlan:
    choices: Mapping[str, Choice]  # layer name -> rank or "dense", in layer order
    predicted_ms: float  # overhead_ms + sum of the chosen latencies (true values)
    penalty: float  # sum of the chosen penalties
    budget_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            # int(): numpy integers are not JSON serialisable
            "choices": {name: c if isinstance(c, str) else int(c) for name, c in self.choices.items()},
            "predicted_ms": self.predicted_ms,
            "penalty": self.penalty,
            "budget_ms": self.budget_ms,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RankPlan:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UsageError(
                f"rank plan has schema_version {version!r}, expected {SCHEMA_VERSION}; "
                "re-run the solver to regenerate it"
            )
        try:
            choices = {str(name): _parse_choice(c) for name, c in d["choices"].items()}
            return cls(
                choices=choices,
                predicted_ms=float(d["predicted_ms"]),
                penalty=float(d["penalty"]),
                budget_ms=float(d["budget_ms"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UsageError(f"rank plan is malformed ({e!r}); re-run the solver") from None


def _parse_choice(c: Any) -> Choice:
    if c == DENSE:
        return DENSE
    if isinstance(c, bool) or not isinstance(c, int):
        raise ValueError(f"choice {c!r} is neither a rank nor 'dense'")
    return c


def validate(layers: Sequence[LayerOptions], budget_ms: float, overhead_ms: float) -> None:
    """Raise UsageError with a one-line message if the problem is malformed."""
    if not _finite_number(budget_ms) or budget_ms <= 0:
        raise UsageError(f"latency budget must be a finite number of ms > 0, got {budget_ms!r}")
    if not _finite_number(overhead_ms):
        raise UsageError(f"overhead must be a finite number of ms, got {overhead_ms!r}")
    if len(layers) == 0:
        raise UsageError("no layers to choose ranks for; the model has no factorizable layers")
    seen: set[str] = set()
    for layer in layers:
        if layer.name in seen:
            raise UsageError(f"layer {layer.name!r} is listed twice; layer names must be unique")
        seen.add(layer.name)
        if len(layer.options) == 0:
            raise UsageError(f"layer {layer.name!r} has no options to choose from")
        for opt in layer.options:
            if not _finite_number(opt.latency_ms) or opt.latency_ms < 0:
                raise UsageError(
                    f"layer {layer.name!r} option {opt.choice!r} has latency {opt.latency_ms!r} ms; "
                    "latencies must be finite and >= 0"
                )
            if not _finite_number(opt.penalty):
                raise UsageError(
                    f"layer {layer.name!r} option {opt.choice!r} has penalty {opt.penalty!r}; "
                    "penalties must be finite"
                )
    # A negative overhead is a measured correction (whole models beat the sum of their layers); it may
    # not leave any plan with no time.
    fastest_ms = fastest_plan(layers, overhead_ms).predicted_ms
    if overhead_ms < 0 and fastest_ms <= 0:
        raise UsageError(f"overhead {overhead_ms!r} ms leaves the fastest plan {fastest_ms:.3g} ms; "
                         "it must leave more than 0")


def _finite_number(x: Any) -> bool:
    if type(x) is float or type(x) is int:  # the common case, checked fast
        return math.isfinite(x)
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def predict_ms(
    layers: Sequence[LayerOptions], choices: Mapping[str, Choice], overhead_ms: float = 0.0
) -> float:
    """overhead_ms + the latency of each layer's chosen option (summed in layer order)."""
    total = float(overhead_ms)
    for layer in layers:
        if layer.name not in choices:
            raise UsageError(f"no choice given for layer {layer.name!r}")
        total += _find_option(layer, choices[layer.name]).latency_ms
    return total


def fastest_plan(
    layers: Sequence[LayerOptions], overhead_ms: float = 0.0, budget_ms: float = math.inf
) -> RankPlan:
    """The plan with the fastest option per layer (ties: lower penalty)."""
    picks = [min(layer.options, key=lambda o: (o.latency_ms, o.penalty)) for layer in layers]
    return plan_from_picks(layers, picks, overhead_ms, budget_ms)


def plan_from_picks(
    layers: Sequence[LayerOptions], picks: Sequence[Option], overhead_ms: float, budget_ms: float
) -> RankPlan:
    """Build a RankPlan from one chosen Option per layer, summing in layer order."""
    predicted = float(overhead_ms)
    penalty = 0.0
    for opt in picks:
        predicted += opt.latency_ms
        penalty += opt.penalty
    return RankPlan(
        choices={layer.name: opt.choice for layer, opt in zip(layers, picks)},
        predicted_ms=predicted,
        penalty=penalty,
        budget_ms=float(budget_ms),
    )


def _find_option(layer: LayerOptions, choice: Choice) -> Option:
    for opt in layer.options:
        # "dense" never matches a rank and vice versa
        if opt.choice == choice and isinstance(opt.choice, str) == isinstance(choice, str):
            return opt
    raise UsageError(f"layer {layer.name!r} has no option {choice!r}")
