"""A Linux target over OpenSSH (see :class:`SshTransport`)."""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from maestro_edge.devices.transports.base import (CHECK_TIMEOUT_S, TRANSFER_TIMEOUT_S, PosixTransport, RunResult,
                                                  arriving, check_name, last_line, remote_command, require_file,
                                                  show_command, spawn)
from maestro_edge.errors import TransportError, UsageError

# Patterns in ssh's stderr (exit code 255) -> what to tell the user. First match wins.
_SSH_ERRORS = [
    (r"Connection refused", "connection refused by {where}; is sshd running there and is the port right?"),
    (r"Could not resolve hostname", "cannot resolve {host}; check the host name (or your ~/.ssh/config)"),
    (r"timed out|Connection timed out", "connecting to {where} timed out; is the device on and reachable?"),
    (r"No route to host|Network is unreachable", "no route to {where}; check the network"),
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED",
     "the host key of {host} has CHANGED (possible impersonation); verify it, then fix known_hosts"),
    (r"Host key verification failed|No \S+ host key is known",
     "the host key of {host} is not known; run `ssh {host}` once to verify and record it, "
     "or opt out of host-key checking (strict_host_key_checking=False)"),
    (r"Permission denied", "ssh authentication to {host} failed; install your key there (ssh-copy-id) "
     "or pass an identity file"),
    (r"closed by remote host|Connection reset|Broken pipe|[Ll]ost connection|Connection closed",
     "the connection to {where} was lost; is the target still up and sshd running?"),
]


class SshTransport(PosixTransport):
    """A Linux target over OpenSSH: ``ssh`` for commands and file transfer.

    The OpenSSH client is used (not a Python ssh library) so that ~/.ssh/config, the ssh agent,
    jump hosts and known_hosts all work as they do for the user. Connections are reused through a
    ControlMaster socket in a private temp folder (a round trip drops from ~0.4 s to ~0.1 s);
    :meth:`close` stops the master.

    Files move as ``cat`` streams over ssh rather than with ``scp``: scp's remote-path handling
    depends on its mode (legacy scp re-parses the path in the remote shell, SFTP mode globs it),
    while a quoted ``cat`` is exact in both directions and needs no sftp-server on the target.

    ``options`` are extra ssh_config settings (``"ServerAliveInterval=5"``), each passed as ``-o``.
    Host-key checking is strict unless ``strict_host_key_checking=False``, which accepts any key
    and records it in a private, throwaway known_hosts file. ``known_hosts`` points ssh at another
    known_hosts file (checking stays strict). Exit code 255 is ssh's own failure and raises
    TransportError (a remote command that itself exits 255 is indistinguishable; avoid that code).
    A run that times out is killed on this side; without a tty ssh cannot signal the remote
    command, which runs on until it ends or writes to the closed channel.
    """

    name = "ssh"
    DEFAULT_WORKDIR = ".cache/maestro-edge/agent"  # relative to the remote $HOME

    def __init__(self, host: str, port: int | None = None, identity: str | None = None,
                 options: Sequence[str] = (), strict_host_key_checking: bool = True,
                 known_hosts: str | None = None, connect_timeout_s: int = 10,
                 remote_workdir: str | None = None, ssh: str = "ssh"):
        self.host = check_name(host, "ssh host")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise UsageError(f"ssh port must be an integer in 1..65535, got {port!r}")
        for opt in options:
            if not isinstance(opt, str) or not opt or opt.startswith("-") or "\n" in opt:
                raise UsageError(f"ssh option {opt!r} must look like 'Key=Value' (it is passed as -o)")
        if remote_workdir is not None and not posixpath.isabs(remote_workdir):
            raise UsageError(f"remote_workdir must be an absolute path, got {remote_workdir!r}")
        self.port, self.identity, self.options = port, identity, tuple(options)
        self.strict_host_key_checking, self.known_hosts = strict_host_key_checking, known_hosts
        self.connect_timeout_s, self.ssh = int(connect_timeout_s), ssh
        self._workdir, self._workdir_made = remote_workdir, False
        self._private: str | None = None  # temp folder: control socket, throwaway known_hosts

    # -- argv building (public so that callers can log or dry-run the exact command)

    def _private_dir(self) -> str:
        if self._private is None:
            # /tmp keeps the control socket path short (unix sockets allow ~104 bytes).
            self._private = tempfile.mkdtemp(prefix="maestro-ssh-", dir="/tmp" if os.path.isdir("/tmp") else None)
        return self._private

    def _options(self) -> list[str]:
        d = self._private_dir()
        opts = ["BatchMode=yes", f"ConnectTimeout={self.connect_timeout_s}", "LogLevel=ERROR",
                "ControlMaster=auto", f"ControlPath={d}/cm", "ControlPersist=60"]
        if self.strict_host_key_checking:
            opts.append("StrictHostKeyChecking=yes")
            if self.known_hosts:
                opts.append(f"UserKnownHostsFile={self.known_hosts}")
        else:
            opts += ["StrictHostKeyChecking=no", f"UserKnownHostsFile={d}/known_hosts"]
        argv = [a for o in (*opts, *self.options) for a in ("-o", o)]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.identity:
            argv += ["-i", str(self.identity)]
        return argv

    def ssh_argv(self, argv: Sequence[str]) -> list[str]:
        """The local argument list that runs ``argv`` on the target."""
        return [self.ssh, *self._options(), "--", self.host, remote_command(argv)]

    # -- the interface

    def _ssh(self, argv: Sequence[str], timeout_s: float, what: str, **io) -> RunResult:
        try:
            result = spawn(self.ssh_argv(argv), timeout_s, **io)
        except FileNotFoundError:
            raise TransportError(f"the ssh client '{self.ssh}' is not installed; install openssh-client") from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"{what} on {self.host} did not finish within {timeout_s:g}s; "
                                 "raise the timeout or check that the target is responsive") from None
        if result.returncode == 255:
            raise TransportError(self._explain(result.stderr))
        return result

    def _explain(self, stderr: str) -> str:
        where = f"{self.host}" + (f" port {self.port}" if self.port else "")
        for pattern, message in _SSH_ERRORS:
            if re.search(pattern, stderr):
                return "ssh: " + message.format(host=self.host, where=where)
        if not stderr.strip():   # e.g. a multiplexed session whose master connection died
            return f"ssh: the connection to {where} ended without a message; is the target still up and sshd running?"
        return f"ssh to {where} failed: {last_line(stderr)}"

    def home_path(self, path: str) -> str:
        return path[2:] if path.startswith("~/") else path   # ssh runs the command in the login's home

    def check(self) -> str:
        result = self._ssh(["uname", "-a"], CHECK_TIMEOUT_S, "`uname -a`")
        if result.returncode != 0:
            raise TransportError(f"ssh {self.host}: `uname -a` failed: {last_line(result.stderr)}; "
                                 "is this a Linux target with a POSIX shell?")
        return f"{self.host}: {result.stdout.strip()}"

    def workdir(self) -> str:
        if not self._workdir_made:
            # $HOME is expanded by the remote shell inside this fixed script; the path is an argument.
            script = 'd=$1; case $d in /*) ;; *) d="$HOME/$d";; esac; mkdir -p -- "$d" && cd -- "$d" && pwd -P'
            result = self._ssh(["sh", "-c", script, "sh", self._workdir or self.DEFAULT_WORKDIR],
                               CHECK_TIMEOUT_S, "creating the workdir")
            if result.returncode != 0 or not result.stdout.strip():
                raise TransportError(f"ssh {self.host}: cannot create the workdir: {last_line(result.stderr)}")
            self._workdir, self._workdir_made = result.stdout.strip(), True
        return self._workdir

    def push(self, local: Path, remote: str) -> None:
        src, dst = require_file(local), self._resolve(remote)
        # Write beside the target and rename, so a cut connection never leaves a half file in place.
        script = ('set -e; d=${1%/*}; [ -z "$d" ] || mkdir -p -- "$d"; '
                  'cat > "$1.part"; mv -f -- "$1.part" "$1"')
        with open(src, "rb") as f:
            result = self._ssh(["sh", "-c", script, "sh", dst], TRANSFER_TIMEOUT_S, f"pushing {src.name}", stdin=f)
        if result.returncode != 0:
            raise TransportError(f"ssh {self.host}: cannot write {dst}: {last_line(result.stderr)}")

    def pull(self, remote: str, local: Path) -> None:
        src = self._resolve(remote)
        with arriving(local) as tmp, open(tmp, "wb") as f:
            result = self._ssh(["cat", "--", src], TRANSFER_TIMEOUT_S, f"pulling {src}", stdout=f)
            if result.returncode != 0:
                raise TransportError(f"ssh {self.host}: cannot read {src}: {last_line(result.stderr)}")

    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        return self._ssh(argv, timeout_s, f"`{show_command(argv)}`")

    def close(self) -> None:
        if self._private is None:
            return
        if os.path.exists(os.path.join(self._private, "cm")):
            try:
                spawn([self.ssh, *self._options(), "-O", "exit", "--", self.host], 10)
            except (OSError, subprocess.TimeoutExpired):
                pass  # the master exits by itself after ControlPersist anyway
        shutil.rmtree(self._private, ignore_errors=True)
        self._private = None
