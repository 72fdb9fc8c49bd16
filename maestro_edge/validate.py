"""Field checks shared by the readers of every file maestro-edge reads: pure functions, no torch.

Each reader (device profiles, checkpoints, latency tables, fit.json, the profiling journal) checks its
fields with these and turns a ``FieldError`` into its own one-line error that names the file and says
what to do; the FieldError's text names the key, what it must be and what it is.
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 32   # maestro-edge's own files nest at most ~6 levels; far deeper exhausts the stack (RecursionError)
MAX_THREADS = 512   # one device's runtime threads (profiles, tables); more is a typo the runtime would try to start
SHOWN_CHARS = 60   # of a bad value echoed in a message: a huge value must not make a huge line


class FieldError(ValueError):
    """A field that is missing or malformed; str() says which key, what it must be and what it is."""


def show(value) -> str:
    """``repr(value)``, cut short: echoed values stay on one short line."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def nesting_depth(value) -> int:
    """How deep dicts, lists and tuples nest in ``value`` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_depth(value, what: str) -> None:
    if nesting_depth(value) > MAX_DEPTH:
        raise FieldError(f"{what} is nested more than {MAX_DEPTH} levels deep")


def parse_json(text: str):
    """``json.loads``, where nesting too deep to handle (json raises RecursionError) is a JSONDecodeError too,
    so every reader's ``except json.JSONDecodeError`` turns it into its own one-line message."""
    try:
        value = json.loads(text)
        deep = nesting_depth(value) > MAX_DEPTH
    except RecursionError:
        deep = True
    if deep:
        raise json.JSONDecodeError(f"nested more than {MAX_DEPTH} levels deep", text, 0)
    return value


def require(table: dict, key: str, where: str = ""):
    """``table[key]``, or a FieldError saying it is missing (``where``: the path of ``table``, e.g. "data.")."""
    if key not in table:
        raise FieldError(f"'{where}{key}' is missing")
    return table[key]


def number(value, key: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           none: bool = False) -> float | None:
    """``value`` as a float: a finite int or float (not a bool) in the range given (None passes with ``none``)."""
    if value is None and none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    try:
        ok = ok and math.isfinite(float(value))
    except OverflowError:   # an int too large for a float
        ok = False
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise FieldError(f"'{key}' must be {_number_text(low, high, low_open)}, got {show(value)}")
    return float(value)


def _number_text(low, high, low_open) -> str:
    if low is None and high is None:
        return "a finite number"
    if high is None:
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"a finite number <= {high:g}"
    return f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}]"


def integer(value, key: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int (not a bool, not a float) in ``low..high``."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        bounds = (f" >= {low} and <= {high}" if low is not None and high is not None
                  else f" >= {low}" if low is not None else f" <= {high}" if high is not None else "")
        raise FieldError(f"'{key}' must be an integer{bounds}, got {show(value)}")
    return value


def text(value, key: str, allowed: tuple[str, ...] = ()) -> str:
    """``value`` as a string (one of ``allowed`` when given)."""
    if not isinstance(value, str):
        raise FieldError(f"'{key}' must be a string, got {show(value)}")
    if allowed and value not in allowed:
        raise FieldError(f"'{key}' is {show(value)}; expected one of {', '.join(allowed)}")
    return value


def flag(value, key: str) -> bool:
    """``value`` as a bool (true or false, not 1 or "yes")."""
    if not isinstance(value, bool):
        raise FieldError(f"'{key}' must be true or false, got {show(value)}")
    return value


def table(value, key: str) -> dict:
    """``value`` as a dict (a JSON object, a TOML table)."""
    if not isinstance(value, dict):
        raise FieldError(f"'{key}' must be a table of names to values, got {show(value)}")
    return value


def list_of(value, key: str, item, length: int | None = None) -> list:
    """``value`` as a list (of ``length`` items when given), each checked by ``item(value, key)``,
    e.g. ``number`` or ``lambda v, k: integer(v, k, low=1)``."""
    if not isinstance(value, list) or (length is not None and len(value) != length):
        size = f" of {length} items" if length is not None else ""
        raise FieldError(f"'{key}' must be a list{size}, got {show(value)}")
    return [item(v, f"{key}[{i}]") for i, v in enumerate(value)]
