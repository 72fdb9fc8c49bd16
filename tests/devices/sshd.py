"""A throwaway OpenSSH server on 127.0.0.1 for transport tests.

The ssh transport is only worth testing against a real ``sshd``: quoting, host-key checking,
connection reuse and error messages are all properties of OpenSSH, not of our code. Everything
(host key, client key, authorized_keys, known_hosts, pid file, log) lives in one private
directory; the server runs in the foreground (``-D``) as our child, so teardown kills exactly it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself, so it must be started by absolute path


@dataclass(frozen=True)
class SshdInfo:
    host: str            # "user@127.0.0.1"
    port: int
    identity: str        # client private key
    known_hosts: str     # contains exactly this server's host key
    dir: Path


def missing_tools() -> list[str]:
    """Programs the fixture needs that are not installed."""
    need = [SSHD] + [shutil.which(p) or p for p in ("ssh", "ssh-keygen")]
    return [p for p in need if not (os.path.isabs(p) and os.access(p, os.X_OK))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _wait_for_banner(proc: subprocess.Popen, port: int, log: Path, timeout_s: float = 10.0) -> None:
    """Return once the server greets with 'SSH-2.0'; raise with its log if it died or never did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-2.0"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not accept connections on port {port} within {timeout_s}s")


class Sshd:
    """Start with :meth:`start`, stop with :meth:`stop` (idempotent)."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)
        self.proc: subprocess.Popen | None = None

    def start(self) -> SshdInfo:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        _keygen(d / "hostkey")
        _keygen(d / "clientkey")
        shutil.copy(d / "clientkey.pub", d / "authorized_keys")
        os.chmod(d / "authorized_keys", 0o600)
        os.makedirs("/run/sshd", exist_ok=True)  # privilege-separation dir; sshd refuses to start without it
        for attempt in range(3):  # the free port may be taken between probing and binding
            port = free_port()
            config = d / "sshd_config"
            config.write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n"
                f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "StrictModes no\n"  # authorized_keys sits under a world-writable tmp parent
            )
            log = d / "sshd.log"
            self.proc = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)], start_new_session=True)
            try:
                _wait_for_banner(self.proc, port, log)
                break
            except RuntimeError:
                self.stop()
                if attempt == 2:
                    raise
        hostkey = (d / "hostkey.pub").read_text().split()
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {hostkey[0]} {hostkey[1]}\n")
        return SshdInfo(f"{getpass.getuser()}@127.0.0.1", port, str(d / "clientkey"), str(d / "known_hosts"), d)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
