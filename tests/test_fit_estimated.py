"""fit on devices that are not at hand (estimated latencies), several devices and budgets at once."""

from __future__ import annotations

import json

import pytest

from maestro_edge.cli import main


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_sweep_over_devices_and_budgets(capsys, tmp_path, tiny_checkpoint):
    code, out, err = run(capsys, "fit", "--device", "pixel7", "--device", "rpi5", "--ms", "0.085,0.5",
                         "--model", str(tiny_checkpoint), "--out", str(tmp_path), "--json", "--quiet")
    assert code == 0, err
    records = json.loads(out)
    assert [(r["device"], r["budget_ms"]) for r in records] == [
        ("pixel7", 0.085), ("pixel7", 0.5), ("rpi5", 0.085), ("rpi5", 0.5)]
    for r in records:
        folder = tmp_path / f"{r['device']}-{r['budget_ms']:g}ms"
        assert json.loads((folder / "fit.json").read_text()) == r
        assert r["latency_source"] == "estimated" and r["measured_ms"] is None
        assert r["predicted_ms"] <= r["budget_ms"]
        assert {b["name"] for b in r["baselines"]} >= {"dense"}
    tight, loose = records[2], records[3]   # rpi5: 0.085 ms binds this model, 0.5 ms does not
    assert tight["predicted_ms"] < loose["predicted_ms"]
    assert any(choice != "dense" for choice in tight["ranks"].values())


def test_export_reproduces_a_fit(capsys, tmp_path, tiny_checkpoint):
    code, out, err = run(capsys, "fit", "--device", "pixel7", "--ms", "0.061", "--model", str(tiny_checkpoint),
                         "--out", str(tmp_path / "fit"), "--json", "--quiet")
    assert code == 0, err
    fitted = json.loads(out)
    code, _, err = run(capsys, "export", "--plan", str(tmp_path / "fit" / "fit.json"), "--model", str(tiny_checkpoint),
                       "--out", str(tmp_path / "exp"), "--bundle", "--quiet")
    assert code == 0, err
    exported = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert exported["ranks"] == fitted["ranks"]
    assert exported["accuracy"] == pytest.approx(fitted["accuracy"])
    assert (tmp_path / "exp" / "model.pte").stat().st_size > 0 and (tmp_path / "exp" / "model.onnx").stat().st_size > 0
    # --bundle: the BundledProgram is written, recorded and was checked case by case in the runtime
    assert exported["verification"]["bpte_self_check"]["cases"] == exported["verification"]["samples"] > 0
    bundle = tmp_path / "exp" / "model.bpte"
    recorded = {a["path"]: a for a in exported["artifacts"]}
    assert recorded["model.bpte"]["size_bytes"] == bundle.stat().st_size
    assert "model.bpte" not in {a["path"] for a in fitted["artifacts"]}   # only when asked for


def fit_tiny_for_pixel7(capsys, tmp_path, ckpt, *extra):
    return run(capsys, "fit", "--device", "pixel7", "--ms", "0.061", "--model", str(ckpt),
               "--out", str(tmp_path / "fit"), *extra)


def test_choose_among_scores_the_next_best_plans_on_validation(capsys, tmp_path, tiny_checkpoint):
    code, out, err = fit_tiny_for_pixel7(capsys, tmp_path, tiny_checkpoint, "--choose-among", "3", "--json", "--quiet")
    assert code == 0, err
    record = json.loads(out)
    choice = record["plan_choice"]
    assert 2 <= len(choice) <= 4 and sum(c.get("chosen", False) for c in choice) == 1
    chosen = next(c for c in choice if c.get("chosen"))
    assert chosen["ranks"] == record["ranks"]
    assert chosen["validation_score"] == max(c["validation_score"] for c in choice)
    assert all(c["predicted_ms"] <= 0.061 * (1 + 1e-9) for c in choice)


def test_recover_epochs_fine_tunes_the_fitted_model(capsys, tmp_path, tiny_checkpoint):
    code, out, err = fit_tiny_for_pixel7(capsys, tmp_path, tiny_checkpoint, "--recover-epochs", "1", "--json", "--quiet")
    assert code == 0, err
    record = json.loads(out)
    recovery = record["recovery"]
    assert recovery["epochs"] == 1 and recovery["steps"] > 0 and recovery["loss"] == "task + distillation"
    assert record["verification"]["pte_max_abs_error"] < 1e-3   # the exported file is the recovered model


@pytest.mark.parametrize("argv, says", [
    (["--train-data", "mod:fn"], "--train-data is what --recover-epochs fine-tunes on"),
    (["--recover-epochs", "1", "--train-data", "no_such_module:fn"], "no module named"),
])
def test_recovery_flags_refused_in_one_line(capsys, tmp_path, tiny_checkpoint, argv, says):
    code, out, err = fit_tiny_for_pixel7(capsys, tmp_path, tiny_checkpoint, *argv, "--quiet")
    assert code == 2 and says in err and "Traceback" not in err, err
    assert not (tmp_path / "fit").exists()
