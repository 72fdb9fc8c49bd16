"""``factorize_``: swap a model's Linear/Conv2d layers for LoD layers, in place.

Per-layer overrides go by module name or ``re:`` pattern (first match wins), like torchao's
``FqnToConfig``. What was swapped and what was skipped (and why) is returned, not only logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from maestro_edge.lod.registry import handler_for, registered_dense_types

SKIP = "skip"


@dataclass(frozen=True)
class FactorizeConfig:
    """How to factorize.

    max_rank: cap on stored components for every layer (None = full rank min(out, in·k·k)).
    overrides: module name or ``re:<pattern>`` -> ``"skip"`` or an int max rank.
    """

    max_rank: int | None = None
    overrides: dict[str, str | int] = field(default_factory=dict)

    def __post_init__(self):
        if self.max_rank is not None and self.max_rank < 1:
            raise ValueError(f"max_rank must be >= 1 or None, got {self.max_rank}")
        for key, value in self.overrides.items():
            if value != SKIP and not (isinstance(value, int) and value >= 1):
                raise ValueError(f"override for {key!r} must be 'skip' or an int >= 1, got {value!r}")

    def rule_for(self, name: str) -> str | int | None:
        for key, value in self.overrides.items():
            if key.startswith("re:") and re.fullmatch(key[3:], name) or key == name:
                return value
        return self.max_rank


@dataclass
class FactorizeReport:
    swapped: dict[str, int] = field(default_factory=dict)      # name -> stored max rank
    skipped: dict[str, str] = field(default_factory=dict)      # name -> reason

    def __str__(self) -> str:
        lines = [f"factorized {len(self.swapped)} layers, skipped {len(self.skipped)}"]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def factorize_(model: nn.Module, config: FactorizeConfig | None = None, svd_init: bool = True) -> FactorizeReport:
    """Replace every nn.Linear / nn.Conv2d (and registered type, lod/registry.py) by its LoD layer (balanced SVD init).

    svd_init=False skips the SVDs (seconds for a ResNet-18) when a state dict is loaded right after.
    """
    config = config or FactorizeConfig()
    report = FactorizeReport()
    targets = []
    for name, module in model.named_modules():
        handler = handler_for(module)
        if handler is not None:
            targets.append((name, module, handler))
        elif isinstance(module, registered_dense_types()):
            # e.g. nn.MultiheadAttention.out_proj: its parent reads .weight directly, so a swap would break it.
            report.skipped[name] = f"{type(module).__name__} is a subclass its parent may use directly; left dense"
    for name, module, handler in targets:
        rule = config.rule_for(name)
        if rule == SKIP:
            report.skipped[name] = "skipped by override"
            continue
        try:
            new = handler.factorize(module, rule, svd_init)
        except ValueError as e:
            report.skipped[name] = str(e)
            continue
        _set_submodule(model, name, new)
        report.swapped[name] = new.max_rank
    return report


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
