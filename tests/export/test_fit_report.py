"""FitReport: fit.json and export.json written by one type, read back by it, keys as they have always been."""

from __future__ import annotations

import json

import pytest

from maestro_edge.errors import MaestroError
from maestro_edge.export.artifact import ExportArtifact
from maestro_edge.export.fit_report import EXPORT_KEYS, FitReport

FIT_KEYS = ["schema_version", "device", "budget_ms", "predicted_ms", "predicted_low_ms", "predicted_high_ms",
            "error_band", "solved_for_ms", "latency_source", "measured_ms", "measured_p90_ms", "ranks", "layer_ms",
            "overhead_ms", "anchor", "accuracy", "dense_accuracy", "scores", "estimated_accuracy_drop", "metric",
            "budget_binding", "test_loss", "runtime", "threads", "max_ranks", "baselines", "tries", "plan_choice",
            "recovery", "delegation",
            "verification", "model", "artifacts", "wall_time_s"]


def a_fit() -> FitReport:
    pte = ExportArtifact.of("model.pte", b"pte bytes", max_abs_error=1e-6)
    onnx = ExportArtifact.of("model.onnx", b"onnx bytes", max_abs_error=2e-6)
    return FitReport(device="host", budget_ms=2.0, predicted_ms=1.9, solved_for_ms=2.0, latency_source="measured",
                     measured_ms=1.95, measured_p90_ms=2.1, ranks={"fc": 4, "conv": "dense"}, layer_ms={"fc": 0.5},
                     overhead_ms=0.1, accuracy=0.9, dense_accuracy=0.92, estimated_accuracy_drop=0.01,
                     runtime="executorch-xnnpack", threads=1, max_ranks={"fc": 16, "conv": 8},
                     tries=[{"solver_budget_ms": 2.0, "predicted_ms": 1.9, "measured_ms": 1.95}],
                     verification={"pte_max_abs_error": 1e-6, "onnx_max_abs_error": 2e-6, "samples": 16},
                     model={"digest": "abc", "arch": "small_cnn", "data": "digits"}, artifacts=[pte, onnx],
                     wall_time_s=3.5)


def test_fit_json_keeps_its_keys_and_reads_back(tmp_path):
    report = a_fit()
    report.save(tmp_path / "fit.json")
    record = json.loads((tmp_path / "fit.json").read_text())
    assert list(record) == FIT_KEYS
    assert record["artifacts"][0] == {"path": "model.pte", "format": "pte", "size_bytes": 9,
                                      "sha256": report.artifacts[0].sha256}
    loaded = FitReport.load(tmp_path / "fit.json")
    assert loaded.to_dict() == record and loaded.path == tmp_path / "fit.json"
    assert [a.max_abs_error for a in loaded.artifacts] == [1e-6, 2e-6]   # from "verification", by format


def test_export_json_holds_the_export_fields_only(tmp_path):
    fit = a_fit()
    export = FitReport(kind="export", ranks=fit.ranks, accuracy=0.9, dense_accuracy=0.92, artifacts=fit.artifacts)
    export.save(tmp_path / export.file_name)
    assert list(json.loads((tmp_path / "export.json").read_text())) == ["schema_version", *EXPORT_KEYS]
    assert FitReport.load(tmp_path / "export.json").ranks == {"fc": 4, "conv": "dense"}


@pytest.mark.parametrize("change, words", [({"ranks": {"fc": 0}}, "rank of layer 'fc'"),
                                           ({"schema_version": 2}, "schema_version 2"),
                                           ({"budget_ms": -1}, "budget_ms")])
def test_a_bad_field_is_one_line_naming_the_file(tmp_path, change, words):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({**a_fit().to_dict(), **change}))
    with pytest.raises(MaestroError) as error:
        FitReport.load(path)
    assert str(path) in str(error.value) and words in str(error.value) and "\n" not in str(error.value)
