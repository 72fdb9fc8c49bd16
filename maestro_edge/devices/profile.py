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
import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from maestro_edge import validate
from maestro_edge.devices.transports import transport_kind, transport_names
from maestro_edge.errors import ProfileError, UsageError
from maestro_edge.user_files import read_user_text

SCHEMA_VERSION = 1
RUNTIMES = ["executorch-xnnpack", "onnxruntime"]   # what a profile may name; latency.runtimes.register_runtime adds
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
        except RecursionError:   # arrays or inline tables nested thousands deep
            raise ProfileError(f"device profile {path} is nested more than {validate.MAX_DEPTH} levels deep; fix or "
                               "delete it") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "DeviceProfile":
        def need(key, check, *args):
            if key not in data:
                raise ProfileError(f"device profile {source} lacks '{key}'; add it (see profiles/host.toml)")
            return checked(source, "", check, data[key], key, *args)

        checked(source, "", validate.check_depth, data, "the profile")
        version = need("schema_version", validate.integer)
        if version != SCHEMA_VERSION:
            raise ProfileError(f"device profile {source} has schema_version {version}; this maestro-edge reads "
                               f"{SCHEMA_VERSION}: update the profile (see profiles/host.toml) or maestro-edge")
        threads = need("threads", validate.integer, 1, validate.MAX_THREADS)
        name = need("name", validate.text)
        if not NAME_PATTERN.fullmatch(name):
            raise ProfileError(f"device profile {source}: name {validate.show(name)} must be letters, digits, '.', "
                               "'_' or '-' (it names folders and cache files); rename it")
        for table in ("hardware", "estimate", "provenance"):
            if not isinstance(data.get(table, {}), dict):
                raise ProfileError(f"device profile {source}: [{table}] must be a table; fix the profile")
        return cls(
            name=name,
            description=checked(source, "", validate.text, data.get("description", ""), "description"),
            runtime=need("runtime", validate.text, tuple(RUNTIMES)),
            threads=threads,
            precision=need("precision", validate.text, ("fp32",)),
            transport=need("transport", validate.text, transport_names()),   # devices/transports: registered
            latency_source=need("latency_source", validate.text, LATENCY_SOURCES),
            hardware=_hardware(data.get("hardware", {}), source),
            estimate=_figures(data.get("estimate", {}), "estimate", source),
            provenance=dict(data.get("provenance", {})),
            target=_target(data.get("target", {}), source),
            path=source,
        )


def checked(source: str, where: str, check, value, key: str, *args, **kwargs):
    """``check(value, key, ...)`` (a maestro_edge.validate check), its FieldError as a ProfileError naming
    the profile file and ``where`` ("[estimate] ", "[[hardware.cores]] entry 2 ('X1'): ") the key is."""
    try:
        return check(value, key, *args, **kwargs)
    except validate.FieldError as e:
        raise ProfileError(f"device profile {source}: {where}{e}; fix the profile") from None


def _nonempty(value, key: str) -> str:
    if not validate.text(value, key).strip():
        raise validate.FieldError(f"'{key}' must be a non-empty string, got {validate.show(value)}")
    return value


def _positive(high: float):
    """A check of a finite number in (0, high]: the bounds only catch typos and unit slips (MHz for GHz,
    FLOP/s for FLOP/cycle, a NaN); the source line is what makes a value right."""
    return partial(validate.number, low=0.0, low_open=True, high=high)


# The [hardware] and [estimate] figures the estimator reads. They are checked at load, so a NaN, an infinity
# or a string is refused naming the file and key, not found later as a NaN latency. A user's own keys beside
# them are kept as they are.
FIGURES = {
    "hardware": {"peak_gflops": _positive(1e6), "peak_cores": _positive(4096), "memory_gbs": _positive(1e4),
                 "memory_gbs_sustained": _positive(1e4), "last_level_cache_kib": _positive(1 << 24)},
    "estimate": {"reference_fraction_of_peak": _positive(1.0), "per_op_overhead_ms": _positive(1e3),
                 "gemm_mr": _positive(64), "model_overhead_ms": partial(validate.number, low=0.0, high=1e5)},
}   # model_overhead_ms may be 0: no fixed cost


def _figures(table: dict, name: str, source: str) -> dict:
    """``table`` ([hardware] or [estimate]) with its known figures checked."""
    for key, check in FIGURES[name].items():
        if key in table:
            checked(source, f"[{name}] ", check, table[key], key)
    return dict(table)


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# [[hardware.cores]]: key -> its check.
CORE_KEYS = {
    "type": _nonempty,
    "count": partial(validate.integer, low=1, high=256),
    "clock_ghz": _positive(6.0),
    "fp32_flop_per_cycle": _positive(256.0),
    "used": validate.flag,
    "source": _nonempty,
}
CORE_OPTIONAL = {"note": validate.text}
DERIVED_KEYS = ("peak_gflops", "peak_cores")


def derive_peak(cores: list[dict]) -> dict:
    """``peak_gflops`` and ``peak_cores`` of the used cores of a checked per-core table."""
    used = [c for c in cores if c["used"]]
    return {"peak_gflops": round(sum(c["count"] * c["clock_ghz"] * c["fp32_flop_per_cycle"] for c in used), 6),
            "peak_cores": sum(c["count"] for c in used)}


def _core(entry, index: int, source: str) -> dict:
    named = isinstance(entry, dict) and isinstance(entry.get("type"), str) and entry["type"]
    kind = f" ({validate.show(entry['type'])})" if named else ""   # repr: a newline in the name stays on one line
    where = f"[[hardware.cores]] entry {index + 1}{kind}"
    if not isinstance(entry, dict):
        raise ProfileError(f"device profile {source}: {where} must be a table (type, count, clock_ghz, "
                           "fp32_flop_per_cycle, used, source); fix the profile")
    unknown = sorted(set(entry) - set(CORE_KEYS) - set(CORE_OPTIONAL))
    if unknown:
        raise ProfileError(f"device profile {source}: {where} has unknown key {validate.show(unknown[0])}; "
                           f"allowed: {', '.join([*CORE_KEYS, *CORE_OPTIONAL])}")
    core = {}
    for key, check in CORE_KEYS.items():
        if key not in entry:
            raise ProfileError(f"device profile {source}: {where} lacks '{key}'; add it (see profiles/pixel7.toml)")
        core[key] = checked(source, f"{where}: ", check, entry[key], key)
    for key, check in CORE_OPTIONAL.items():
        if key in entry:
            core[key] = checked(source, f"{where}: ", check, entry[key], key)
    return core


def _hardware(table: dict, source: str) -> dict:
    """[hardware] with ``peak_gflops`` / ``peak_cores`` derived from its per-core table, where it has one."""
    hardware = _figures(table, "hardware", source)
    cores = hardware.get("cores")
    if cores is None or isinstance(cores, str):   # no table (a summary string is only a description)
        return hardware
    if not isinstance(cores, list) or not cores:
        raise ProfileError(f"device profile {source}: [hardware] cores must be one or more [[hardware.cores]] "
                           f"tables, got {validate.show(cores)}; fix the profile (see profiles/pixel7.toml)")
    stated = [key for key in DERIVED_KEYS if key in hardware]
    if stated:
        raise ProfileError(f"device profile {source}: [hardware] {stated[0]} is derived from [[hardware.cores]]; "
                           "remove it (the per-core table is the one source of truth)")
    rows = [_core(entry, i, source) for i, entry in enumerate(cores)]
    if not any(c["used"] for c in rows):
        raise ProfileError(f"device profile {source}: no [[hardware.cores]] entry has used = true; mark the cores "
                           "the profile's threads run on")
    hardware["cores"] = rows
    hardware.update(derive_peak(rows))
    return hardware


TARGET_KEYS = {"port": partial(validate.integer, low=1, high=65535)}   # every other [target] value is a string


def _target(table, source: str) -> dict:
    if not isinstance(table, dict):
        raise ProfileError(f"device profile {source}: [target] must be a table; fix the profile")
    known = list(dict.fromkeys(key for name in transport_names() for key in transport_kind(name).options))
    for key, value in table.items():
        if key not in known:   # the value is not echoed: it may be a secret someone put in the wrong place
            raise ProfileError(f"device profile {source}: [target] has unknown key {validate.show(key)}; remove it "
                               f"(allowed: {', '.join(known)})")
        checked(source, "[target] ", TARGET_KEYS.get(key, validate.text), value, key)
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
