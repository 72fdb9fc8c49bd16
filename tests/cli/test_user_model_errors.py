"""Bad input around a user's own model: one error line that says what to do, exit != 0, nothing left behind.

Same rule and helpers as test_catalogue.py; ids are documented in docs/errors.md too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import maestro_edge as me
from tests.cli.test_catalogue import assert_one_line_error, run_cli, snapshot

EVALS = '''
import sys
import math
def score(model): return 0.5
def boom(model): return 1 / 0
def nan(model): return math.nan
def text(model): return "good"
def batches(): return []
def yes(model): return True
def numeric_text(model): return "0.9"
def leaves(model): sys.exit(0)
def calibrate_boom(): raise RuntimeError("no data here")
def calibrate_text(): return "batches"
def chatty(model):
    for i in range(2000):
        print("evaluating", i)
    return 0.5
not_callable = 3
'''


class Net(nn.Module):
    def __init__(self, activation: str = "relu"):
        super().__init__()
        self.activation = activation
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        y = self.fc(x)
        if self.activation == "fft":
            return torch.fft.rfft(y).abs()
        return y.relu() if self.activation == "relu" else y.tanh()


def _save(path: Path, model: nn.Module) -> Path:
    me.factorize_(model)
    x = torch.randn(1, 16)
    table = me.importance_table(model, lambda m: -float(m(x).square().mean()), x)
    me.LoDCheckpoint.from_model(model, x, importance=table).save(path)
    return path


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    torch.manual_seed(0)
    good = _save(root / "good.lod", Net())
    _save(root / "spectral.lod", Net("fft"))
    torch.manual_seed(0)
    _save(root / "edited.lod", Net("tanh"))   # good.lod's weights, its forward edited
    (root / "evals.py").write_text(EVALS)
    from maestro_edge.devices.profile import find_profile
    from maestro_edge.latency.profile import estimated_table

    stale = estimated_table(me.LoDCheckpoint.load(good), find_profile("pixel7"))
    stale.save(root / "stale-table.json")   # good.lod's table: stale for edited.lod
    return root


FIT = ["fit", "--device", "pixel7", "--ms", "5"]
CASES = {
    "user-model-not-exportable": (["--model", "spectral.lod"], ["ExecuTorch cannot export", "abs"]),
    "user-eval-module-missing": (["--model", "good.lod", "--eval", "nosuch.evals:score"], ["no module named", "nosuch"]),
    "user-eval-function-missing": (["--model", "good.lod", "--eval", "evals:nosuch"], ["no function 'nosuch'"]),
    "user-eval-not-callable": (["--model", "good.lod", "--eval", "evals:not_callable"], ["no function"]),
    "user-eval-bad-spec": (["--model", "good.lod", "--eval", "score"], ["not of the form"]),
    "user-eval-raises": (["--model", "good.lod", "--eval", "evals:boom"], ["raised ZeroDivisionError"]),
    "user-eval-returns-nan": (["--model", "good.lod", "--eval", "evals:nan"], ["returned nan"]),
    "user-eval-returns-text": (["--model", "good.lod", "--eval", "evals:text"], ["not a number"]),
    "user-eval-returns-numeric-text": (["--model", "good.lod", "--eval", "evals:numeric_text"], ["str", "not a number"]),
    "user-eval-returns-bool": (["--model", "good.lod", "--eval", "evals:yes"], ["bool", "not a number"]),
    "user-eval-exits": (["--model", "good.lod", "--eval", "evals:leaves"], ["exit(0)", "must return"]),
    "user-calibrate-raises": (["--model", "good.lod", "--eval", "evals:chatty", "--calibrate", "evals:calibrate_boom"],
                              ["--calibrate evals:calibrate_boom", "raised RuntimeError", "fix the function"]),
    "user-calibrate-returns-text": (["--model", "good.lod", "--eval", "evals:chatty", "--calibrate",
                                     "evals:calibrate_text"], ["--calibrate returned str", "batches"]),
    "user-calibrate-without-eval": (["--model", "good.lod", "--calibrate", "evals:batches"], ["needs --eval"]),
    "user-recover-without-train-data": (["--model", "good.lod", "--recover-epochs", "1"], ["pass --train-data"]),
    "user-train-data-gives-nothing": (["--model", "good.lod", "--recover-epochs", "1", "--train-data", "evals:batches"],
                                      ["gave no batch"]),
    "user-choose-among-without-eval": (["--model", "good.lod", "--choose-among", "4"], ["needs a measured metric"]),
    "user-table-of-another-graph": (["--model", "edited.lod", "--table", "stale-table.json"], ["another model"]),
}
USER_MODEL_CASE_IDS = set(CASES)


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_user_model_bad_input(capsys, monkeypatch, user, case_id):
    extra, words = CASES[case_id]
    monkeypatch.chdir(user)   # --eval modules are imported from the current folder
    before = snapshot(user)
    code, out, err = run_cli(capsys, [*FIT, *extra, "--out", str(user / "out"), "--quiet"])
    assert_one_line_error(code, out, err, words)
    assert snapshot(user) == before, "files were written, changed or left behind"


def test_a_chatty_eval_function_does_not_break_fit_json(capsys, monkeypatch, user, tmp_path):
    """The user's prints go to stderr: `fit --json` keeps stdout one JSON document."""
    import json

    monkeypatch.chdir(user)
    code, out, err = run_cli(capsys, [*FIT, "--model", "good.lod", "--eval", "evals:chatty", "--json", "--quiet",
                                      "--out", str(tmp_path / "out")])
    assert code == 0, err[-2000:]
    json.loads(out)
    assert err.count("evaluating 1999") >= 1
