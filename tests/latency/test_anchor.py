"""A measured table re-anchored to the device's speed at fit time (latency/anchor.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maestro_edge.devices.profile import find_profile
from maestro_edge.latency.anchor import Anchor, anchored, scaled
from maestro_edge.latency.measure import QUICK
from maestro_edge.latency.profile import HostTimer, estimated_table
from maestro_edge.latency.table import LatencyTable, LayerLatency
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.grid import DENSE

DIGITS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "digits.lod.pt"

latency = st.floats(0.001, 50.0)
layer = st.builds(lambda dense, ranks: LayerLatency(dense, {r + 1: ms for r, ms in enumerate(ranks)}),
                  latency, st.lists(latency, min_size=1, max_size=6))


@settings(max_examples=60, deadline=None)
@given(layers=st.lists(layer, min_size=1, max_size=5), overhead=st.floats(-0.5, 20.0),
       scale=st.floats(0.2, 5.0), data=st.data())
def test_a_scaled_table_predicts_every_plan_times_the_scale(layers, overhead, scale, data):
    table = LatencyTable("host", "d", "measured", "executorch-xnnpack", 1, overhead,
                         {f"l{i}": l for i, l in enumerate(layers)})
    plan = {name: data.draw(st.sampled_from([DENSE, *l.rank_ms, max(l.rank_ms) + 3])) for name, l in table.layers.items()}
    predicted = table.predict_ms({name: DENSE for name in table.layers})
    new = scaled(table, Anchor(predicted, predicted * scale))
    assert new.predict_ms(plan) == pytest.approx(table.predict_ms(plan) * scale, rel=1e-9, abs=1e-9)
    assert new.provenance["anchor"]["scale"] == pytest.approx(scale)
    assert table.provenance == {}   # the table passed in is left as it was


def test_the_dense_model_timed_now_becomes_the_tables_dense_prediction():
    ckpt = LoDCheckpoint.load(DIGITS)
    table = estimated_table(ckpt, find_profile("pixel7"))
    table.source = "measured"   # a phone's estimate: a table of another speed than this host's
    new, anchor = anchored(table, ckpt, HostTimer(), QUICK)
    assert anchor.measured_dense_ms > 0
    assert new.predict_ms({n: DENSE for n in new.layers}) == pytest.approx(anchor.measured_dense_ms)
    assert new.provenance["anchor"] == anchor.to_dict()


def test_an_estimated_table_is_not_anchored():
    ckpt = LoDCheckpoint.load(DIGITS)
    table = estimated_table(ckpt, find_profile("pixel7"))
    assert anchored(table, ckpt, HostTimer(), QUICK) == (table, None)


@pytest.mark.parametrize("scale, warned", [(1.05, False), (0.9, False), (1.3, True), (0.7, True)])
def test_a_large_shift_is_reported_with_what_to_do(scale, warned):
    warning = Anchor(10.0, 10.0 * scale).warning("host")
    assert (warning is not None) == warned
    if warned:
        assert "profile --force" in warning and ("slower" if scale > 1 else "faster") in warning
        assert f"{abs(scale - 1):.0%}" in warning


class _Scripted:
    """A timer that answers the dense model's timings from a script (the host's speed is not the point here)."""

    def __init__(self, *p50s):
        self.p50s, self.calls = list(p50s), 0

    def time(self, modules, protocol, kind):
        from types import SimpleNamespace

        self.calls += 1
        return {"model": SimpleNamespace(p50_ms=self.p50s.pop(0))}


@pytest.mark.parametrize("script, scale, calls", [
    ((1.33, 1.01), 1.01, 2),   # a spike: timed again, the lower kept
    ((1.30, 1.28), 1.28, 2),   # a real shift shows in both timings
    ((1.03,), 1.03, 1),        # within 5% of the table: one timing
    ((0.90, 0.93), 0.90, 2),   # faster than the table: the lower still
])
def test_a_dense_timing_far_from_the_table_is_taken_again(script, scale, calls):
    ckpt = LoDCheckpoint.load(DIGITS)
    table = estimated_table(ckpt, find_profile("pixel7"))
    table.source = "measured"
    predicted = table.predict_ms({n: DENSE for n in table.layers})
    timer = _Scripted(*(predicted * s for s in script))
    _, anchor = anchored(table, ckpt, timer, QUICK)
    assert timer.calls == calls and anchor.scale == pytest.approx(scale)
    assert anchor.to_dict()["timings_ms"] == pytest.approx([predicted * s for s in script])
