"""The remote measurement path without sshd: agent bundle and pre-flight, errors, timeouts, exporters, no shells."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import maestro_edge
from maestro_edge.devices import agent
from maestro_edge.devices.profile import DeviceProfile
from maestro_edge.devices.transports import AdbTransport, LocalTransport, SshTransport
from maestro_edge.errors import ProfileError, TransportError, UsageError
from maestro_edge.latency.measure import QUICK, Protocol
from maestro_edge.latency.probes import call_bound_ms, export_probe, macs
from maestro_edge.latency.remote import STARTUP_S, agent_timeout_s, interpreter
from maestro_edge.latency.target import Target, measure_remote_table
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.layers import lod_layers

AGENT = Path(agent.__file__)
PROFILE = DeviceProfile.from_dict({"schema_version": 1, "name": "box", "runtime": "onnxruntime", "threads": 1,
                                   "precision": "fp32", "transport": "ssh", "latency_source": "measured"})


def test_agent_check_prints_only_the_fingerprint():
    proc = subprocess.run([sys.executable, str(AGENT), "--check", "--runtime", "onnxruntime", "--threads", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fp, lines = agent.parse_output(proc.stdout)
    assert fp["runtime"] == "onnxruntime" and fp["threads"] == 2 and lines == []
    proc = subprocess.run([sys.executable, str(AGENT), "--runtime", "onnxruntime"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--manifest is required" in proc.stderr


def test_agent_runs_a_zip_bundle_and_removes_what_it_unpacked(tmp_path):
    probe = export_probe(nn.Linear(8, 4), (1, 8), "onnxruntime")
    bundle = tmp_path / "b.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("p0.onnx", probe)
        z.writestr("manifest.json", json.dumps({"probes": [{"name": "fc@dense", "file": "p0.onnx", "input_shape": [1, 8]}]}))
    proc = subprocess.run([sys.executable, str(AGENT), "--manifest", str(bundle), "--runtime", "onnxruntime",
                           "--warmup", "1", "--rounds", "2", "--calls", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _, lines = agent.parse_output(proc.stdout)
    assert [l["probe"] for l in lines] == ["fc@dense"] and len(lines[0]["round_medians_ms"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zip"]
    with zipfile.ZipFile(bundle, "w") as z:   # a bundle without a manifest: one line, exit 2, nothing left
        z.writestr("p0.onnx", probe)
    proc = subprocess.run([sys.executable, str(AGENT), "--manifest", str(bundle), "--runtime", "onnxruntime"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zip"]


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return LoDCheckpoint.load(tiny_checkpoint)


def test_missing_interpreter_is_one_clear_line(ckpt, tmp_path):
    with LocalTransport() as t, pytest.raises(TransportError) as e:
        measure_remote_table(ckpt, PROFILE, t, QUICK, tmp_path / "t.json", python="/nonexistent/python3")
    message = str(e.value)
    assert "\n" not in message and "'/nonexistent/python3' cannot be run" in message and "--python" in message


def test_missing_runtime_names_the_interpreter_and_the_fix(ckpt, tmp_path):
    shim = tmp_path / "shim" / "onnxruntime"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('simulated: no onnxruntime here')\n")
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nPYTHONPATH='{shim.parent}' exec '{sys.executable}' \"$@\"\n")
    python.chmod(0o755)
    with LocalTransport() as t, pytest.raises(TransportError) as e:
        measure_remote_table(ckpt, PROFILE, t, QUICK, tmp_path / "t.json", python=str(python))
    message = str(e.value)
    assert "\n" not in message and "runtime onnxruntime is not installed" in message and "--python" in message
    assert not (tmp_path / "t.partial.jsonl").exists()


def test_adb_and_bad_interpreters_are_refused(ckpt, tmp_path):
    with pytest.raises(ProfileError, match="'onnxruntime' cannot be measured over adb"):   # runtime first
        measure_remote_table(ckpt, PROFILE, AdbTransport("X1"), QUICK, tmp_path / "t.json")
    ssh, local = SshTransport("pi@raspberrypi.local"), LocalTransport()
    assert interpreter(ssh, "~/venv/bin/python") == "venv/bin/python"
    assert interpreter(ssh, "python3") == "python3" and interpreter(ssh, "/opt/py/bin/python") == "/opt/py/bin/python"
    assert interpreter(local, "~/x/python") == str(Path.home() / "x" / "python")
    for bad in ("", "  ", "-c", "py\nthon", "py\0"):
        with pytest.raises(UsageError):
            interpreter(ssh, bad)


def test_timeouts_grow_with_the_protocol_and_the_work():
    small, big = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(256, 256, 3, padding=1)
    assert macs(small, (1, 16, 8, 8)) == 8 * 8 * 16 * 16 * 9
    assert macs(nn.Sequential(nn.Linear(32, 4, bias=False), nn.Linear(4, 16)), (1, 32)) == 32 * 4 + 4 * 16
    quick = agent_timeout_s(QUICK, [call_bound_ms(small, (1, 16, 8, 8))] * 10)
    full = agent_timeout_s(Protocol(), [call_bound_ms(small, (1, 16, 8, 8))] * 10)
    heavy = agent_timeout_s(Protocol(), [call_bound_ms(big, (1, 256, 32, 32))] * 10)
    assert STARTUP_S < quick < full < heavy
    assert heavy > 10 * full
    # The bound is generous (a timeout only stops a hung target) but finite, and above what a slow core needs.
    calls = Protocol().warmup + Protocol().rounds * Protocol().calls
    assert heavy > calls * 10 * 2 * macs(big, (1, 256, 32, 32)) / 2e9   # a 2 GFLOP/s core


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
def test_onnx_probe_exporter_matches_the_reference_exporter():
    import onnxruntime as ort

    from maestro_edge.export.onnx_export import export_onnx_bytes

    torch.manual_seed(0)
    probe = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1, bias=False), nn.Conv2d(4, 16, 1)).eval()
    x = torch.randn(1, 8, 6, 6)
    outputs = []
    for blob in (export_probe(probe, (1, 8, 6, 6), "onnxruntime", "layer"), export_onnx_bytes(probe, (x,))):
        session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    assert abs(outputs[0] - outputs[1]).max() < 1e-5
    assert abs(outputs[0] - probe(x).detach().numpy()).max() < 1e-4


# ------------------------------------------------------------------------------- no shell strings

_SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}
_SPAWNERS = {"run", "Popen", "call", "check_call", "check_output"}


def test_no_shell_string_is_ever_built():
    """Every process is started from an argument list: no shell=True, no os.system, no command string."""
    offences = []
    for path in Path(maestro_edge.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = (func.value.id, func.attr) if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
            where = f"{path.name}:{node.lineno}"
            if name in _SHELL_CALLS:
                offences.append(f"{where} {name[0]}.{name[1]}")
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                offences.append(f"{where} shell=")
            if name and name[0] == "subprocess" and name[1] in _SPAWNERS and node.args and \
                    isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                offences.append(f"{where} subprocess.{name[1]} with a string command")
    assert offences == []


# ------------------------------------------------------------------------- the CLI's entry point


def _profile(transport, runtime="onnxruntime"):
    return DeviceProfile.from_dict({"schema_version": 1, "name": f"dev-{transport}", "runtime": runtime, "threads": 1,
                                    "precision": "fp32", "transport": transport, "latency_source": "measured"})


@pytest.mark.parametrize("transport, kwargs, message", [
    ("local", {"host": "pi@x"}, "--host: only for ssh devices"),
    ("local", {"port": 22, "identity": "k"}, "--port, --identity: only for ssh devices"),
    ("ssh", {"serial": "X1"}, "--serial: only for adb devices"),
    ("ssh", {}, "needs a host"),
    ("adb", {"serial": "X1"}, "needs an ExecuTorch runner"),
])
def test_a_target_refuses_flags_that_cannot_work(ckpt, tmp_path, transport, kwargs, message):
    with pytest.raises(UsageError, match=message):
        runtime = "executorch-xnnpack" if transport == "adb" else "onnxruntime"
        Target.resolve(_profile(transport, runtime), **kwargs).measure_table(ckpt, table_path=tmp_path / "t.json")


@pytest.mark.slow
def test_a_local_onnxruntime_target_goes_through_the_agent(ckpt, tmp_path):
    table = Target.resolve(_profile("local")).measure_table(ckpt, protocol=Protocol(warmup=1, rounds=2, calls=2),
                                                            table_path=tmp_path / "t.json")
    assert table.provenance["transport"] == "local" and table.provenance["fingerprint"]["runtime"] == "onnxruntime"
    assert table.provenance["python"] == sys.executable
    assert set(table.layers) == set(lod_layers(ckpt.model))
