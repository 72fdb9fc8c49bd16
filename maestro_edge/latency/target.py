"""A device and how to reach it: one :class:`Target`, resolved once from the device profile, its
``[target]`` table and the command line's flags.

The target opens its transport (by name, from the devices/transports registry) and the timer for the
profile's runtime (latency/runtimes.py). ``profile`` and ``fit`` both time through it, the host too: a
local transport, timed in this process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.devices.transports import Transport, TransportKind, transport_kind, transport_names
from maestro_edge.errors import MaestroError, ProfileError, TransportError, UsageError
from maestro_edge.export.pte import check_exportable
from maestro_edge.latency.journal import journal_path
from maestro_edge.latency.measure import Protocol
from maestro_edge.latency.profile import Progress, Timer, measure_table, table_lock
from maestro_edge.latency.runtimes import timer_kind
from maestro_edge.latency.table import LatencyTable, cached_table_path, load_table
from maestro_edge.lod.checkpoint import LoDCheckpoint


@dataclass(frozen=True)
class Target:
    """A device (its profile) and how to reach it; build it with :meth:`resolve`."""

    profile: DeviceProfile
    options: Mapping[str, Any]           # the profile's [target], overridden by the flags
    flags: frozenset[str] = frozenset()  # the keys the command line gave

    @classmethod
    def resolve(cls, profile: DeviceProfile, **flags) -> "Target":
        """``profile`` reached as its ``[target]`` says, with ``flags`` (None: not given) taking precedence; keys
        its transport does not take are refused."""
        given = {key: value for key, value in flags.items() if value is not None}
        target = cls(profile, {**profile.target, **given}, frozenset(given))
        refused = [key for key in target.options if key not in target.kind.options]
        if refused:
            why = {key: target._refusal(key) for key in refused}
            first = why[refused[0]]
            raise UsageError(f"{', '.join('--' + key for key in refused if why[key] == first)}: {first}")
        return target

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def kind(self) -> TransportKind:
        return transport_kind(self.profile.transport)

    def _refusal(self, key: str) -> str:
        if key in self.kind.refusals:
            return self.kind.refusals[key].format(device=self.name)
        owners = [name for name in transport_names() if key in transport_kind(name).options]
        return f"only for {' and '.join(owners)} devices; {self.name} is reached over {self.profile.transport}"

    def missing(self, to_time: bool = True) -> list[str]:
        """The keys this target cannot be reached without (``to_time``: or timed without); a ProfileError where
        its runtime cannot be timed over its transport at all."""
        needs = list(self.kind.needs)
        if to_time:
            needs += timer_kind(self.profile, self.profile.transport).needs
        return [key for key in needs if not self.options.get(key)]

    @property
    def measurable(self) -> bool:
        """Whether fit times its export there: everything that takes is known, or the command line named the
        target (then what is missing is an error, not a silent prediction)."""
        try:
            return not self.missing() or bool(self.flags)
        except ProfileError:
            return bool(self.flags)

    def require(self) -> None:
        """A one-line UsageError naming what the transport cannot connect without (before any slow work)."""
        for key, why in self.kind.needs.items():
            if not self.options.get(key):
                raise UsageError(why.format(device=self.name))

    def open_transport(self) -> Transport:
        self.require()
        return self.kind.open(self.options)

    def check(self) -> str:
        """A round trip to the device: a one-line description of it."""
        with self.open_transport() as transport:
            return transport.check()

    @contextlib.contextmanager
    def timer(self, threads: int | None = None, transport: Transport | None = None) -> Iterator[Timer]:
        """The timer for the profile's runtime, over this target's transport (or ``transport``, which the caller
        owns); afterwards its files are removed from the device and the transport is closed."""
        with contextlib.ExitStack() as stack:
            if transport is None:
                transport = stack.enter_context(self.open_transport())
            kind = timer_kind(self.profile, transport.name)
            timer = kind.open(self.profile, self.options, transport, threads or self.profile.threads)
            stack.callback(timer.cleanup)
            yield timer

    @contextlib.contextmanager
    def timer_if_measurable(self) -> Iterator[Timer | None]:
        """fit's timer: this target's where it is :attr:`measurable`, else None (fit then predicts only)."""
        with self.timer() if self.measurable else contextlib.nullcontext() as timer:
            yield timer

    def measure_table(self, ckpt: LoDCheckpoint, protocol: Protocol | None = None, table_path: Path | None = None,
                      progress: Progress | None = None, allow_busy: bool = False,
                      transport: Transport | None = None) -> LatencyTable:
        """Measure ``ckpt``'s layer options on the device; save and return the table (see
        latency.profile.measure_table: resumable, a busy host refused unless ``allow_busy``)."""
        protocol = protocol or Protocol(threads=self.profile.threads)
        with self.timer(protocol.threads, transport) as timer:
            try:
                return measure_table(ckpt, self.profile, timer, protocol, table_path, progress, allow_busy)
            except TransportError as e:
                if not timer.started:   # failed before measuring anything: nothing to resume
                    raise
                message = f"{e} (layers measured so far are kept; run the profile again to resume)"
                raise TransportError(message) from None

    def profile_table(self, ckpt: LoDCheckpoint, force: bool = False, allow_busy: bool = False,
                      progress: Progress | None = None,
                      say: Callable[[str], None] = lambda message: None) -> tuple[LatencyTable, Path, bool]:
        """``maestro-edge profile``: (table, its path, whether it was cached): the cached table of this model on
        this device, or one measured now; ``force`` measures again."""
        path = cached_table_path(self.profile, ckpt.latency_digest())
        # --force deletes nothing another process is measuring into (no cache folder yet: nothing to delete or
        # reuse, and measuring takes the lock itself)
        with table_lock(self.profile, path) if path.parent.is_dir() else contextlib.nullcontext():
            if force:
                path.unlink(missing_ok=True)
                journal_path(path).unlink(missing_ok=True)
            if path.is_file():
                return load_table(path, ckpt, self.profile), path, True
            say("exporting the whole model once (a model ExecuTorch cannot take fails here)")
            check_exportable(ckpt)
            return self.measure_table(ckpt, table_path=path, progress=progress, allow_busy=allow_busy), path, False


def reachability(profile: DeviceProfile) -> str:
    """``maestro-edge devices --check``: 'reachable: <what answers>', 'NOT reachable: <why>', or why not checked."""
    try:
        target = Target.resolve(profile)
        missing = target.missing(to_time=False)
        if missing:
            return (f"not checked (no {missing[0]} in the profile's [target]; 'maestro-edge profile --{missing[0]}' "
                    "works)")
        return f"reachable: {target.check()}"
    except MaestroError as e:
        return f"NOT reachable: {e}"


def measure_remote_table(ckpt: LoDCheckpoint, profile: DeviceProfile, transport: Transport,
                         protocol: Protocol | None = None, table_path: Path | None = None,
                         progress: Progress | None = None, python: str | None = None,
                         runner: str | Path | None = None) -> LatencyTable:
    """Measure on the device behind an open ``transport`` (the caller closes it), with the interpreter
    ``python`` there (default: the transport's) or, over adb, the ExecuTorch ``runner`` built for the phone."""
    target = Target.resolve(profile, python=python, runner=runner)
    return target.measure_table(ckpt, protocol, table_path, progress, transport=transport)
