"""Per-core peak tables (issue 15 item 1): every estimated profile derives its peak from [[hardware.cores]].

The recomputation here reads the TOML itself, not the loader's result, so a loader bug cannot hide a wrong peak.
"""

from __future__ import annotations

import copy
import math
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maestro_edge.devices.profile import DeviceProfile, find_profile, list_profiles, profiles_dir
from maestro_edge.errors import ProfileError
from maestro_edge.latency.estimate import estimate_ops_ms
from maestro_edge.latency.reference_nets import mobilenet_v2

PROFILES = sorted(profiles_dir().glob("*.toml"))
ESTIMATED = [p for p in PROFILES if tomllib.loads(p.read_text())["latency_source"] == "estimated"]


def raw(path) -> dict:
    return tomllib.loads(path.read_text())


def recomputed(data: dict) -> tuple[float, int]:
    used = [c for c in data["hardware"]["cores"] if c["used"]]
    return sum(c["count"] * c["clock_ghz"] * c["fp32_flop_per_cycle"] for c in used), sum(c["count"] for c in used)


@pytest.mark.parametrize("path", ESTIMATED, ids=lambda p: p.stem)
def test_estimated_profile_peak_is_recomputed_from_its_table(path):
    data = raw(path)
    assert isinstance(data["hardware"].get("cores"), list), f"{path.name} has no [[hardware.cores]] table"
    assert "peak_gflops" not in data["hardware"] and "peak_cores" not in data["hardware"], "derived, not stated"
    for core in data["hardware"]["cores"]:
        assert core["source"].strip(), core
    peak, cores = recomputed(data)
    profile = DeviceProfile.load(path)
    assert profile.hardware["peak_gflops"] == pytest.approx(peak, rel=1e-9)
    assert profile.hardware["peak_cores"] == cores
    # the used cores are the ones the profile's threads land on: the fastest `threads` cores of the table
    assert profile.with_threads(profile.threads).hardware["peak_gflops"] == pytest.approx(peak, rel=1e-9)
    assert cores == profile.threads


@pytest.mark.parametrize("device, peak", [
    ("pixel7", 257.6),       # 2x32x2.85 (X1) + 2x16x2.35 (A78); was 515.2, which counted each pair twice
    ("pixel4", 161.6),       # 1x16x2.84 + 3x16x2.42: the peak google/XNNPACK#1905's 0.71 level is relative to
    ("rpi4", 48.0),          # 4x8x1.5
    ("rpi4-1.8ghz", 57.6),   # 4x8x1.8
    ("rpi5", 153.6),         # 4x16x2.4
])
def test_known_peaks(device, peak):
    assert find_profile(device).hardware["peak_gflops"] == pytest.approx(peak)


def test_threads_fill_the_fastest_cores_first():
    pixel7 = find_profile("pixel7")
    one = pixel7.with_threads(1)
    assert one.threads == 1 and one.hardware["peak_cores"] == 1
    assert one.hardware["peak_gflops"] == pytest.approx(32 * 2.85)            # one X1, not an average big core
    assert pixel7.with_threads(3).hardware["peak_gflops"] == pytest.approx(2 * 32 * 2.85 + 16 * 2.35)
    assert pixel7.with_threads(8).hardware["peak_gflops"] == pytest.approx(257.6 + 4 * 8 * 1.8)
    assert pixel7.with_threads(16).hardware["peak_cores"] == 8                 # no more cores than the SoC has
    assert pixel7.hardware["peak_gflops"] == pytest.approx(257.6)             # the original is untouched
    host = find_profile("host")
    assert host.with_threads(3).threads == 3 and host.with_threads(3).hardware == host.hardware
    with pytest.raises(ValueError):
        pixel7.with_threads(0)


def test_more_threads_never_slower_on_heterogeneous_phones():
    for name in ("pixel7", "pixel4", "sd8gen2"):
        profile = find_profile(name)
        times = [estimate_ops_ms(mobilenet_v2(), profile.with_threads(t)) for t in range(1, 9)]
        assert all(b <= a for a, b in zip(times, times[1:])), (name, times)


def test_every_shipped_profile_loads():
    names = {p.name for p in list_profiles()}
    assert {"pixel7", "rpi4", "rpi5", "sd8gen2", "orin-nano"} <= names


# -- malformed tables ---------------------------------------------------------------------------------

GOOD = raw(profiles_dir() / "pixel7.toml")


def variant(change) -> dict:
    data = copy.deepcopy(GOOD)
    change(data)
    return data


def set_core(key, value, index=0):
    def change(data):
        data["hardware"]["cores"][index][key] = value
    return change


def drop_core_key(key):
    def change(data):
        del data["hardware"]["cores"][0][key]
    return change


def assert_one_line_error(data, *words, source="bad/pixel7-variant.toml"):
    with pytest.raises(ProfileError) as info:
        DeviceProfile.from_dict(data, source=source)
    message = str(info.value)
    assert "\n" not in message and source in message, message
    for word in words:
        assert word in message, (word, message)
    return message


@pytest.mark.parametrize("key, value", [
    ("clock_ghz", "2.85"), ("clock_ghz", math.nan), ("clock_ghz", math.inf), ("clock_ghz", -2.85), ("clock_ghz", 0),
    ("clock_ghz", 2850), ("clock_ghz", True), ("clock_ghz", [2.85]),
    ("fp32_flop_per_cycle", "32"), ("fp32_flop_per_cycle", math.nan), ("fp32_flop_per_cycle", -math.inf),
    ("fp32_flop_per_cycle", 0), ("fp32_flop_per_cycle", 1e6),
    ("count", 2.0), ("count", "2"), ("count", 0), ("count", -1), ("count", 10**6), ("count", True),
    ("used", "yes"), ("used", 1),
    ("type", ""), ("type", 5), ("source", "   "), ("source", None),
])
def test_bad_core_value_is_a_one_line_error_naming_file_and_key(key, value):
    if value is None:
        data = variant(drop_core_key(key))
    else:
        data = variant(set_core(key, value))
    assert_one_line_error(data, key)


@given(key=st.sampled_from(["clock_ghz", "fp32_flop_per_cycle", "count"]),
       value=st.one_of(st.text(max_size=8), st.floats(allow_nan=True, allow_infinity=True).filter(
           lambda x: not (0 < x <= 6)), st.integers(max_value=0), st.booleans(), st.none()))
@settings(max_examples=150, deadline=None)
def test_any_bad_number_is_refused(key, value):
    data = variant(set_core(key, value))
    if key == "fp32_flop_per_cycle" and isinstance(value, float) and 0 < value <= 256:
        return   # a plausible FLOP/cycle (e.g. 7.5) is legal there
    assert_one_line_error(data, key)


def test_missing_key_unknown_key_and_wrong_shapes():
    assert_one_line_error(variant(drop_core_key("clock_ghz")), "clock_ghz", "lacks")
    assert_one_line_error(variant(set_core("clock_mhz", 2850)), "clock_mhz", "unknown")
    assert_one_line_error(variant(lambda d: d["hardware"].__setitem__("cores", [])), "cores")
    assert_one_line_error(variant(lambda d: d["hardware"].__setitem__("cores", [5])), "entry 1")
    assert_one_line_error(variant(lambda d: d["hardware"].__setitem__("cores", {"type": "X1"})), "cores")


def test_stated_peak_beside_a_table_is_refused():
    assert_one_line_error(variant(lambda d: d["hardware"].__setitem__("peak_gflops", 515.2)), "peak_gflops", "derived")
    assert_one_line_error(variant(lambda d: d["hardware"].__setitem__("peak_cores", 4)), "peak_cores", "derived")


def test_a_table_with_no_used_core_is_refused():
    def none_used(data):
        for core in data["hardware"]["cores"]:
            core["used"] = False
    assert_one_line_error(variant(none_used), "used")


def test_bad_table_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "odd.toml"
    path.write_text((profiles_dir() / "pixel7.toml").read_text().replace("clock_ghz = 2.85", "clock_ghz = nan", 1))
    with pytest.raises(ProfileError) as info:
        DeviceProfile.load(path)
    assert "odd.toml" in str(info.value) and "clock_ghz" in str(info.value) and "\n" not in str(info.value)


def test_profile_without_a_table_keeps_its_stated_peak():
    # a user's own profile in the old form (bare figures, a summary string) still loads and estimates
    data = copy.deepcopy(GOOD)
    data["hardware"] = {"soc": "custom", "cores": "4x Cortex-A72 @ 1.5 GHz", "peak_gflops": 48.0, "peak_cores": 4,
                        "memory_gbs": 12.8}
    profile = DeviceProfile.from_dict(data, source="legacy.toml")
    assert profile.hardware["peak_gflops"] == 48.0
    assert estimate_ops_ms(mobilenet_v2(), profile) > 0


def test_a_core_type_with_a_newline_still_gives_one_line():
    data = variant(set_core("type", "Cortex-X1\nsecond line"))
    data["hardware"]["cores"][0]["count"] = 0
    assert_one_line_error(data, "count", "entry 1")
