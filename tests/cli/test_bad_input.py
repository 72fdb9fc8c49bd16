"""Bad input: one line on stderr naming the problem, non-zero exit, no traceback, no output left."""

from __future__ import annotations

import pickle

import pytest
import torch

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
    ("-3", ["positive", "-3"]),
    ("abc", ["abc", "--ms"]),
    ("nan", ["positive"]),
    ("inf", ["positive"]),
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
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob(".o*")), "staging folder left behind"


@pytest.mark.parametrize("command", ["export"])
def test_not_yet_commands_exit_2(capsys, command):
    code, _, err = run(capsys, command)
    assert code == 2
    assert "not available yet" in err


@pytest.mark.parametrize("command", ["devices", "train", "profile", "fit", "report"])
def test_help_has_an_example(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert "Example" in out and "maestro-edge" in out
