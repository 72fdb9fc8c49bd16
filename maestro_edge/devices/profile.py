"""Device profiles: one TOML file per device in ``profiles/``.

A profile says what the device is (hardware), how models run there (runtime, threads, precision),
how to reach it (transport) and whether its latencies are measured or estimated, with provenance.

An estimated profile states its compute peak as a per-core table, one ``[[hardware.cores]]`` entry per
core type::

    [[hardware.cores]]
    type = "Cortex-X1"
    count = 2
    clock_ghz = 2.85
    fp32_flop_per_cycle = 32     # four 128-bit FMA pipes x 4 lanes x 2 FLOP
    used = true                  # the cores the profile's threads run on
    source = "..."

``[hardware] peak_gflops`` (sum of count x clock x FLOP/cycle over the used cores) and ``peak_cores``
(their count) are derived from that table when the profile is loaded: the table is the one source of
truth, and a profile that also states either figure is refused. Profiles without a table (a user's own)
may still give the two figures directly.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from maestro_edge.errors import ProfileError, UsageError
from maestro_edge.user_files import read_user_text

SCHEMA_VERSION = 1
RUNTIMES = ("executorch-xnnpack", "onnxruntime")
TRANSPORTS = ("local", "ssh", "adb")
LATENCY_SOURCES = ("measured", "estimated")


def profiles_dir() -> Path:
    """Where device profiles live: $MAESTRO_EDGE_PROFILES, else the shipped ``profiles/``.

    ``maestro_edge/profiles`` is a symlink to the checkout's top-level ``profiles/``; wheels carry the
    files themselves, so both editable and regular installs find them.
    """
    env = os.environ.get("MAESTRO_EDGE_PROFILES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "profiles"


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    runtime: str
    threads: int
    precision: str
    transport: str
    latency_source: str
    hardware: dict = field(default_factory=dict)
    estimate: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    target: dict = field(default_factory=dict)   # how to reach it: host/port/identity/python (ssh), serial (adb)
    path: str | None = None

    @property
    def is_host(self) -> bool:
        return self.transport == "local"

    def with_threads(self, threads: int) -> "DeviceProfile":
        """This device at ``threads`` threads: threads fill the fastest cores first.

        Where the profile has a per-core table, ``used`` is re-chosen as the ``threads`` cores with the highest
        per-core peak (ties in table order) and ``peak_gflops`` / ``peak_cores`` are derived again, so one
        thread on a phone runs on its prime core, not on an average big core. Which cores threads land on is
        modelled here; how well work scales over them is the estimator's business.
        """
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        cores = self.hardware.get("cores")
        if not isinstance(cores, list):
            return dataclasses.replace(self, threads=threads)
        order = sorted(range(len(cores)), key=lambda i: -cores[i]["clock_ghz"] * cores[i]["fp32_flop_per_cycle"])
        left, chosen = threads, []
        for i in order:
            take = min(left, cores[i]["count"])
            left -= take
            chosen.append((i, take))
        rows = []
        for i, core in enumerate(cores):
            take = dict(chosen).get(i, 0)
            if take and take < core["count"]:   # part of a cluster: split it into used and unused cores
                rows += [{**core, "count": take, "used": True}, {**core, "count": core["count"] - take, "used": False}]
            else:
                rows.append({**core, "used": bool(take)})
        hardware = {**self.hardware, "cores": rows, **derive_peak(rows)}
        return dataclasses.replace(self, threads=threads, hardware=hardware)

    @classmethod
    def load(cls, path: str | Path) -> "DeviceProfile":
        path = Path(path)
        text = read_user_text(path, "device profile", "a device name from 'maestro-edge devices' or the path of "
                              "a profile .toml file", ProfileError)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ProfileError(f"device profile {path} is not valid TOML ({e}); fix or delete it") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "DeviceProfile":
        def need(key, kind, allowed=None):
            if key not in data:
                raise ProfileError(f"device profile {source} lacks '{key}'; add it (see profiles/host.toml)")
            value = data[key]
            if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
                raise ProfileError(f"device profile {source}: '{key}' must be {kind.__name__}, got {value!r}")
            if allowed and value not in allowed:
                raise ProfileError(f"device profile {source}: '{key}' is {value!r}; expected one of {', '.join(allowed)}")
            return value

        version = need("schema_version", int)
        if version != SCHEMA_VERSION:
            raise ProfileError(f"device profile {source} has schema_version {version}; this maestro-edge reads "
                               f"{SCHEMA_VERSION}: update the profile (see profiles/host.toml) or maestro-edge")
        threads = need("threads", int)
        if threads < 1:
            raise ProfileError(f"device profile {source}: 'threads' must be >= 1, got {threads}")
        name = need("name", str)
        if not NAME_PATTERN.fullmatch(name):
            raise ProfileError(f"device profile {source}: name {name!r} must be letters, digits, '.', '_' or '-' "
                               "(it names folders and cache files); rename it")
        for table in ("hardware", "estimate", "provenance"):
            if not isinstance(data.get(table, {}), dict):
                raise ProfileError(f"device profile {source}: [{table}] must be a table; fix the profile")
        return cls(
            name=name,
            description=data.get("description", ""),
            runtime=need("runtime", str, RUNTIMES),
            threads=threads,
            precision=need("precision", str, ("fp32",)),
            transport=need("transport", str, TRANSPORTS),
            latency_source=need("latency_source", str, LATENCY_SOURCES),
            hardware=_hardware(data.get("hardware", {}), source),
            estimate=dict(data.get("estimate", {})),
            provenance=dict(data.get("provenance", {})),
            target=_target(data.get("target", {}), source),
            path=source,
        )


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# [[hardware.cores]]: key -> (kind, lowest allowed (exclusive), highest allowed (inclusive)). The bounds only
# catch typos and unit slips (MHz for GHz, FLOP/s for FLOP/cycle); the source line is what makes a value right.
CORE_KEYS = {
    "type": (str, None, None),
    "count": (int, 0, 256),
    "clock_ghz": (float, 0.0, 6.0),
    "fp32_flop_per_cycle": (float, 0.0, 256.0),
    "used": (bool, None, None),
    "source": (str, None, None),
}
CORE_OPTIONAL = {"note": str}
DERIVED_KEYS = ("peak_gflops", "peak_cores")


def derive_peak(cores: list[dict]) -> dict:
    """``peak_gflops`` and ``peak_cores`` of the used cores of a checked per-core table."""
    used = [c for c in cores if c["used"]]
    return {"peak_gflops": round(sum(c["count"] * c["clock_ghz"] * c["fp32_flop_per_cycle"] for c in used), 6),
            "peak_cores": sum(c["count"] for c in used)}


def _core(entry, index: int, source: str) -> dict:
    named = isinstance(entry, dict) and isinstance(entry.get("type"), str) and entry["type"]
    kind = f" ({entry['type']!r})" if named else ""   # repr: a newline in the name stays on one line
    where = f"device profile {source}: [[hardware.cores]] entry {index + 1}{kind}"
    if not isinstance(entry, dict):
        raise ProfileError(f"{where} must be a table (type, count, clock_ghz, fp32_flop_per_cycle, used, source); "
                           "fix the profile")
    unknown = sorted(set(entry) - set(CORE_KEYS) - set(CORE_OPTIONAL))
    if unknown:
        raise ProfileError(f"{where} has unknown key {unknown[0]!r}; allowed: {', '.join([*CORE_KEYS, *CORE_OPTIONAL])}")
    core = {}
    for key, (kind, low, high) in CORE_KEYS.items():
        if key not in entry:
            raise ProfileError(f"{where} lacks '{key}'; add it (see profiles/pixel7.toml)")
        value = entry[key]
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if ok and kind is str:
            ok = bool(value.strip())
        if ok and low is not None:
            ok = low < value <= high
        if not ok:
            if kind is str:
                expected = "a non-empty string"
            elif kind is bool:
                expected = "true or false"
            else:
                expected = f"{'an integer' if kind is int else 'a finite number'} in ({low:g}, {high:g}]"
            raise ProfileError(f"{where}: '{key}' must be {expected}, got {value!r}; fix the profile")
        core[key] = value
    for key, kind in CORE_OPTIONAL.items():
        if key in entry:
            if not isinstance(entry[key], kind):
                raise ProfileError(f"{where}: '{key}' must be a string, got {entry[key]!r}; fix the profile")
            core[key] = entry[key]
    return core


def _hardware(table: dict, source: str) -> dict:
    """[hardware] with ``peak_gflops`` / ``peak_cores`` derived from its per-core table, where it has one."""
    hardware = dict(table)
    cores = hardware.get("cores")
    if cores is None or isinstance(cores, str):   # no table (a summary string is only a description)
        return hardware
    if not isinstance(cores, list) or not cores:
        raise ProfileError(f"device profile {source}: [hardware] cores must be one or more [[hardware.cores]] "
                           f"tables, got {cores!r}; fix the profile (see profiles/pixel7.toml)")
    stated = [key for key in DERIVED_KEYS if key in hardware]
    if stated:
        raise ProfileError(f"device profile {source}: [hardware] {stated[0]} is derived from [[hardware.cores]]; "
                           "remove it (the per-core table is the one source of truth)")
    checked = [_core(entry, i, source) for i, entry in enumerate(cores)]
    if not any(c["used"] for c in checked):
        raise ProfileError(f"device profile {source}: no [[hardware.cores]] entry has used = true; mark the cores "
                           "the profile's threads run on")
    hardware["cores"] = checked
    hardware.update(derive_peak(checked))
    return hardware
TARGET_KEYS = {"host": str, "port": int, "identity": str, "python": str, "serial": str, "runner": str}


def _target(table, source: str) -> dict:
    if not isinstance(table, dict):
        raise ProfileError(f"device profile {source}: [target] must be a table")
    for key, value in table.items():
        kind = TARGET_KEYS.get(key)
        if kind is None:   # the value is not echoed: it may be a secret someone put in the wrong place
            raise ProfileError(f"device profile {source}: [target] has unknown key {key!r}; remove it "
                               f"(allowed: {', '.join(TARGET_KEYS)})")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ProfileError(f"device profile {source}: [target] {key} must be {kind.__name__}; fix the profile")
    return dict(table)


def list_profiles() -> list[DeviceProfile]:
    folder = profiles_dir()
    if not folder.is_dir():
        raise ProfileError(f"the profiles folder {str(folder)!r} does not exist; fix MAESTRO_EDGE_PROFILES "
                           "or unset it to use the shipped profiles")
    return [DeviceProfile.load(p) for p in sorted(folder.glob("*.toml"))]


def find_profile(name_or_path: str) -> DeviceProfile:
    """A profile by device name (``pixel7``) or by path to a TOML file."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return DeviceProfile.load(name_or_path)
    path = profiles_dir() / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(profiles_dir().glob("*.toml"))) or "none"
        raise UsageError(f"unknown device {name_or_path!r}; known devices: {known} (or pass a profile .toml path)")
    return DeviceProfile.load(path)
