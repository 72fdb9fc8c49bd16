"""How maestro-edge reaches a target: the host itself, a Linux board over ssh, a phone over adb.

One small interface (:class:`Transport`) so that measurement code never cares where the target is:
``check`` (a cheap round trip), ``workdir`` (a scratch folder there), ``push``/``pull`` (files) and
``run`` (an argument list, with a timeout). Everything else is a detail of one transport.

Rules every transport keeps, because each guards against a real failure:

* No shell string is ever built from user input on this side: we run argument lists. The remote
  side *does* re-parse the command line (sshd and adbd hand it to ``sh -c``), so every argument is
  passed through :func:`shlex.quote` and arrives verbatim (a POSIX shell on the target is assumed).
* Host names and serials that start with ``-`` are refused: the client would read them as flags
  (``-oProxyCommand=...`` runs a local command). We also end the client's options with ``--``.
* Every child process gets a timeout and its own process group, so a timeout kills all of it.
* Expected failures raise :class:`~maestro_edge.errors.TransportError` with one line that says what
  is wrong and what to do; bad constructor arguments raise :class:`~maestro_edge.errors.UsageError`.
* Relative remote paths in ``push``/``pull`` are relative to :meth:`Transport.workdir`.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from maestro_edge.errors import TransportError, UsageError
from maestro_edge.user_files import temp_beside

__all__ = ["RunResult", "Transport", "LocalTransport", "SshTransport", "AdbTransport", "make_transport", "KINDS"]

KINDS = ("local", "ssh", "adb")
TRANSFER_TIMEOUT_S = 300.0  # push/pull: a few MB over Wi-Fi or USB 2 fits easily
CHECK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str


class Transport(ABC):
    """A target that can run commands and exchange files. Use as a context manager or call close()."""

    name: str

    @abstractmethod
    def check(self) -> str:
        """A cheap round trip; returns a one-line description of the target."""

    @abstractmethod
    def workdir(self) -> str:
        """Absolute path of a scratch folder on the target, created on first use."""

    @abstractmethod
    def push(self, local: Path, remote: str) -> None:
        """Copy a local file to ``remote`` (parent folders are created)."""

    @abstractmethod
    def pull(self, remote: str, local: Path) -> None:
        """Copy ``remote`` to ``local``; ``local`` appears whole or not at all."""

    @abstractmethod
    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        """Run ``argv`` on the target; raises TransportError on timeout or when unreachable."""

    def close(self) -> None:
        """Release connections and local temporary files. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------- helpers


def _spawn(argv: list[str], timeout_s: float, *, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) -> RunResult:
    """Run argv; on timeout kill its whole process group (a shell's children too) and re-raise.

    ``subprocess.run(timeout=...)`` kills only the direct child and then waits for the pipes to
    close, which a surviving grandchild (``sh -c 'sleep 30'``) keeps open: the timeout would not hold.
    """
    if not timeout_s > 0:
        raise UsageError(f"timeout_s must be > 0, got {timeout_s!r}")
    proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except BaseException:
        # A timeout, or Ctrl-C: the child sits in its own session, so nothing else would stop it
        # (an ssh client left behind keeps the remote command alive and its channel open).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        raise
    decode = lambda b: b.decode("utf-8", errors="replace") if b else ""  # noqa: E731
    return RunResult(proc.returncode, decode(out), decode(err))


def _show(argv: Sequence[str], limit: int = 60) -> str:
    """A short, one-line rendering of a command for error messages."""
    text = shlex.join(argv).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def _remote_command(argv: Sequence[str]) -> str:
    """The command line a remote POSIX shell re-parses back into exactly ``argv``.

    The first word is always single-quoted so that the line never starts with ``-`` (adb would
    read ``-x``/``-t`` as its own shell options).
    """
    if not argv:
        raise UsageError("run() needs a non-empty argument list")
    words = [str(a) for a in argv]
    if any("\0" in w for w in words):
        raise UsageError("command arguments cannot contain NUL bytes")
    first = "'" + words[0].replace("'", "'\"'\"'") + "'"
    return " ".join([first] + [shlex.quote(w) for w in words[1:]])


def _check_name(value: str, what: str) -> str:
    """Refuse names a client would misread: empty, flag-like, or with whitespace/control characters."""
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} must be a non-empty string, got {value!r}")
    if value.startswith("-"):
        raise UsageError(f"{what} {value!r} starts with '-', which the client would read as an option; fix the {what}")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise UsageError(f"{what} {value!r} contains whitespace or control characters; fix the {what}")
    return value


def _require_file(local: Path) -> Path:
    local = Path(local)
    if not local.is_file():
        raise TransportError(f"cannot push {local}: no such local file")
    return local.absolute()


# ------------------------------------------------------------------------------------------ local


class LocalTransport(Transport):
    """The host itself: argument lists via subprocess, files copied into a private temp folder."""

    name = "local"

    def __init__(self) -> None:
        self._workdir: str | None = None

    def check(self) -> str:
        import platform

        return " ".join([platform.node(), platform.system(), platform.release(), platform.machine()])

    def workdir(self) -> str:
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="maestro-edge-agent-")
        return self._workdir

    def _resolve(self, remote: str) -> Path:
        return Path(os.path.join(self.workdir(), remote))

    def push(self, local: Path, remote: str) -> None:
        src, dst = _require_file(local), self._resolve(remote)
        final, tmp = temp_beside(dst, ".part")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def pull(self, remote: str, local: Path) -> None:
        src = self._resolve(remote)
        if not src.is_file():
            raise TransportError(f"cannot pull {src}: no such file in the local workdir")
        final, tmp = temp_beside(local, ".part")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        argv = [str(a) for a in argv]
        if not argv:
            raise UsageError("run() needs a non-empty argument list")
        try:
            return _spawn(argv, timeout_s)
        except FileNotFoundError:  # same answer a remote shell gives
            return RunResult(127, "", f"{argv[0]}: command not found\n")
        except PermissionError:
            return RunResult(126, "", f"{argv[0]}: permission denied\n")
        except subprocess.TimeoutExpired:
            raise TransportError(f"`{_show(argv)}` did not finish within {timeout_s:g}s on the host; "
                                 "raise the timeout or make the work smaller") from None

    def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


# -------------------------------------------------------------------------------------------- ssh

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


class _PosixTarget(Transport):
    """A target with POSIX paths (a board over ssh, a phone over adb): relative paths live in workdir()."""

    def _resolve(self, remote: str) -> str:
        if not remote:
            raise UsageError("remote path must not be empty")
        return remote if posixpath.isabs(remote) else posixpath.join(self.workdir(), remote)


class SshTransport(_PosixTarget):
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
        self.host = _check_name(host, "ssh host")
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
        return [self.ssh, *self._options(), "--", self.host, _remote_command(argv)]

    # -- the interface

    def _ssh(self, argv: Sequence[str], timeout_s: float, what: str, **io) -> RunResult:
        try:
            result = _spawn(self.ssh_argv(argv), timeout_s, **io)
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
        src, dst = _require_file(local), self._resolve(remote)
        # Write beside the target and rename, so a cut connection never leaves a half file in place.
        script = ('set -e; d=${1%/*}; [ -z "$d" ] || mkdir -p -- "$d"; '
                  'cat > "$1.part"; mv -f -- "$1.part" "$1"')
        with open(src, "rb") as f:
            result = self._ssh(["sh", "-c", script, "sh", dst], TRANSFER_TIMEOUT_S, f"pushing {src.name}", stdin=f)
        if result.returncode != 0:
            raise TransportError(f"ssh {self.host}: cannot write {dst}: {last_line(result.stderr)}")

    def pull(self, remote: str, local: Path) -> None:
        src = self._resolve(remote)
        final, tmp = temp_beside(local, ".part")
        try:
            with open(tmp, "wb") as f:
                result = self._ssh(["cat", "--", src], TRANSFER_TIMEOUT_S, f"pulling {src}", stdout=f)
            if result.returncode != 0:
                raise TransportError(f"ssh {self.host}: cannot read {src}: {last_line(result.stderr)}")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        return self._ssh(argv, timeout_s, f"`{_show(argv)}`")

    def close(self) -> None:
        if self._private is None:
            return
        if os.path.exists(os.path.join(self._private, "cm")):
            try:
                _spawn([self.ssh, *self._options(), "-O", "exit", "--", self.host], 10)
            except (OSError, subprocess.TimeoutExpired):
                pass  # the master exits by itself after ControlPersist anyway
        shutil.rmtree(self._private, ignore_errors=True)
        self._private = None


# -------------------------------------------------------------------------------------------- adb

# adb's own failures (exit code 1, like a failing remote command) are told apart by their text.
_ADB_ERRORS = [
    (r"no devices/emulators found|no devices found", "no Android device found; connect one with USB "
     "debugging enabled and check `adb devices`"),
    (r"device '.*' not found", "adb device {serial} not found; check the serial with `adb devices`"),
    (r"more than one device", "more than one Android device is connected; pass a serial"),
    (r"unauthorized", "the device {serial} has not authorized this computer; accept the USB debugging "
     "prompt on the phone"),
    (r"offline", "the device {serial} is offline; replug it or run `adb reconnect`"),
    (r"cannot connect to daemon|daemon not running.*failed", "the adb server cannot start; run `adb start-server`"),
]


class AdbTransport(_PosixTarget):
    """An Android device through the ``adb`` client: ``adb [-s serial] push|pull|shell``.

    ``adb shell`` exit codes are those of the remote command on Android 7+ (shell protocol v2);
    older devices always report 0. A run that times out is killed on this side only.
    """

    name = "adb"
    DEFAULT_WORKDIR = "/data/local/tmp/maestro-edge"  # writable and executable for the shell user

    def __init__(self, serial: str | None = None, adb: str = "adb", remote_workdir: str | None = None):
        self.serial = None if serial is None else _check_name(serial, "adb serial")
        self.adb = adb
        if remote_workdir is not None and not posixpath.isabs(remote_workdir):
            raise UsageError(f"remote_workdir must be an absolute path, got {remote_workdir!r}")
        self._workdir_path = remote_workdir or self.DEFAULT_WORKDIR
        self._workdir_made = False

    def adb_argv(self, *args: str) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    def _adb(self, args: Sequence[str], timeout_s: float, what: str) -> RunResult:
        try:
            result = _spawn(self.adb_argv(*args), timeout_s)
        except FileNotFoundError:
            raise TransportError(f"the adb client '{self.adb}' is not installed; `apt-get install adb` "
                                 "or pass the path to adb") from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"{what} on {self.serial or 'the adb device'} did not finish within "
                                 f"{timeout_s:g}s; raise the timeout or check the device") from None
        if result.returncode != 0:
            problem = self._device_problem(result.stderr)
            if problem:
                raise TransportError(problem)
        return result

    def _device_problem(self, stderr: str) -> str | None:
        for line in stderr.splitlines():
            if not re.match(r"\s*(adb: )?error:", line):
                continue
            for pattern, message in _ADB_ERRORS:
                if re.search(pattern, line):
                    return "adb: " + message.format(serial=self.serial or "")
        return None

    def check(self) -> str:
        state = self._adb(["get-state"], CHECK_TIMEOUT_S, "adb get-state")
        if state.returncode != 0 or state.stdout.strip() != "device":
            raise TransportError(f"adb: device {self.serial or ''} is not ready "
                                 f"({last_line(state.stdout + state.stderr)}); check `adb devices`")
        model = self.run(["getprop", "ro.product.model"], CHECK_TIMEOUT_S)
        return f"{self.serial or 'adb'}: {model.stdout.strip() or 'unknown model'}"

    def workdir(self) -> str:
        if not self._workdir_made:
            result = self.run(["mkdir", "-p", self._workdir_path], CHECK_TIMEOUT_S)
            if result.returncode != 0:
                raise TransportError(f"adb: cannot create {self._workdir_path}: {last_line(result.stderr)}")
            self._workdir_made = True
        return self._workdir_path

    def push(self, local: Path, remote: str) -> None:
        src, dst = _require_file(local), self._resolve(remote)  # both absolute: never read as flags
        result = self._adb(["push", str(src), dst], TRANSFER_TIMEOUT_S, f"pushing {src.name}")
        if result.returncode != 0:
            raise TransportError(f"adb: cannot push {src} to {dst}: {last_line(result.stderr)}")

    def pull(self, remote: str, local: Path) -> None:
        src = self._resolve(remote)
        final, tmp = temp_beside(local, ".part")
        try:
            result = self._adb(["pull", src, str(tmp)], TRANSFER_TIMEOUT_S, f"pulling {src}")
            if result.returncode != 0:
                raise TransportError(f"adb: cannot pull {src}: {last_line(result.stderr)}")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        return self._adb(["shell", _remote_command(argv)], timeout_s, f"`{_show(argv)}`")


# ---------------------------------------------------------------------------------------- factory


def make_transport(kind: str, host: str | None = None, serial: str | None = None, **kwargs) -> Transport:
    """Build a transport by name: ``local``, ``ssh`` (needs ``host``) or ``adb`` (optional ``serial``).

    Extra keyword arguments go to the transport's constructor (``port``, ``identity``, ``adb``...).
    """
    if kind == "local":
        if host or serial or kwargs:
            raise UsageError("the local transport takes no host, serial or options")
        return LocalTransport()
    if kind == "ssh":
        if not host:
            raise UsageError("the ssh transport needs a host (user@name); pass --host")
        if serial:
            raise UsageError("the ssh transport takes no serial (that is for adb)")
        return SshTransport(host, **kwargs)
    if kind == "adb":
        if host:
            raise UsageError("the adb transport takes no host; pass a serial (see `adb devices`)")
        return AdbTransport(serial, **kwargs)
    raise UsageError(f"unknown transport {kind!r}; expected one of {', '.join(KINDS)}")
