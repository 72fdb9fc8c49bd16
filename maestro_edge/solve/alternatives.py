"""The solver's next-best plans: what quality-aware plan choice scores besides the optimal one.

The importance table's penalties are per-layer drops measured one layer at a time and summed; the true drop of
a plan is not their sum (README: the sum overstates it 10-100x). So the optimum under the summed penalty is
only a good guess. Its neighbours are the plans the solver picks when one of its choices is forbidden: each
differs from the optimum in at least that layer, meets the same budget, and is the best plan that does.
"""

from __future__ import annotations

from typing import Sequence

from maestro_edge.errors import InfeasibleBudget
from maestro_edge.solve.knapsack import solve_ranks
from maestro_edge.solve.plan import LayerOptions, RankPlan


def alternative_plans(layers: Sequence[LayerOptions], budget_ms: float, overhead_ms: float, plan: RankPlan,
                      count: int) -> list[RankPlan]:
    """Up to ``count`` distinct plans other than ``plan``, least summed penalty first: for each layer, the
    optimum with that layer's choice in ``plan`` forbidden (layers with one option cannot change)."""
    found: dict[tuple, RankPlan] = {}
    for i, layer in enumerate(layers):
        others = tuple(o for o in layer.options if o.choice != plan.choices[layer.name])
        if not others:
            continue
        narrowed = [*layers[:i], LayerOptions(layer.name, others), *layers[i + 1:]]
        try:
            alternative = solve_ranks(narrowed, budget_ms, overhead_ms)
        except InfeasibleBudget:   # that layer's choice is the only way to meet the budget
            continue
        found.setdefault(tuple(alternative.choices.items()), alternative)
    found.pop(tuple(plan.choices.items()), None)
    return sorted(found.values(), key=lambda p: (p.penalty, p.predicted_ms))[:count]
