"""Error bands of ESTIMATED latencies (issue 15 item 5): the shipped JSON is what the validation suite gives now,
the percentiles are right, and the band's direction is the one documented in maestro_edge/latency/error_band.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from maestro_edge.devices.profile import find_profile
from maestro_edge.errors import ProfileError
from maestro_edge.latency import error_band as eb

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_estimator", ROOT / "bench" / "bench_estimator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scored(bench):
    return bench.scored(bench.results())


@pytest.fixture(scope="module")
def shipped():
    return json.loads(eb.BANDS_FILE.read_text())


def ratios(rows, klass):
    return [(r.row.low * r.row.high) ** 0.5 / r.estimate for r in rows if klass in ("all", r.klass)]


def test_shipped_bands_are_the_suites_bands_now(bench, shipped):
    # Fails when the estimator, a profile or the suite changes without: python bench/bench_estimator.py --write-bands
    fresh = bench.bands(bench.results())
    assert shipped["classes"] == fresh["classes"]
    assert shipped["command"] == "python bench/bench_estimator.py --write-bands" and shipped["date"]


@pytest.mark.parametrize("klass", ["phone", "board", "all"])
def test_factors_are_the_10th_and_90th_percentiles(scored, shipped, klass):
    r = ratios(scored, klass)
    entry = shipped["classes"][klass]
    assert entry["rows"] == len(r) >= 10
    assert entry["low_factor"] == pytest.approx(np.percentile(r, 10), abs=1e-4)
    assert entry["high_factor"] == pytest.approx(np.percentile(r, 90), abs=1e-4)
    inside = np.mean([entry["low_factor"] <= x <= entry["high_factor"] for x in r])
    assert entry["coverage"] == pytest.approx(inside, abs=1e-4) and 0.7 <= inside <= 0.9


def test_band_of_an_estimated_device_and_none_for_a_measured_one(shipped):
    assert eb.error_band(find_profile("host")) is None
    phone, board = eb.error_band(find_profile("pixel7")), eb.error_band(find_profile("rpi4"))
    assert (phone.device_class, board.device_class) == ("phone", "board")
    assert phone.low_factor == shipped["classes"]["phone"]["low_factor"] and phone.rows == shipped["classes"]["phone"]["rows"]
    assert "--write-bands" in phone.source and shipped["date"] in phone.source


def test_band_ms_direction_and_pessimistic_budget():
    band = eb.ErrorBand(0.5, 1.5, "board", 40, "test")
    assert eb.band_ms(20.0, band) == (10.0, 30.0)             # truth expected within [E x P10, E x P90]
    assert eb.pessimistic_budget_ms(30.0, band) == pytest.approx(20.0)   # its high end meets the budget
    assert eb.pessimistic_budget_ms(30.0, eb.ErrorBand(0.6, 0.9, "phone", 40, "test")) == 30.0   # never looser


def test_a_measured_figure_inside_the_band_of_the_suite(scored, shipped):
    # The band's meaning, row by row: published within [estimate x low, estimate x high] for the stated share.
    for klass in ("phone", "board"):
        band = eb.ErrorBand(**{k: shipped["classes"][klass][k] for k in ("low_factor", "high_factor", "device_class",
                                                                         "rows", "coverage")}, source="")
        rows = [r for r in scored if r.klass == klass]
        inside = [band_ms_has(r, band) for r in rows]
        assert sum(inside) / len(rows) == pytest.approx(band.coverage, abs=1e-4)


def band_ms_has(r, band) -> bool:
    low, high = eb.band_ms(r.estimate, band)
    return low <= (r.row.low * r.row.high) ** 0.5 <= high


def test_decile_band_needs_rows_and_a_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ValueError):
        eb.decile_band([1.0])
    with pytest.raises(ProfileError, match="--write-bands"):
        eb.load_bands.__wrapped__(tmp_path / "none.json")
