"""One profile per table: a second process is refused before it times anything; a kill -9 frees the table.

Real processes: a child measures with a scripted timer and stops inside its second layer (one layer is
in the journal); this process then tries the same table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maestro_edge.errors import UsageError
from maestro_edge.latency.journal import journal_path
from maestro_edge.latency.measure import QUICK
from maestro_edge.latency.profile import measure_table
from maestro_edge.latency.table import LatencyTable
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.layers import lod_layers

from .test_profile_resume import PROFILE, ScriptedTimer

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "tests" / "fixtures" / "digits.lod.pt"

CHILD = r"""
import sys, time
from pathlib import Path
from maestro_edge.latency.measure import QUICK
from maestro_edge.latency.profile import measure_table
from maestro_edge.lod.checkpoint import LoDCheckpoint
from tests.latency.test_profile_resume import PROFILE, ScriptedTimer

table, marker = Path(sys.argv[2]), Path(sys.argv[3])

class StopsInTheSecondLayer(ScriptedTimer):
    def time(self, modules, protocol, kind):
        if len(self.batches) == 1:
            marker.write_text("measuring")
            time.sleep(600)
        return super().time(modules, protocol, kind)

measure_table(LoDCheckpoint.load(sys.argv[1]), PROFILE, StopsInTheSecondLayer(), QUICK, table)
"""


@pytest.fixture(scope="module")
def ckpt():
    return LoDCheckpoint.load(DIGITS)


def test_a_second_profile_of_one_table_is_refused_at_once(ckpt, tmp_path):
    table = tmp_path / "cache" / "latency" / "fake.json"
    marker = tmp_path / "measuring"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(DIGITS), str(table), str(marker)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the child never started measuring"
            time.sleep(0.05)
        timer = ScriptedTimer()
        started = time.monotonic()
        with pytest.raises(UsageError) as e:
            measure_table(ckpt, PROFILE, timer, QUICK, table)
        assert time.monotonic() - started < 10
        message = str(e.value)
        assert "another maestro-edge process is measuring fake" in message and "wait for it" in message
        assert "\n" not in message
        assert timer.batches == [], "the second profile timed something"
        assert journal_path(table).is_file() and not table.exists()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()

    # the lock died with the child; what it measured is kept and reused
    timer = ScriptedTimer()
    measure_table(ckpt, PROFILE, timer, QUICK, table)
    first = next(iter(lod_layers(ckpt.model)))
    layer_batches = [names for kind, names in timer.batches if kind == "layer"]
    assert len(layer_batches) == len(lod_layers(ckpt.model)) - 1
    assert not any(name.startswith(first + "@") for names in layer_batches for name in names)
    assert list(LatencyTable.load(table).layers) == list(lod_layers(ckpt.model))
    assert sorted(p.name for p in table.parent.iterdir()) == ["fake.json"]   # no journal, no lock file


def test_a_table_folder_that_cannot_be_written_is_refused_before_any_timing(ckpt, tmp_path):
    (tmp_path / "afile").write_text("x")
    timer = ScriptedTimer()
    with pytest.raises(UsageError) as e:
        measure_table(ckpt, PROFILE, timer, QUICK, tmp_path / "afile" / "latency" / "fake.json")
    assert "latency tables cannot be written to" in str(e.value) and "which is a file" in str(e.value)
    assert timer.batches == [] and (tmp_path / "afile").read_text() == "x"


HOLDER = r"""
import sys
from pathlib import Path
from maestro_edge.devices.profile import find_profile
from maestro_edge.latency.profile import table_lock
with table_lock(find_profile("host"), Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_profile_force_deletes_nothing_another_process_is_measuring_into(ckpt, tmp_path, monkeypatch, capsys):
    """--force used to delete the table and journal before taking the lock: another run's journal was lost."""
    from maestro_edge.cli import main
    from maestro_edge.devices.profile import find_profile
    from maestro_edge.latency.table import cached_table_path

    monkeypatch.setenv("MAESTRO_EDGE_CACHE", str(tmp_path / "cache"))
    table = cached_table_path(find_profile("host"), ckpt.latency_digest())
    table.parent.mkdir(parents=True)
    journal_path(table).write_text('{"another": "run"}\n')
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(table)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as exit_info:
            main(["profile", "--device", "host", "--model", str(DIGITS), "--force", "--quiet"])
        err = capsys.readouterr().err
        assert exit_info.value.code != 0 and err.count("\n") == 1 and "another maestro-edge process" in err
        assert journal_path(table).read_text() == '{"another": "run"}\n'   # untouched
    finally:
        holder.communicate("", timeout=30)



def test_fit_refuses_before_exporting_while_another_process_profiles_the_table(ckpt, tmp_path, monkeypatch):
    """fit measures a missing table itself; while another process measures it, fit says so at once (it spent a
    minute exporting the model first)."""
    import maestro_edge.fit as fit_module
    from maestro_edge.devices.profile import find_profile
    from maestro_edge.latency.table import cached_table_path

    monkeypatch.setenv("MAESTRO_EDGE_CACHE", str(tmp_path / "cache"))
    host = find_profile("host")
    table = cached_table_path(host, ckpt.latency_digest())
    table.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(table)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ})
    exported = []
    monkeypatch.setattr(fit_module, "check_exportable", lambda *a, **k: exported.append(1))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match="another maestro-edge process is measuring host"):
            fit_module.latency_table_for(ckpt, host)
        assert not exported
    finally:
        holder.communicate("", timeout=30)
