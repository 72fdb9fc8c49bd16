"""Transports: the host, a real OpenSSH server on loopback, and a fake adb (tests/doubles/fake_adb).

The ssh tests talk to a real sshd (fixture ``sshd``) because what matters -- quoting through the
remote shell, host-key checking, error texts, connection reuse -- is OpenSSH behaviour.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from maestro_edge.devices.transports import (AdbTransport, LocalTransport, RunResult, SshTransport, Transport,
                                             make_transport)
from maestro_edge.errors import TransportError, UsageError

from .sshd import free_port

# Prints its argv as JSON: the exact strings that arrived, whatever the shell did on the way.
ECHO = [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]
NASTY = ["a b", "it's", '"dq"', "$(touch {m})", "`touch {m}`", "; touch {m}", "&& touch {m}", "| touch {m}",
         "x\ny", "; rm -rf /nonexistent-maestro", "$HOME", "*", "~", "\\", "-n", "--", "", "é 日本", "\t", "a\rb"]
PROPERTY = settings(max_examples=25, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def nasty_args(marker: Path) -> list[str]:
    return [a.replace("{m}", str(marker)) for a in NASTY]


def roundtrip(t: Transport, tmp_path: Path, data: bytes, remote: str) -> bytes:
    src, back = tmp_path / "src.bin", tmp_path / "back.bin"
    src.write_bytes(data)
    t.push(src, remote)
    t.pull(remote, back)
    return back.read_bytes()


# ------------------------------------------------------------------------------------------ local


def test_local_check_run_push_pull(tmp_path):
    with LocalTransport() as t:
        assert t.check() and "\n" not in t.check()
        work = t.workdir()
        assert Path(work).is_dir() and t.workdir() == work
        data = os.urandom(100_000)
        assert roundtrip(t, tmp_path, data, "sub/probe.bin") == data
        assert (Path(work) / "sub/probe.bin").read_bytes() == data
        r = t.run([*ECHO, *nasty_args(tmp_path / "pwned")], timeout_s=30)
        assert r.returncode == 0 and json.loads(r.stdout) == nasty_args(tmp_path / "pwned")
        assert not (tmp_path / "pwned").exists()
        assert t.run(["sh", "-c", "echo oops >&2; exit 3"], 10) == RunResult(3, "", "oops\n")
        assert t.run(["no-such-program-maestro"], 10).returncode == 127
    assert not Path(work).exists(), "close() removes the workdir"


def test_local_pull_missing_keeps_old_file(tmp_path):
    dst = tmp_path / "results.jsonl"
    dst.write_text("old")
    with LocalTransport() as t:
        with pytest.raises(TransportError, match="no such file"):
            t.pull("missing.jsonl", dst)
    assert dst.read_text() == "old" and os.listdir(tmp_path) == ["results.jsonl"]


def test_local_timeout_kills_the_whole_process_group():
    start = time.monotonic()
    with pytest.raises(TransportError, match="within 1s"):
        LocalTransport().run(["sh", "-c", "sleep 30; echo done"], timeout_s=1)
    assert time.monotonic() - start < 10, "a grandchild holding the pipes must not stall the timeout"


def test_bad_timeout_is_a_usage_error():
    with pytest.raises(UsageError):
        LocalTransport().run(["true"], timeout_s=0)


# -------------------------------------------------------------------------------------------- ssh


@pytest.fixture(scope="module")
def shared_ssh(sshd, tmp_path_factory):
    """One connection for the property tests (hypothesis re-runs the body, not the fixture)."""
    t = SshTransport(sshd.host, port=sshd.port, identity=sshd.identity, known_hosts=sshd.known_hosts,
                     remote_workdir=str(tmp_path_factory.mktemp("remote")))
    yield t
    t.close()


def test_ssh_check_and_default_workdir(sshd):
    with SshTransport(sshd.host, port=sshd.port, identity=sshd.identity, known_hosts=sshd.known_hosts) as t:
        line = t.check()
        assert line.startswith(sshd.host + ": Linux") and "\n" not in line
        assert t.workdir() == os.path.realpath(os.path.expanduser("~/.cache/maestro-edge/agent"))


def test_ssh_push_pull_roundtrip(ssh, tmp_path):
    data = os.urandom(1_000_000) + b"\0\n\r\xff"
    assert roundtrip(ssh, tmp_path, data, "deep/er/probe.pte") == data
    assert (Path(ssh.workdir()) / "deep/er/probe.pte").read_bytes() == data  # loopback: remote is here
    assert not list(Path(ssh.workdir(), "deep/er").glob("*.part"))


def test_ssh_pull_missing_is_an_error_and_atomic(ssh, tmp_path):
    dst = tmp_path / "out" / "results.jsonl"
    dst.parent.mkdir()
    dst.write_text("old")
    with pytest.raises(TransportError, match="cannot read"):
        ssh.pull("nope.jsonl", dst)
    assert dst.read_text() == "old" and os.listdir(dst.parent) == ["results.jsonl"]


def test_ssh_exit_codes_and_stderr(ssh):
    r = ssh.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout_s=30)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert ssh.run(["-x"], 30).returncode == 127, "a leading '-' is a command name, not an option"


def test_ssh_nasty_arguments_arrive_verbatim(ssh, tmp_path):
    args = nasty_args(tmp_path / "pwned")
    r = ssh.run([*ECHO, *args], timeout_s=30)
    assert r.returncode == 0 and json.loads(r.stdout) == args
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow  # ~25 ssh round trips
@PROPERTY
@given(st.lists(st.one_of(st.sampled_from(NASTY),
                          st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                                  max_size=20)), max_size=6))
@example(NASTY)
def test_ssh_argv_arrives_verbatim_and_nothing_runs(shared_ssh, args):
    marker = Path(f"/tmp/pwned_{uuid.uuid4().hex}")
    args = [a.replace("{m}", str(marker)) for a in args]
    r = shared_ssh.run([*ECHO, *args], timeout_s=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == args
    assert not marker.exists()


FILENAME = st.text(st.sampled_from("ab Z09._-'\"$`;&|*?[](){}<>!#~\\\n\té日"), min_size=1, max_size=16) \
    .filter(lambda s: s not in (".", ".."))


@pytest.mark.slow  # ~30 ssh round trips
@settings(PROPERTY, max_examples=15)
@given(FILENAME)
@example("$(touch {m})")
@example("-rf ; touch {m}")
def test_ssh_remote_paths_arrive_verbatim(shared_ssh, tmp_path_factory, name):
    marker = Path(f"/tmp/pwned_{uuid.uuid4().hex}")
    name = name.replace("{m}", marker.name)
    local = tmp_path_factory.mktemp("paths")
    data = name.encode() + os.urandom(64)
    assert roundtrip(shared_ssh, local, data, "p/" + name) == data
    assert (Path(shared_ssh.workdir()) / "p" / name).read_bytes() == data  # that exact name, not a glob
    assert not marker.exists() and not (Path(shared_ssh.workdir()) / marker.name).exists()


@PROPERTY
@given(st.text(max_size=30))
@example("-oProxyCommand=touch /tmp/pwned_host")
@example("-p22 root@host")
@example("user@host:22")
def test_ssh_host_can_never_become_an_option(host):
    try:
        t = SshTransport(host)
    except UsageError:
        return
    assert not host.startswith("-") and host.strip() == host and host.isprintable()
    argv = t.ssh_argv(["true"])
    end = argv.index("--")
    # the host is the one word after "--", and nothing before "--" depends on it (a host named "ssh" or
    # "BatchMode=yes" may equal another word, so counting words proves nothing)
    assert argv[end + 1] == host
    plain = SshTransport("plain-host")
    same = lambda words: [re.sub(r"maestro-ssh-[^/]+", "maestro-ssh-*", w) for w in words]   # per-transport socket dir
    assert same(argv[:end]) == same(plain.ssh_argv(["true"])[:end])
    plain.close()
    t.close()


def test_ssh_rejects_flag_like_options_and_ports():
    with pytest.raises(UsageError):
        SshTransport("h", options=["-oProxyCommand=x"])
    with pytest.raises(UsageError):
        SshTransport("h", port=0)


def test_ssh_unknown_host_key_fails_by_default(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with SshTransport(sshd.host, port=sshd.port, identity=sshd.identity, known_hosts=str(empty)) as t:
        with pytest.raises(TransportError, match="host key .* is not known"):
            t.check()
    assert empty.read_text() == "", "strict checking must not record the key"


def test_ssh_host_key_opt_out_uses_a_private_known_hosts(sshd):
    t = SshTransport(sshd.host, port=sshd.port, identity=sshd.identity, strict_host_key_checking=False)
    try:
        assert "Linux" in t.check()
        private = Path(t._private_dir(), "known_hosts")
        assert "ssh-ed25519" in private.read_text()
    finally:
        t.close()
    assert not private.exists()


def test_ssh_timeout(ssh):
    ssh.check()  # the master connection exists; the timeout must not take it down
    pidfile = f"{ssh.workdir()}/sleep.pid"
    start = time.monotonic()
    with pytest.raises(TransportError, match="did not finish within 1s"):
        ssh.run(["sh", "-c", 'echo $$ > "$1"; exec sleep 30', "sh", pidfile], timeout_s=1)
    assert time.monotonic() - start < 10
    # Known limit: ssh cannot signal a command without a tty, so the remote sleep lives on; end it.
    assert ssh.run(["sh", "-c", 'kill "$(cat "$1")"', "sh", pidfile], 30).returncode == 0
    assert ssh.run(["echo", "still alive"], 30).stdout == "still alive\n"


def test_ssh_wrong_port_is_clear(sshd):
    with SshTransport(sshd.host, port=free_port(), identity=sshd.identity, known_hosts=sshd.known_hosts) as t:
        with pytest.raises(TransportError, match="connection refused.*is sshd running"):
            t.check()


def test_ssh_auth_failure_is_clear(sshd, tmp_path):
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with SshTransport(sshd.host, port=sshd.port, identity=str(key), known_hosts=sshd.known_hosts,
                      options=["IdentitiesOnly=yes"]) as t:
        with pytest.raises(TransportError, match="authentication .* failed"):
            t.check()


def test_ssh_close_stops_the_master(sshd):
    t = SshTransport(sshd.host, port=sshd.port, identity=sshd.identity, known_hosts=sshd.known_hosts)
    t.check()
    socket_path = Path(t._private_dir(), "cm")
    assert socket_path.exists(), "connections are reused through a control socket"
    t.close()
    t.close()  # idempotent
    assert not socket_path.exists()


# -------------------------------------------------------------------------------------------- adb


def test_adb_check_workdir_push_pull(fake_adb, tmp_path):
    t = AdbTransport(serial="FAKE0001", adb=str(fake_adb))
    assert t.check() == "FAKE0001: Fake Phone"
    assert t.workdir() == "/data/local/tmp/maestro-edge"
    root = Path(os.environ["FAKE_ADB_ROOT"])
    assert (root / "data/local/tmp/maestro-edge").is_dir()
    data = os.urandom(50_000)
    assert roundtrip(t, tmp_path, data, "probes/p.onnx") == data
    assert (root / "data/local/tmp/maestro-edge/probes/p.onnx").read_bytes() == data
    assert AdbTransport(adb=str(fake_adb)).check() == "adb: Fake Phone"


def test_adb_run_quotes_every_argument(fake_adb, tmp_path):
    t = AdbTransport(adb=str(fake_adb))
    args = nasty_args(tmp_path / "pwned")
    r = t.run([*ECHO, *args], timeout_s=30)
    assert r.returncode == 0 and json.loads(r.stdout) == args
    assert not (tmp_path / "pwned").exists()
    assert t.run(["sh", "-c", "exit 3"], 30).returncode == 3
    assert t.run(["-x"], 30).returncode == 127, "a leading '-' must not become an adb shell option"


@pytest.mark.parametrize("state, serial, message", [
    ("none", None, "no Android device found"),
    ("device", "OTHER", "OTHER not found"),
    ("unauthorized", None, "accept the USB debugging prompt"),
    ("offline", None, "offline"),
])
def test_adb_device_problems(fake_adb, monkeypatch, tmp_path, state, serial, message):
    monkeypatch.setenv("FAKE_ADB_STATE", state)
    t = AdbTransport(serial=serial, adb=str(fake_adb))
    for action in (t.check, lambda: t.run(["true"], 10), lambda: t.pull("/data/x", tmp_path / "x")):
        with pytest.raises(TransportError, match=message):
            action()


def test_adb_missing_client_and_timeout(fake_adb):
    with pytest.raises(TransportError, match="not installed"):
        AdbTransport(adb="/nonexistent/adb").check()
    start = time.monotonic()
    with pytest.raises(TransportError, match="within 1s"):
        AdbTransport(adb=str(fake_adb)).run(["sleep", "30"], timeout_s=1)
    assert time.monotonic() - start < 10


def test_adb_serial_cannot_be_an_option():
    with pytest.raises(UsageError):
        AdbTransport(serial="-H evil")


# ---------------------------------------------------------------------------------------- factory


def test_make_transport():
    assert isinstance(make_transport("local"), LocalTransport)
    assert isinstance(make_transport("ssh", host="pi@raspberrypi.local", port=2222), SshTransport)
    assert make_transport("adb", serial="X1").serial == "X1"
    for kind, kwargs in [("ssh", {}), ("serial-port", {}), ("adb", {"host": "h"}), ("local", {"host": "h"})]:
        with pytest.raises(UsageError):
            make_transport(kind, **kwargs)
