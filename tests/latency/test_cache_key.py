"""Cached tables are keyed by what decides them (profile content and model), not by the device's name alone;
a cache folder that cannot hold them is a one-line error."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from maestro_edge.devices.profile import DeviceProfile, find_profile
from maestro_edge.errors import UsageError
from maestro_edge.fit import latency_table_for
from maestro_edge.latency.profile import estimated_table
from maestro_edge.latency.table import cache_dir, cached_table_path, check_table_folder
from maestro_edge.lod.checkpoint import LoDCheckpoint

DIGITS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "digits.lod.pt"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MAESTRO_EDGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def copy_of(name: str, folder: Path, **changes) -> DeviceProfile:
    """profiles/<name>.toml copied to ``folder`` (its name kept), with top-level keys changed."""
    text = Path(find_profile(name).path).read_text()
    for key, value in changes.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.MULTILINE)
        assert n == 1, key
    path = folder / f"copy-of-{name}.toml"
    path.write_text(text)
    return DeviceProfile.load(path)


def test_a_copied_host_profile_with_other_threads_has_its_own_table(cache, tmp_path):
    host = find_profile("host")
    copy = copy_of("host", tmp_path, threads=4)
    assert copy.name == "host"
    assert cached_table_path(copy, "d1") != cached_table_path(host, "d1")
    assert cached_table_path(copy, "d1").name.startswith("host-")          # still named for people
    # what does not change latencies does not change the key; what does, does
    reworded = copy_of("host", tmp_path, description='"my laptop"')
    assert cached_table_path(reworded, "d1") == cached_table_path(host, "d1")
    for change in (dict(runtime='"onnxruntime"'), dict(transport='"ssh"')):
        assert cached_table_path(copy_of("host", tmp_path, **change), "d1") != cached_table_path(host, "d1")
    other_hardware = dataclasses.replace(host, hardware={"soc": "another machine"})
    assert cached_table_path(other_hardware, "d1") != cached_table_path(host, "d1")
    assert cached_table_path(host, "d2") != cached_table_path(host, "d1")


def test_fit_does_not_read_another_devices_table_through_a_shared_name(cache, tmp_path):
    ckpt = LoDCheckpoint.load(DIGITS)
    pixel7 = find_profile("pixel7")
    measured = estimated_table(ckpt, pixel7)
    measured.source, measured.provenance = "measured", {"measured_at": "on the real phone"}
    path = cached_table_path(pixel7, ckpt.latency_digest())
    path.parent.mkdir(parents=True)
    measured.save(path)
    assert latency_table_for(ckpt, pixel7).source == "measured"            # the phone's own table is read

    copy = copy_of("pixel7", tmp_path, threads=1)                           # a copy that kept name = "pixel7"
    table = latency_table_for(ckpt, copy)
    assert table.source == "estimated" and table.threads == 1


def test_a_cache_that_cannot_hold_tables_is_a_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "with_file" ).mkdir()
    (tmp_path / "with_file" / "latency").write_text("x")
    for value, fragment in [("afile", "is a file"), ("afile/sub", "which is a file"),
                            ("dangling", "does not exist"), ("x" * 300, "too long"),
                            ("with_file", "latency")]:
        monkeypatch.setenv("MAESTRO_EDGE_CACHE", str(tmp_path / value))
        with pytest.raises(UsageError) as e:
            cache_dir()
        message = str(e.value)
        assert fragment in message and "MAESTRO_EDGE_CACHE" in message and "\n" not in message, message
    monkeypatch.setenv("MAESTRO_EDGE_CACHE", str(tmp_path / "new" / "cache"))
    assert cache_dir() == tmp_path / "new" / "cache" and not (tmp_path / "new").exists()   # read-only use makes nothing
    with pytest.raises(UsageError, match="cannot write"):
        check_table_folder(Path("/proc/maestro-edge-cache/latency"))
