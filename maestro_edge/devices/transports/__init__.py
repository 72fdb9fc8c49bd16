"""How maestro-edge reaches a target, by name: the host itself, a Linux board over ssh, a phone over adb.

Each transport is one module (base.py holds the interface they share) and one registration here, so
a profile's ``transport = "..."`` and its ``[target]`` keys are checked against what is registered.
A new transport is a :class:`~maestro_edge.devices.transports.base.Transport` subclass and one call::

    register_transport("serial-console", lambda options: SerialConsole(options["port"]), options=("port",))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from maestro_edge.devices.transports.adb import AdbTransport
from maestro_edge.devices.transports.base import RunResult, Transport, last_line
from maestro_edge.devices.transports.local import LocalTransport
from maestro_edge.devices.transports.ssh import SshTransport
from maestro_edge.errors import UsageError

__all__ = ["AdbTransport", "LocalTransport", "RunResult", "SshTransport", "Transport", "TransportKind", "last_line",
           "make_transport", "register_transport", "transport_kind", "transport_names"]


@dataclass(frozen=True)
class TransportKind:
    """One registered way to reach a device."""

    name: str
    open: Callable[[Mapping], Transport]   # the device's [target] keys (and flags) -> a transport, not yet connected
    options: tuple[str, ...] = ()          # the keys a device reached this way takes; others are refused
    # key -> why it cannot be missing ("{device}": the device's name); without it the device is not reachable
    needs: Mapping[str, str] = field(default_factory=dict)
    # key -> why this transport refuses it, where that says more than "only for ... devices"
    refusals: Mapping[str, str] = field(default_factory=dict)


_KINDS: dict[str, TransportKind] = {}


def register_transport(name: str, open: Callable[[Mapping], Transport], options: tuple[str, ...] = (),
                       needs: Mapping[str, str] | None = None, refusals: Mapping[str, str] | None = None) -> None:
    """Make ``transport = name`` usable in device profiles (a second registration of a name replaces it)."""
    _KINDS[name] = TransportKind(name, open, tuple(options), dict(needs or {}), dict(refusals or {}))


def transport_names() -> tuple[str, ...]:
    return tuple(_KINDS)


def transport_kind(name: str) -> TransportKind:
    if name not in _KINDS:
        raise UsageError(f"unknown transport {name!r}; expected one of {', '.join(_KINDS)}")
    return _KINDS[name]


def make_transport(name: str, **options) -> Transport:
    """A transport by name from its keys (``host``, ``port``, ``serial``...); keys it does not take are refused."""
    kind = transport_kind(name)
    refused = sorted(set(options) - set(kind.options))
    if refused:
        raise UsageError(f"the {name} transport takes no {', '.join(refused)}")
    missing = [key for key in kind.needs if not options.get(key)]
    if missing:
        raise UsageError(f"the {name} transport needs a {missing[0]}; pass --{missing[0]}")
    return kind.open(options)


register_transport("local", lambda options: LocalTransport(), options=("python",))
register_transport(
    "ssh", lambda o: SshTransport(o["host"], port=o.get("port"), identity=o.get("identity")),
    options=("host", "port", "identity", "python"),
    needs={"host": "{device} is reached over ssh and needs a host: pass --host user@address (or set host in the "
                   "profile's [target] table)"})
register_transport(
    "adb", lambda o: AdbTransport(o.get("serial")), options=("serial", "runner"),
    refusals={"python": "a phone has no python; {device} is timed with --runner, the ExecuTorch runner built for "
                        "it (docs/adb.md)"})
