"""Output folders: the swap survives kill -9 at every step, one writer at a time, and bad paths are refused first.

The kills are real: a child process runs write_outputs, stops at a chosen step (it writes a marker file
and sleeps), and is killed with SIGKILL; the next writer must find the old folder or the new one,
never neither, and leave no hidden leftovers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maestro_edge.errors import UsageError
from maestro_edge.outputs import (ASIDE_SUFFIX, check_output_file, check_output_folder, claim_output_folder,
                                  write_outputs)

REPO = Path(__file__).resolve().parents[1]

# argv: out_dir, step, marker. Stops (marker, then sleep) after the step, holding whatever it holds then.
CHILD = r"""
import os, sys, time
from pathlib import Path
import maestro_edge.outputs as outputs

out, step, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

def stop():
    marker.write_text(str(os.getpid()))
    time.sleep(600)

renames = []
real_rename = os.rename
def rename(src, dst):
    real_rename(src, dst)
    renames.append(dst)
    if step == f"rename{len(renames)}":
        stop()
outputs.os.rename = rename

real_write = Path.write_bytes
def write_bytes(self, data):
    real_write(self, data)
    if step == "write":
        stop()
Path.write_bytes = write_bytes

if step == "claim":
    with outputs.claim_output_folder(out):
        stop()
outputs.write_outputs(out, {"model.pte": b"new pte", "model.onnx": b"new onnx"},
                      lambda folder: (folder / "fit.json").write_text('{"v": "new"}'))
"""


def stopped_child(out: Path, step: str, tmp_path: Path) -> subprocess.Popen:
    """A child process writing ``out``, stopped after ``step`` (it holds the folder's lock)."""
    marker = tmp_path / f"stopped-{step}"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), step, str(marker)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists():
        if child.poll() is not None:
            raise AssertionError(f"the child ended before {step}: {child.communicate()[1].decode()[-2000:]}")
        assert time.monotonic() < deadline, f"the child never reached {step}"
        time.sleep(0.02)
    return child


def kill9(child: subprocess.Popen) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL


def old_fit(root: Path) -> Path:
    out = root / "work" / "fit"
    out.mkdir(parents=True)
    (out / "model.pte").write_bytes(b"old pte")
    (out / "fit.json").write_text('{"v": "old"}')
    return out


def contents(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def write_new(out: Path) -> None:
    write_outputs(out, {"model.pte": b"newer pte"}, lambda folder: (folder / "fit.json").write_text('{"v": "newer"}'))


@pytest.mark.parametrize("step, survivor", [
    ("write", "old"),       # killed while the staging folder is half written
    ("rename1", "old"),     # killed between "old folder aside" and "new folder in": the old one comes back
    ("rename2", "new"),     # killed after the new folder is in, before the old one is deleted
])
def test_a_kill_at_any_step_keeps_a_whole_fit_and_the_next_run_cleans_up(tmp_path, step, survivor):
    out = old_fit(tmp_path)
    before = contents(out)
    kill9(stopped_child(out, step, tmp_path))
    hidden = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    assert hidden, "the kill should leave a staging or aside folder to clean up"

    with claim_output_folder(out):        # the next writer (or a fit about to start) claims the folder
        pass
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit"], "staging/aside/lock folders left behind"
    if survivor == "old":
        assert contents(out) == before
    else:
        assert json.loads((out / "fit.json").read_text())["v"] == "new"
    write_new(out)
    assert json.loads((out / "fit.json").read_text())["v"] == "newer"
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit"]


def test_a_second_writer_is_refused_at_once_and_leaves_the_first_ones_work_alone(tmp_path):
    out = old_fit(tmp_path)
    child = stopped_child(out, "write", tmp_path)      # holds the lock, its staging folder half written
    try:
        staging = [p for p in out.parent.iterdir() if p.name.startswith(".fit.tmp")]
        assert len(staging) == 1
        started = time.monotonic()
        with pytest.raises(UsageError) as e:
            write_new(out)
        assert time.monotonic() - started < 5
        message = str(e.value)
        assert "another maestro-edge process is writing" in message and str(out) in message
        assert "wait for it or pass another --out" in message and "\n" not in message
        assert staging[0].is_dir() and (staging[0] / "model.pte").read_bytes() == b"new pte"
        assert json.loads((out / "fit.json").read_text()) == {"v": "old"}
    finally:
        kill9(child)
    write_new(out)     # its lock died with it
    assert json.loads((out / "fit.json").read_text())["v"] == "newer"
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit"]


def test_two_processes_claiming_one_folder(tmp_path):
    out = tmp_path / "a" / "b" / "fit"     # parents made for the lock
    child = stopped_child(out, "claim", tmp_path)
    try:
        result = subprocess.run([sys.executable, "-c", "import sys; from maestro_edge.outputs import "
                                 "claim_output_folder as c\nwith c(sys.argv[1]): pass", str(out)],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "another maestro-edge process is writing" in result.stderr
        with pytest.raises(UsageError):
            with claim_output_folder(out):
                pass
    finally:
        kill9(child)
    with claim_output_folder(out):     # one process may claim again inside its claim (Fitter.fit, write_outputs)
        with claim_output_folder(out):
            pass
        write_new(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit"]


def test_a_failed_claim_leaves_no_folders_it_made(tmp_path):
    out = tmp_path / "new" / "deeper" / "fit"
    with pytest.raises(RuntimeError):
        with claim_output_folder(out):
            raise RuntimeError("the fit failed")
    assert list(tmp_path.iterdir()) == []


def test_a_users_hidden_folder_that_looks_like_ours_is_not_touched(tmp_path):
    out = old_fit(tmp_path)
    mine = out.parent / f".fit{ASIDE_SUFFIX}"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="move or delete it"):
        write_new(out)
    assert (mine / "notes.txt").read_text() == "mine" and json.loads((out / "fit.json").read_text()) == {"v": "old"}


def test_a_bundled_fit_can_be_replaced(tmp_path):
    out = old_fit(tmp_path)
    (out / "model.bpte").write_bytes(b"bundle")
    check_output_folder(out)
    write_new(out)
    assert not (out / "model.bpte").exists()


# -- path checks ------------------------------------------------------------------------------------------

def refused(check, path, *fragments):
    with pytest.raises(UsageError) as e:
        check(path)
    message = str(e.value)
    assert "\n" not in message and len(message) < 400, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("check", [check_output_folder, check_output_file])
def test_bad_paths_are_one_line_errors(tmp_path, check):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "parent_link").symlink_to(tmp_path / "gone")
    before = sorted(p.name for p in tmp_path.iterdir())
    refused(check, tmp_path / ("x" * 300), "too long")
    refused(check, tmp_path / ("x" * 250), "too long")        # fits, but not with our hidden siblings' suffix
    refused(check, tmp_path / "/".join(["abcdefgh" * 30] * 20), "too long")
    refused(check, tmp_path / "link", "symbolic link")
    refused(check, tmp_path / "dangling", "symbolic link", "does not exist")
    refused(check, tmp_path / "parent_link" / "out", "does not exist")
    refused(check, tmp_path / "afile" / "sub" / "out", "under", "which is a file")
    refused(check, tmp_path / "a\0b", "NUL")
    refused(check, Path("/proc/maestro-edge-out"), "cannot write")   # as root os.access says yes: the probe says no
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    check(tmp_path / "new" / "deeper" / "out")                  # fine: nothing is made by a check
    check(tmp_path / ("y" * 200))
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot write: chmod for a plain user; as root (who ignores permission bits),
    the immutable attribute, where the file system and capabilities allow it."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i here: no folder is read-only to this process")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_an_output_under_a_folder_this_process_cannot_write(read_only_folder):
    refused(check_output_folder, read_only_folder / "fit", "cannot write", "pass another --out")
    refused(check_output_file, read_only_folder / "sub" / "lod.pt", "cannot write", "give another path")
    assert list(read_only_folder.iterdir()) == []


@pytest.mark.parametrize("out", ["", ".", "..", "{cwd}", "{cwd}/sub/.."])
def test_the_working_folder_or_a_parent_is_never_an_output_folder(tmp_path, monkeypatch, out):
    """An empty working folder passes every other check (empty, writable): `fit --out ""` replaced it."""
    cwd = tmp_path / "work"
    (cwd / "sub").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    with pytest.raises(UsageError, match="current folder or holds it"):
        check_output_folder(Path(out.format(cwd=cwd)))
    assert cwd.is_dir() and (cwd / "sub").is_dir()
