"""LoadMonitor: other processes' CPU use while profiling, from /proc/stat (real processes, and the arithmetic)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time

import pytest

from maestro_edge.latency import load
from maestro_edge.latency.load import LoadCheck, LoadMonitor

pytestmark = pytest.mark.skipif(not os.path.exists(load.STAT), reason="needs Linux /proc/stat")


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_other_processes_busy_is_seen():
    cores = os.cpu_count() or 1
    monitor = LoadMonitor(threads=1)
    spinners = [multiprocessing.get_context("spawn").Process(target=_spin, args=(1.5,)) for _ in range(cores)]
    for p in spinners:
        p.start()
    time.sleep(1.8)
    check = monitor.check()   # before join: a child's time counts as ours only once it is waited for
    for p in spinners:
        p.join()
    # every core spun for most of the window (process start-up is part of it): clearly more than the limit
    assert check.other_cores > 0.5 * cores and check.busy, check


def test_own_work_is_not_counted(monkeypatch):
    busy, own = [100.0], [10.0]
    monkeypatch.setattr(load, "_busy_seconds", lambda: busy[0])
    monkeypatch.setattr(load, "_own_seconds", lambda: own[0])
    monkeypatch.setattr(load.os, "cpu_count", lambda: 4)
    monitor = LoadMonitor(threads=2)
    monitor._start = (time.monotonic() - 10.0, 100.0, 10.0)
    busy[0], own[0] = 120.0, 30.0              # 20 s busy in 10 s, all of it ours
    assert monitor.check().other_cores == pytest.approx(0.0, abs=0.01)
    busy[0] = 135.0                             # 15 s more than ours in ~10 s: 1.5 cores of others
    check = monitor.check()
    assert check.other_cores == pytest.approx(1.5, rel=0.01) and check.limit == 1.5 and not check.busy
    busy[0] = 140.0
    assert monitor.check().busy and "2.0 of this machine's 4 cores" in monitor.check().warning()


def test_no_proc_stat_claims_nothing(monkeypatch):
    monkeypatch.setattr(load, "STAT", "/nonexistent/stat")
    assert LoadMonitor(threads=1).check() is None


def _scripted():
    sys.path.insert(0, os.path.dirname(__file__))
    from test_profile_resume import PROFILE, ScriptedTimer

    class BusyHost(ScriptedTimer):
        def load_monitor(self, threads):
            class Busy:
                def check(self):
                    return LoadCheck(other_cores=1.8, cores=2, threads=threads, seconds=30.0)
            return Busy()

    return PROFILE, ScriptedTimer, BusyHost


def test_a_busy_profile_is_refused_or_flagged(tiny_checkpoint, tmp_path):
    from maestro_edge.errors import ProfileError
    from maestro_edge.latency.journal import journal_path
    from maestro_edge.latency.measure import QUICK
    from maestro_edge.latency.profile import measure_table
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    profile, quiet_timer, busy_timer = _scripted()
    ckpt = LoDCheckpoint.load(tiny_checkpoint)
    with pytest.raises(ProfileError, match="other processes used 1.8 of this machine's 2 cores .* --allow-busy"):
        measure_table(ckpt, profile, busy_timer(), QUICK, tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists() and journal_path(tmp_path / "r.json").exists(), "measured layers kept"
    messages = []
    table = measure_table(ckpt, profile, busy_timer(), QUICK, tmp_path / "t.json",
                          progress=lambda *a: messages.append(a[0]), allow_busy=True)
    assert table.provenance["load"]["busy"] is True and "profile again" in table.provenance["load"]["warning"]
    assert any(m.startswith("warning: other processes used 1.8") for m in messages)
    quiet = measure_table(ckpt, profile, quiet_timer(), QUICK, tmp_path / "q.json")
    assert quiet.provenance["load"] == "not observable on this target"


def test_a_real_host_profile_beside_busy_processes_is_refused(tiny_checkpoint, tmp_path):
    """A CPU-bound process on every core while the host is profiled (bounded: the spinners stop at 90 s)."""
    from maestro_edge.devices.profile import find_profile
    from maestro_edge.errors import ProfileError
    from maestro_edge.latency.measure import QUICK
    from maestro_edge.latency.profile import measure_host_table
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    ckpt = LoDCheckpoint.load(tiny_checkpoint)
    spinners = [multiprocessing.get_context("spawn").Process(target=_spin, args=(90.0,), daemon=True)
                for _ in range(os.cpu_count() or 1)]
    for p in spinners:
        p.start()
    try:
        started = time.monotonic()
        with pytest.raises(ProfileError, match="other processes used .* cores while it was profiled"):
            measure_host_table(ckpt, find_profile("host"), QUICK, tmp_path / "t.json")
        assert time.monotonic() - started < 90
    finally:
        for p in spinners:
            p.terminate()
    assert not (tmp_path / "t.json").exists()
