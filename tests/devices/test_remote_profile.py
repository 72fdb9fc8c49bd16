"""Remote profiling against a REAL loopback sshd: a full profile, kill -9 and resume, sshd dying mid-profile.

The loopback "target" is this machine: its login python3 (Debian's) has no onnxruntime, so the profile
names another interpreter, a wrapper script around this test's python that logs every agent run
(that is how the tests count what was measured again). Paths on the "target" carry quotes, spaces and
``$(...)`` on purpose: they must arrive verbatim and nothing may run.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.devices.transports import SshTransport
from maestro_edge.errors import TransportError
from maestro_edge.latency.journal import journal_path
from maestro_edge.latency.measure import QUICK
from maestro_edge.latency.probes import DENSE, layer_options
from maestro_edge.latency.remote import STARTUP_S
from maestro_edge.latency.table import LatencyTable
from maestro_edge.latency.target import measure_remote_table
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.layers import lod_layers

from .sshd import Sshd

pytestmark = pytest.mark.slow

NASTY = "it's $(touch PWNED) `touch PWNED`; a dir"
PROFILE_TOML = """\
schema_version = 1
name = "loopback"
description = "this machine over ssh, onnxruntime"
runtime = "onnxruntime"
threads = 1
precision = "fp32"
transport = "ssh"
latency_source = "measured"
"""


def remeasured_runs(table) -> int:
    """Agent runs beyond one per layer and one calibration: a layer the calibration finds drifted (this host is
    shared) is measured again, with one more calibration, and the table records it (layer_recheck). Any other
    extra run would be a layer measured twice for nothing."""
    rechecks = table.provenance["layer_recheck"]
    return sum(len(check["drifted_layers"]) + 1 for check in rechecks[:-1])


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return LoDCheckpoint.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def profile_toml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("profiles") / "loopback.toml"
    path.write_text(PROFILE_TOML)
    return path


@pytest.fixture
def python(tmp_path) -> tuple[str, Path]:
    """(interpreter path for the target, log of its invocations): this python, behind a logging wrapper."""
    folder = tmp_path / NASTY / "bin"
    folder.mkdir(parents=True)
    log = tmp_path / "agent-runs.log"
    wrapper = folder / "py thon"
    wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {shlex.quote(str(log))}\n"
                       f"exec {shlex.quote(sys.executable)} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper), log


def transport(info, workdir: Path) -> SshTransport:
    return SshTransport(info.host, port=info.port, identity=info.identity, known_hosts=info.known_hosts,
                        remote_workdir=str(workdir))


def runs_in(log: Path, workdir: Path) -> list[str]:
    """Agent invocations (``--manifest`` runs, not ``--check``) made with ``workdir``."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [l for l in lines if f"{workdir}/agent.py" in l and "--manifest" in l]


def assert_nothing_ran(*folders: Path) -> None:
    for folder in (Path.home(), Path.cwd(), *folders):
        assert not (folder / "PWNED").exists(), f"a command was injected (found {folder / 'PWNED'})"


def journal_records(path: Path) -> list[dict]:
    records = []
    for line in journal_path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


def assert_journaled_layers_kept(table: LatencyTable, records: list[dict]) -> None:
    """The resumed layers hold exactly the journal's numbers: they were not measured again."""
    assert records
    for record in records:
        layer, timings = table.layers[record["layer"]], record["timings"]
        assert layer.dense_ms == timings[DENSE]["p50_ms"]
        assert {str(r): ms for r, ms in layer.rank_ms.items()} == {c: t["p50_ms"] for c, t in timings.items()
                                                                    if c not in (DENSE, "call")}


def assert_complete(table: LatencyTable, path: Path, ckpt) -> None:
    saved = json.loads(path.read_text())                        # valid JSON, whole
    assert LatencyTable.from_dict(saved).layers == table.layers
    assert table.source == "measured" and table.runtime == "onnxruntime" and table.threads == 1
    for name, layer in lod_layers(ckpt.model).items():
        assert sorted(table.layers[name].rank_ms) == [c for c in layer_options(layer) if c != DENSE]
    assert table.full_model_ms > 0 and table.fastest_ms() > 0
    assert not journal_path(path).exists()


# ------------------------------------------------------------------------------------ (a) profile


def test_profile_over_ssh(sshd, ckpt, profile_toml, python, tmp_path):
    import onnxruntime

    interpreter, log = python
    workdir, path = tmp_path / NASTY / "remote", tmp_path / "tables" / "loopback.json"
    profile, messages, argvs = DeviceProfile.load(profile_toml), [], []
    with transport(sshd, workdir) as t:
        real_run = t.run
        t.run = lambda argv, timeout_s: argvs.append((argv, timeout_s)) or real_run(argv, timeout_s)
        table = measure_remote_table(ckpt, profile, t, protocol=QUICK, table_path=path, python=interpreter,
                                     progress=lambda *a: messages.append(a))
    assert_complete(table, path, ckpt)
    assert set(table.layers) == set(lod_layers(ckpt.model))
    fp = table.provenance["fingerprint"]              # the agent's fingerprint, from the "remote" side
    assert fp["runtime"] == "onnxruntime" and fp["runtime_version"] == onnxruntime.__version__
    assert fp["cpu_count"] == os.cpu_count() and fp["threads"] == 1
    prov = table.provenance
    assert prov["runtime_version"] == onnxruntime.__version__ and prov["protocol"] == QUICK.to_dict()
    assert prov["transport"] == "ssh" and prov["python"] == interpreter and prov["measured_at"]
    # One agent run per layer plus the calibration (and the pre-flight check), each an argument list
    # with a finite timeout sized from the protocol.
    assert len(runs_in(log, workdir)) == len(table.layers) + 1 + remeasured_runs(table)
    agent_runs = [(a, s) for a, s in argvs if "--manifest" in a]
    assert all(isinstance(a, list) and all(isinstance(w, str) for w in a) for a, _ in argvs)
    assert all(STARTUP_S < s < 24 * 3600 for _, s in agent_runs)
    assert sorted(p.name for p in workdir.iterdir()) == ["agent.py"], "the run leaves only the agent behind"
    whats = [m[0] for m in messages]
    assert "ETA" in whats[1] and whats[-1] == "done"
    assert_nothing_ran(tmp_path, workdir)


@pytest.mark.real_default
def test_profile_the_shipped_default_over_ssh(sshd, profile_toml, python, tmp_path):
    """The embedded default (ResNet-18 at 96x96, 21 layers, ~200 probes) over the same loopback sshd."""
    from maestro_edge.cli import DEFAULT_MODEL

    interpreter, log = python
    default = LoDCheckpoint.load(DEFAULT_MODEL)
    workdir, path = tmp_path / "remote", tmp_path / "tables" / "default.json"
    with transport(sshd, workdir) as t:
        table = measure_remote_table(default, DeviceProfile.load(profile_toml), t, protocol=QUICK, table_path=path,
                                     python=interpreter)
    assert_complete(table, path, default)
    assert table.model_digest == default.latency_digest() and len(table.layers) == 21
    assert len(runs_in(log, workdir)) == len(table.layers) + 1 + remeasured_runs(table)
    # A 5-GMAC model: the full model takes milliseconds, and the fastest plan is well below it.
    assert 1.0 < table.full_model_ms and table.fastest_ms() < 0.5 * table.full_model_ms


# --------------------------------------------------------------------------------- (b) kill -9

SCRIPT = r"""
import json, sys
from pathlib import Path
from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.devices.transports import SshTransport
from maestro_edge.latency.measure import QUICK
from maestro_edge.latency.target import measure_remote_table
from maestro_edge.lod.checkpoint import LoDCheckpoint

a = json.loads(sys.argv[1])
t = SshTransport(a["host"], port=a["port"], identity=a["identity"], known_hosts=a["known_hosts"],
                 remote_workdir=a["workdir"])
print(json.dumps({"control": next(o.split("=", 1)[1] for o in t.ssh_argv(["true"]) if o.startswith("ControlPath="))}),
      flush=True)
measure_remote_table(LoDCheckpoint.load(a["ckpt"]), DeviceProfile.load(a["profile"]), t, protocol=QUICK,
                     table_path=Path(a["table"]), python=a["python"])
t.close()
"""


def test_kill_9_mid_profile_then_resume(sshd, ckpt, tiny_checkpoint, profile_toml, python, tmp_path):
    interpreter, log = python
    path, first, second = tmp_path / "loopback.json", tmp_path / "remote 1", tmp_path / "remote 2"
    script = tmp_path / "profile_script.py"
    script.write_text(SCRIPT)
    args = {"host": sshd.host, "port": sshd.port, "identity": sshd.identity, "known_hosts": sshd.known_hosts,
            "workdir": str(first), "ckpt": str(tiny_checkpoint), "profile": str(profile_toml), "table": str(path),
            "python": interpreter}
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, str(script), json.dumps(args)], stdout=subprocess.PIPE,
                                stderr=err, text=True)
    control = json.loads(proc.stdout.readline())["control"]
    journal = journal_path(path)
    try:
        deadline = time.monotonic() + 180
        while not (journal.exists() and journal.read_text().count("\n") >= 1):
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
            assert time.monotonic() < deadline, "no layer was journaled within 180 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        # The killed run's ssh connection master outlives it: stop it by its control socket.
        subprocess.run(["ssh", "-o", f"ControlPath={control}", "-O", "exit", "--", sshd.host],
                       capture_output=True, timeout=30)
        subprocess.run(["rm", "-rf", "--", os.path.dirname(control)], timeout=30)
    assert proc.returncode == -signal.SIGKILL and not path.exists(), "the run must have been cut short"
    records = journal_records(path)
    names = list(lod_layers(ckpt.model))
    assert 1 <= len(records) < len(names)
    # As if the kill had also landed in the middle of writing the next record.
    whole = journal.read_text().splitlines(keepends=True)[0]
    with open(journal, "a") as f:
        f.write(whole[: len(whole) // 2])

    seen_at_calibration = []

    def progress(what, done, total):
        if what.startswith("whole models"):
            seen_at_calibration.append(len(journal_records(path)))

    with transport(sshd, second) as t:
        table = measure_remote_table(ckpt, DeviceProfile.load(profile_toml), t, protocol=QUICK, table_path=path,
                                     python=interpreter, progress=progress)
    assert_complete(table, path, ckpt)
    assert_journaled_layers_kept(table, records)
    assert len(runs_in(log, second)) == len(names) - len(records) + 1 + remeasured_runs(table), \
        "only the missing layers + calibration (+ what the calibration found drifted)"
    assert seen_at_calibration[0] == len(names), "every layer journaled, the cut line ignored, none lost"


# --------------------------------------------------------------------------- (c) sshd dies


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_sshd_killed_mid_profile_then_resume(ckpt, profile_toml, python, tmp_path):
    from .sshd import missing_tools

    if missing_tools():
        pytest.skip("OpenSSH is not installed")   # the session sshd fixture already fails under CI
    interpreter, _ = python
    path, workdir = tmp_path / "loopback.json", tmp_path / "remote"
    journal = journal_path(path)
    server = Sshd(tmp_path / "sshd-1")
    info = server.start()
    stop, killed_during = threading.Event(), []

    def kill_server_while_the_agent_runs():
        """Once two layers are journaled, wait for an agent run on the target and kill sshd under it."""
        while not stop.is_set():
            if journal.exists() and journal.read_text().count("\n") >= 2:
                tree = _descendants(server.proc.pid)
                agents = [p for p in tree if "--manifest" in _cmdline(p) and str(workdir) in _cmdline(p)]
                if agents:
                    for pid in [server.proc.pid, *tree]:   # the whole server: listener, sessions, agent
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    server.proc.wait()
                    killed_during.append(agents)
                    return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_server_while_the_agent_runs, daemon=True)
    watcher.start()
    try:
        with transport(info, workdir) as t, pytest.raises(TransportError) as error:
            measure_remote_table(ckpt, DeviceProfile.load(profile_toml), t, protocol=QUICK, table_path=path,
                                 python=interpreter)
    finally:
        stop.set()
        watcher.join(timeout=10)
        server.stop()
    assert killed_during, "the server was not killed during an agent run"
    message = str(error.value)
    assert "\n" not in message and "127.0.0.1" in message and "run the profile again to resume" in message, message
    records = journal_records(path)
    names = list(lod_layers(ckpt.model))
    assert journal.read_text().count("\n") == len(records) >= 2, "whole records only"
    assert [r["layer"] for r in records] == names[: len(records)] and len(records) < len(names)
    assert not path.exists()

    server = Sshd(tmp_path / "sshd-2")                           # sshd back (new port, new keys)
    info, messages = server.start(), []
    try:
        with transport(info, workdir) as t:
            table = measure_remote_table(ckpt, DeviceProfile.load(profile_toml), t, protocol=QUICK, table_path=path,
                                         python=interpreter, progress=lambda *a: messages.append(a[0]))
    finally:
        server.stop()
    assert_complete(table, path, ckpt)
    assert_journaled_layers_kept(table, records)
    assert sum("measured before (journal)" in m for m in messages) == len(records)


def test_fit_measures_the_export_on_the_ssh_target(sshd, ckpt, profile_toml, python, tmp_path):
    """Closed loop on a reachable ssh device: the table is measured there, and so is the exported model."""
    from maestro_edge.fit import Fitter
    from maestro_edge.latency.remote import RemoteTimer

    interpreter, log = python
    workdir, path = tmp_path / "remote", tmp_path / "tables" / "loopback.json"
    profile = DeviceProfile.load(profile_toml)
    with transport(sshd, workdir) as t:
        table = measure_remote_table(ckpt, profile, t, protocol=QUICK, table_path=path, python=interpreter)
        fastest = table.overhead_ms + sum(min(l.dense_ms, *l.rank_ms.values()) for l in table.layers.values())
        budget = fastest + 0.9 * (table.full_model_ms - fastest)
        timer = RemoteTimer(t, profile.runtime, profile.threads, interpreter)
        try:
            record = Fitter(ckpt).fit(profile, budget, tmp_path / "fit", table=table, timer=timer)
        finally:
            timer.cleanup()
    assert record["latency_source"] == "measured" and record["runtime"] == "onnxruntime"
    assert record["measured_ms"] is not None and record["measured_ms"] <= budget
    assert all(t["measured_ms"] is not None for t in record["tries"])
    assert json.loads((tmp_path / "fit" / "fit.json").read_text()) == record
    assert_nothing_ran(tmp_path, workdir)
