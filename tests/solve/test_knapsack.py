"""solve_ranks against brute force, its fallback's guarantee, errors, and the plan's JSON round trip.

Speed is not tested here (project rule): see bench/bench_solver.py.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from maestro_edge.errors import InfeasibleBudget, UsageError
from maestro_edge.solve import LayerOptions, Option, RankPlan, fastest_plan, predict_ms, solve_ranks

FORCE_FALLBACK = {"max_states": 0}  # makes the exact DP give up at once: tests the rounded-up DP


def total_ms(overhead_ms, combo):
    """Summed as the solver reports it: overhead first, then layer by layer."""
    total = overhead_ms
    for opt in combo:
        total += opt.latency_ms
    return total


def total_penalty(combo):
    total = 0.0
    for opt in combo:
        total += opt.penalty
    return total


def brute_force(layers, budget_ms, overhead_ms=0.0):
    """(least penalty, least latency among those) over plans that truly fit, or None."""
    best = None
    for combo in itertools.product(*(layer.options for layer in layers)):
        ms = total_ms(overhead_ms, combo)
        if ms <= budget_ms:
            key = (total_penalty(combo), ms)
            best = key if best is None or key < best else best
    return best


def random_layers(rng, max_layers=5, max_options=5, decimals=None):
    """Small random problems; coarse decimals make ties and on-the-nose budgets common."""
    layers = []
    for i in range(int(rng.integers(1, max_layers + 1))):
        options = []
        for rank in range(int(rng.integers(1, max_options + 1))):
            digits = int(rng.integers(0, 3)) if decimals is None else decimals
            options.append(Option(rank, round(float(rng.uniform(0, 3)), digits), round(float(rng.uniform(-0.1, 1)), digits)))
        layers.append(LayerOptions(f"layer{i}", tuple(options)))
    return layers


def random_budget(rng, layers, overhead_ms):
    """Often exactly some plan's total (the tightest case), else anywhere around the feasible range."""
    totals = sorted({total_ms(overhead_ms, c) for c in itertools.product(*(l.options for l in layers))})
    if rng.random() < 0.5:
        return float(rng.choice(totals))
    return float(rng.uniform(0.9 * totals[0], 1.1 * totals[-1])) or 1.0


def small_instances(count, seed_base):
    for seed in range(seed_base, seed_base + count):
        rng = np.random.default_rng(seed)
        layers = random_layers(rng)
        overhead_ms = float(rng.choice([0.0, 0.5]))
        budget_ms = random_budget(rng, layers, overhead_ms)
        if budget_ms > 0:
            yield seed, layers, budget_ms, overhead_ms


# --- exactness -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", range(4))
def test_matches_brute_force_on_true_latencies(chunk):
    """400 small random problems: same least penalty, same (least) latency among ties, never over budget."""
    checked = 0
    for seed, layers, budget_ms, overhead_ms in small_instances(100, seed_base=1000 * chunk):
        expected = brute_force(layers, budget_ms, overhead_ms)
        if expected is None:
            with pytest.raises(InfeasibleBudget):
                solve_ranks(layers, budget_ms, overhead_ms)
            continue
        plan = solve_ranks(layers, budget_ms, overhead_ms)
        assert plan.predicted_ms <= budget_ms, seed
        assert plan.penalty == pytest.approx(expected[0], abs=1e-9), seed
        assert plan.predicted_ms == pytest.approx(expected[1], abs=1e-9), seed
        assert plan.predicted_ms == predict_ms(layers, plan.choices, overhead_ms), seed
        assert list(plan.choices) == [layer.name for layer in layers]
        checked += 1
    assert checked >= 50


def test_matches_unpruned_pareto_dp_on_larger_problems():
    """20 layers x 12 options (too many plans to enumerate): compare with a plain, unpruned Pareto DP."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        layers = [
            LayerOptions(f"l{i}", tuple(Option(r, float(rng.uniform(0, 1)), float(rng.uniform(0, 1))) for r in range(12)))
            for i in range(20)
        ]
        fastest = fastest_plan(layers).predicted_ms
        for budget_ms in (fastest + 0.5, fastest + 2.0, fastest + 6.0):
            plan = solve_ranks(layers, budget_ms)
            assert plan.predicted_ms <= budget_ms
            assert plan.penalty == pytest.approx(reference_pareto_optimum(layers, budget_ms), abs=1e-9)


def reference_pareto_optimum(layers, budget_ms):
    """Least penalty by keeping every Pareto-optimal (ms, penalty) partial plan: slow but obviously exact."""
    front = [(0.0, 0.0)]
    for layer in layers:
        candidates = sorted((ms + o.latency_ms, pen + o.penalty) for ms, pen in front for o in layer.options)
        front = []
        for ms, pen in candidates:
            if ms <= budget_ms and (not front or pen < front[-1][1]):
                front.append((ms, pen))
    return min(pen for _, pen in front)


def test_tie_goes_to_lower_latency():
    layers = [
        LayerOptions("a", (Option(8, 2.0, 0.5), Option(4, 1.0, 0.5), Option("dense", 3.0, 0.0))),
        LayerOptions("b", (Option(2, 1.0, 0.0), Option(1, 0.5, 0.0))),
    ]
    plan = solve_ranks(layers, budget_ms=3.0)
    assert dict(plan.choices) == {"a": 4, "b": 1}
    assert plan.predicted_ms == 1.5


def test_fastest_plan_on_the_exact_budget_is_returned():
    # 0.3 + 0.1 + 0.2 == 0.6000000000000001 in floats: the budget is the reported sum itself.
    layers = [LayerOptions("a", (Option(1, 0.1, 1.0), Option(2, 0.5, 0.0))), LayerOptions("b", (Option(1, 0.2, 1.0),))]
    budget_ms = predict_ms(layers, {"a": 1, "b": 1}, overhead_ms=0.3)
    for kwargs in ({}, FORCE_FALLBACK):
        plan = solve_ranks(layers, budget_ms, overhead_ms=0.3, **kwargs)
        assert dict(plan.choices) == {"a": 1, "b": 1}
        assert plan.predicted_ms <= budget_ms


def test_dominated_and_unsorted_options_and_dense():
    layers = [
        LayerOptions("a", (Option("dense", 5.0, 0.0), Option(2, 3.0, 0.2), Option(1, 1.0, 0.3), Option(3, 4.0, 0.4))),
    ]
    assert dict(solve_ranks(layers, 10.0).choices) == {"a": "dense"}
    assert dict(solve_ranks(layers, 4.5).choices) == {"a": 2}  # rank 3 is slower and worse than rank 2
    assert dict(solve_ranks(layers, 1.0).choices) == {"a": 1}


# --- the rounded-up fallback: what it guarantees -----------------------------------------------------------------


def rounded_up(layers, unit, hair):
    """Latencies in whole units, rounded up after adding `hair` units (as the fallback DP does)."""
    return [
        LayerOptions(l.name, tuple(Option(o.choice, math.ceil(o.latency_ms / unit + hair), o.penalty) for o in l.options))
        for l in layers
    ]


@pytest.mark.parametrize("resolution", [7, 50, 2000])
def test_fallback_is_optimal_over_rounded_up_latencies_and_never_over_budget(resolution):
    checked = 0
    for seed, layers, budget_ms, overhead_ms in small_instances(200, seed_base=50_000):
        if brute_force(layers, budget_ms, overhead_ms) is None or budget_ms <= overhead_ms:
            continue
        plan = solve_ranks(layers, budget_ms, overhead_ms, resolution=resolution, **FORCE_FALLBACK)
        assert plan.predicted_ms <= budget_ms, seed
        unit = (budget_ms - overhead_ms) / resolution
        # Optimal over latencies rounded up to units; those within a hair above a grid point count as
        # on it unless that breaks the true budget, then strictly rounded up.
        snapped = brute_force(rounded_up(layers, unit, -1e-6), resolution)
        strict = brute_force(rounded_up(layers, unit, 1e-6), resolution)
        if strict is not None:
            assert plan.penalty in (pytest.approx(snapped[0], abs=1e-9), pytest.approx(strict[0], abs=1e-9)), seed
            # The gap: no worse than the true optimum for a budget smaller by one unit per layer.
            smaller = brute_force(layers, budget_ms - len(layers) * unit, overhead_ms)
            if smaller is not None:
                assert plan.penalty <= smaller[0] + 1e-9, seed
        elif snapped is None:  # rounding squeezed out every plan: the fastest one, which fits, comes back
            assert plan == fastest_plan(layers, overhead_ms, budget_ms), seed
        checked += 1
    assert checked >= 100


def test_fallback_never_over_budget_when_latencies_sit_a_hair_above_the_grid():
    # unit = 0.1 ms; 0.5 + 1e-9 counts as 5 units at first, but two of them overshoot 1.0 ms.
    layers = [LayerOptions(name, (Option(8, 0.5 + 1e-9, 0.0), Option(1, 0.1, 1.0))) for name in ("a", "b")]
    plan = solve_ranks(layers, budget_ms=1.0, resolution=10, **FORCE_FALLBACK)
    assert plan.predicted_ms <= 1.0
    assert plan.penalty == 1.0 == solve_ranks(layers, budget_ms=1.0).penalty


def test_fallback_gap_vanishes_when_latencies_lie_on_the_grid():
    resolution = 20
    for seed in range(100):
        rng = np.random.default_rng(10_000 + seed)
        budget_ms, overhead_ms = 4.0, 1.0
        unit = (budget_ms - overhead_ms) / resolution
        layers = [
            LayerOptions(f"l{i}", tuple(Option(r, int(rng.integers(0, 12)) * unit, float(rng.uniform(0, 1))) for r in range(4)))
            for i in range(int(rng.integers(1, 5)))
        ]
        expected = brute_force(layers, budget_ms + 1e-9, overhead_ms)  # grid sums carry float noise
        if expected is None or fastest_plan(layers, overhead_ms).predicted_ms > budget_ms:
            continue
        exact = solve_ranks(layers, budget_ms, overhead_ms)
        fallback = solve_ranks(layers, budget_ms, overhead_ms, resolution=resolution, **FORCE_FALLBACK)
        assert fallback.penalty == pytest.approx(exact.penalty, abs=1e-9), seed


# --- infeasible budgets and bad input -----------------------------------------------------------------------------


def test_infeasible_budget_reports_the_fastest_model():
    layers = [
        LayerOptions("a", (Option(1, 2.0, 1.0), Option("dense", 5.0, 0.0))),
        LayerOptions("b", (Option(1, 1.5, 1.0), Option(2, 3.0, 0.5))),
    ]
    with pytest.raises(InfeasibleBudget) as err:
        solve_ranks(layers, budget_ms=4.0, overhead_ms=1.0)
    assert err.value.min_ms == pytest.approx(4.5)
    message = str(err.value)
    assert "\n" not in message
    assert "budget 4 ms is below the fastest possible model (4.5 ms predicted" in message
    assert "raise --ms to at least 4.5" in message
    assert solve_ranks(layers, budget_ms=4.5, overhead_ms=1.0).predicted_ms == 4.5


def test_infeasible_suggestion_really_fits():
    layers = [LayerOptions("a", (Option(1, 12.3456, 0.0),))]
    with pytest.raises(InfeasibleBudget, match="raise --ms to at least 12.4$"):
        solve_ranks(layers, budget_ms=10.0)


GOOD = [LayerOptions("a", (Option(1, 1.0, 0.1),))]


@pytest.mark.parametrize(
    "layers, budget_ms, overhead_ms, match",
    [
        (GOOD, float("nan"), 0.0, "budget"),
        (GOOD, float("inf"), 0.0, "budget"),
        (GOOD, 0.0, 0.0, "budget"),
        (GOOD, -3.0, 0.0, "budget"),
        (GOOD, 5.0, -1.0, "overhead"),
        (GOOD, 5.0, float("nan"), "overhead"),
        ([], 5.0, 0.0, "no layers"),
        ([LayerOptions("a", ())], 5.0, 0.0, "'a' has no options"),
        ([LayerOptions("a", (Option(1, float("nan"), 0.1),))], 5.0, 0.0, "latency nan"),
        ([LayerOptions("a", (Option(1, -0.5, 0.1),))], 5.0, 0.0, "latency -0.5"),
        ([LayerOptions("a", (Option(1, float("inf"), 0.1),))], 5.0, 0.0, "latency inf"),
        ([LayerOptions("a", (Option(1, 1.0, float("nan")),))], 5.0, 0.0, "penalty nan"),
        (GOOD + GOOD, 5.0, 0.0, "'a' is listed twice"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(layers, budget_ms, overhead_ms, match):
    with pytest.raises(UsageError, match=match) as err:
        solve_ranks(layers, budget_ms, overhead_ms)
    assert "\n" not in str(err.value)


def test_a_negative_overhead_is_a_correction_while_every_plan_keeps_time():
    layers = [LayerOptions("a", (Option(1, 1.0, 0.5), Option(2, 2.0, 0.0)))]
    plan = solve_ranks(layers, budget_ms=1.6, overhead_ms=-0.5)
    assert plan.choices == {"a": 2} and plan.predicted_ms == pytest.approx(1.5)
    with pytest.raises(UsageError, match="leaves the fastest plan"):
        solve_ranks(layers, budget_ms=1.6, overhead_ms=-1.0)


def test_bad_resolution_is_a_usage_error():
    with pytest.raises(UsageError, match="resolution"):
        solve_ranks(GOOD, 5.0, resolution=0)


# --- helpers and the plan ------------------------------------------------------------------------------------------


def test_helpers():
    layers = [
        LayerOptions("a", (Option("dense", 3.0, 0.0), Option(4, 1.0, 0.2), Option(2, 1.0, 0.3))),
        LayerOptions("b", (Option(1, 0.5, 0.9),)),
    ]
    fast = fastest_plan(layers, overhead_ms=0.25)
    assert dict(fast.choices) == {"a": 4, "b": 1}  # equal latency: the lower penalty
    assert fast.predicted_ms == 1.75 and fast.penalty == pytest.approx(1.1)
    assert predict_ms(layers, {"a": "dense", "b": 1}, overhead_ms=0.25) == 3.75
    with pytest.raises(UsageError, match="no option 3"):
        predict_ms(layers, {"a": 3, "b": 1})
    with pytest.raises(UsageError, match="no choice given for layer 'b'"):
        predict_ms(layers, {"a": 4})


def test_rank_plan_json_round_trip():
    plan = solve_ranks(
        [LayerOptions("features.3", (Option("dense", 2.0, 0.0), Option(8, 1.0, 0.1))), LayerOptions("fc", (Option(4, 0.5, 0.2),))],
        budget_ms=2.75,
        overhead_ms=0.2,
    )
    assert dict(plan.choices) == {"features.3": "dense", "fc": 4}
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["schema_version"] == 1
    again = RankPlan.from_dict(data)
    assert again == plan
    assert list(again.choices) == ["features.3", "fc"]


@pytest.mark.parametrize(
    "broken",
    [
        {"schema_version": 2},
        {"choices": {"fc": 4.5}},
        {"choices": {"fc": "low"}},
        {"predicted_ms": "fast"},
        {"budget_ms": None},
    ],
)
def test_rank_plan_from_bad_dict_is_a_usage_error(broken):
    good = RankPlan({"fc": 4}, 1.0, 0.1, 2.0).to_dict()
    with pytest.raises(UsageError):
        RankPlan.from_dict({**good, **broken})
