"""Progress of long steps: status lines, and counted steps with an ETA (``--quiet`` silences both).

The library reports to a ``Reporter``; the base class says nothing, so library calls are quiet unless
the caller passes one. ``TerminalReporter`` writes to stderr: on a terminal one line redrawn in place
(``scoring 340/1000 images  12s, ETA 23s``); in a log (CI, a pipe) a line every few seconds and at the end.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable, TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Eta:
    """Time left from the mean wall time of the steps finished in this run (skipped ones excluded)."""

    def __init__(self, steps: int):
        self.left, self.times = steps, []

    def finished(self, seconds: float) -> None:
        self.times.append(seconds)
        self.left -= 1

    def seconds(self) -> float | None:
        return statistics.mean(self.times) * self.left if self.times else None

    def text(self) -> str:
        s = self.seconds()
        return "" if s is None else f" (ETA {format_duration(s)})"


class Reporter:
    """Says nothing: what library calls get unless the caller wants progress."""

    def say(self, message: str) -> None:
        """A status line: what starts now."""

    def count(self, label: str, total: int, unit: str = "") -> "Counter":
        """A counted step: ``with reporter.count("scoring", 1000, "images") as c: ... c.advance(8)``."""
        return Counter(self, label, total, unit)

    def show(self, counter: "Counter", final: bool) -> None:
        """Draw ``counter`` (called as it advances, and once with ``final`` when it ends)."""


class Counter:
    """Done out of total, and the time left at the mean pace so far."""

    def __init__(self, reporter: Reporter, label: str, total: int, unit: str = ""):
        self.reporter, self.label, self.total, self.unit = reporter, label, max(0, int(total)), unit
        self.done = 0
        self.started = time.monotonic()

    def __enter__(self) -> "Counter":
        self.reporter.show(self, final=False)
        return self

    def __exit__(self, *exc) -> None:
        self.reporter.show(self, final=True)

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        self.reporter.show(self, final=False)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def eta_s(self) -> float | None:
        if not self.done or self.done >= self.total:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        eta = self.eta_s()
        return (f"{self.label} {self.done}/{self.total}{unit}  {format_duration(self.elapsed_s)}"
                + (f", ETA {format_duration(eta)}" if eta is not None else ""))


class LineReporter(Reporter):
    """Status lines to a function (e.g. ``messages.append``); counted steps only once, when they end."""

    def __init__(self, write: Callable[[str], None]):
        self.write = write

    def say(self, message: str) -> None:
        self.write(message)

    def show(self, counter: Counter, final: bool) -> None:
        if final:
            self.write(counter.text())


class TerminalReporter(Reporter):
    """Progress on stderr, indented two spaces (as the CLI's status lines are)."""

    LOG_EVERY_S = 10.0   # in a log, one line per counted step every this many seconds (and at the end)

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_line = 0.0

    def say(self, message: str) -> None:
        print(f"  {message}", file=self.stream, flush=True)

    def show(self, counter: Counter, final: bool) -> None:
        if self.live:
            print(f"\r\033[K  {counter.text()}", end="\n" if final else "", file=self.stream, flush=True)
            return
        now = time.monotonic()
        if not final and counter.done == 0:   # a step starts: its first line comes after an interval, or at its end
            self._last_line = now
        elif final or now - self._last_line >= self.LOG_EVERY_S and counter.done < counter.total:
            self._last_line = now
            print(f"  {counter.text()}", file=self.stream, flush=True)


def as_reporter(progress: Reporter | Callable[[str], None] | None) -> Reporter:
    """A Reporter from what callers pass: one already, a function taking status lines, or None (quiet)."""
    if progress is None:
        return Reporter()
    if isinstance(progress, Reporter):
        return progress
    return LineReporter(progress)
