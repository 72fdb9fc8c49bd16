"""Hostile output paths, generated: every command that writes says so in one line, before any work.

For ``fit --out``, ``export --out``, ``train --out``, ``report --out``, ``MAESTRO_EDGE_CACHE`` and the
output of ``python -m maestro_edge.lod.compact``, hypothesis builds paths a user can type but no tool
can use: names longer than the file system takes, paths longer than it takes, symbolic links (to a
folder or file, or to nothing), a file where a folder goes (and the reverse), a path under a file, a
path under a folder this process cannot write (/proc, where even root's os.access is wrong), someone's
file in the way, with names holding spaces, newlines, non-ASCII and undecodable (non-UTF-8) bytes.
Each run must give: exactly one error line on stderr, starting with "Error:", a non-zero exit code,
no traceback, and nothing created, changed or removed in the sandbox. Bounded: well under a minute.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.compact import main as compact_main
from maestro_edge.lod.layers import lod_layers

from tests.cli.test_catalogue import error_lines, run_cli
from tests.report.conftest import sweep_records, write_fit

DIGITS = Path(__file__).resolve().parents[1] / "fixtures" / "digits.lod.pt"
UNWRITABLE = Path("/proc")   # creating anything there fails, whoever asks (os.access says yes to root)

# What each writer takes at the hostile path, and which hostile kinds are wrong for it.
FOLDER_KINDS = ["long_name", "long_path", "symlink", "dangling", "under_file", "foreign_file", "unwritable"]
FILE_KINDS = ["long_name", "long_path", "symlink", "dangling", "under_file", "foreign_file", "unwritable", "folder"]
CASES = ([("fit", k) for k in FOLDER_KINDS] + [("export", k) for k in FOLDER_KINDS]
         + [("train", k) for k in FILE_KINDS] + [("report", k) for k in FILE_KINDS if k != "folder"]
         + [("compact", k) for k in FILE_KINDS]
         # the cache is only read by an estimated fit: a link to a folder or a read-only folder is fine there
         + [("cache", k) for k in ("long_name", "long_path", "dangling", "under_file", "foreign_file")])

# Characters a user can put in a name (no "/" and no NUL: argv cannot carry those), undecodable bytes
# included the way Python sees them in argv (surrogate escapes).
NAME_CHARS = st.one_of(st.sampled_from("abcXYZ019 ._-~'\"$;|&()\n\té"),
                       st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF),
                       st.sampled_from([chr(0xDC00 + b) for b in (0x80, 0xC3, 0xFF)]))
NAMES = st.text(NAME_CHARS, min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """What the commands read: a plan for export, a sweep for report (the checkpoint is the digits fixture)."""
    root = tmp_path_factory.mktemp("hostile-inputs")
    ckpt = LoDCheckpoint.load(DIGITS)
    (root / "plan.json").write_text(json.dumps({"ranks": {n: "dense" for n in lod_layers(ckpt.model)}}))
    for record in sweep_records():
        write_fit(root / "sweep", record)
    return {"plan": root / "plan.json", "sweep": root / "sweep"}


def hostile_path(sandbox: Path, kind: str, name: str, content: bytes, writer_wants_folder: bool) -> Path:
    """Build what ``kind`` needs in ``sandbox`` and return the path to pass."""
    if kind == "long_name":
        return sandbox / (name * (256 // len(os.fsencode(name)) + 2))
    if kind == "long_path":
        part = (name * 200)[:200]
        return sandbox.joinpath(*[f"{i}{part}" for i in range(24)])
    if kind == "symlink":
        target = sandbox / f"{name}-target"
        target.mkdir() if writer_wants_folder else target.write_bytes(content)
        (sandbox / name).symlink_to(target)
        return sandbox / name
    if kind == "dangling":
        (sandbox / name).symlink_to(sandbox / f"{name}-gone")
        return sandbox / name
    if kind == "under_file":
        (sandbox / name).write_bytes(content)
        return sandbox / name / "sub" / "out"
    if kind == "foreign_file":
        (sandbox / name).write_bytes(content)
        return sandbox / name
    if kind == "folder":
        (sandbox / name).mkdir()
        (sandbox / name / "keep.txt").write_text("mine")
        return sandbox / name
    assert kind == "unwritable"
    return UNWRITABLE / f"maestro-edge-{name}"


def snapshot(root: Path) -> dict:
    """Every entry under ``root``: kind, and the bytes of files or the target of links."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            p = Path(dirpath, entry)
            if p.is_symlink():
                seen[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                seen[str(p)] = ("dir",)
            else:
                seen[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
    return seen


def run(capsys, writer: str, path: Path, sandbox: Path, inputs: dict, monkeypatch) -> tuple[int, str, str]:
    if writer == "compact":
        code = compact_main([str(DIGITS), str(path)])
        out, err = capsys.readouterr()
        return code, out, err
    argv = {
        "fit": ["fit", "--device", "pixel7", "--ms", "20", "--model", str(DIGITS), "--out", str(path)],
        "export": ["export", "--model", str(DIGITS), "--plan", str(inputs["plan"]), "--out", str(path)],
        "train": ["train", "--epochs", "1", "--limit", "64", "-q", "--out", str(path)],
        "report": ["report", str(inputs["sweep"]), "--out", str(path)],
        "cache": ["fit", "--device", "pixel7", "--ms", "20", "--model", str(DIGITS), "--out", str(sandbox / "new")],
    }[writer]
    with monkeypatch.context() as m:
        if writer == "cache":
            m.setenv("MAESTRO_EDGE_CACHE", str(path))
        return run_cli(capsys, argv)


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), name=NAMES, content=st.binary(max_size=32))
def test_a_hostile_output_path_is_one_line_and_touches_nothing(capsys, monkeypatch, tmp_path, inputs, case, name,
                                                               content):
    writer, kind = case
    sandbox = Path(tempfile.mkdtemp(dir=tmp_path))
    monkeypatch.chdir(sandbox)           # default outputs would land here, and be seen
    try:
        path = hostile_path(sandbox, kind, name, content, writer_wants_folder=writer in ("fit", "export", "cache"))
        before = snapshot(sandbox)
        code, out, err = run(capsys, writer, path, sandbox, inputs, monkeypatch)
        context = f"{writer} {kind} {str(path)[:80]!r}: exit {code}, stderr {err[-1500:]!r}"
        assert "Traceback" not in err, context
        assert code != 0, context
        lines = error_lines(err)
        assert len(lines) == 1 and lines[0].startswith("Error: "), context
        assert snapshot(sandbox) == before, f"files were written, changed or removed: {context}"
        assert not os.path.lexists(UNWRITABLE / f"maestro-edge-{name}")
    finally:
        monkeypatch.chdir(tmp_path)
        shutil.rmtree(sandbox)


def test_a_cache_that_cannot_be_written_stops_profile_before_any_timing(capsys, monkeypatch, tmp_path):
    """``profile`` (which writes the cache) on a cache under /proc: one line, before a layer is timed."""
    monkeypatch.setenv("MAESTRO_EDGE_CACHE", str(UNWRITABLE / "maestro-edge-cache"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, ["profile", "--device", "host", "--model", str(DIGITS), "-q"])
    assert "Traceback" not in err and code != 0, err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("Error: latency tables cannot be written to"), err
    assert "MAESTRO_EDGE_CACHE" in lines[0] and list(tmp_path.iterdir()) == []
