"""Choose a rank per layer: least accuracy penalty under a latency budget."""

from maestro_edge.solve.knapsack import solve_ranks
from maestro_edge.solve.plan import LayerOptions, Option, RankPlan, fastest_plan, predict_ms

__all__ = ["LayerOptions", "Option", "RankPlan", "fastest_plan", "predict_ms", "solve_ranks"]
