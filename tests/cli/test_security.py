"""Security of the command line: hostile files and names never run code.

- a checkpoint carrying a pickled object is refused by every command that loads one, and the object's
  code never runs (its payload would create a marker file);
- device names and paths with shell metacharacters are data, never commands (marker files again),
  through the real console entry point (a subprocess) and in-process;
- the package source never hands a string to a shell (``shell=True``, ``os.system``, ``os.popen``...)
  and never unpickles with ``torch.load`` unless ``weights_only=True``;
- a profile's ``name`` cannot steer where ``fit`` writes (path traversal), and ``fit --out`` never
  deletes a folder that holds the user's files.

Transport-level quoting (ssh/adb) is tested in tests/devices/test_transports.py.
"""

from __future__ import annotations

import ast
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maestro_edge.cli import main

PACKAGE = Path(__file__).resolve().parents[2] / "maestro_edge"
GOOD_PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "pixel7.toml"


def run_cli(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def run_subprocess(argv, cwd, env=None):
    """The real entry point (``python -m maestro_edge``): what a user's shell would start."""
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "maestro_edge", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_refused(code, err):
    assert code not in (0, None)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("  ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err


# -- pickled objects in checkpoints --------------------------------------------------------------------------

class Payload:
    """Unpickling this runs ``exec`` and creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def write_evil(path: Path, marker: Path, kind: str) -> Path:
    """A checkpoint whose only fault is the pickled object: zip (torch.save) or legacy raw pickle."""
    blob = {"format": "maestro-edge-lod", "schema_version": 1, "arch": {"name": "small_cnn"}, "payload": Payload(marker)}
    if kind == "zip":
        torch.save(blob, path)
    else:
        path.write_bytes(pickle.dumps(blob, protocol=2))
    return path


def test_payload_is_live(tmp_path):
    """Control: the payload does run under a plain unpickler, so the tests below mean something."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("kind", ["zip", "raw-pickle"])
@pytest.mark.parametrize("command", [
    ["fit", "--device", "pixel7", "--ms", "20", "--out", "{tmp}/o", "--model", "{evil}"],
    ["export", "--plan", "{tmp}/plan.json", "--out", "{tmp}/o", "--model", "{evil}"],
    ["profile", "--device", "host", "--model", "{evil}"],      # refused before any measuring starts
], ids=["fit", "export", "profile"])
def test_pickled_checkpoint_never_runs(capsys, monkeypatch, tmp_path, kind, command):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"
    evil = write_evil(tmp_path / "evil.pt", marker, kind)
    (tmp_path / "plan.json").write_text('{"ranks": {}}')
    code, out, err = run_cli(capsys, [a.format(tmp=tmp_path, evil=evil) for a in command])
    assert not marker.exists(), "the pickled payload ran"
    assert_refused(code, err)
    assert "pickled" in err
    assert not (tmp_path / "o").exists()


def test_pickled_checkpoint_library_load(tmp_path):
    from maestro_edge.errors import CheckpointError
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    marker = tmp_path / "PWNED"
    with pytest.raises(CheckpointError, match="pickled"):
        LoDCheckpoint.load(write_evil(tmp_path / "evil.pt", marker, "zip"))
    assert not marker.exists()


# -- shell metacharacters in names and paths -------------------------------------------------------------

SHELL = ["; touch {m}", "$(touch {m})", "`touch {m}`", "| touch {m}", "&& touch {m}", "\ntouch {m}", "x' ; touch {m} '"]


@pytest.mark.parametrize("template", SHELL)
@pytest.mark.parametrize("marker_name", ["PWNED", "{tmp}/PWNED"], ids=["relative", "absolute"])
def test_device_name_is_never_executed(capsys, monkeypatch, tmp_path, template, marker_name):
    monkeypatch.chdir(tmp_path)
    device = template.format(m=marker_name.format(tmp=tmp_path))
    for argv in (["fit", "--device", device, "--ms", "20"], ["profile", "--device", device]):
        code, out, err = run_cli(capsys, argv)
        assert not (tmp_path / "PWNED").exists(), f"{argv} ran a command"
        assert code not in (0, None) and "Traceback" not in err and out == ""
        if "\n" not in device:        # see test_device_name_with_newline_is_one_line
            assert_refused(code, err)
    assert sorted(os.listdir(tmp_path)) == [], "something was written"


def test_device_name_with_newline_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["fit", "--device", "pixel7\nrm -rf ~", "--ms", "20", "--out", tmp_path / "o"])
    assert_refused(code, err)


NASTY_NAME = "; touch {m} $(touch {m}) `touch {m}` | touch {m} && touch {m}"


@pytest.mark.parametrize("marker_name", ["PWNED", "{tmp}/PWNED"], ids=["relative", "absolute"])
def test_device_name_is_never_executed_by_the_console_script(tmp_path, marker_name):
    device = NASTY_NAME.format(m=marker_name.format(tmp=tmp_path))
    for argv in (["fit", "--device", device, "--ms", "20"], ["profile", "--device", device]):
        result = run_subprocess(argv, cwd=tmp_path)
        assert not (tmp_path / "PWNED").exists(), f"{argv} ran a command"
        assert_refused(result.returncode, result.stderr)
        assert result.stdout == ""
    assert sorted(os.listdir(tmp_path)) == [], "something was written"


@pytest.mark.parametrize("template", SHELL[:3])
@pytest.mark.parametrize("argv", [
    ["fit", "--device", "pixel7", "--ms", "20", "--model", "{p}"],
    ["fit", "--device", "pixel7", "--ms", "20", "--model", "{ckpt}", "--table", "{p}"],
    ["fit", "--device", "pixel7", "--ms", "0.00001", "--model", "{ckpt}", "--out", "{p}"],
    ["export", "--plan", "{p}", "--model", "{ckpt}", "--out", "o"],
    ["report", "{p}"],
    ["report", "{tmp}/sweep", "--out", "{tmp}/sweep/{p}/r.html"],
    ["profile", "--device", "rpi5", "--host", "pi@{p}"],        # refused before ssh is started
    ["profile", "--device", "pixel7", "--serial", "{p}"],
], ids=["model", "table", "out", "plan", "report-folder", "report-out", "ssh-host", "adb-serial"])
def test_paths_are_never_executed(capsys, monkeypatch, tmp_path, tiny_checkpoint, template, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep" / "x").mkdir(parents=True)
    (tmp_path / "sweep" / "x" / "fit.json").write_text("[]")        # refused before anything is written
    path = template.format(m="PWNED")
    code, _, err = run_cli(capsys, [a.format(p=path, ckpt=tiny_checkpoint, tmp=tmp_path) for a in argv])
    assert not (tmp_path / "PWNED").exists()
    assert_refused(code, err)
    assert sorted(os.listdir(tmp_path)) == ["sweep"]


def test_profile_fields_are_never_executed(capsys, monkeypatch, tmp_path, tiny_checkpoint):
    """A profile whose description and hardware carry shell syntax: listed, checked and used.

    Its name cannot: names become folder and cache-file names, so they are restricted (checked below)."""
    monkeypatch.chdir(tmp_path)
    nasty = "x;touch PWNED`touch PWNED`$(touch PWNED)|touch PWNED"
    text = GOOD_PROFILE.read_text()
    text = re.sub(r'^description = .*$', f'description = "{nasty}"', text, count=1, flags=re.MULTILINE)
    text = re.sub(r'^soc = .*$', f'soc = "{nasty}"', text, count=1, flags=re.MULTILINE)
    text += f'\n[target]\nserial = "{nasty}"\n'          # devices --check refuses it before running adb
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "nasty.toml").write_text(text)

    result = run_subprocess(["devices", "--check"], cwd=tmp_path, env={"MAESTRO_EDGE_PROFILES": str(profiles)})
    assert result.returncode == 0, result.stderr
    assert nasty in result.stdout
    code, _, err = run_cli(capsys, ["fit", "--device", profiles / "nasty.toml", "--ms", "0.00001",
                                    "--model", tiny_checkpoint, "--out", tmp_path / "o"])
    assert_refused(code, err)        # the budget is below any model: refused after the profile is used
    assert not (tmp_path / "PWNED").exists()
    assert sorted(os.listdir(tmp_path)) == ["profiles"]

    named = re.sub(r'^name = .*$', f'name = "{nasty}"', text, count=1, flags=re.MULTILINE)
    (profiles / "nasty.toml").write_text(named)
    result = run_subprocess(["devices"], cwd=tmp_path, env={"MAESTRO_EDGE_PROFILES": str(profiles)})
    assert result.returncode != 0 and "must be letters, digits" in result.stderr
    assert not (tmp_path / "PWNED").exists()


# -- the source never builds shell commands or unpickles unsafely -------------------------------------------

SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
               ("os", "execl"), ("os", "execlp"), ("os", "spawnl"), ("os", "spawnlp"), ("pty", "spawn")}


def _dotted(node) -> tuple[str, ...]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def _findings(path: Path) -> list[str]:
    text = path.read_text()
    found = [f"{path.name}:{i}: shell=True" for i, line in enumerate(text.splitlines(), 1)
             if re.search(r"shell\s*=\s*True", line)]
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "subprocess", "commands"):
            for alias in node.names:
                if (node.module, alias.name) in SHELL_CALLS:
                    found.append(f"{path.name}:{node.lineno}: from {node.module} import {alias.name}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        where = f"{path.name}:{node.lineno}: {'.'.join(name)}"
        if name[-2:] in SHELL_CALLS:
            found.append(where)
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                found.append(where + "(shell=...)")
        if name[-2:] in {("pickle", "load"), ("pickle", "loads"), ("marshal", "loads"), ("yaml", "load")}:
            found.append(where)
        if name[-2:] == ("torch", "load"):
            weights_only = [kw for kw in node.keywords if kw.arg == "weights_only"]
            if not (weights_only and isinstance(weights_only[0].value, ast.Constant) and weights_only[0].value.value is True):
                found.append(where + " without weights_only=True")
    return found


def test_source_has_no_shell_strings_or_unsafe_unpickling():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20, "the package was not found"
    findings = [f for path in files for f in _findings(path)]
    assert findings == []


def test_the_scan_catches_what_it_looks_for(tmp_path):
    """Control: the scanner flags each pattern it promises to flag."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os, subprocess, torch, pickle\nfrom os import system\n"
                   "os.system('ls')\nos.popen('ls')\nsubprocess.run('ls', shell=True)\n"
                   "subprocess.Popen(['ls'], shell=flag)\ntorch.load('x')\ntorch.load('x', weights_only=False)\n"
                   "pickle.loads(b'')\n")
    assert len(_findings(bad)) == 9, _findings(bad)


# -- bugs: where fit writes ------------------------------------------------------------------------------

@pytest.mark.slow
def test_profile_name_cannot_escape_the_output_folder(capsys, monkeypatch, tmp_path, tiny_checkpoint):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    text = re.sub(r'^name = .*$', 'name = "../../evil"', GOOD_PROFILE.read_text(), count=1, flags=re.MULTILINE)
    (tmp_path / "evil.toml").write_text(text)
    try:
        main(["fit", "--device", str(tmp_path / "evil.toml"), "--ms", "20", "--model", str(tiny_checkpoint), "-q"])
    except SystemExit:
        pass
    capsys.readouterr()
    escaped = [p for p in tmp_path.rglob("*") if work not in p.parents and p != work and p.name != "evil.toml"
               and p not in work.parents]
    assert escaped == [], f"fit wrote outside {work}: {escaped}"


@pytest.mark.slow
def test_fit_out_keeps_the_users_files(capsys, monkeypatch, tmp_path, tiny_checkpoint):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "my-project"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    try:
        main(["fit", "--device", "pixel7", "--ms", "20", "--model", str(tiny_checkpoint), "--out", str(mine), "-q"])
    except SystemExit:
        pass
    capsys.readouterr()
    assert (mine / "notes.txt").read_text() == "precious"
