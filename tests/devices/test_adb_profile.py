"""Profiling an Android phone over adb with an ExecuTorch runner, against TEST DOUBLES only.

The "phone" is tests/doubles/fake_adb (a folder plays its filesystem) and the "runner" is
tests/doubles/fake_executor_runner (the real runner's flags; runs the .pte with this machine's
ExecuTorch bindings and writes a real ETDump). The model is a two-layer LoD net with one rank per
layer, and the protocol is tiny: each runner run starts a Python with torch (~1 s), so every run
counts. No phone is involved anywhere here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from maestro_edge.cli import main
from maestro_edge.devices.profile import find_profile
from maestro_edge.devices.transports import AdbTransport
from maestro_edge.errors import TransportError, UsageError
from maestro_edge.latency.journal import journal_path
from maestro_edge.latency.measure import Protocol
from maestro_edge.latency.probes import DENSE, layer_options
from maestro_edge.latency.table import LatencyTable
from maestro_edge.latency.target import Target, measure_remote_table
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.factorize import FactorizeConfig, factorize_
from maestro_edge.lod.layers import lod_layers
from maestro_edge.models import build_model

from .conftest import DOUBLES

PIXEL7 = find_profile("pixel7")          # adb, executorch-xnnpack, 4 threads
TINY = Protocol(threads=4, warmup=1, rounds=2, calls=3)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> LoDCheckpoint:
    """small_cnn with only its two Linears as LoD layers, each at rank 1: options {1, dense} per layer."""
    torch.manual_seed(0)
    arch = {"name": "small_cnn", "in_channels": 1, "num_classes": 10, "kwargs": {"widths": [4, 4], "hidden": 8}}
    model = build_model(arch["name"], 1, 10, **arch["kwargs"])
    factorize_(model, FactorizeConfig(overrides={r"re:features\..*": "skip"}))
    for layer in lod_layers(model).values():
        layer.active_rank = 1
    ckpt = LoDCheckpoint(model=model.eval(), arch=arch, data={"name": "digits", "input_shape": [1, 1, 8, 8]})
    path = tmp_path_factory.mktemp("ckpt") / "two-layers.lod.pt"
    ckpt.save(path)
    return LoDCheckpoint.load(path)


@pytest.fixture
def runner(tmp_path, monkeypatch) -> Path:
    """What the user would pass as --runner: here a script that runs the fake runner with this python."""
    path = tmp_path / "build" / "executor_runner"
    path.parent.mkdir()
    path.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{DOUBLES / 'fake_executor_runner'}' \"$@\"\n")
    path.chmod(0o755)
    monkeypatch.setenv("FAKE_RUNNER_LOG", str(tmp_path / "runner-runs.jsonl"))
    for var in ("FAKE_RUNNER_FAIL_AFTER", "FAKE_RUNNER_NO_EVENT_TRACER"):
        monkeypatch.delenv(var, raising=False)
    return path


def runner_runs(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "runner-runs.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(f"--{name}") + 1]


def device_root() -> Path:
    return Path(os.environ["FAKE_ADB_ROOT"])


def probes_per_round(ckpt) -> int:
    return sum(len(layer_options(layer)) + 1 for layer in lod_layers(ckpt.model).values())   # +1: call probe


# ------------------------------------------------- a profile, unplugged half-way, resumed to the end


def test_profile_over_adb_survives_an_unplug_and_resumes_into_a_complete_table(ckpt, fake_adb, runner, tmp_path,
                                                                               monkeypatch):
    """One test for both (each runner run costs ~1 s here): the phone is unplugged when the second layer
    starts; the rerun measures only what is missing and writes a complete, measured table."""
    path, names = tmp_path / "tables" / "pixel7.json", list(lod_layers(ckpt.model))

    def unplug_at_the_second_layer(what, done, total):
        if done == 1:
            monkeypatch.setenv("FAKE_ADB_STATE", "none")

    with AdbTransport(adb=str(fake_adb)) as t, pytest.raises(TransportError) as error:
        measure_remote_table(ckpt, PIXEL7, t, TINY, path, progress=unplug_at_the_second_layer, runner=runner)
    message = str(error.value)
    assert "\n" not in message and "no Android device found" in message and "run the profile again" in message
    assert not path.exists()
    records = [json.loads(line) for line in journal_path(path).read_text().splitlines()]
    assert [r["layer"] for r in records] == names[:1]
    first_runs = len(runner_runs(tmp_path))
    assert first_runs == 1 + TINY.rounds * (len(layer_options(lod_layers(ckpt.model)[names[0]])) + 1)

    monkeypatch.setenv("FAKE_ADB_STATE", "device")                      # plugged in again
    messages = []
    with AdbTransport(adb=str(fake_adb)) as t:
        table = measure_remote_table(ckpt, PIXEL7, t, TINY, path, progress=lambda *a: messages.append(a[0]),
                                     runner=runner)

    # Resumed: the first layer is the journal's, untouched; only the rest ran on the "phone".
    runs = runner_runs(tmp_path)[first_runs:]
    second_layer = len(layer_options(lod_layers(ckpt.model)[names[1]])) + 1          # + the call probe
    from maestro_edge.latency.calibration import calibration_plans

    beside = {(n, c) for plan in calibration_plans(ckpt, table).values() for n, c in plan.items()}
    calibration = 3 + len(beside) + 1     # whole models, the layer probes they are made of, the call probe
    assert len(runs) == 1 + TINY.rounds * (second_layer + calibration), "pre-flight, second layer, calibration"
    assert sum("measured before (journal)" in m for m in messages) == 1 and messages[-1] == "done"
    kept = records[0]["timings"]
    assert table.layers[names[0]].dense_ms == kept[DENSE]["p50_ms"]
    assert {str(r): ms for r, ms in table.layers[names[0]].rank_ms.items()} == \
        {c: t["p50_ms"] for c, t in kept.items() if c not in (DENSE, "call")}

    # A complete, measured table with the phone's provenance.
    assert LatencyTable.load(path).layers == table.layers and not journal_path(path).exists()
    assert table.source == "measured" and table.runtime == "executorch-xnnpack" and table.threads == 4
    for name, layer in lod_layers(ckpt.model).items():
        assert sorted(table.layers[name].rank_ms) == [c for c in layer_options(layer) if c != DENSE]
    assert table.full_model_ms > 0 and all(c["measured_ms"] > 0 for c in table.provenance["calibration"])
    prov, fp = table.provenance, table.provenance["fingerprint"]
    sha = hashlib.sha256(runner.read_bytes()).hexdigest()
    assert prov["transport"] == "adb" and prov["target"] == "FAKE0001" and prov["runner_sha256"] == sha
    assert fp["model"] == "Fake Phone" and fp["serialno"] == "FAKE0001" and fp["soc"] == "FAKESOC1"
    assert fp["runner_sha256"] == sha and fp["threads"] == 4 and fp["abi"] == "arm64-v8a"
    assert prov["threads_confirmed_by_runner_log"] is True and prov["protocol"] == TINY.to_dict()
    assert "ETDump" in prov["timing_source"]

    # How the runner was run: the profile's threads, warm-up + calls per run, interleaved rounds.
    assert all(flag(r, "cpu_threads") == "4" for r in runs)
    assert all(flag(r, "num_executions") == str(TINY.warmup + TINY.calls) for r in runs[1:])
    batches: dict[str, list[tuple[int, str]]] = {}
    for r in runs[1:]:
        folder, file = flag(r, "etdump_path").split("/")[-2:]
        batches.setdefault(folder, []).append((int(file.rsplit("-r", 1)[1].split(".")[0]), flag(r, "model_path")))
    assert len(batches) == 2
    for visits in batches.values():   # every probe once per round, and round 0 done before round 1 starts
        assert [rnd for rnd, _ in visits] == sorted(rnd for rnd, _ in visits)
        per_round = [sorted(m for rnd, m in visits if rnd == k) for k in range(TINY.rounds)]
        assert all(p == per_round[0] for p in per_round) and len(set(per_round[0])) == len(per_round[0])
    workdir = device_root() / "data/local/tmp/maestro-edge"
    left = sorted(p.name for p in workdir.iterdir())
    assert len(left) == 1 and left[0].startswith("run-"), "only the unplugged run's folder stays behind"


# ------------------------------------------------------------------------------- runner failures


def test_runner_failing_on_the_phone_names_the_probe(ckpt, fake_adb, runner, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNNER_FAIL_AFTER", "2")                  # pre-flight and one probe run fine
    path = tmp_path / "pixel7.json"
    with AdbTransport(adb=str(fake_adb)) as t, pytest.raises(TransportError) as error:
        measure_remote_table(ckpt, PIXEL7, t, TINY, path, runner=runner)
    message = str(error.value)
    assert "\n" not in message and "while timing probe '" in message and "exit code 134" in message, message
    assert "Execution of method forward failed" in message and "FAKE0001" in message
    assert not path.exists(), "no table from a failed profile"
    assert not journal_path(path).exists() or journal_path(path).read_text() == "", "no layer was finished"
    assert list((device_root() / "data/local/tmp/maestro-edge").iterdir()) == []


def test_runner_without_the_event_tracer_is_refused_before_measuring(ckpt, fake_adb, runner, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNNER_NO_EVENT_TRACER", "1")
    with AdbTransport(adb=str(fake_adb)) as t, pytest.raises(TransportError) as error:
        measure_remote_table(ckpt, PIXEL7, t, TINY, tmp_path / "t.json", runner=runner)
    message = str(error.value)
    assert "\n" not in message and "pre-flight" in message and "-DEXECUTORCH_ENABLE_EVENT_TRACER=ON" in message
    assert "run the profile again" not in message, "nothing was measured: nothing to resume"
    assert runner_runs(tmp_path) == [], "gflags refused the flag before the runner did anything"


def test_runner_that_cannot_start_on_the_phone(ckpt, fake_adb, tmp_path):
    not_for_this_phone = tmp_path / "executor_runner"
    not_for_this_phone.write_bytes(b"\x7fELF\x01\x01garbage")          # e.g. built for the wrong ABI
    with AdbTransport(adb=str(fake_adb)) as t, pytest.raises(TransportError) as error:
        measure_remote_table(ckpt, PIXEL7, t, TINY, tmp_path / "t.json", runner=not_for_this_phone)
    assert "cannot be started" in str(error.value) and "arm64-v8a" in str(error.value)


# ------------------------------------------------------------------------ missing runner, no phone


def test_a_runner_is_required_and_must_exist(ckpt, tmp_path):
    def measure(profile, **flags):
        return Target.resolve(profile, **flags).measure_table(ckpt, table_path=tmp_path / "t.json")

    with pytest.raises(UsageError) as error:
        measure(PIXEL7, serial="FAKE0001")
    assert "pixel7" in str(error.value) and "--runner" in str(error.value) and "docs/adb.md" in str(error.value)
    for bad, words in [(tmp_path / "nope", "does not exist"), (tmp_path, "is a folder")]:
        with pytest.raises(UsageError, match=words):
            measure(PIXEL7, runner=bad)
    with pytest.raises(UsageError, match="--runner: only for adb devices"):
        measure(find_profile("host"), runner=tmp_path / "x")
    with pytest.raises(UsageError, match="--python: a phone has no python"):
        measure(PIXEL7, runner=tmp_path / "x", python="python3")


@pytest.fixture
def adb_on_path(fake_adb, tmp_path, monkeypatch) -> None:
    """`adb` on PATH is the fake: the CLI runs it as a user's would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "adb").symlink_to(fake_adb)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def cli(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("  ")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, err
    return exit_info.value.code, lines[0]


def test_cli_profile_without_runner_says_what_to_build(capsys, adb_on_path, ckpt, tmp_path):
    model = tmp_path / "m.lod.pt"
    ckpt.save(model)
    code, line = cli(capsys, "profile", "--device", "pixel7", "--model", str(model))
    assert code == 2 and "--runner" in line and "docs/adb.md" in line and "event tracer" in line
    code, line = cli(capsys, "profile", "--device", "pixel7", "--model", str(model), "--runner", str(tmp_path / "no"))
    assert code == 2 and "does not exist" in line
    code, line = cli(capsys, "fit", "--device", "host", "--ms", "1", "--runner", str(tmp_path / "r"),
                     "--out", str(tmp_path / "o"))
    assert code == 2 and "--runner: only for adb devices; host is reached over local" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("state, words", [("none", "no Android device found"),
                                          ("unauthorized", "accept the USB debugging prompt")])
def test_cli_profile_without_a_usable_phone(capsys, adb_on_path, runner, ckpt, tmp_path, monkeypatch, state, words):
    monkeypatch.setenv("FAKE_ADB_STATE", state)
    model = tmp_path / "m.lod.pt"
    ckpt.save(model)
    code, line = cli(capsys, "profile", "--device", "pixel7", "--runner", str(runner), "--model", str(model))
    assert code == 1 and words in line and "run the profile again" not in line
    assert runner_runs(tmp_path) == []


def test_fit_measures_on_the_phone_when_a_runner_is_given(tmp_path, fake_adb):
    """fit's closed loop: an adb device with a runner gets a RunnerTimer (lazy: nothing runs until used)."""
    from maestro_edge.latency.android import RunnerTimer

    runner = tmp_path / "executor_runner"
    runner.write_text("#!/bin/sh\n")
    with Target.resolve(PIXEL7, runner=str(runner), serial="FAKE0001").timer_if_measurable() as timer:
        assert isinstance(timer, RunnerTimer) and timer.threads == 4 and timer.transport.serial == "FAKE0001"
    with Target.resolve(PIXEL7).timer_if_measurable() as timer:
        assert timer is None, "no runner: fit uses the table's prediction only"
    with pytest.raises(UsageError, match="--runner"):
        with Target.resolve(PIXEL7, serial="FAKE0001").timer_if_measurable():
            pass


def test_warm_up_executions_are_dropped_and_each_round_keeps_its_median(tmp_path, monkeypatch):
    """Every runner run is a fresh process: its first executions are cold and must not count."""
    from maestro_edge.latency.android import RunnerTimer, runner_timeout_s

    binary = tmp_path / "executor_runner"
    binary.write_bytes(b"\x7fELF")
    timer, runs = RunnerTimer(AdbTransport(serial="X1", adb="/nonexistent/adb"), binary, 4), []

    def execute(what, pte, etdump, executions, bound_ms, tmp):
        runs.append((pte, etdump, executions))
        return [50.0, 40.0] + [1.0 + len(runs), 3.0 + len(runs), 2.0 + len(runs)]   # 2 cold, then 3 timed

    monkeypatch.setattr(timer, "_execute", execute)
    probes = {"a": ("/d/b1/p0.pte", 1.0), "b": ("/d/b1/p1.pte", 1.0)}
    medians = timer._rounds(tmp_path, probes, Protocol(warmup=2, rounds=3, calls=3))
    assert all(e == 5 for _, _, e in runs) and len(runs) == 6
    assert sorted(medians["a"] + medians["b"]) == [2.0 + k for k in range(1, 7)]   # the middle of 3 timed ones
    assert len({etdump for _, etdump, _ in runs}) == 6, "an ETDump per probe and round: none read twice"
    assert runner_timeout_s(25, 2.0) < runner_timeout_s(25, 200.0) < runner_timeout_s(250, 200.0)


def test_a_hung_runner_is_stopped_on_the_phone(ckpt, fake_adb, tmp_path, monkeypatch):
    import maestro_edge.latency.android as android

    hung = tmp_path / "executor_runner"
    hung.write_text("#!/bin/sh\nexec sleep 987\n")                     # never finishes
    hung.chmod(0o755)
    monkeypatch.setattr(android, "RUNNER_START_S", 1.0)
    with AdbTransport(adb=str(fake_adb)) as t, pytest.raises(TransportError) as error:
        measure_remote_table(ckpt, PIXEL7, t, TINY, tmp_path / "t.json", runner=hung)
    assert "did not finish within 2 s" in str(error.value) and "was stopped" in str(error.value)
    left = [c for c in Path("/proc").glob("[0-9]*/cmdline") if _read(c) == b"sleep\x00987\x00"]
    assert not left, "the phone-side timeout must kill the runner, not leave it running"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:   # the process ended while we looked
        return b""


def test_fit_times_the_export_on_the_phone(tiny_checkpoint, fake_adb, runner, tmp_path, monkeypatch):
    """fit's closed loop over adb: the exported model is timed by the runner, and the phone is left clean."""
    import maestro_edge.fit as fit_module
    from maestro_edge.fit import Fitter
    from maestro_edge.latency.android import RunnerTimer

    monkeypatch.setattr(fit_module, "Protocol", lambda threads: Protocol(threads=threads, warmup=1, rounds=2, calls=3))
    with AdbTransport(adb=str(fake_adb)) as transport:
        timer = RunnerTimer(transport, runner, PIXEL7.threads, "pixel7")
        try:
            record = Fitter(LoDCheckpoint.load(tiny_checkpoint)).fit(PIXEL7, 1000.0, tmp_path / "fit", timer=timer)
        finally:
            timer.cleanup()
    assert record["measured_ms"] > 0 and record["tries"][-1]["measured_ms"] == record["measured_ms"]
    runs = runner_runs(tmp_path)
    assert len(runs) == 1 + 2 and all(flag(r, "cpu_threads") == "4" for r in runs)   # pre-flight + 2 rounds
    assert list((device_root() / "data/local/tmp/maestro-edge").iterdir()) == []
