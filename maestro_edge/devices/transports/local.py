"""The host itself as a target: argument lists run with subprocess, files in a private temp folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from maestro_edge.devices.transports.base import RunResult, Transport, arriving, require_file, show_command, spawn
from maestro_edge.errors import TransportError, UsageError


class LocalTransport(Transport):
    """The host itself: argument lists via subprocess, files copied into a private temp folder."""

    name = "local"
    python = sys.executable   # the agent runs with this very interpreter unless told otherwise

    def __init__(self) -> None:
        self._workdir: str | None = None

    def check(self) -> str:
        import platform

        return " ".join([platform.node(), platform.system(), platform.release(), platform.machine()])

    def workdir(self) -> str:
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="maestro-edge-agent-")
        return self._workdir

    def home_path(self, path: str) -> str:
        return str(Path(path).expanduser())

    def _resolve(self, remote: str) -> Path:
        return Path(os.path.join(self.workdir(), remote))

    def push(self, local: Path, remote: str) -> None:
        src = require_file(local)
        with arriving(self._resolve(remote)) as tmp:
            shutil.copyfile(src, tmp)

    def pull(self, remote: str, local: Path) -> None:
        src = self._resolve(remote)
        if not src.is_file():
            raise TransportError(f"cannot pull {src}: no such file in the local workdir")
        with arriving(local) as tmp:
            shutil.copyfile(src, tmp)

    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        argv = [str(a) for a in argv]
        if not argv:
            raise UsageError("run() needs a non-empty argument list")
        try:
            return spawn(argv, timeout_s)
        except FileNotFoundError:  # same answer a remote shell gives
            return RunResult(127, "", f"{argv[0]}: command not found\n")
        except PermissionError:
            return RunResult(126, "", f"{argv[0]}: permission denied\n")
        except subprocess.TimeoutExpired:
            raise TransportError(f"`{show_command(argv)}` did not finish within {timeout_s:g}s on the host; "
                                 "raise the timeout or make the work smaller") from None

    def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
