"""End to end on this machine: profile the host, fit a binding budget, check the three files."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from maestro_edge.cli import main
from maestro_edge.data import load_dataset
from maestro_edge.export.truncate import deployable
from maestro_edge.export.verify import ATOL
from maestro_edge.quality import BN_BATCH, BN_SAMPLES
from maestro_edge.devices.profile import find_profile
from maestro_edge.latency.table import LatencyTable, cached_table_path
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.train.evaluate import recalibrate_bn_

pytestmark = pytest.mark.slow

REQUIRED = {"schema_version", "device", "budget_ms", "predicted_ms", "latency_source", "measured_ms", "ranks",
            "accuracy", "dense_accuracy", "artifacts"}


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def host_table(tiny_checkpoint):
    main_args = ["profile", "--device", "host", "--model", str(tiny_checkpoint), "--allow-busy", "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        main(main_args)
    assert exit_info.value.code == 0
    ckpt = LoDCheckpoint.load(tiny_checkpoint)
    return LatencyTable.load(cached_table_path(find_profile("host"), ckpt.latency_digest()))


def test_profile_writes_a_measured_table(host_table, capsys, tiny_checkpoint):
    assert host_table.source == "measured" and host_table.threads == 1
    # the profile runs with --allow-busy (a test suite beside a browser): a busy run is flagged, not refused
    assert isinstance(host_table.provenance["load"]["busy"], bool) and host_table.provenance["layer_recheck"]
    # A complete cached table is reused, not measured again (--force measures again).
    code, out, err = run(capsys, "profile", "--device", "host", "--model", str(tiny_checkpoint), "--allow-busy",
                         "--quiet")
    assert code == 0 and "cached, measured" in out and "pass --force" in out, err
    assert host_table.full_model_ms > 0
    assert host_table.provenance["fingerprint"]["executorch"].startswith("1.5.1")
    for layer in host_table.layers.values():
        assert layer.rank_ms and layer.dense_ms >= 0


def test_fit_host_binding_budget(capsys, tmp_path, tiny_checkpoint, host_table):
    ckpt = LoDCheckpoint.load(tiny_checkpoint)
    fastest = host_table.overhead_ms + sum(min(l.dense_ms, *l.rank_ms.values()) for l in host_table.layers.values())
    full = host_table.full_model_ms
    assert fastest < full
    budget = round(fastest + 0.8 * (full - fastest), 4)   # binding: the full model does not fit
    out = tmp_path / "fit"
    code, stdout, err = run(capsys, "fit", "--device", "host", "--ms", str(budget), "--model", str(tiny_checkpoint),
                            "--out", str(out), "--json", "--quiet")
    assert code == 0, err
    record = json.loads(stdout)
    assert record == json.loads((out / "fit.json").read_text())
    assert REQUIRED <= set(record)
    assert record["latency_source"] == "measured"
    # the table was scaled to this host's speed now: its dense prediction is the dense model timed at fit time
    anchor = record["anchor"]
    assert anchor["scale"] == pytest.approx(anchor["measured_dense_ms"] / anchor["predicted_dense_ms"])
    assert 0.5 < anchor["scale"] < 2
    assert record["measured_ms"] <= budget
    assert record["predicted_ms"] <= budget
    assert any(choice != "dense" for choice in record["ranks"].values())
    # A 4-epoch toy model: well above chance (0.1) is what can be asserted.
    assert 0.3 < record["accuracy"] <= 1 and 0.5 < record["dense_accuracy"] <= 1
    for artifact in record["artifacts"]:
        blob = (out / artifact["path"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == artifact["sha256"] and len(blob) == artifact["size_bytes"]
    assert {a["format"] for a in record["artifacts"]} == {"pte", "onnx"}

    # Rebuild the fitted model independently and run both exported files against it.
    small = deployable(ckpt.model, record["ranks"])
    data = load_dataset(ckpt.data["name"], ckpt.data["seed"])
    recalibrate_bn_(small, data.val_x[:BN_SAMPLES], BN_BATCH)   # as fit does
    small.eval()
    x = data.test_x[:8]
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: x[:1].numpy()})[0]
    assert abs(onnx_out - small(x[:1]).detach().numpy()).max() <= ATOL
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(out / "model.pte")).load_method("forward")
    with torch.no_grad():
        assert float((method.execute((x[:1],))[0] - small(x[:1])).abs().max()) <= ATOL


def test_fit_host_budget_below_fastest(capsys, tmp_path, tiny_checkpoint, host_table):
    code, _, err = run(capsys, "fit", "--device", "host", "--ms", "0.0001", "--model", str(tiny_checkpoint),
                       "--out", str(tmp_path / "o"), "--quiet")
    assert code != 0
    assert "fastest possible model on host" in err and "measured" in err
    assert not (tmp_path / "o").exists()
