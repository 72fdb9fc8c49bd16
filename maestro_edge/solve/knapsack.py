"""Pick one option per layer: least total penalty within the latency budget.

This is a multiple-choice knapsack, solved exactly on the TRUE latencies (no
rounding) by dynamic programming over Pareto states with bounds:

1. Drop dominated options (slower and not better). If even the fastest option
   per layer misses the budget, raise InfeasibleBudget.
2. Walk the layers in order, keeping the partial plans that are Pareto-optimal
   in (latency so far, penalty so far); no other partial plan can end optimal.
3. Prune a partial plan when even the LP relaxation of the remaining layers
   (options relaxed to their convex hull, filled greedily by penalty per ms)
   cannot bring it below the best complete plan known. The same relaxation,
   rounded down to whole options, yields feasible plans that tighten that
   "best known" as the walk goes. This keeps the state count small: a few
   hundred for 100 layers x 64 options, ~2500 for 1000 layers.
4. The fastest surviving plan among those of least penalty wins. Penalties
   within TIE_REL of each other count as tied (float sums in different orders
   differ by ulps), and the tie goes to the lower latency.

Knapsack is NP-hard, so a pathological input could still blow up the state
count. Past `max_states` the solver falls back to a DP over latencies rounded
UP to units of (budget - overhead) / resolution: every plan it accepts truly
fits, and its penalty is optimal for the rounded latencies, hence no worse than
the true optimum for a budget smaller by len(layers) units (no gap at all when
the latencies lie on the grid).

Either way the returned plan meets the budget on the true latencies.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from maestro_edge.errors import InfeasibleBudget, UsageError
from maestro_edge.solve.plan import LayerOptions, Option, RankPlan, fastest_plan, plan_from_picks, validate

# Penalties this close (relative to the largest possible total) count as tied.
TIE_REL = 1e-9
# Latency margin (relative to the budget) that absorbs float error in summed latencies.
SLACK_REL = 1e-9
# Fallback DP: how far (in budget units) a latency may sit from a grid point and count as on it.
HAIR_UNITS = 1e-6


def solve_ranks(
    layers: Sequence[LayerOptions],
    budget_ms: float,
    overhead_ms: float = 0.0,
    resolution: int = 2000,
    max_states: int = 10_000,
) -> RankPlan:
    """The plan of least total penalty with overhead_ms + sum(latency) <= budget_ms.

    Ties (within TIE_REL) go to the lower predicted latency. `max_states` bounds the
    exact search (work per layer ~ states x options); `resolution` only matters for
    the fallback DP described above. Raises UsageError on malformed input and
    InfeasibleBudget (with .min_ms) when even the fastest plan misses the budget.
    """
    validate(layers, budget_ms, overhead_ms)
    if not isinstance(resolution, int) or resolution < 1:
        raise UsageError(f"resolution must be a positive integer, got {resolution!r}")
    fastest = fastest_plan(layers, overhead_ms, budget_ms)
    if fastest.predicted_ms > budget_ms:
        min_ms = fastest.predicted_ms
        raise InfeasibleBudget(
            f"budget {budget_ms:g} ms is below the fastest possible model ({min_ms:.3g} ms "
            f"predicted, {overhead_ms:.3g} ms of it fixed overhead); raise --ms to at least "
            f"{_round_up_3_digits(min_ms):g}",
            min_ms=min_ms,
        )

    kept = [_undominated(layer.options) for layer in layers]
    picks = _pareto_dp(kept, budget_ms, overhead_ms, max_states)
    if picks is None:
        picks = _rounded_up_dp(kept, budget_ms, overhead_ms, resolution)
    if picks is None:  # rounding up squeezed out even the fastest plan, which does fit
        picks = [opts[0] for opts in kept]
    return plan_from_picks(layers, picks, overhead_ms, budget_ms)


def _undominated(options: Sequence[Option]) -> list[Option]:
    """Options by increasing latency, each with less penalty than every faster one."""
    kept: list[Option] = []
    for opt in sorted(options, key=lambda o: (o.latency_ms, o.penalty)):
        if not kept or opt.penalty < kept[-1].penalty:
            kept.append(opt)
    return kept


def _as_arrays(kept: list[list[Option]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    latency = [np.array([o.latency_ms for o in opts], dtype=float) for opts in kept]
    penalty = [np.array([o.penalty for o in opts], dtype=float) for opts in kept]
    return latency, penalty


class _Relaxation:
    """LP relaxation of the layers i..n-1, for every suffix i.

    Relaxed, a layer may mix two neighbouring options of its lower convex hull,
    so the best mix for a budget takes hull segments greedily, steepest penalty
    drop per ms first. Taking only whole segments gives a real plan.
    """

    def __init__(self, latency: list[np.ndarray], penalty: list[np.ndarray]):
        n = len(latency)
        seg_layer, seg_ms, seg_penalty, seg_slope = [], [], [], []
        for i, (lat, pen) in enumerate(zip(latency, penalty)):
            hull = _lower_hull(lat.tolist(), pen.tolist())  # plain floats: faster in a Python loop
            d_ms, d_pen = np.diff(lat[hull]), np.diff(pen[hull])
            seg_layer.append(np.full(len(d_ms), i))
            seg_ms.append(d_ms)
            seg_penalty.append(d_pen)
            # Hull slopes rise along a layer; keep them so despite rounding, so any
            # prefix of the greedy order takes a prefix of each layer's segments.
            seg_slope.append(np.maximum.accumulate(d_pen / d_ms) if len(d_ms) else d_ms)
        layer_of, d_ms, d_pen, slope = (np.concatenate(a) for a in (seg_layer, seg_ms, seg_penalty, seg_slope))
        order = np.lexsort((np.arange(len(slope)), slope))  # stable: ties keep layer order
        layer_of, d_ms, d_pen = layer_of[order], d_ms[order], d_pen[order]

        fastest_ms = np.array([lat[0] for lat in latency])
        fastest_pen = np.array([pen[0] for pen in penalty])
        self.base_ms = np.append(np.cumsum(fastest_ms[::-1])[::-1], 0.0)
        self.base_penalty = np.append(np.cumsum(fastest_pen[::-1])[::-1], 0.0)
        self.cum_ms, self.cum_penalty = [], []
        for i in range(n + 1):
            in_suffix = layer_of >= i
            self.cum_ms.append(np.concatenate([[0.0], np.cumsum(d_ms[in_suffix])]))
            self.cum_penalty.append(np.concatenate([[0.0], np.cumsum(d_pen[in_suffix])]))

    def lower_bound(self, i: int, remaining_ms: np.ndarray, slack_ms: float) -> np.ndarray:
        """Per remaining budget: no plan of layers i..n-1 that fits has less penalty (inf: none fits)."""
        extra_ms = remaining_ms - self.base_ms[i]  # beyond the fastest options
        lower = self.base_penalty[i] + np.interp(extra_ms, self.cum_ms[i], self.cum_penalty[i])  # clamps at both ends
        lower[extra_ms < -slack_ms] = np.inf
        return lower

    def completion_penalty(self, i: int, remaining_ms: np.ndarray, slack_ms: float) -> np.ndarray:
        """Per remaining budget: the penalty of a real plan of layers i..n-1 that fits (inf: none found)."""
        extra_ms = remaining_ms - self.base_ms[i] - slack_ms
        whole_segments = np.searchsorted(self.cum_ms[i], extra_ms, side="right") - 1
        penalty = self.base_penalty[i] + self.cum_penalty[i][np.maximum(whole_segments, 0)]
        return np.where(whole_segments >= 0, penalty, np.inf)


def _lower_hull(lat: list[float], pen: list[float]) -> list[int]:
    """Indices of the lower convex hull of points sorted by latency (penalty falling)."""
    hull: list[int] = []
    for j in range(len(lat)):
        # Drop the last vertex while it lies on or above the chord to the new point.
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (pen[b] - pen[a]) * (lat[j] - lat[a]) >= (pen[j] - pen[a]) * (lat[b] - lat[a]):
                hull.pop()
            else:
                break
        hull.append(j)
    return hull


def _pareto_dp(kept: list[list[Option]], budget_ms: float, overhead_ms: float, max_states: int):
    """Optimal picks on true latencies, or None if the state count passes max_states."""
    latency, penalty = _as_arrays(kept)
    n = len(kept)
    relaxation = _Relaxation(latency, penalty)
    tie = TIE_REL * (1.0 + sum(float(np.abs(p).max()) for p in penalty))
    slack_ms = SLACK_REL * budget_ms
    best_known = float(sum(p[0] for p in penalty))  # the fastest plan, which fits

    # Partial plans over layers 0..i-1; latencies summed in layer order, as in plan_from_picks.
    state_ms, state_pen = np.array([float(overhead_ms)]), np.array([0.0])
    survivors = []  # per layer: flat indices (parent * n_options + option) of the kept states
    for i in range(n):
        cand_ms = (state_ms[:, None] + latency[i]).ravel()
        cand_pen = (state_pen[:, None] + penalty[i]).ravel()
        least_total = cand_pen + relaxation.lower_bound(i + 1, budget_ms - cand_ms, slack_ms)
        alive = np.flatnonzero(least_total <= best_known + tie)
        # Completing the promising states with whole hull segments gives real plans: a better best_known.
        completed = cand_pen[alive] + relaxation.completion_penalty(i + 1, budget_ms - cand_ms[alive], slack_ms)
        best_known = min(best_known, float(completed.min(initial=np.inf)))
        alive = alive[least_total[alive] <= best_known + tie]
        if i == n - 1:
            alive = alive[cand_ms[alive] <= budget_ms]  # exact check on the true total
        # Pareto filter: by latency, keep states with less penalty than every faster one.
        alive = alive[np.lexsort((cand_pen[alive], cand_ms[alive]))]
        pen_sorted = cand_pen[alive]
        better = np.ones(len(alive), dtype=bool)
        better[1:] = pen_sorted[1:] < np.minimum.accumulate(pen_sorted)[:-1]
        alive = alive[better]
        if len(alive) == 0 or len(alive) > max_states:
            return None
        survivors.append(alive)
        state_ms, state_pen = cand_ms[alive], cand_pen[alive]

    # States are sorted by latency, so the first within `tie` of the least penalty is the fastest.
    state = int(np.argmax(state_pen <= state_pen.min() + tie))
    picks = []
    for i in reversed(range(n)):
        parent, option = divmod(int(survivors[i][state]), len(kept[i]))
        picks.append(kept[i][option])
        state = parent
    return picks[::-1]


def _rounded_up_dp(kept: list[list[Option]], budget_ms: float, overhead_ms: float, resolution: int):
    """Optimal picks for latencies rounded UP to budget units (None if none fits then)."""
    latency, penalty = _as_arrays(kept)
    capacity_ms = budget_ms - overhead_ms
    if capacity_ms <= 0:
        return None
    unit = capacity_ms / resolution
    # First let latencies within a hair of a grid point count as on it (no gap for on-grid
    # latencies); should float error then push the plan over budget, round strictly up.
    for hair in (-HAIR_UNITS, HAIR_UNITS):
        weights = [np.ceil(lat / unit + hair).astype(np.int64) for lat in latency]
        picks = _least_penalty_picks(kept, weights, penalty, resolution)
        if picks is not None and _total_ms(picks, overhead_ms) <= budget_ms:
            return picks
    return None


def _least_penalty_picks(kept, weights, penalty, capacity):
    """Least-penalty picks whose integer weights sum to <= capacity (None if none do)."""
    # least[i][c]: least penalty of layers i..n-1 whose weights sum to <= c units.
    least = _least_penalty_tables(weights[::-1], penalty[::-1], capacity)[::-1]
    if not np.isfinite(least[0][capacity]):
        return None
    # Start from the fewest units that reach the optimum: the tie goes to lower latency.
    units_left = int(np.argmax(least[0] == least[0][capacity]))
    picks = []
    for i, opts in enumerate(kept):
        w = weights[i]
        reachable = np.where(w <= units_left, penalty[i] + least[i + 1][np.maximum(units_left - w, 0)], np.inf)
        option = int(np.argmin(reachable))  # reproduces the table's minimum exactly
        picks.append(opts[option])
        units_left -= int(w[option])
    return picks


def _total_ms(picks: list[Option], overhead_ms: float) -> float:
    total = float(overhead_ms)
    for opt in picks:  # in layer order, as plan_from_picks sums
        total += opt.latency_ms
    return total


def _least_penalty_tables(weights: list[np.ndarray], penalties: list[np.ndarray], capacity: int) -> np.ndarray:
    """tables[j][c]: least penalty of the first j layers with total weight <= c (inf if none)."""
    tables = np.empty((len(weights) + 1, capacity + 1))
    tables[0] = 0.0
    never = np.full(capacity + 1, np.inf)
    for j, (w, p) in enumerate(zip(weights, penalties)):
        # windows[capacity + 1 - w][c] == tables[j][c - w], and inf where c < w.
        windows = sliding_window_view(np.concatenate([never, tables[j]]), capacity + 1)
        shifted = windows[capacity + 1 - np.minimum(w, capacity + 1)]
        tables[j + 1] = (shifted + p[:, None]).min(axis=0)
    return tables


def _round_up_3_digits(x: float) -> float:
    """x rounded up to 3 significant digits, so a suggested budget really fits."""
    rounded = float(f"{x:.3g}")
    if rounded < x:  # rounded down: step up one unit in the third digit
        rounded = float(f"{rounded + 10.0 ** (math.floor(math.log10(x)) - 2):.3g}")
    return rounded
