"""Time probes on a target through the agent: exported here, run there by ``devices/agent.py``.

latency/runtimes.py picks this timer for a target that runs python (ssh, or the host with --python) and
latency/target.py opens it. Same table, same journal, same call-cost subtraction and calibration as the
host path (all of that is :func:`maestro_edge.latency.profile.measure_table`); only the timer differs:

1. once per run: push ``devices/agent.py`` and run ``<python> agent.py --check`` there: the runtime
   imports, and the target's fingerprint (which keys the journal) comes back;
2. per layer: export every probe in the target's runtime format (``onnxruntime`` → .onnx,
   ``executorch-xnnpack`` → .pte), zip them with a manifest, push the one bundle, run the agent on it
   with the protocol's threads/warm-up/rounds/calls and a timeout sized from the protocol, and parse
   its JSON lines; timings are summarised here from the round medians (:func:`summarize`, the host
   path's statistic), not taken from the agent's own p50/p90;
3. the three whole models of the calibration, the same way, in one more agent run.

Every command is an argument list; the transports quote each argument for the remote shell, so no
shell string is ever built from user input (host names, paths, the interpreter).

Probes are exported by latency/probes.py:export_probe (which exporter for which runtime, and why).

Android over adb: a phone has no Python, so the agent cannot run there. Instead the user passes an
ExecuTorch ``executor_runner`` they built for the phone (arm64-v8a, XNNPACK, event tracer; docs/adb.md)
and :class:`~maestro_edge.latency.android.RunnerTimer` drives it: the runner is pushed once per run,
each probe's .pte once per batch, and the runner runs once per probe and round (warm-up executions
first, probes in a shuffled order per round, as the agent does); each run's ETDump is pulled and its
per-execution ``Method::execute`` times read with ``executorch.devtools.Inspector`` here, and the
round medians are summarised with :func:`summarize`. The journal, call-cost subtraction, calibration
and table format are those of ``measure_table``, as for ssh. The fingerprint is ``getprop``
(``ro.product.model``, ``ro.soc.model``, ``ro.build.fingerprint``, ``ro.serialno``,
``ro.product.cpu.abi``) plus the runner's sha256 and the threads. Tested against test doubles only
(tests/doubles/fake_adb and fake_executor_runner), not on a phone.
"""

from __future__ import annotations

import json
import posixpath
import secrets
import tempfile
import zipfile
from pathlib import Path

from maestro_edge.devices.transports import Transport
from maestro_edge.errors import TransportError, UsageError
from maestro_edge.latency.measure import Protocol, Timing, inputs_for, kind_of, summarize
from maestro_edge.latency.probes import call_bound_ms, export_probe
from maestro_edge.latency.profile import Modules, Timer

AGENT = Path(__file__).resolve().parents[1] / "devices" / "agent.py"
AGENT_RUNTIMES = {"onnxruntime": "onnxruntime", "executorch-xnnpack": "executorch"}   # profile -> agent
SUFFIX = {"onnxruntime": ".onnx", "executorch-xnnpack": ".pte"}

# Timeouts are upper bounds that only stop a hung target; they are not tuned to any device.
STARTUP_S = 180.0          # interpreter + runtime import (executorch: ~5 s on the host, far more on a Pi) + loading
CHECK_TIMEOUT_S = 180.0    # the pre-flight `agent.py --check` (imports the runtime)
SAFETY = 3.0


# ----------------------------------------------------------------------------------------- timer


class RemoteTimer(Timer):
    """Times probe batches on a target through ``transport`` with the agent script."""

    def __init__(self, transport: Transport, runtime: str, threads: int, python: str | None = None):
        """``python``: the interpreter on the target that has the runtime (default: the transport's, python3 on a
        remote target): a command on its PATH, an absolute path, or ``~/venv/bin/python``."""
        if runtime not in AGENT_RUNTIMES:
            raise UsageError(f"runtime {runtime!r} cannot be measured remotely; expected one of {', '.join(AGENT_RUNTIMES)}")
        python = python or transport.python
        self.transport, self.runtime, self.threads = transport, runtime, threads
        self.python = interpreter(transport, python)
        self.python_given = python
        self._fingerprint: dict | None = None
        self._bundle = f"probes-{secrets.token_hex(4)}.zip"   # one per run: two runs on one target never collide
        self.agent_runs = 0

    # -- remote paths and commands (argument lists, never shell strings)

    def _path(self, name: str) -> str:
        return posixpath.join(self.transport.workdir(), name)

    def agent_argv(self, *args: str) -> list[str]:
        return [self.python, self._path("agent.py"), "--runtime", AGENT_RUNTIMES[self.runtime],
                "--threads", str(self.threads), *args]

    def _run_agent(self, args: list[str], timeout_s: float, what: str):
        self.agent_runs += 1
        result = self.transport.run(self.agent_argv(*args), timeout_s)
        if result.returncode != 0:
            raise TransportError(self._explain(result, what))
        return result

    def _explain(self, result, what: str) -> str:
        target = target_name(self.transport)
        lines = [l.strip() for l in result.stderr.splitlines() if l.strip()]
        agent_lines = [l for l in lines if l.startswith("agent: error:")]
        if result.returncode in (126, 127):   # the shell's "not found" / "not executable"
            return (f"the interpreter {self.python_given!r} cannot be run on {target} ({lines[-1] if lines else 'not found'}); "
                    "pass the python that has the runtime installed (--python /path/to/python)")
        if agent_lines:
            line = agent_lines[-1][len("agent: error:"):].strip()
            hint = ("; pass the python that has it (--python /path/to/venv/bin/python)"
                    if "is not installed" in line else "")
            return f"the agent failed on {target} while {what}: {line}{hint}"
        last = lines[-1] if lines else "no error output"
        return f"the agent exited with code {result.returncode} on {target} while {what}: {last}"

    @property
    def started(self) -> bool:
        """Whether the pre-flight check passed (the agent is on the target and its runtime loads)."""
        return self._fingerprint is not None

    # -- the Timer interface

    def fingerprint(self) -> dict:
        if self._fingerprint is None:
            self.transport.push(AGENT, "agent.py")
            result = self._run_agent(["--check"], CHECK_TIMEOUT_S, "checking the runtime")
            self._fingerprint = self._parse_fingerprint(result.stdout)
        return self._fingerprint

    def _parse_fingerprint(self, stdout: str) -> dict:
        for line in stdout.splitlines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("fingerprint"), dict):
                    return record["fingerprint"]
        raise TransportError(f"the agent on {target_name(self.transport)} printed no fingerprint; "
                             "is the target's python a CPython 3.8+?")

    def time(self, modules: Modules, protocol: Protocol, kind: str | dict[str, str]) -> dict[str, Timing]:
        expected = self.fingerprint()
        names = list(modules)
        with tempfile.TemporaryDirectory(prefix="maestro-probes-") as tmp:
            bundle = Path(tmp) / "bundle.zip"
            work_ms = self._write_bundle(bundle, modules, kind)
            self.transport.push(bundle, self._bundle)
        args = ["--manifest", self._path(self._bundle), "--warmup", str(protocol.warmup),
                "--rounds", str(protocol.rounds), "--calls", str(protocol.calls), "--seed", str(protocol.seed)]
        what = f"timing {len(names)} {'probes' if kind == 'layer' else 'probes and whole models'}"
        result = self._run_agent(args, agent_timeout_s(protocol, work_ms), what)
        try:
            from maestro_edge.devices.agent import parse_output

            fingerprint, lines = parse_output(result.stdout)
        except (ValueError, KeyError, TypeError):
            raise TransportError(f"the agent's output on {target_name(self.transport)} is not the expected "
                                 "JSON lines; is the agent up to date?") from None
        if fingerprint != expected:
            raise TransportError(f"the target {target_name(self.transport)} changed during profiling "
                                 "(another device or runtime answers); profile again")
        by_name = {line.get("probe"): line for line in lines}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise TransportError(f"the agent on {target_name(self.transport)} returned no timing for "
                                 f"{', '.join(missing[:3])}")
        try:
            return {n: summarize([float(v) for v in by_name[n]["round_medians_ms"]]) for n in names}
        except (KeyError, TypeError, ValueError):
            raise TransportError(f"the agent on {target_name(self.transport)} returned malformed timings") from None

    def _write_bundle(self, bundle: Path, modules: Modules, kind: str | dict[str, str]) -> list[float]:
        """Export every module into a zip with manifest.json; returns a per-call upper bound (ms) each."""
        probes, work_ms = [], []
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED) as z:
            for i, (name, (module, shape)) in enumerate(modules.items()):
                file = f"p{i}{SUFFIX[self.runtime]}"
                z.writestr(file, export_probe(module, shape, self.runtime, kind_of(kind, name)))
                probes.append({"name": name, "file": file, "input_shape": agent_input_shape(shape)})
                work_ms.append(call_bound_ms(module, shape))
            z.writestr("manifest.json", json.dumps({"probes": probes}))
        return work_ms

    def provenance(self) -> dict:
        fp = self._fingerprint or {}
        return {"runtime_version": fp.get("runtime_version", "unknown"), "transport": self.transport.name,
                "target": target_name(self.transport), "python": self.python_given,
                "probe_format": ("onnx: TorchScript exporter (opset 18) per layer, dynamo exporter for whole models"
                                 if self.runtime == "onnxruntime" else "pte (XNNPACK)")}

    def cleanup(self) -> None:
        """Remove this run's bundle on the target (best effort: the connection may be gone)."""
        try:
            self.transport.run(["rm", "-f", "--", self._path(self._bundle)], 30)
        except (TransportError, UsageError, OSError):
            pass


# --------------------------------------------------------------------------------------- helpers


def interpreter(transport: Transport, python: str) -> str:
    """The argv[0] that runs ``python`` on the target (``~/`` made relative to the ssh login's home)."""
    if not isinstance(python, str) or not python.strip() or "\0" in python or "\n" in python:
        raise UsageError(f"the remote python must be a command or path, got {python!r}")
    if python.startswith("-"):
        raise UsageError(f"the remote python {python!r} starts with '-'; give a command or a path")
    return transport.home_path(python)


def target_name(transport: Transport) -> str:
    return getattr(transport, "host", None) or getattr(transport, "serial", None) or transport.name


def agent_input_shape(spec) -> list[int]:
    """The agent feeds one random float32 input of a shape: a model with other inputs cannot be timed there yet."""
    inputs = inputs_for(spec)
    if len(inputs) != 1 or not inputs[0].is_floating_point():
        raise UsageError("timing a model whose inputs are not one float tensor is not supported over ssh yet; "
                         "use the host or an estimated profile for it")
    return list(inputs[0].shape)


def agent_timeout_s(protocol: Protocol, call_ms: list[float]) -> float:
    """Timeout for one agent run: start-up plus every call the protocol makes, at the bound, x SAFETY."""
    calls = protocol.warmup + protocol.rounds * protocol.calls + 1   # +1: the agent's load check
    return STARTUP_S + SAFETY * calls * sum(call_ms) / 1e3
