"""The journal of a profile in progress: one line per finished layer, beside the table.

``measure_table`` (latency/profile.py) appends a record as each layer is measured, so an interrupted
profile (Ctrl-C, kill -9, a dropped connection) resumes where it stopped and loses nothing. A record
holds the setup it was made under (model, runtime, threads, protocol, device fingerprint); a rerun
keeps only the records of its own setup, and ignores a line cut short by a kill or malformed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from maestro_edge import validate
from maestro_edge.latency.calibration import CALL
from maestro_edge.lod.grid import DENSE


def journal_path(table_path: Path) -> Path:
    return Path(table_path).with_suffix(".partial.jsonl")


def canonical(obj):
    """``obj`` as it reads back from JSON (tuples become lists), so setups compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True))


def read_journal(journal: Path, setup: dict, options: dict[str, list[str]] | None = None) -> dict:
    """layer -> entry for every well-formed record made under ``setup`` (later records win).

    A line cut short by a kill, made under another setup, or malformed (an option missing, a timing that
    is not a number) is ignored: that layer is measured again. ``options``: layer -> the option keys
    (``str(c) for c in layer_options(layer)``) a complete entry holds, besides the call probe.
    """
    done = {}
    try:
        text = journal.read_text(errors="replace") if journal.is_file() else ""
    except OSError:   # unreadable: measure everything again
        text = ""
    for line in text.splitlines():
        try:
            record = validate.parse_json(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("setup") == setup and _well_formed(record, options):
            done[record["layer"]] = record["timings"]
    return done


def _well_formed(record: dict, options: dict[str, list[str]] | None) -> bool:
    """A record ``layer_latency`` can read: dense and rank options (positive integers) each with a p50 and
    a p90 that are finite numbers >= 0; with ``options``, exactly the layer's options and the call probe."""
    layer, timings = record.get("layer"), record.get("timings")
    if not isinstance(layer, str) or not isinstance(timings, dict) or DENSE not in timings:
        return False
    if options is not None and set(timings) != {*options.get(layer, ()), CALL}:
        return False
    try:
        for option, timing in timings.items():
            if option not in (DENSE, CALL) and not (option.isdecimal() and int(option) >= 1):
                return False
            for key in ("p50_ms", "p90_ms"):
                validate.number(validate.require(validate.table(timing, option), key), key, low=0.0)
    except validate.FieldError:
        return False
    return True


def append_journal(journal: Path, setup: dict, layer: str, timings: dict) -> None:
    """Append one record as one write of one line, synced; first end a line a kill left unfinished."""
    journal.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"setup": setup, "model_digest": setup["model_digest"], "layer": layer,
                       "timings": timings}) + "\n"
    fd = os.open(journal, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
