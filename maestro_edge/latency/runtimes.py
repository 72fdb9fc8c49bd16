"""Which timer measures a device: a registry by runtime and transport.

A timer is looked up for the profile's runtime on the transport it is reached over; where none is
registered for that pair and the transport runs python (it takes a ``python`` key), the runtime's timer
for any such transport is used: the agent (latency/remote.py). A new runtime, or a timer for a new
transport, is one module and one :func:`register_runtime` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from maestro_edge.devices.profile import RUNTIMES, DeviceProfile
from maestro_edge.devices.transports import Transport, transport_kind
from maestro_edge.errors import ProfileError
from maestro_edge.latency.android import RunnerTimer
from maestro_edge.latency.profile import HostTimer, Timer
from maestro_edge.latency.remote import RemoteTimer

# (profile, its [target] keys and flags, the open transport, threads) -> a timer
OpenTimer = Callable[[DeviceProfile, Mapping, Transport, int], Timer]


@dataclass(frozen=True)
class TimerKind:
    open: OpenTimer
    needs: tuple[str, ...] = ()   # [target] keys it cannot time without (without them fit predicts only)


_TIMERS: dict[tuple[str, str | None], TimerKind] = {}


def register_runtime(runtime: str, open: OpenTimer, transport: str | None = None, needs: tuple[str, ...] = ()) -> None:
    """Time ``runtime`` with ``open`` over ``transport`` (None: over any transport that runs python), and let
    device profiles name ``runtime``."""
    _TIMERS[(runtime, transport)] = TimerKind(open, tuple(needs))
    if runtime not in RUNTIMES:
        RUNTIMES.append(runtime)


def timer_kind(profile: DeviceProfile, transport: str) -> TimerKind:
    """How ``profile``'s runtime is timed over ``transport``; a ProfileError where it cannot be."""
    found = _TIMERS.get((profile.runtime, transport))
    if found is None and "python" in transport_kind(transport).options:
        found = _TIMERS.get((profile.runtime, None))
    if found is None:
        timed = sorted({runtime for runtime, over in _TIMERS if over == transport}) or ["no runtime"]
        raise ProfileError(f"device profile {profile.name}: runtime {profile.runtime!r} cannot be measured over "
                           f"{transport}; over {transport} maestro-edge times {', '.join(timed)}")
    return found


def _agent(profile: DeviceProfile, options: Mapping, transport: Transport, threads: int) -> Timer:
    return RemoteTimer(transport, profile.runtime, threads, options.get("python"))


def _in_process(profile: DeviceProfile, options: Mapping, transport: Transport, threads: int) -> Timer:
    """This process times the host, unless a python is named: then the agent runs with it."""
    return _agent(profile, options, transport, threads) if options.get("python") else HostTimer()


def _runner(profile: DeviceProfile, options: Mapping, transport: Transport, threads: int) -> Timer:
    return RunnerTimer(transport, options.get("runner"), threads, profile.name)


register_runtime("executorch-xnnpack", _agent)
register_runtime("onnxruntime", _agent)
register_runtime("executorch-xnnpack", _in_process, transport="local")
register_runtime("executorch-xnnpack", _runner, transport="adb", needs=("runner",))
