"""The report shows what a fit.json now records: an estimate's error band, the accuracy's 95% interval and
sample count, p90 beside the median, each layer's latency at its chosen rank, and the delegation."""

from __future__ import annotations

import json
import re

import pytest

from maestro_edge.cli import main
from maestro_edge.report import write_report


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_checkpoint):
    out = tmp_path_factory.mktemp("fits")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--device", "pixel7", "--ms", "0.3", "--model", str(tiny_checkpoint), "--out",
              str(out / "pixel7-0.3ms"), "--quiet", "--baselines"])
    assert exit_info.value.code == 0
    return out


def test_a_fit_json_carries_the_band_interval_and_per_layer_latency(fitted):
    record = json.loads((fitted / "pixel7-0.3ms" / "fit.json").read_text())
    low, high = record["predicted_low_ms"], record["predicted_high_ms"]
    assert low < record["predicted_ms"] < high and record["error_band"]["device_class"] == "phone"
    assert sum(record["layer_ms"].values()) + record["overhead_ms"] == pytest.approx(record["predicted_ms"])
    fitted_score = record["scores"]["fitted"]
    assert fitted_score["ci95"][0] <= record["accuracy"] <= fitted_score["ci95"][1] and fitted_score["samples"] > 100
    uniform = [b for b in record["baselines"] if b["name"] == "uniform-rank"]
    assert len(uniform) == 1 and uniform[0]["predicted_ms"] <= 0.3


def test_the_report_shows_them(fitted, tmp_path):
    measured = json.loads((fitted / "pixel7-0.3ms" / "fit.json").read_text())
    measured.update(device="host", latency_source="measured", measured_ms=0.29, measured_p90_ms=0.31,
                    predicted_low_ms=None, predicted_high_ms=None, error_band=None)
    host = fitted / "host-0.3ms"
    host.mkdir()
    (host / "fit.json").write_text(json.dumps(measured))
    page = write_report(fitted, tmp_path / "report.html").read_text()
    text = re.sub(r"<[^>]+>", " ", page)
    assert re.search(r"band \d\.\d+–\d\.\d+ ms", text)                  # the estimate's band
    assert re.search(r"95% \d+\.\d–\d+\.\d%, n=\d+", text)              # interval and sample count
    assert "p90 0.31 ms" in text and "median 0.29 ms" in text          # p90 beside the median
    assert "features.3.0" in text and "overhead term" in text           # per-layer latency of the plan
    assert "delegate call" in text                                      # the delegation summary
