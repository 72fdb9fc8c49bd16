"""What every transport is: the :class:`Transport` interface and the helpers the built-in ones share.

One small interface (:class:`Transport`) so that measurement code never cares where the target is:
``check`` (a cheap round trip), ``workdir`` (a scratch folder there), ``push``/``pull`` (files) and
``run`` (an argument list, with a timeout). Everything else is a detail of one transport (local.py,
ssh.py, adb.py); __init__.py registers them by name.

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

import contextlib
import os
import posixpath
import shlex
import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from maestro_edge.errors import TransportError, UsageError
from maestro_edge.user_files import temp_beside

TRANSFER_TIMEOUT_S = 300.0  # push/pull: a few MB over Wi-Fi or USB 2 fits easily
CHECK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str


class Transport(ABC):
    """A target that can run commands and exchange files. Use as a context manager or call close()."""

    name: str               # what it is registered under (devices/transports/__init__.py)
    python = "python3"      # the interpreter the agent runs with when none is named

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

    def home_path(self, path: str) -> str:
        """``path`` as an argument list must give it there: no shell expands a leading ``~/`` in one."""
        return path

    def close(self) -> None:
        """Release connections and local temporary files. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def spawn(argv: list[str], timeout_s: float, *, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) -> RunResult:
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


def show_command(argv: Sequence[str], limit: int = 60) -> str:
    """A short, one-line rendering of a command for error messages."""
    text = shlex.join(argv).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def remote_command(argv: Sequence[str]) -> str:
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


def check_name(value: str, what: str) -> str:
    """Refuse names a client would misread: empty, flag-like, or with whitespace/control characters."""
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} must be a non-empty string, got {value!r}")
    if value.startswith("-"):
        raise UsageError(f"{what} {value!r} starts with '-', which the client would read as an option; fix the {what}")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise UsageError(f"{what} {value!r} contains whitespace or control characters; fix the {what}")
    return value


@contextlib.contextmanager
def arriving(local: Path) -> Iterator[Path]:
    """A temporary file beside ``local`` to fill: it becomes ``local`` when the block ends normally, never half."""
    final, tmp = temp_beside(local, ".part")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def require_file(local: Path) -> Path:
    local = Path(local)
    if not local.is_file():
        raise TransportError(f"cannot push {local}: no such local file")
    return local.absolute()


class PosixTransport(Transport):
    """A target with POSIX paths (a board over ssh, a phone over adb): relative paths live in workdir()."""

    def _resolve(self, remote: str) -> str:
        if not remote:
            raise UsageError("remote path must not be empty")
        return remote if posixpath.isabs(remote) else posixpath.join(self.workdir(), remote)
