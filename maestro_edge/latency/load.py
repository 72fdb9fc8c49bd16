"""Was the host busy with something else while it was being profiled?

A profile taken while other processes run is wrong (a table measured beside a training run stayed
~2.3x slow, and the solver then over-truncated). Linux counts every CPU's busy time in /proc/stat and
this process's own in os.times(); their difference over the wall time is how many cores *other*
processes used meanwhile. Where /proc/stat is missing (not Linux) nothing is claimed either way.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

STAT = "/proc/stat"
IDLE_FIELDS = (3, 4)   # idle, iowait: the jiffies a CPU did nothing


def _busy_seconds() -> float | None:
    """Busy time of all CPUs together since boot, in seconds (None where the kernel does not say)."""
    try:
        with open(STAT) as f:
            fields = f.readline().split()[1:]
        ticks = [int(v) for v in fields[:8]]
    except (OSError, ValueError, IndexError):
        return None
    return (sum(ticks) - sum(ticks[i] for i in IDLE_FIELDS)) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    # Children once waited for count as ours: lowering a probe runs the flatbuffer compiler as a child.
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(frozen=True)
class LoadCheck:
    """Cores used by other processes, on average, over one stretch of timing."""

    other_cores: float
    cores: int
    threads: int
    seconds: float

    @property
    def limit(self) -> float:
        """More than this and our threads shared a core with someone: half a core of slack, at least."""
        return max(0.5, self.cores - self.threads - 0.5)

    @property
    def busy(self) -> bool:
        return self.other_cores > self.limit

    def to_dict(self) -> dict:
        record = {"other_cores": round(self.other_cores, 2), "cores": self.cores, "threads": self.threads,
                  "seconds": round(self.seconds, 1), "limit_cores": self.limit, "busy": self.busy}
        return {**record, "warning": self.warning()} if self.busy else record

    def warning(self) -> str:
        return (f"other processes used {self.other_cores:.1f} of this machine's {self.cores} cores while it was "
                f"profiled at {self.threads} thread(s), so its timings are likely slow; stop them and profile "
                "again")


class LoadMonitor:
    """Start, then ``check()`` any number of times: the other processes' CPU use since the start."""

    def __init__(self, threads: int):
        self.threads = threads
        self.cores = os.cpu_count() or 1
        self._start = (time.monotonic(), _busy_seconds(), _own_seconds())

    def check(self) -> LoadCheck | None:
        wall0, busy0, own0 = self._start
        busy = _busy_seconds()
        wall = time.monotonic() - wall0
        if busy is None or busy0 is None or wall <= 0:
            return None
        others = max(0.0, (busy - busy0) - (_own_seconds() - own0)) / wall
        return LoadCheck(others, self.cores, self.threads, wall)


def busy_warning(table) -> str | None:
    """The warning a measured table carries when it was profiled on a busy machine, else None."""
    load = (table.provenance or {}).get("load")
    return load.get("warning") if isinstance(load, dict) and load.get("busy") else None
