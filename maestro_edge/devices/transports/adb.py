"""An Android phone through the adb client (see :class:`AdbTransport`)."""

from __future__ import annotations

import posixpath
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from maestro_edge.devices.transports.base import (CHECK_TIMEOUT_S, TRANSFER_TIMEOUT_S, PosixTransport, RunResult,
                                                  arriving, check_name, last_line, remote_command, require_file,
                                                  show_command, spawn)
from maestro_edge.errors import TransportError, UsageError

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


class AdbTransport(PosixTransport):
    """An Android device through the ``adb`` client: ``adb [-s serial] push|pull|shell``.

    ``adb shell`` exit codes are those of the remote command on Android 7+ (shell protocol v2);
    older devices always report 0. A run that times out is killed on this side only.
    """

    name = "adb"
    DEFAULT_WORKDIR = "/data/local/tmp/maestro-edge"  # writable and executable for the shell user

    def __init__(self, serial: str | None = None, adb: str = "adb", remote_workdir: str | None = None):
        self.serial = None if serial is None else check_name(serial, "adb serial")
        self.adb = adb
        if remote_workdir is not None and not posixpath.isabs(remote_workdir):
            raise UsageError(f"remote_workdir must be an absolute path, got {remote_workdir!r}")
        self._workdir_path = remote_workdir or self.DEFAULT_WORKDIR
        self._workdir_made = False

    def adb_argv(self, *args: str) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    def _adb(self, args: Sequence[str], timeout_s: float, what: str) -> RunResult:
        try:
            result = spawn(self.adb_argv(*args), timeout_s)
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
        src, dst = require_file(local), self._resolve(remote)  # both absolute: never read as flags
        result = self._adb(["push", str(src), dst], TRANSFER_TIMEOUT_S, f"pushing {src.name}")
        if result.returncode != 0:
            raise TransportError(f"adb: cannot push {src} to {dst}: {last_line(result.stderr)}")

    def pull(self, remote: str, local: Path) -> None:
        src = self._resolve(remote)
        with arriving(local) as tmp:
            result = self._adb(["pull", src, str(tmp)], TRANSFER_TIMEOUT_S, f"pulling {src}")
            if result.returncode != 0:
                raise TransportError(f"adb: cannot pull {src}: {last_line(result.stderr)}")

    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        return self._adb(["shell", remote_command(argv)], timeout_s, f"`{show_command(argv)}`")
