"""The solver's next-best plans: distinct, within the budget, and each no better than the optimum."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from maestro_edge.errors import InfeasibleBudget
from maestro_edge.solve import LayerOptions, Option, predict_ms, solve_ranks
from maestro_edge.solve.alternatives import alternative_plans

option = st.builds(Option, st.integers(1, 64), st.floats(0.01, 5.0), st.floats(0.0, 1.0))
layer_options = st.lists(option, min_size=1, max_size=6, unique_by=lambda o: o.choice)


@settings(max_examples=60, deadline=None)
@given(st.lists(layer_options, min_size=1, max_size=5), st.floats(0.5, 12.0), st.integers(1, 8))
def test_alternatives_meet_the_budget_and_are_no_better(options, budget_ms, count):
    layers = [LayerOptions(f"l{i}", (Option("dense", 3.0, 0.0), *opts)) for i, opts in enumerate(options)]
    try:
        plan = solve_ranks(layers, budget_ms)
    except InfeasibleBudget:
        return
    alternatives = alternative_plans(layers, budget_ms, 0.0, plan, count)
    assert len(alternatives) <= count
    seen = {tuple(plan.choices.items())}
    for alt in alternatives:
        key = tuple(alt.choices.items())
        assert key not in seen                                     # distinct, and never the optimum itself
        seen.add(key)
        assert predict_ms(layers, alt.choices) <= budget_ms * (1 + 1e-9)
        assert alt.penalty >= plan.penalty - 1e-9                  # the optimum is optimal
    assert [a.penalty for a in alternatives] == sorted(a.penalty for a in alternatives)


def test_a_layer_with_one_option_never_changes():
    layers = [LayerOptions("fixed", (Option("dense", 1.0, 0.0),)),
              LayerOptions("free", (Option("dense", 2.0, 0.0), Option(8, 1.0, 0.2), Option(4, 0.5, 0.5)))]
    plan = solve_ranks(layers, 3.0)
    assert dict(plan.choices) == {"fixed": "dense", "free": "dense"}
    alternatives = alternative_plans(layers, 3.0, 0.0, plan, 5)
    assert [dict(a.choices) for a in alternatives] == [{"fixed": "dense", "free": 8}]
