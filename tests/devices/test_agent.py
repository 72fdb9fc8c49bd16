"""The agent script: its protocol and statistics, its errors, and end-to-end runs locally and over ssh."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maestro_edge.devices import agent
from maestro_edge.devices.transports import SshTransport

AGENT = Path(agent.__file__)
ARGS = ["--threads", "1", "--warmup", "2", "--rounds", "3", "--calls", "4"]


def run_agent(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    """Run the agent as a target would: a separate python process on the script file."""
    return subprocess.run([sys.executable, str(AGENT), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


def check_results(stdout: str, manifest: Path, runtime: str, rounds=3, calls=4) -> list[dict]:
    fp, lines = agent.parse_output(stdout)
    assert fp["runtime"] == runtime and fp["threads"] == 1 and fp["cpu_count"] >= 1 and fp["python"]
    assert fp["runtime_version"] != "unknown"
    names = [p["name"] for p in json.loads(manifest.read_text())["probes"]]
    assert [line["probe"] for line in lines] == names
    for line in lines:
        assert len(line["round_medians_ms"]) == rounds and line["calls"] == rounds * calls
        assert 0 < line["min_ms"] <= min(line["round_medians_ms"])
        assert min(line["round_medians_ms"]) <= line["p50_ms"] <= line["p90_ms"] <= max(line["round_medians_ms"])
    return lines


# ------------------------------------------------------------------------------ pure functions


def test_module_imports_only_the_stdlib():
    code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('a', sys.argv[1]); "
            "importlib.util.module_from_spec(s); s.loader.exec_module(importlib.util.module_from_spec(s)); "
            "print(sorted({'numpy', 'onnxruntime', 'torch', 'executorch', 'maestro_edge'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, str(AGENT)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_quantile_matches_numpy():
    np = pytest.importorskip("numpy")
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert agent.quantile(values, q) == pytest.approx(np.percentile(values, q * 100))
    assert agent.quantile([7.0], 0.9) == 7.0


def test_measure_interleaves_rounds_in_shuffled_order():
    log = []
    calls = {name: (lambda n=name: log.append(n)) for name in "abcde"}
    result = agent.measure(calls, warmup=2, rounds=6, calls=3, seed=1)
    assert log[:10] == [n for n in "abcde" for _ in range(2)], "warm-up: each probe W times, before timing"
    timed = log[10:]
    assert len(timed) == 5 * 6 * 3 and all(timed.count(n) == 18 for n in "abcde")
    orders = ["".join(timed[r * 15: (r + 1) * 15: 3]) for r in range(6)]  # one letter per C calls
    assert all(sorted(o) == list("abcde") for o in orders) and len(set(orders)) > 1
    for medians, fastest in result.values():
        assert len(medians) == 6 and fastest <= min(medians)


# -------------------------------------------------------------------------------------- errors


def _one_error_line(proc, pattern, stdout=""):
    assert proc.returncode == 2 and proc.stdout.startswith(stdout) and (stdout or proc.stdout == "")
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agent: error:"), proc.stderr
    assert pattern in lines[0]


def test_errors_are_one_line_and_exit_2(tmp_path, onnx_probes):
    manifest = onnx_probes / "manifest.json"
    _one_error_line(run_agent("--manifest", tmp_path / "none.json", "--runtime", "onnxruntime"), "does not exist")
    (tmp_path / "bad.json").write_text("{not json")
    _one_error_line(run_agent("--manifest", tmp_path / "bad.json", "--runtime", "onnxruntime"), "not readable JSON")
    for probes, message in [([], "non-empty 'probes'"),
                            ([{"name": "a", "file": "x.onnx", "input_shape": [1, 4]}], "does not exist"),
                            ([{"name": "a", "file": str(onnx_probes / "probe0.onnx"), "input_shape": [0]}],
                             "input_shape")]:
        (tmp_path / "m.json").write_text(json.dumps({"probes": probes}))
        _one_error_line(run_agent("--manifest", tmp_path / "m.json", "--runtime", "onnxruntime"), message)
    _one_error_line(run_agent("--manifest", manifest, "--runtime", "tvm"), "invalid choice")
    _one_error_line(run_agent("--manifest", manifest, "--runtime", "onnxruntime", "--rounds", "0"), "must be >= 1")


def test_wrong_input_shape_names_the_probe(tmp_path, onnx_probes):
    """The fingerprint is already out when probes load; a probe that fails then ends the run with 2."""
    (tmp_path / "m.json").write_text(json.dumps(
        {"probes": [{"name": "fc", "file": str(onnx_probes / "probe0.onnx"), "input_shape": [1, 31]}]}))
    proc = run_agent("--manifest", tmp_path / "m.json", "--runtime", "onnxruntime", *ARGS)
    _one_error_line(proc, "probe 'fc'", stdout='{"fingerprint"')


def test_missing_runtime(tmp_path, onnx_probes):
    shim = tmp_path / "shim" / "onnxruntime"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('simulated: no onnxruntime on this target')\n")
    env = {"PYTHONPATH": str(shim.parent), "PATH": "/usr/bin:/bin"}
    proc = run_agent("--manifest", onnx_probes / "manifest.json", "--runtime", "onnxruntime", env=env)
    _one_error_line(proc, "runtime onnxruntime is not installed")


# ---------------------------------------------------------------------------------- end to end


def test_onnxruntime_locally_with_out_file(tmp_path, onnx_probes):
    manifest, out = onnx_probes / "manifest.json", tmp_path / "results.jsonl"
    proc = run_agent("--manifest", manifest, "--runtime", "onnxruntime", *ARGS, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    check_results(proc.stdout, manifest, "onnxruntime")
    assert out.read_text() == proc.stdout


def test_agent_over_ssh(sshd, onnx_probes, tmp_path):
    """Push the agent, probes and manifest; run remotely; pull the results file back."""
    with SshTransport(sshd.host, port=sshd.port, identity=sshd.identity, known_hosts=sshd.known_hosts,
                      remote_workdir=str(tmp_path / "remote")) as t:
        t.push(AGENT, "agent.py")
        for f in onnx_probes.iterdir():
            t.push(f, f"run 1/{f.name}")  # a space in the path on purpose
        work = t.workdir()
        # The loopback "target" has its onnxruntime in this interpreter, not in the login's python3.
        result = t.run([sys.executable, f"{work}/agent.py", "--manifest", f"{work}/run 1/manifest.json",
                        "--runtime", "onnxruntime", *ARGS, "--out", f"{work}/run 1/results.jsonl"], timeout_s=120)
        assert result.returncode == 0, result.stderr
        t.pull("run 1/results.jsonl", tmp_path / "results.jsonl")
    lines = check_results(result.stdout, onnx_probes / "manifest.json", "onnxruntime")
    assert (tmp_path / "results.jsonl").read_text() == result.stdout
    assert {line["probe"] for line in lines} == {"fc/dense", "conv/r4", "conv 1x1/r2"}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning", "ignore::UserWarning")
def test_executorch_locally(tmp_path):
    """One tiny XNNPACK-lowered .pte through the executorch runtime (imports cost ~5 s each side)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model, x = torch.nn.Linear(16, 8).eval(), torch.randn(2, 16)
    program = to_edge_transform_and_lower(torch.export.export(model, (x,)),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    (tmp_path / "fc.pte").write_bytes(program.buffer)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"probes": [{"name": "fc", "file": "fc.pte", "input_shape": [2, 16]}]}))
    proc = run_agent("--manifest", manifest, "--runtime", "executorch", *ARGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check_results(proc.stdout, manifest, "executorch")
