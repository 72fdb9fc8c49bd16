"""Malformed fields and arguments named in issue 16, one test each (test_fuzz_files.py finds the next ones).

The rule is test_catalogue.py's: one line on stderr that starts with "Error: ", names the file and key and
says what to do, a non-zero exit, no traceback, nothing written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from maestro_edge import validate
from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.errors import CheckpointError, ProfileError
from maestro_edge.lod import metadata
from tests.cli.test_catalogue import assert_one_line_error, run_cli
from tests.cli.test_fuzz_files import deep_text, program_metadata, save_program_checkpoint, with_metadata
from tests.conftest import DIGITS_MODEL

PIXEL7 = Path(__file__).resolve().parents[2] / "maestro_edge" / "profiles" / "pixel7.toml"


def fit(capsys, tmp_path, *args, device="pixel7", model=DIGITS_MODEL, ms="20"):
    code, out, err = run_cli(capsys, ["fit", "--device", str(device), "--ms", ms, "--model", str(model),
                                      "--out", str(tmp_path / "out"), *map(str, args)])
    assert not (tmp_path / "out").exists()
    return assert_one_line_error(code, out, err)


# -- checkpoints ------------------------------------------------------------------------------------------

def _digits(tmp_path: Path, change) -> Path:
    blob = torch.load(DIGITS_MODEL, weights_only=True)
    change(blob)
    torch.save(blob, tmp_path / "bad.lod.pt")
    return tmp_path / "bad.lod.pt"


def test_nan_weights_are_refused_at_load_naming_the_checkpoint_and_tensor(capsys, tmp_path):
    def poison(blob):
        blob["state_dict"]["features.3.0.u"][0, 0, 0, 0] = math.nan
    line = fit(capsys, tmp_path, model=_digits(tmp_path, poison))
    assert "bad.lod.pt" in line and "'features.3.0.u'" in line and "NaN" in line and "retrain" in line, line
    assert "export" not in line, "the checkpoint is to blame, not the export"


@pytest.mark.parametrize("change, words", [
    (lambda b: b["data"].update(seed=2**64), ["data.seed", "18446744073709551616"]),
    (lambda b: b["data"].update(seed="0"), ["data.seed"]),
    (lambda b: b["data"].update(input_shape=[1, 1, 16, 16]), ["data.input_shape", "1x8x8"]),
    (lambda b: b["data"].update(input_shape=[1, 1, 8]), ["data.input_shape", "1x8x8"]),
    (lambda b: b["data"].update(input_shape=[1, 1, 10**9, 10**9]), ["data.input_shape"]),
    (lambda b: b["data"].update(input_shape="1x1x8x8"), ["data.input_shape"]),
    (lambda b: b["arch"].update(in_channels=10**9), ["arch.in_channels"]),
    (lambda b: b["arch"].update(kwargs={"widths": [10**6] * 4}), ["inconsistent"]),   # meta build: no allocation
    (lambda b: b["lod_layers"]["classifier.3"].update(max_rank="10"), ["lod_layers.classifier.3.max_rank"]),
    (lambda b: b["importance"]["layers"]["features.1.0"].update(acc_drop=[0.1]), ["acc_drop", "list of 8"]),
    (lambda b: b["importance"]["layers"]["features.1.0"]["loss_delta"].__setitem__(2, "high"),
     ["importance.layers.features.1.0.loss_delta[2]"]),
    (lambda b: b["importance"]["layers"]["features.1.0"].update(ranks=[16, 0, 40]), ["ranks[1]"]),
    (lambda b: b["importance"]["layers"].update({"features.1.0": [1, 2]}), ["importance.layers.features.1.0"]),
    (lambda b: b["importance"].update(base={"accuracy": math.inf}), ["importance.base.accuracy"]),
    (lambda b: b.update(recipe=[1, 2]), ["'recipe'"]),
    (lambda b: b["recipe"].update(deep=json.loads("[" * 100 + "]" * 100)), ["nested"]),
])
def test_malformed_builtin_metadata_is_one_line_naming_file_and_key(capsys, tmp_path, change, words):
    line = fit(capsys, tmp_path, model=_digits(tmp_path, change))
    for word in ["bad.lod.pt", "retrain", *words]:
        assert word in line, (word, line)


def test_image_shapes_agree_with_the_data_sets():
    from maestro_edge.data import load_dataset

    for name in ("digits", "fashion-mnist-heldout"):
        assert list(load_dataset(name, 0, limit=1).input_shape[1:]) == metadata.IMAGE_SHAPES[name], name


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return save_program_checkpoint(tmp_path_factory.mktemp("program") / "user.lod")


@pytest.mark.parametrize("change, words", [
    (lambda m: json.dumps({**m, "importance": {**m["importance"], "layers": {
        name: {**e, "metric_drop": e["metric_drop"][:1]} for name, e in m["importance"]["layers"].items()}}}),
     ["metric_drop", "list of"]),
    (lambda m: json.dumps({**m, "batch_norms": {n: {**c, "num_features": 10**9} for n, c in m["batch_norms"].items()}}),
     ["inconsistent"]),   # checked on the meta device: nothing allocated
    (lambda m: json.dumps({**m, "lod_layers": {n: {**s, "config": {**s["config"], "in_features": 10**7}}
                                               for n, s in m["lod_layers"].items()}}), ["inconsistent"]),
    (lambda m: json.dumps({**m, "metric": {"name": "score", "higher_is_better": "yes"}}), ["metric.higher_is_better"]),
    (lambda m: json.dumps({**m, "data": {**m["data"], "input_shape": [1, 3, 224, 224]}}),
     ["inconsistent", "input_shape [1, 3, 224, 224]", "example inputs"]),
    (lambda m: json.dumps(m)[:-1] + ', "deep": ' + deep_text("[", "]") + "}", ["not valid JSON", "nested"]),
])
def test_malformed_program_metadata_is_one_line(capsys, tmp_path, program, change, words):
    bad = with_metadata(program, tmp_path / "bad.lod", change(program_metadata(program)).encode())
    line = fit(capsys, tmp_path, model=bad)
    for word in ["bad.lod", *words]:
        assert word in line, (word, line)


def test_nan_weights_in_a_program_checkpoint(tmp_path, program):
    import maestro_edge as me

    ckpt = me.LoDCheckpoint.load(program)
    with torch.no_grad():
        next(iter(ckpt.model.parameters())).fill_(math.inf)
    ckpt.save(tmp_path / "inf.lod")
    with pytest.raises(CheckpointError, match=r"inf\.lod: weight tensor .* NaN or infinite"):
        me.LoDCheckpoint.load(tmp_path / "inf.lod")


# -- device profiles ----------------------------------------------------------------------------------------

def _profile(tmp_path: Path, old: str, new: str) -> Path:
    text = PIXEL7.read_text()
    assert old in text, old
    (tmp_path / "odd.toml").write_text(text.replace(old, new, 1))
    return tmp_path / "odd.toml"


@pytest.mark.parametrize("old, new, words", [
    ("threads = 4", "threads = 0", ["'threads'", ">= 1"]),
    ("threads = 4", "threads = -1", ["'threads'", ">= 1"]),
    ("threads = 4", "threads = 1000000000", ["'threads'", "<= 512"]),
    ("threads = 4", 'threads = "4"', ["'threads'", "integer"]),
    ("reference_fraction_of_peak = 0.71", "reference_fraction_of_peak = nan",
     ["[estimate] 'reference_fraction_of_peak'"]),
    ("per_op_overhead_ms = 0.005", 'per_op_overhead_ms = "fast"', ["[estimate] 'per_op_overhead_ms'", "'fast'"]),
    ("per_op_overhead_ms = 0.005", "per_op_overhead_ms = inf", ["[estimate] 'per_op_overhead_ms'"]),
    ("memory_gbs = 44.0", "memory_gbs = -44.0", ["[hardware] 'memory_gbs'"]),
    ("clock_ghz = 2.85", f"clock_ghz = {10**400}", ["'clock_ghz'"]),   # an int too large for a float
    ('description = "', 'description = 5\nx = "', ["'description'"]),
    ("[provenance]", "[provenance]\nx = " + deep_text("[", "]"), ["nested"]),
    ("[provenance]", '[target]\nport = 0\n[provenance]', ["[target] 'port'"]),
])
def test_malformed_profile_value_names_the_file_and_key(capsys, tmp_path, old, new, words):
    line = fit(capsys, tmp_path, device=_profile(tmp_path, old, new))
    for word in ["odd.toml", "fix", *words]:
        assert word in line, (word, line)


def test_nan_peak_of_a_profile_without_a_core_table_is_blamed_on_the_profile():
    """A user's profile giving the peak directly: a NaN there is refused at load, not reported as a latency."""
    import tomllib

    data = tomllib.loads(PIXEL7.read_text())
    data["hardware"] = {"peak_gflops": math.nan, "peak_cores": 4, "memory_gbs": 12.8}
    with pytest.raises(ProfileError) as info:
        DeviceProfile.from_dict(data, source="mine.toml")
    assert "mine.toml" in str(info.value) and "[hardware] 'peak_gflops'" in str(info.value)


# -- JSON nested too deep, everywhere JSON is read -------------------------------------------------------------

def test_parse_json_turns_deep_nesting_into_a_decode_error():
    for text in ("[" * 40 + "]" * 40, deep_text("[", "]"), '{"a": ' + deep_text("{\"b\": ", "}") + "}"):
        with pytest.raises(json.JSONDecodeError, match="nested more than"):
            validate.parse_json(text)
    assert validate.parse_json("[" * 30 + "]" * 30) is not None


def test_deep_latency_table(capsys, tmp_path):
    (tmp_path / "deep.json").write_text(deep_text("[", "]"))
    line = fit(capsys, tmp_path, "--table", tmp_path / "deep.json")
    assert "deep.json" in line and "nested" in line, line


def test_deep_fit_json_in_report(capsys, tmp_path):
    (tmp_path / "in" / "pixel7-20ms").mkdir(parents=True)
    (tmp_path / "in" / "pixel7-20ms" / "fit.json").write_text('{"ranks": ' + deep_text("[", "]") + "}")
    code, out, err = run_cli(capsys, ["report", str(tmp_path / "in"), "--out", str(tmp_path / "out" / "r.html")])
    line = assert_one_line_error(code, out, err)
    assert "fit.json" in line and "nested" in line, line


# -- the profiling journal ----------------------------------------------------------------------------------------

def test_read_journal_ignores_malformed_records(tmp_path):
    from maestro_edge.latency.journal import append_journal, read_journal

    journal, setup = tmp_path / "t.partial.jsonl", {"model_digest": "abc"}
    timing = {"p50_ms": 1.0, "p90_ms": 1.2, "min_ms": 0.9, "rounds": 5}
    good = {"dense": timing, "4": timing, "call": timing}
    for layer, timings in [("ok", good), ("no-p90", {**good, "4": {"p50_ms": 1.0}}), ("text", {**good, "4": "fast"}),
                           ("nan", {**good, "dense": {**timing, "p50_ms": math.nan}}),
                           ("rank-0", {**good, "0": timing}),
                           ("no-dense", {"4": timing, "call": timing}), ("list", [timing]), (5, good),
                           ("missing-4", {"dense": timing, "call": timing})]:
        append_journal(journal, setup, layer, timings)
    with open(journal, "a") as f:
        f.write(json.dumps({"setup": setup, "layer": "deep", "timings": good})[:-1] + ', "x": '
                + deep_text("[", "]") + "}\n")
    assert set(read_journal(journal, setup)) == {"ok", "missing-4"}
    options = {"ok": ["dense", "4"], "missing-4": ["dense", "4"]}
    assert set(read_journal(journal, setup, options)) == {"ok"}, "a record missing an option is measured again"
    journal.unlink()
    journal.mkdir()   # not a file: nothing to resume, never a crash
    assert read_journal(journal, setup) == {}


# -- train arguments ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["-1", str(2**63), str(2**32)])
def test_train_seed_out_of_range(capsys, tmp_path, seed):
    code, out, err = run_cli(capsys, ["train", "--seed", seed, "--epochs", "1", "--out", str(tmp_path / "x.pt")])
    line = assert_one_line_error(code, out, err, expected_code=2)
    assert "--seed" in line and seed in line
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA and sees a GPU")
def test_train_on_cuda_without_cuda(capsys, tmp_path):
    code, out, err = run_cli(capsys, ["train", "--device", "cuda", "--epochs", "1", "--out", str(tmp_path / "x.pt")])
    line = assert_one_line_error(code, out, err, expected_code=2)
    assert "--device" in line and "CUDA" in line and "--device cpu" in line, line
    if not torch.backends.cuda.is_built():
        assert "not available in this torch build" in line, line
    assert not (tmp_path / "x.pt").exists()
