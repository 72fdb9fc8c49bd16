"""Device profiles: one TOML file per device in ``profiles/``.

A profile says what the device is (hardware), how models run there (runtime, threads, precision),
how to reach it (transport) and whether its latencies are measured or estimated, with provenance.
"""

from __future__ import annotations

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
            hardware=dict(data.get("hardware", {})),
            estimate=dict(data.get("estimate", {})),
            provenance=dict(data.get("provenance", {})),
            target=_target(data.get("target", {}), source),
            path=source,
        )


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
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
