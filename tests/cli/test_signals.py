"""A signal ends a long command the way Ctrl-C does: one line, its own exit code, no lock or staging left behind,
what was measured kept. Here: ``fit --device host`` profiling the default model from an empty cache (minutes of
work), signalled as soon as it says it is profiling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _default_signals():
    """The child starts with default dispositions: a test run in the background (`nohup pytest &`) ignores SIGINT
    and SIGHUP, and a child inherits that, as `nohup maestro-edge ...` would (and should: see the next test)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_during_profiling_leaves_nothing_half_written(tmp_path, sig, code):
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, "MAESTRO_EDGE_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "maestro_edge", "fit", "--device", "host", "--ms", "5",
                             "--out", str(out), "--allow-busy"], env=env, cwd=tmp_path, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    lines, deadline = [], time.monotonic() + 600
    try:
        for line in proc.stderr:   # progress lines: wait until profiling (and so the cache journal) has begun
            lines.append(line)
            if "profiling" in line and "(2/" in line or time.monotonic() > deadline:
                break
        assert any("profiling" in line for line in lines), "".join(lines)
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=120)
    finally:
        proc.kill()
    errors = [line for line in (lines + rest.splitlines(keepends=True)) if line.strip() and not line.startswith("  ")]
    assert proc.returncode == code, "".join(lines) + rest
    assert len(errors) == 1 and "Traceback" not in rest, errors
    assert not out.exists() and not list(tmp_path.glob(".out*")), list(tmp_path.iterdir())   # no lock, no staging
    journals = list(Path(cache).rglob("*.partial.jsonl"))   # what was measured before the signal
    assert journals and all(j.stat().st_size > 0 for j in journals), list(Path(cache).rglob("*"))



def _nohup():
    _default_signals()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@pytest.mark.slow
def test_nohup_keeps_a_profile_running_through_a_hangup(tmp_path):
    """`nohup maestro-edge ...` ignores SIGHUP before the command starts; the command must not undo that."""
    env = {**os.environ, "MAESTRO_EDGE_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "maestro_edge", "fit", "--device", "host", "--ms", "5",
                             "--out", str(tmp_path / "out"), "--allow-busy"], env=env, cwd=tmp_path,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, preexec_fn=_nohup)
    try:
        for line in proc.stderr:
            if "profiling" in line:
                break
        proc.send_signal(signal.SIGHUP)
        time.sleep(3)
        assert proc.poll() is None, "a hangup ended a command started under nohup"
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=120)
        assert proc.returncode == 143, rest
    finally:
        proc.kill()
