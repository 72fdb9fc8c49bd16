"""Progress: counted steps with an ETA, status lines, quiet by default, one line per step in a log."""

from __future__ import annotations

import io

from hypothesis import given, strategies as st

from maestro_edge.progress import Counter, LineReporter, Reporter, TerminalReporter, as_reporter, format_duration


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_counter_says_done_total_and_an_eta_from_its_pace():
    counter = Counter(Reporter(), "scoring", 1000, "images")
    counter.started -= 10.0          # 10 s ago
    counter.advance(250)
    assert counter.eta_s() == __import__("pytest").approx(30.0, rel=0.01)   # 250 in 10 s: 750 more take 30 s
    assert counter.text().startswith("scoring 250/1000 images  10s, ETA 30s")
    counter.advance(10_000)          # never past the total, and no ETA once done
    assert counter.done == 1000 and counter.eta_s() is None


@given(st.floats(min_value=0, max_value=10 * 86400, allow_nan=False))
def test_durations_read_as_seconds_minutes_or_hours(seconds):
    text = format_duration(seconds)
    assert text[-1] in "sm" and text[0].isdigit()


def test_a_terminal_redraws_one_line_and_ends_it():
    stream = Tty()
    with TerminalReporter(stream).count("scoring", 3, "images") as counter:
        for _ in range(3):
            counter.advance()
    text = stream.getvalue()
    assert text.count("\r") == 5 and text.endswith("\n") and text.count("\n") == 1   # start, 3 steps, end
    assert "scoring 3/3 images" in text.rsplit("\r", 1)[1]


def test_a_log_gets_a_line_per_interval_and_one_at_the_end(monkeypatch):
    stream = io.StringIO()
    reporter = TerminalReporter(stream)
    with reporter.count("scoring", 100) as counter:
        for _ in range(100):
            counter.advance()        # well within LOG_EVERY_S: no line per step
    lines = stream.getvalue().splitlines()
    assert lines == ["  scoring 100/100  0s"]


def test_library_calls_are_quiet_unless_asked_and_accept_a_plain_function():
    assert type(as_reporter(None)) is Reporter
    seen = []
    reporter = as_reporter(seen.append)
    reporter.say("exporting")
    with reporter.count("scoring", 2) as counter:
        counter.advance(2)
    assert isinstance(reporter, LineReporter) and seen[0] == "exporting" and seen[1].startswith("scoring 2/2")
