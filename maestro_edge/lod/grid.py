"""The rank grid shared by latency tables, importance tables and the solver."""

from __future__ import annotations

import math

DENSE = "dense"   # a layer's choice besides a rank: the dense layer it stands for (the one definition)
FRACTIONS = (1 / 8, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 7 / 8, 1)
FEW_FRACTIONS = (1 / 4, 1 / 2, 3 / 4, 1)


def rank_grid(layer) -> list[int]:
    """Ranks to profile and score for a LoD layer (the solver's options, besides "dense").

    Fractions of the layer's cap: its active rank, or the break-even rank where the factor pair costs
    as many MACs as the dense layer, whichever is lower (above it the dense layer is faster, so only
    "dense" is offered). Rounded up to multiples of 8 (4 under 64, 1 under 16), the block sizes SIMD
    kernels work in; small layers get fewer points.
    """
    cap = max(1, min(layer.active_rank, layer.break_even_rank()))
    step = 8 if cap >= 64 else 4 if cap >= 16 else 1
    fractions = FRACTIONS if cap >= 16 else FEW_FRACTIONS
    return sorted({min(cap, max(1, math.ceil(cap * f / step) * step)) for f in fractions})
