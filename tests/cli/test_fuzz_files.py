"""Every file maestro-edge reads, mutated at random, through the command that reads it (issue 16).

Each example writes one mutated copy of a good file into a fresh folder and runs the CLI in-process
(``run_cli`` of test_catalogue.py). The rule: the command succeeds (and what it writes holds no NaN or
infinity), or it prints exactly one line on stderr that starts with "Error: " and says what to do, exits
non-zero, with no traceback; either way nothing is written, changed or removed outside the new output
folder. Mutations: a key dropped; a value replaced by a string, NaN, an infinity, a huge, negative or zero
number, null, a bool, a list, a table, or a structure nested thousands deep; the file cut short; random bytes.

Bounded for CI: a few examples per format, nothing profiled (the estimated pixel7; the journal's timer is
scripted), and where only the latency side reads a file (profiles, tables) a budget below any model, so the
fit stops once the file has been used to solve.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, event, given, settings, strategies as st

from tests.cli.test_catalogue import assert_one_line_error, run_cli, snapshot
from tests.conftest import DIGITS_MODEL

GOOD_PROFILE = Path(__file__).resolve().parents[2] / "maestro_edge" / "profiles" / "pixel7.toml"
BELOW_ANY_MODEL = "0.001"   # ms: the fit stops after solving, with its one-line budget error
# CI runs the same few examples every time and reports a failure as found (shrinking one can take minutes);
# MAESTRO_EDGE_FUZZ=N runs N times as many, new ones each run, and shrinks what fails.
SCALE = int(os.environ.get("MAESTRO_EDGE_FUZZ", "0"))


def fuzz(examples: int) -> settings:
    phases = [phase for phase in Phase if SCALE or phase is not Phase.shrink]
    return settings(max_examples=examples * max(1, SCALE), deadline=None, derandomize=not SCALE, database=None,
                    phases=phases, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# -- mutations ----------------------------------------------------------------------------------------------

DEEP = "\x00nested\x00"   # placeholder for a value nested DEPTH levels deep (written into the text as is)
DEPTH = 5000
REPLACEMENTS = ["fast", "", math.nan, math.inf, -math.inf, 10**30, 2**63, 1e308, -1, -2.5, 0, 2, 16, None, True,
                [], [1, "x"], {}, {"x": 1}, DEEP]   # 2, 16: plausible values that may not fit the rest of the file


def mutated(data, doc, keep_first=None):
    """A copy of ``doc`` with one node dropped or replaced, chosen level by level (every level as likely as
    the next, so short records are not drowned by long lists). ``keep_first``: the top-level keys to pick from."""
    doc = copy.deepcopy(doc)
    parent, key, node = None, None, doc
    while isinstance(node, (dict, list)) and node:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if parent is None and keep_first:
            keys = [k for k in keys if k in keep_first]
        elif parent is not None and data.draw(st.booleans(), label="stop here"):
            break
        parent, key = node, data.draw(st.sampled_from(keys), label="key")
        node = parent[key]
    replace = data.draw(st.sampled_from(REPLACEMENTS), label="value")
    if parent is None:
        return replace
    if data.draw(st.booleans(), label="drop"):
        del parent[key]
    else:
        parent[key] = replace
    return doc


def deep_text(opening: str, closing: str) -> str:
    return opening * DEPTH + "1" + closing * DEPTH


def to_json(doc) -> str:
    return json.dumps(doc).replace(json.dumps(DEEP), deep_text("[", "]"))


def to_toml(doc) -> str:
    """``doc`` as TOML (null has no TOML form: such keys are left out); a non-table document as one key."""
    if not isinstance(doc, dict):
        doc = {"value": doc}
    scalars = [f"{json.dumps(k)} = {_toml(v)}" for k, v in doc.items() if not isinstance(v, dict) and v is not None]
    tables = [f"[{json.dumps(k)}]\n" + "".join(f"{json.dumps(k2)} = {_toml(v2)}\n" for k2, v2 in v.items()
                                               if v2 is not None)
              for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(scalars) + "\n" + "\n".join(tables)


def _toml(value) -> str:
    if value == DEEP:
        return deep_text("[", "]")
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (bool, int, float, str)):
        return json.dumps(value)   # TOML writes these as JSON does
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value if v is not None) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items() if v is not None) + "}"


def damaged(data, raw: bytes) -> bytes:
    """The file cut short, or random bytes (alone or after the good start of the file)."""
    how = data.draw(st.sampled_from(["cut", "bytes", "tail"]), label="damage")
    if how == "cut":
        return raw[: data.draw(st.integers(0, max(0, len(raw) - 1)), label="cut at")]
    junk = data.draw(st.binary(max_size=64), label="bytes")
    return junk if how == "bytes" else raw[: len(raw) // 2] + junk


def mutated_text(data, doc, write, keep_first=None) -> bytes:
    """Mostly a field mutation; sometimes the good file damaged."""
    if data.draw(st.integers(0, 4), label="damage the file?") == 0:
        return damaged(data, write(doc).encode())
    return write(mutated(data, doc, keep_first)).encode()


# -- the rule -----------------------------------------------------------------------------------------------

def _no_nan(text: str) -> None:
    def refuse(constant):
        raise AssertionError(f"{constant} written in an output file")
    json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@contextlib.contextmanager
def fresh_folder(scratch: Path):
    """A new folder for one example, the working directory while it runs, removed after."""
    work = Path(tempfile.mkdtemp(dir=scratch))
    try:
        with contextlib.chdir(work):
            yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_rule(capsys, argv: list[str], work: Path, out: Path, outputs: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run ``argv``; assert the rule; return (exit code, the error line or "")."""
    cache = Path(os.environ["MAESTRO_EDGE_CACHE"])   # set by tests/conftest.py
    cache.mkdir(parents=True, exist_ok=True)
    before = snapshot(work, cache)
    code, stdout, err = run_cli(capsys, [str(a) for a in argv])
    after = {p: v for p, v in snapshot(work, cache).items() if not Path(p).is_relative_to(out)}
    assert after == before, f"files written, changed or removed outside {out}: {sorted(set(after) ^ set(before))}"
    event("succeeded" if code == 0 else "refused")   # pytest --hypothesis-show-statistics shows the mix
    if code == 0:
        assert "Traceback" not in err, err
        for name in outputs:
            _no_nan((out / name).read_text())
        return code, ""
    return code, assert_one_line_error(code, stdout, err)


def assert_blames(line: str, name: str) -> None:
    """An error that does not name the mutated file is the budget's (it echoes the budget), with real numbers:
    a NaN or infinity there would be a bad file's value reported as a latency."""
    if line and name not in line:
        assert BELOW_ANY_MODEL in line, f"the error names neither {name} nor the budget: {line}"
        assert not re.search(r"\b(nan|inf)\b", line), f"a NaN or infinite latency reported: {line}"


# -- device profiles ------------------------------------------------------------------------------------------

@given(data=st.data())
@fuzz(30)
def test_profile_toml(capsys, scratch, data):
    import tomllib

    doc = tomllib.loads(GOOD_PROFILE.read_text())
    with fresh_folder(scratch) as work:
        (work / "mutated.toml").write_bytes(mutated_text(data, doc, to_toml))
        _, line = check_rule(capsys, ["fit", "--device", work / "mutated.toml", "--ms", BELOW_ANY_MODEL,
                                      "--model", DIGITS_MODEL, "--out", work / "out"], work, work / "out")
    assert_blames(line, "mutated.toml")


# -- checkpoints -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_blob() -> dict:
    return torch.load(DIGITS_MODEL, weights_only=True)


@given(data=st.data())
@fuzz(15)
def test_builtin_checkpoint(capsys, scratch, digits_blob, data):
    with fresh_folder(scratch) as work:
        path = work / "mutated.lod.pt"
        how = data.draw(st.sampled_from(["metadata", "metadata", "metadata", "weights", "file"]), label="what")
        if how == "file":
            buffer = io.BytesIO()
            torch.save(digits_blob, buffer)
            path.write_bytes(damaged(data, buffer.getvalue()))
        else:
            blob = {k: v for k, v in digits_blob.items() if k != "state_dict"}
            blob = mutated(data, blob) if how == "metadata" else blob
            weights = dict(digits_blob["state_dict"])
            if how == "weights":   # a training run that diverged
                key = data.draw(st.sampled_from(sorted(k for k, v in weights.items() if v.is_floating_point())))
                weights[key] = weights[key].clone().flatten().index_fill(0, torch.tensor([0]), math.nan) \
                    .reshape(weights[key].shape)
            torch.save({**blob, "state_dict": weights} if isinstance(blob, dict) else blob, path)
        code, line = check_rule(capsys, ["fit", "--device", "pixel7", "--ms", "20", "--model", path,
                                         "--out", work / "out", "-q"], work, work / "out", ("fit.json",))
    if how == "weights":
        assert "mutated.lod.pt" in line and "NaN" in line, line


def save_program_checkpoint(path: Path) -> Path:
    """A small user model saved in the program format (torch.export archive + JSON metadata)."""
    import maestro_edge as me

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.BatchNorm1d(24), torch.nn.ReLU(),
                                torch.nn.Linear(24, 4))
    me.factorize_(model)
    x = torch.randn(1, 16)
    table = me.importance_table(model, lambda m: -float(m.eval()(x).square().mean()), x)
    me.LoDCheckpoint.from_model(model.eval(), x, importance=table).save(path)
    return path


@pytest.fixture(scope="module")
def program_checkpoint(tmp_path_factory) -> Path:
    return save_program_checkpoint(tmp_path_factory.mktemp("program") / "user.lod")


META_MEMBER = "extra/maestro_edge.json"   # the program archive's JSON metadata (lod/program.py)


def program_metadata(archive: Path) -> dict:
    with zipfile.ZipFile(archive) as src:
        return json.loads(src.read(next(n for n in src.namelist() if n.endswith(META_MEMBER))))


def with_metadata(archive: Path, dest: Path, meta: bytes) -> Path:
    """A copy of the program ``archive`` whose metadata member holds ``meta``."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(dest, "w") as out:
        for item in src.infolist():
            out.writestr(item, meta if item.filename.endswith(META_MEMBER) else src.read(item))
    return dest


@given(data=st.data())
@fuzz(10)
def test_program_checkpoint(capsys, scratch, program_checkpoint, data):
    meta = program_metadata(program_checkpoint)
    with fresh_folder(scratch) as work:
        path = work / "mutated.lod"
        if data.draw(st.integers(0, 5), label="damage the archive?") == 0:
            path.write_bytes(damaged(data, program_checkpoint.read_bytes()))
        else:
            with_metadata(program_checkpoint, path, mutated_text(data, meta, to_json))
        check_rule(capsys, ["fit", "--device", "pixel7", "--ms", "20", "--model", path, "--out", work / "out", "-q"],
                   work, work / "out", ("fit.json",))


# -- latency tables ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_table() -> dict:
    from maestro_edge.devices.profile import find_profile
    from maestro_edge.latency.profile import estimated_table
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    return estimated_table(LoDCheckpoint.load(DIGITS_MODEL), find_profile("pixel7")).to_dict()


@given(data=st.data())
@fuzz(30)
def test_latency_table(capsys, scratch, good_table, data):
    with fresh_folder(scratch) as work:
        (work / "mutated.json").write_bytes(mutated_text(data, good_table, to_json))
        _, line = check_rule(capsys, ["fit", "--device", "pixel7", "--ms", BELOW_ANY_MODEL, "--model",
                                      DIGITS_MODEL, "--table", work / "mutated.json", "--out", work / "out"],
                             work, work / "out", ("fit.json",))
    assert_blames(line, "mutated.json")


# -- fit.json: report and export --plan ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_fit() -> dict:
    """A fit.json of the digits model, as fit writes it."""
    from maestro_edge.lod.checkpoint import LoDCheckpoint
    from maestro_edge.lod.layers import lod_layers
    from tests.report.conftest import fit_record

    ckpt = LoDCheckpoint.load(DIGITS_MODEL)
    ranks = {name: max(1, layer.active_rank // 2) for name, layer in lod_layers(ckpt.model).items()}
    record = fit_record("pixel7", 20, runtime="executorch-xnnpack", threads=4, latency_source="estimated",
                        predicted_ms=0.3, measured_ms=None, accuracy=0.95, ranks={**ranks, "classifier.3": "dense"},
                        baselines=[{"name": "dense", "predicted_ms": 0.4, "accuracy": 0.97}],
                        max_ranks={name: 2 * rank for name, rank in ranks.items()})
    record["model"]["digest"] = ckpt.digest()
    return record


@given(data=st.data())
@fuzz(25)
def test_fit_json_report(capsys, scratch, good_fit, data):
    pytest.importorskip("matplotlib")
    with fresh_folder(scratch) as work:
        (work / "in" / "pixel7-20ms").mkdir(parents=True)
        (work / "in" / "pixel7-20ms" / "fit.json").write_bytes(mutated_text(data, good_fit, to_json))
        code, line = check_rule(capsys, ["report", work / "in", "--out", work / "out" / "report.html"],
                                work, work / "out")
    if code:
        assert "fit.json" in line, f"the error does not name the fit.json: {line}"


@given(data=st.data())
@fuzz(10)
def test_fit_json_export_plan(capsys, scratch, good_fit, data):
    """Only what export reads is mutated (the ranks, the model's digest; sometimes the whole file damaged): a
    mutation elsewhere would only make a slow success."""
    with fresh_folder(scratch) as work:
        (work / "plan.json").write_bytes(mutated_text(data, good_fit, to_json, keep_first=("ranks", "model")))
        check_rule(capsys, ["export", "--plan", work / "plan.json", "--model", DIGITS_MODEL, "--out", work / "out",
                            "-q"], work, work / "out", ("export.json",))


# -- the profiling journal ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def journal_lines(tmp_path_factory) -> list[str]:
    """The journal of a profile of the digits model interrupted after its last layer (scripted timings)."""
    from maestro_edge.errors import TransportError
    from maestro_edge.latency.journal import journal_path
    from maestro_edge.latency.measure import QUICK
    from maestro_edge.latency.profile import measure_table
    from maestro_edge.lod.checkpoint import LoDCheckpoint
    from maestro_edge.lod.layers import lod_layers
    from tests.latency.test_profile_resume import PROFILE, ScriptedTimer

    ckpt = LoDCheckpoint.load(DIGITS_MODEL)
    table = tmp_path_factory.mktemp("journal") / "t.json"
    with pytest.raises(TransportError):
        measure_table(ckpt, PROFILE, ScriptedTimer(fail_at_batch=len(lod_layers(ckpt.model))), QUICK, table)
    return journal_path(table).read_text().splitlines()


@given(data=st.data())
@fuzz(15)
def test_journal(scratch, journal_lines, data):
    """A damaged journal line is ignored and its layer measured again: never a crash, and the table loads."""
    from maestro_edge.latency.journal import journal_path
    from maestro_edge.latency.measure import QUICK
    from maestro_edge.latency.profile import measure_table
    from maestro_edge.latency.table import LatencyTable
    from maestro_edge.lod.checkpoint import LoDCheckpoint
    from tests.latency.test_profile_resume import PROFILE, ScriptedTimer

    lines = list(journal_lines)
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    record = json.loads(lines[index])
    if data.draw(st.integers(0, 4), label="damage the line?") == 0:
        lines[index] = damaged(data, lines[index].encode()).decode(errors="replace")
    else:
        lines[index] = to_json(mutated(data, record, keep_first=("layer", "timings")))
    with fresh_folder(scratch) as work:
        journal_path(work / "t.json").write_text("\n".join(lines) + "\n")
        table = measure_table(LoDCheckpoint.load(DIGITS_MODEL), PROFILE, ScriptedTimer(), QUICK, work / "t.json")
        assert LatencyTable.load(work / "t.json").layers.keys() == table.layers.keys()


def test_a_journal_record_missing_an_option_is_measured_again(tmp_path, journal_lines):
    from maestro_edge.latency.journal import journal_path
    from maestro_edge.latency.measure import QUICK
    from maestro_edge.latency.probes import layer_options
    from maestro_edge.latency.profile import measure_table
    from maestro_edge.lod.checkpoint import LoDCheckpoint
    from maestro_edge.lod.layers import lod_layers
    from tests.latency.test_profile_resume import PROFILE, ScriptedTimer

    record = json.loads(journal_lines[1])
    rank = next(option for option in record["timings"] if option.isdigit())
    del record["timings"][rank]
    journal_path(tmp_path / "t.json").write_text("\n".join([journal_lines[0], json.dumps(record),
                                                            *journal_lines[2:]]) + "\n")
    ckpt = LoDCheckpoint.load(DIGITS_MODEL)
    table = measure_table(ckpt, PROFILE, ScriptedTimer(), QUICK, tmp_path / "t.json")
    for name, layer in lod_layers(ckpt.model).items():
        assert set(table.layers[name].rank_ms) == {c for c in layer_options(layer) if c != "dense"}, name
