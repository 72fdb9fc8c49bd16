"""The uniform-rank baseline stays on the ranks the latency table measured (fit.uniform_choices)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from maestro_edge.fit import uniform_choices
from maestro_edge.latency.probes import layer_options
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.grid import DENSE
from maestro_edge.lod.layers import lod_layers

MODEL = LoDCheckpoint.load(Path(__file__).resolve().parent / "fixtures" / "digits.lod.pt").model
LAYERS = lod_layers(MODEL)


@settings(max_examples=80, deadline=None)
@given(fraction=st.floats(0.0, 1.0), more=st.floats(0.0, 1.0))
def test_every_choice_is_measured_and_more_rank_never_means_less(fraction, more):
    low, high = uniform_choices(MODEL, fraction), uniform_choices(MODEL, max(fraction, more))
    for name, layer in LAYERS.items():
        assert low[name] in layer_options(layer)   # a grid rank or dense: never a rank the table interpolates
        rank = lambda c: layer.active_rank if c == DENSE else c   # noqa: E731
        assert rank(low[name]) <= rank(high[name])
        if low[name] != DENSE and low[name] != min(r for r in layer_options(layer) if r != DENSE):
            assert low[name] <= layer.active_rank * fraction


def test_the_whole_fraction_keeps_the_layers_whose_pair_would_be_slower_dense():
    choices = uniform_choices(MODEL, 1.0)
    for name, layer in LAYERS.items():
        top = max(r for r in layer_options(layer) if r != DENSE)
        assert choices[name] == (DENSE if layer.active_rank > top else top)
