"""measure_table with a scripted Timer: journal, resume, call-cost subtraction, ETA (no runtime, no device)."""

from __future__ import annotations

import json

import pytest

from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.errors import TransportError
from maestro_edge.latency.calibration import CALL, MODEL, trusted_overhead
from maestro_edge.latency.journal import append_journal, journal_path, read_journal
from maestro_edge.latency.measure import QUICK, Timing, kind_of
from maestro_edge.latency.probes import DENSE, layer_options
from maestro_edge.latency.profile import Timer, measure_table
from maestro_edge.latency.table import LatencyTable
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.layers import lod_layers
from maestro_edge.progress import Eta, format_duration

PROFILE = DeviceProfile.from_dict({"schema_version": 1, "name": "fake", "runtime": "onnxruntime", "threads": 1,
                                   "precision": "fp32", "transport": "ssh", "latency_source": "measured"})
CALL_MS = 0.01


class ScriptedTimer(Timer):
    """Deterministic timings (a function of the probe name and a per-run offset); fails on request."""

    runtime = "onnxruntime"

    def __init__(self, offset=0.0, fail_at_batch=None, device="box", model_ms=50.0):
        self.offset, self.fail_at_batch, self.device, self.batches = offset, fail_at_batch, device, []
        self.model_ms = model_ms

    def fingerprint(self):
        return {"machine": self.device, "runtime": "onnxruntime"}

    def time(self, modules, protocol, kind):
        if self.fail_at_batch is not None and len(self.batches) == self.fail_at_batch:
            raise TransportError("ssh to box failed: Connection closed by remote host.")
        self.batches.append((kind, list(modules)))
        out = {}
        for name in modules:
            if name == CALL:
                ms = CALL_MS
            elif kind_of(kind, name) == "model":
                plan = name.removeprefix(MODEL)
                ms = self.model_ms[plan] if isinstance(self.model_ms, dict) else self.model_ms
            else:
                choice = name.rsplit("@", 1)[-1]
                ms = 0.2 + (0.0 if choice == DENSE else int(choice) * 0.001) + self.offset
            out[name] = Timing(ms, ms * 1.1, ms * 0.9, protocol.rounds)
        return out


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return LoDCheckpoint.load(tiny_checkpoint)


def test_measures_every_option_and_subtracts_the_call(ckpt, tmp_path):
    path, messages = tmp_path / "t.json", []
    timer = ScriptedTimer()
    table = measure_table(ckpt, PROFILE, timer, QUICK, path, progress=lambda *a: messages.append(a))
    layers = lod_layers(ckpt.model)
    assert list(table.layers) == list(layers)
    for name, layer in layers.items():
        entry = table.layers[name]
        assert sorted(entry.rank_ms) == [c for c in layer_options(layer) if c != DENSE]
        assert entry.dense_ms == pytest.approx(0.2 - CALL_MS)
        for rank, ms in entry.rank_ms.items():
            assert ms == pytest.approx(0.2 + rank * 0.001 - CALL_MS)
    assert [kind for kind, _ in timer.batches[:-1]] == ["layer"] * len(layers)
    calibration_kinds = timer.batches[-1][0]   # whole models beside the layer probes they are made of
    assert sorted(set(calibration_kinds.values())) == ["layer", "model"]
    assert [n for n, k in calibration_kinds.items() if k == "model"] == [MODEL + p for p in ("dense", "fastest", "half")]
    assert all(CALL in names and len(names) == len(layer_options(layers[n])) + 1
               for (_, names), n in zip(timer.batches, layers))
    assert table.provenance["fingerprint"] == timer.fingerprint() and table.provenance["protocol"] == QUICK.to_dict()
    assert LatencyTable.load(path).layers == table.layers
    assert not journal_path(path).exists()
    # Progress: (what, done, total) for every layer, then calibration, then done; an ETA after the first layer.
    assert [m[1] for m in messages] == list(range(len(layers) + 2)) and messages[-1] == ("done", len(layers) + 1, len(layers) + 1)
    assert "ETA" not in messages[0][0] and all("ETA" in m[0] for m in messages[1:-1])


def test_overhead_is_calibrated(ckpt, tmp_path):
    table = measure_table(ckpt, PROFILE, ScriptedTimer(model_ms=50.0), QUICK, tmp_path / "a.json")
    dense_sum = sum(l.dense_ms for l in table.layers.values())
    assert table.full_model_ms == 50.0
    assert table.overhead_ms == pytest.approx(50.0 - dense_sum, rel=0.2)   # median over the three plans


def sums_of_layers(ckpt, tmp_path):
    """Each calibration plan's sum of layer latencies (the scripted layer timings do not depend on model_ms)."""
    table = measure_table(ckpt, PROFILE, ScriptedTimer(), QUICK, tmp_path / "sums.json")
    return {c["plan"]: c["sum_of_layers_ms"] for c in table.provenance["calibration"]}


def test_negative_overhead_is_kept_when_every_plan_agrees(ckpt, tmp_path):
    sums = sums_of_layers(ckpt, tmp_path)
    gaps = {"dense": -0.03, "fastest": -0.02, "half": -0.025}
    timer = ScriptedTimer(model_ms={plan: sums[plan] + gaps[plan] for plan in sums})
    table = measure_table(ckpt, PROFILE, timer, QUICK, tmp_path / "t.json")
    assert table.overhead_ms == pytest.approx(-0.025)          # the median gap, kept
    reloaded = LatencyTable.load(tmp_path / "t.json")
    assert reloaded.overhead_ms == pytest.approx(-0.025) and reloaded.fastest_ms() > 0


def test_negative_overhead_is_dropped_when_plans_disagree(ckpt, tmp_path):
    sums = sums_of_layers(ckpt, tmp_path)
    gaps = {"dense": 0.05, "fastest": -0.1, "half": -0.1}      # one plan slower than its layers: noise
    timer = ScriptedTimer(model_ms={plan: sums[plan] + gaps[plan] for plan in sums})
    table = measure_table(ckpt, PROFILE, timer, QUICK, tmp_path / "t.json")
    assert table.overhead_ms == 0.0 and table.provenance["overhead_raw_ms"] == pytest.approx(-0.1)
    assert LatencyTable.load(tmp_path / "t.json").overhead_ms == 0.0


def test_negative_overhead_is_dropped_when_it_would_leave_the_fastest_plan_no_time():
    calibration = [{"plan": "dense", "measured_ms": 0.5, "sum_of_layers_ms": 10.0},
                   {"plan": "fastest", "measured_ms": 1.0, "sum_of_layers_ms": 2.0},
                   {"plan": "half", "measured_ms": 0.5, "sum_of_layers_ms": 6.0}]
    assert trusted_overhead(-5.5, calibration) == 0.0          # 2.0 - 5.5 < 0
    assert trusted_overhead(-1.5, calibration) == -1.5
    assert trusted_overhead(0.3, calibration) == 0.3


def test_failure_keeps_finished_layers_and_rerun_resumes(ckpt, tmp_path):
    path = tmp_path / "t.json"
    with pytest.raises(TransportError):
        measure_table(ckpt, PROFILE, ScriptedTimer(fail_at_batch=2), QUICK, path)
    journal = journal_path(path)
    lines = journal.read_text().splitlines()
    names = list(lod_layers(ckpt.model))
    assert [json.loads(l)["layer"] for l in lines] == names[:2] and not path.exists()

    messages, timer = [], ScriptedTimer()
    table = measure_table(ckpt, PROFILE, timer, QUICK, path, progress=lambda *a: messages.append(a[0]))
    measured = [names_[0].rsplit("@", 1)[0] for kind, names_ in timer.batches if kind == "layer"]
    assert measured == names[2:]
    assert sum("measured before (journal)" in m for m in messages) == 2
    assert all(table.layers[name].dense_ms == pytest.approx(0.2 - CALL_MS) for name in names)
    assert table.provenance["layer_recheck"] == [{"drift": 1.0, "drifted_layers": []}]


def test_layers_that_no_longer_hold_are_measured_again(ckpt, tmp_path):
    """A resumed profile on a machine that got slower: the re-check finds the journal's layers off."""
    path, names = tmp_path / "t.json", list(lod_layers(ckpt.model))
    with pytest.raises(TransportError):
        measure_table(ckpt, PROFILE, ScriptedTimer(fail_at_batch=2), QUICK, path)
    messages, timer = [], ScriptedTimer(offset=1.0)
    table = measure_table(ckpt, PROFILE, timer, QUICK, path, progress=lambda *a: messages.append(a[0]))
    measured = [names_[0].rsplit("@", 1)[0] for kind, names_ in timer.batches if kind == "layer"]
    assert measured == names[2:] + names[:2], "the two journal layers are measured again, nothing else"
    assert all(table.layers[name].dense_ms == pytest.approx(1.2 - CALL_MS) for name in names)
    first, second = table.provenance["layer_recheck"]
    assert first["drift"] > 1.07 and first["drifted_layers"] == names[:2]
    assert second == {"drift": 1.0, "drifted_layers": []}
    assert sum(" again (re-timed" in m for m in messages) == 2


def test_a_layer_that_keeps_moving_is_measured_once_more_then_kept(ckpt, tmp_path):
    class Drifting(ScriptedTimer):   # every batch runs slower than the one before: no timing ever holds
        def time(self, modules, protocol, kind):
            self.offset = 0.5 * len(self.batches)
            return super().time(modules, protocol, kind)

    table = measure_table(ckpt, PROFILE, Drifting(), QUICK, tmp_path / "t.json")
    recheck = table.provenance["layer_recheck"]
    assert len(recheck) == 2 and all(r["drifted_layers"] for r in recheck), "bounded: one more pass, recorded"
    assert LatencyTable.load(tmp_path / "t.json").provenance["layer_recheck"] == recheck


def test_records_of_another_setup_are_not_reused(ckpt, tmp_path):
    path = tmp_path / "t.json"
    with pytest.raises(TransportError):
        measure_table(ckpt, PROFILE, ScriptedTimer(fail_at_batch=2, device="box"), QUICK, path)
    timer = ScriptedTimer(device="other-box")
    measure_table(ckpt, PROFILE, timer, QUICK, path)
    assert sum(kind == "layer" for kind, _ in timer.batches) == len(lod_layers(ckpt.model))
    timer = ScriptedTimer()
    with pytest.raises(TransportError):
        measure_table(ckpt, PROFILE, ScriptedTimer(fail_at_batch=1), QUICK, path)
    measure_table(ckpt, PROFILE, timer, QUICK.__class__(threads=1, warmup=1, rounds=2, calls=2), path)
    assert sum(kind == "layer" for kind, _ in timer.batches) == len(lod_layers(ckpt.model)), "protocol changed"


def test_journal_ignores_a_cut_line_and_repairs_it_on_append(tmp_path):
    journal, setup = tmp_path / "j.partial.jsonl", {"model_digest": "abc", "x": 1}
    append_journal(journal, setup, "a", {"dense": {"p50_ms": 1.0, "p90_ms": 1.1}})
    whole = journal.read_text()
    with open(journal, "a") as f:
        f.write(whole[: len(whole) // 2])          # a kill in the middle of a write
    assert read_journal(journal, setup) == {"a": {"dense": {"p50_ms": 1.0, "p90_ms": 1.1}}}
    append_journal(journal, setup, "b", {"dense": {"p50_ms": 2.0, "p90_ms": 2.2}})
    assert set(read_journal(journal, setup)) == {"a", "b"}, "the record after the cut line must survive"
    assert read_journal(journal, {"model_digest": "abc", "x": 2}) == {}
    journal.write_text("not json\n[1, 2]\n{\"setup\": 3}\n")
    assert read_journal(journal, setup) == {}


def test_eta_and_durations():
    eta = Eta(4)
    assert eta.seconds() is None and eta.text() == ""
    eta.finished(10.0)
    eta.finished(20.0)
    assert eta.seconds() == pytest.approx(30.0) and eta.text() == " (ETA 30s)"
    assert [format_duration(s) for s in (0.4, 59, 61, 3599, 3600, 7322)] == ["0s", "59s", "1m01s", "59m59s", "1h00m", "2h02m"]
