"""A transport registered from outside the package: nothing in maestro_edge/ knows it, yet a profile names it
and ``profile`` and ``fit`` measure through it like through a built-in one.

The new transport is this machine under another name ("loopback"); it takes a ``python`` key, so the
agent times probes through it (latency/runtimes.py) with no runtime registration of its own.
"""

from __future__ import annotations

import json
import sys

import pytest

from maestro_edge.cli import main
from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.devices.transports import LocalTransport, register_transport
from maestro_edge.errors import UsageError
from maestro_edge.latency.measure import QUICK, Protocol
from maestro_edge.latency.remote import RemoteTimer
from maestro_edge.latency.table import LatencyTable, cached_table_path
from maestro_edge.latency.target import Target, reachability
from maestro_edge.lod.checkpoint import LoDCheckpoint

RUNS: list[list[str]] = []   # every command the loopback transport ran


class Loopback(LocalTransport):
    """This machine, reached under a name of its own; it logs what it runs."""

    name = "loopback"

    def run(self, argv, timeout_s):
        RUNS.append([str(a) for a in argv])
        return super().run(argv, timeout_s)


register_transport("loopback", lambda options: Loopback(), options=("python",))

PROFILE_TOML = """\
schema_version = 1
name = "loop"
description = "this machine through a transport registered by the test"
runtime = "onnxruntime"
threads = 1
precision = "fp32"
transport = "loopback"
latency_source = "measured"
"""


@pytest.fixture
def profile_toml(tmp_path):
    path = tmp_path / "loop.toml"
    path.write_text(PROFILE_TOML)
    return path


def test_a_profile_may_name_the_new_transport_and_its_keys(profile_toml):
    profile = DeviceProfile.load(profile_toml)
    assert profile.transport == "loopback"
    target = Target.resolve(profile, python=sys.executable)
    assert target.measurable and target.options == {"python": sys.executable}
    with pytest.raises(UsageError, match="--host: only for ssh devices; loop is reached over loopback"):
        Target.resolve(profile, host="pi@raspberrypi.local")
    assert reachability(profile).startswith("reachable: ")


@pytest.mark.slow
def test_profile_and_fit_through_the_new_transport(profile_toml, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    import maestro_edge.fit as fit_module

    ckpt = LoDCheckpoint.load(tiny_checkpoint)
    profile = DeviceProfile.load(profile_toml)
    RUNS.clear()
    with Target.resolve(profile).timer() as timer:
        assert isinstance(timer, RemoteTimer) and timer.transport.name == "loopback"
    # profile: into the cache, where fit finds it (a quick protocol: this is about the path, not the numbers)
    path = cached_table_path(profile, ckpt.latency_digest())
    table = Target.resolve(profile).measure_table(ckpt, QUICK, path)
    assert LatencyTable.load(path).layers == table.layers
    assert table.source == "measured" and table.provenance["transport"] == "loopback"
    assert table.provenance["python"] == sys.executable and table.provenance["fingerprint"]["runtime"] == "onnxruntime"
    profiled = sum("--manifest" in argv for argv in RUNS)
    assert profiled >= 2, "the layers and the calibration were timed through the loopback transport"

    # fit, from the command line: the cached table, anchored and its export timed through the same transport
    monkeypatch.setattr(fit_module, "Protocol", lambda threads: Protocol(threads=threads, warmup=1, rounds=3, calls=5))
    budget = 3 * table.full_model_ms   # generous: this is about the path, not about a tight fit
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--device", str(profile_toml), "--ms", f"{budget:.6g}", "--model", str(tiny_checkpoint),
              "--out", str(tmp_path / "fit"), "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    record = json.loads(out)
    assert record == json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert record["device"] == "loop" and record["latency_source"] == "measured" and record["runtime"] == "onnxruntime"
    assert record["measured_ms"] is not None
    assert sum("--manifest" in argv for argv in RUNS) > profiled, "the export was timed through it"
