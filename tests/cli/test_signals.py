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


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_during_profiling_leaves_nothing_half_written(tmp_path, sig, code):
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, "MAESTRO_EDGE_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "maestro_edge", "fit", "--device", "host", "--ms", "5",
                             "--out", str(out), "--allow-busy"], env=env, cwd=tmp_path, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
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
