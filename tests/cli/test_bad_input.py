"""Bad input: one line on stderr naming the problem, non-zero exit, no traceback, no output left."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maestro_edge.cli import main


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_line_error(code, err, *words):
    assert code not in (0, None)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("  ")]  # "  " = progress
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("budget, words", [
    ("0", ["positive", "0"]),
    ("10,,20", ["not a number"]),
    ("10,-1", ["positive", "-1"]),
    ("-3", ["positive", "-3"]),
    ("abc", ["abc", "--ms"]),
    ("nan", ["not a number"]),
    ("inf", ["not a number"]),
    ("1e400", ["positive", "finite"]),
    ("1_0", ["not a number"]),
    ("\uff12\uff10", ["not a number"]),   # fullwidth 20
    ("0.3,0.30", ["twice"]),
])
def test_bad_budget(capsys, tmp_path, budget, words):
    code, _, err = run(capsys, "fit", "--device", "pixel7", "--ms", budget, "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, *words)
    assert code == 2
    assert not (tmp_path / "o").exists()


def test_unknown_device(capsys, tmp_path):
    code, _, err = run(capsys, "fit", "--device", "toaster", "--ms", "20", "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "toaster", "pixel7")
    assert not (tmp_path / "o").exists()


def test_missing_model(capsys, tmp_path):
    code, _, err = run(capsys, "fit", "--device", "pixel7", "--ms", "20", "--model", str(tmp_path / "nope.pt"),
                       "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "nope.pt", "does not exist")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_non_checkpoint_model(capsys, tmp_path, content):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(content)
    code, _, err = run(capsys, "fit", "--device", "pixel7", "--ms", "20", "--model", str(bogus), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "bogus.pt")
    assert not (tmp_path / "o").exists()


class Sneaky:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_object_refused(capsys, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "maestro-edge-lod", "payload": Sneaky()}, evil)
    code, out, err = run(capsys, "fit", "--device", "pixel7", "--ms", "20", "--model", str(evil), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "pickled", "refusing")
    assert "pickled code ran" not in out


def test_other_torch_file_refused(capsys, tmp_path):
    other = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    code, _, err = run(capsys, "fit", "--device", "pixel7", "--ms", "20", "--model", str(other), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "not a maestro-edge LoD checkpoint")


def test_output_path_is_a_file(capsys, tmp_path):
    target = tmp_path / "taken"
    target.write_text("precious")
    code, _, err = run(capsys, "fit", "--device", "pixel7", "--ms", "20", "--out", str(target))
    assert_one_line_error(code, err, "taken", "file")
    assert target.read_text() == "precious"


def test_budget_below_fastest_model(capsys, tmp_path, tiny_checkpoint):
    code, _, err = run(capsys, "fit", "--device", "pixel7", "--ms", "0.00001", "--model", str(tiny_checkpoint),
                       "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "fastest", "pixel7", "estimated", "at least")
    assert code == 2   # a budget is a usage error (docs/errors.md)
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob(".o*")), "staging folder left behind"


@pytest.mark.parametrize("command", ["devices", "train", "profile", "fit", "export", "report"])
def test_help_has_an_example(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert "Example" in out and "maestro-edge" in out


def test_table_for_another_model_is_refused(capsys, tmp_path, tiny_checkpoint):
    from maestro_edge.devices.profile import find_profile
    from maestro_edge.latency.profile import estimated_table
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    table = estimated_table(LoDCheckpoint.load(tiny_checkpoint), find_profile("pixel7"))
    table.model_digest = "0123456789abcdef"
    table.save(tmp_path / "table.json")
    code, _, err = run(capsys, "fit", "--device", "pixel7", "--ms", "20", "--model", str(tiny_checkpoint),
                       "--table", str(tmp_path / "table.json"), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "another model", "table.json")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", ["{not json", "[]", "{\"schema_version\": 1, \"layers\": 3}"])
def test_corrupt_table_is_refused(capsys, tmp_path, tiny_checkpoint, content):
    (tmp_path / "table.json").write_text(content)
    code, _, err = run(capsys, "fit", "--device", "pixel7", "--ms", "20", "--model", str(tiny_checkpoint),
                       "--table", str(tmp_path / "table.json"), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "table.json")
    assert not (tmp_path / "o").exists()


def test_plan_for_another_model_is_refused(capsys, tmp_path, tiny_checkpoint):
    plan = tmp_path / "fit.json"
    plan.write_text('{"ranks": {"features.1.0": 4}, "model": {"digest": "0123456789abcdef"}}')
    code, _, err = run(capsys, "export", "--plan", str(plan), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "another model")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", ["", "{}", '{"ranks": {"no.such.layer": 4}}', '{"ranks": {"features.1.0": 0}}'])
def test_bad_plan_is_refused(capsys, tmp_path, tiny_checkpoint, content):
    plan = tmp_path / "plan.json"
    plan.write_text(content)
    code, _, err = run(capsys, "export", "--plan", str(plan), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err)
    assert not (tmp_path / "o").exists()


@given(st.text(alphabet=st.sampled_from("0123456789.,-+eE _\uff11n a"), max_size=12))
@settings(max_examples=300, deadline=None)
def test_parse_budgets_gives_positive_distinct_numbers_or_refuses(value):
    """Whatever the text: distinct positive finite floats, one per comma-separated part, or a BadParameter."""
    import click

    from maestro_edge.cli.options import parse_budgets

    try:
        budgets = parse_budgets(None, None, value)
    except click.BadParameter:
        return
    assert len(budgets) == len(value.split(",")) == len(set(budgets))
    assert all(math.isfinite(b) and b > 0 for b in budgets)


def test_when_every_fit_fails_nothing_is_printed_on_stdout(capsys, tmp_path, tiny_checkpoint):
    code, out, err = run(capsys, "fit", "--device", "pixel7", "--ms", "0.00001,0.00002", "--model",
                         str(tiny_checkpoint), "--out", str(tmp_path / "o"))
    assert code == 2 and out == ""   # no summary header or legend for no fits
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 3 and "all 2 fits failed" in errors[-1] and "Traceback" not in err
    assert not (tmp_path / "o").exists()
