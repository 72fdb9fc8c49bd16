"""How far an ESTIMATED latency may be from the truth: a band from the validation suite's spread (issue 15 item 5).

``bench/bench_estimator.py --write-bands`` compares the estimator with published whole-model fp32 latencies
(the scored rows of bench/results/estimator.md) and stores, per device class, the 10th and 90th percentiles of

    published / estimate

in ``error_bands.json`` beside this module. So, for an estimate ``E`` on a device of that class:

    low_ms  = E * low_factor     (P10: 10% of the suite's rows ran faster than this)
    high_ms = E * high_factor    (P90: 10% of the suite's rows ran slower than this)

and about 80% of the suite's rows of that class fell inside ``[low_ms, high_ms]`` (the file records the exact
share as ``coverage``). ``high_factor`` > 1 means the estimator has run low: the true latency may be that many
times the estimate. The band is the suite's spread, not a guarantee for a new network or runtime: it is as
good as the rows behind it (``rows``, ``source``). A measured device has no band (``error_band`` returns None).
"""

from __future__ import annotations

import json
import statistics
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from maestro_edge.errors import ProfileError

BANDS_FILE = Path(__file__).with_name("error_bands.json")
FALLBACK_CLASS = "all"     # a class the suite has no rows for gets the band of every scored row


class ErrorBand(NamedTuple):
    """Multipliers of an estimate: the truth was within [estimate * low_factor, estimate * high_factor] for
    ``coverage`` (about 80%) of the ``rows`` published figures of ``device_class`` in ``source``."""

    low_factor: float
    high_factor: float
    device_class: str
    rows: int
    source: str
    coverage: float = 0.8


def device_class(profile) -> str:
    """"phone" for a device reached over adb, "board" for the rest (Raspberry Pis, Jetsons)."""
    return "phone" if profile.transport == "adb" else "board"


@lru_cache(maxsize=1)
def load_bands(path: Path = BANDS_FILE) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path} is missing; regenerate it with: python bench/bench_estimator.py --write-bands") from None


def error_band(profile) -> ErrorBand | None:
    """The band of an ESTIMATED latency on ``profile``'s device; None for a measured device (nothing estimated)."""
    if profile.latency_source != "estimated":
        return None
    doc = load_bands()
    klass = device_class(profile)
    entry = doc["classes"].get(klass) or doc["classes"][FALLBACK_CLASS]
    source = f"{doc['source']} ({doc['command']}, {doc['date']})"
    return ErrorBand(entry["low_factor"], entry["high_factor"], entry["device_class"], entry["rows"], source,
                     entry["coverage"])


def band_ms(predicted_ms: float, band: ErrorBand) -> tuple[float, float]:
    """(low_ms, high_ms): the range the true latency of an estimate ``predicted_ms`` is expected in."""
    return predicted_ms * band.low_factor, predicted_ms * band.high_factor


def pessimistic_budget_ms(budget_ms: float, band: ErrorBand) -> float:
    """The budget to solve for so that the band's high end, not the estimate, meets ``budget_ms``.

    Never looser than ``budget_ms``: a band whose high end is below the estimate (an estimator that runs
    high) leaves the budget as it is rather than spend the margin."""
    return budget_ms / max(1.0, band.high_factor)


def decile_band(ratios: list[float]) -> tuple[float, float, float]:
    """(P10, P90, share of ``ratios`` within them) of published/estimate ratios; linear interpolation between
    order statistics (``statistics.quantiles(method="inclusive")``, numpy's default)."""
    if len(ratios) < 2:
        raise ValueError(f"a band needs at least 2 rows, got {len(ratios)}")
    cuts = statistics.quantiles(ratios, n=10, method="inclusive")
    low, high = cuts[0], cuts[-1]
    return low, high, sum(low <= r <= high for r in ratios) / len(ratios)
