"""Measure on an Android phone over adb, with an ExecuTorch runner binary the user built for it.

A phone has no Python, so the agent (devices/agent.py) cannot run there. The user builds ExecuTorch's
``executor_runner`` for the phone (arm64-v8a, XNNPACK, event tracer on; docs/adb.md) and
:class:`RunnerTimer` drives it through an :class:`~maestro_edge.devices.transports.AdbTransport`:

1. pre-flight, once per run: ``getprop`` for the phone's identity (model, SoC, build fingerprint,
   serial, ABI), push the runner into a folder of its own under the transport's workdir, make it
   executable, and run it once on a trivial probe, so that a runner which cannot run there, or was
   built without the event tracer, fails before anything is measured. The fingerprint (which keys
   the journal) is those properties plus the runner's sha256 and the thread count;
2. per batch (one layer's options plus the call probe, or the three calibration models): export
   every probe to .pte here and push it; then ``rounds`` rounds, each visiting the probes in a fresh
   shuffled order (as the agent does) and running, once per probe::

       executor_runner --model_path P.pte --num_executions W+C --etdump_path P-rR.etdp --cpu_threads T

   Each ETDump is pulled and read here with ``executorch.devtools.Inspector``: the ``Method::execute``
   duration of every execution. The first W (the protocol's warm-up: every run is a fresh process
   whose first execution is cold) are dropped; the median of the other C is the round's median
   (the rounds are :func:`~maestro_edge.latency.measure.interleaved_rounds`, the host's own);
3. the round medians are summarised with :func:`~maestro_edge.latency.measure.summarize`, the
   statistic of the host and ssh paths, and handed to ``measure_table``.

Why the ETDump rather than the runner's log line ("Model executed successfully N time(s) in X ms"):
it holds every execution's time, so warm-up can be dropped and a median taken; it does not depend on
logging, which Release builds can compile out and which the Android PAL sends to logcat instead of
stderr; and its clock is the PAL's (nanoseconds on the posix and Android PALs), read inside the
process, so process start and program loading are not counted. The event tracer adds a small cost
per delegate call to every probe and whole model alike.

Threads: ``--cpu_threads T`` (the profile's threads) sizes the runner's thread pool. When the runner
logs to stderr it says "Resetting threadpool with num threads = N"; a different N is an error, and
whether the count was confirmed that way is kept in the table's provenance. The runner does not pin
threads to cores (see docs/adb.md on big cores and ``taskset``).

Flags and log lines are those of examples/portable/executor_runner/executor_runner.cpp in ExecuTorch
(``--model_path``, ``--num_executions``, ``--etdump_path`` only with the event tracer, ``--cpu_threads``);
the test double tests/doubles/fake_executor_runner takes the same flags.
"""

from __future__ import annotations

import functools
import math
import posixpath
import re
import secrets
import tempfile
from pathlib import Path

from maestro_edge._quiet import quiet
from maestro_edge.devices.transports import AdbTransport, RunResult, last_line
from maestro_edge.errors import TransportError, UsageError
from maestro_edge.latency.measure import Protocol, Timing, interleaved_rounds, kind_of, summarize
from maestro_edge.latency.probes import call_bound_ms, call_probe, export_probe
from maestro_edge.latency.profile import Modules, Timer
from maestro_edge.user_files import file_sha256

RUNNER = "executor_runner"                 # its name on the phone
RUNNER_START_S = 60.0    # process start + program load on a phone: an upper bound that only stops a hung run
SAFETY = 3.0
ADB_GRACE_S = 15.0       # the local adb waits this much longer than the phone's own `timeout` on the runner
PROPS = {"model": "ro.product.model", "soc": "ro.soc.model", "build": "ro.build.fingerprint",
         "serialno": "ro.serialno", "abi": "ro.product.cpu.abi"}
BUILD_HINT = "build executor_runner for the phone as docs/adb.md shows"


def missing_runner_message(device: str) -> str:
    return (f"{device} is reached over adb: measuring on it needs an ExecuTorch runner built for the phone; "
            f"{BUILD_HINT} (arm64-v8a, XNNPACK, event tracer) and pass --runner PATH/TO/executor_runner")


def check_runner(runner: str | Path | None, device: str = "the phone") -> Path:
    """The runner as an existing local file, or a one-line UsageError that says what to build."""
    if runner is None or not str(runner).strip():
        raise UsageError(missing_runner_message(device))
    path = Path(runner).expanduser()
    if path.is_dir():
        raise UsageError(f"runner {str(runner)!r} is a folder; pass the executor_runner binary itself")
    if not path.is_file():
        raise UsageError(f"runner {str(runner)!r} does not exist; {BUILD_HINT} and pass its path with --runner")
    return path.absolute()


class RunnerTimer(Timer):
    """Times probe batches on an Android phone with the user's ``executor_runner`` (see the module doc)."""

    runtime = "executorch-xnnpack"

    def __init__(self, transport: AdbTransport, runner: str | Path | None, threads: int, device: str = "the phone"):
        if not isinstance(transport, AdbTransport):
            raise UsageError("RunnerTimer needs an AdbTransport (the runner is for an Android phone)")
        self.transport, self.threads = transport, threads
        self.runner = check_runner(runner, device)
        self.runner_sha256 = file_sha256(self.runner)
        self._run_dir = f"run-{secrets.token_hex(4)}"   # one per run: two runs on one phone never collide
        self._fingerprint: dict | None = None
        self._threads_confirmed: bool | None = None
        self._touched = False   # whether anything was written to the phone (cleanup has work to do)
        self._serialno: str | None = None
        self.batches = 0
        self.runner_runs = 0

    @property
    def started(self) -> bool:
        """Whether the pre-flight check passed (the runner is on the phone and writes ETDumps)."""
        return self._fingerprint is not None

    def _remote(self, *parts: str) -> str:
        return posixpath.join(self.transport.workdir(), self._run_dir, *parts)

    def _target(self) -> str:
        return self._serialno or self.transport.serial or "the adb device"

    # -- the Timer interface

    def fingerprint(self) -> dict:
        if self._fingerprint is None:
            self.transport.check()   # no device / unauthorized / offline: adb's own one-line errors
            props = {key: self._getprop(prop) for key, prop in PROPS.items()}
            self._serialno, self._touched = props["serialno"] or None, True
            self.transport.push(self.runner, self._remote(RUNNER))
            self._shell(["chmod", "755", self._remote(RUNNER)], "making the runner executable")
            self._preflight()
            self._fingerprint = {**props, "runner_sha256": self.runner_sha256, "runtime": self.runtime,
                                 "threads": self.threads}
        return self._fingerprint

    def time(self, modules: Modules, protocol: Protocol, kind: str | dict[str, str]) -> dict[str, Timing]:
        self.fingerprint()
        self.batches += 1
        batch = f"b{self.batches}"
        try:
            with tempfile.TemporaryDirectory(prefix="maestro-adb-") as tmp:
                probes = self._push_probes(Path(tmp), batch, modules, kind)
                medians = self._rounds(Path(tmp), probes, protocol)
        finally:
            self._remove(batch)
        return {name: summarize(medians[name]) for name in modules}

    def provenance(self) -> dict:
        from maestro_edge.latency.profile import fingerprint as host_fingerprint

        return {"transport": "adb", "target": self._target(),
                "runner": str(self.runner), "runner_sha256": self.runner_sha256,
                "runtime_version": "executor_runner built by the user (version unknown; see runner_sha256)",
                "pte_exported_with": f"executorch {host_fingerprint()['executorch']}",
                "probe_format": "pte (XNNPACK)", "inputs": "all ones (executor_runner's default)",
                "timing_source": "ETDump Method::execute per execution (executorch.devtools.Inspector)",
                "threads_confirmed_by_runner_log": self._threads_confirmed}

    def cleanup(self) -> None:
        """Remove this run's folder (runner, probes, ETDumps) from the phone; best effort."""
        if self._touched:
            self._remove()

    # -- steps

    def _getprop(self, prop: str) -> str:
        return self._shell(["getprop", prop], f"reading {prop}").stdout.strip()

    def _preflight(self) -> None:
        """One execution of a trivial probe: the runner runs on the phone and writes a readable ETDump."""
        with tempfile.TemporaryDirectory(prefix="maestro-adb-") as tmp:
            local = Path(tmp) / "check.pte"
            local.write_bytes(_check_probe())
            remote = self._remote("check", "check.pte")
            self.transport.push(local, remote)
            self._execute("running the pre-flight check", remote, self._remote("check", "check.etdp"), 1, 1.0,
                          Path(tmp))
        self._remove("check")

    def _push_probes(self, tmp: Path, batch: str, modules: Modules, kind: str | dict[str, str]) -> dict:
        """Export and push every module; name -> (remote .pte, per-call bound in ms)."""
        probes = {}
        for i, (name, (module, shape)) in enumerate(modules.items()):
            local = tmp / f"p{i}.pte"
            local.write_bytes(export_probe(module, shape, self.runtime, kind_of(kind, name)))
            remote = self._remote(batch, local.name)
            self.transport.push(local, remote)
            local.unlink()
            probes[name] = (remote, call_bound_ms(module, shape))
        return probes

    def _rounds(self, tmp: Path, probes: dict, protocol: Protocol) -> dict[str, list[float]]:
        """Interleaved rounds (latency/measure.py): per round, one runner run per probe in a fresh random order,
        its warm-up executions dropped; each probe's round medians."""
        executions = protocol.warmup + protocol.calls

        def one_round(name: str, r: int) -> list[float]:
            pte, bound_ms = probes[name]
            etdump = f"{pte[:-len('.pte')]}-r{r}.etdp"
            return self._execute(f"timing probe {name!r}", pte, etdump, executions, bound_ms, tmp)[protocol.warmup:]

        return interleaved_rounds(list(probes), protocol, one_round)

    def _execute(self, what: str, pte: str, etdump: str, executions: int, bound_ms: float, tmp: Path) -> list[float]:
        """Run the runner once; the per-execution times (ms) from its ETDump."""
        limit_s = math.ceil(runner_timeout_s(executions, bound_ms))
        # The phone's own `timeout` (toybox) kills a hung runner there: killing the local adb would not,
        # and a runner left spinning would load the CPU while the next probes are timed.
        argv = ["timeout", "-s", "KILL", str(limit_s), self._remote(RUNNER), "--model_path", pte,
                "--num_executions", str(executions), "--etdump_path", etdump, "--cpu_threads", str(self.threads)]
        self.runner_runs += 1
        result = self.transport.run(argv, limit_s + ADB_GRACE_S)
        if result.returncode in (124, 137):   # timeout's own code / killed by it
            raise TransportError(f"the runner on {self._target()} did not finish within {limit_s} s while {what} "
                                 "and was stopped; check the phone (`adb shell top`) and run again: completed "
                                 "layers are kept")
        if result.returncode != 0:
            raise TransportError(self._explain(result, what))
        self._check_threads(result, what)
        local = tmp / "run.etdp"
        try:
            self.transport.pull(etdump, local)
        except TransportError as e:
            if not str(e).startswith("adb: cannot pull"):   # the phone is gone: adb's own message
                raise
            raise TransportError(f"the runner on {self._target()} wrote no ETDump while {what}; was it built "
                                 "with -DEXECUTORCH_ENABLE_EVENT_TRACER=ON? (docs/adb.md)") from None
        try:
            times = execute_times_ms(local)
        except ValueError as e:
            raise TransportError(f"the ETDump of the runner on {self._target()} while {what} is not usable: "
                                 f"{e}") from None
        if len(times) != executions:
            raise TransportError(f"the runner on {self._target()} ran {len(times)} executions instead of {executions} "
                                 f"while {what}; does it take --num_executions? {BUILD_HINT}")
        return times

    def _check_threads(self, result: RunResult, what: str) -> None:
        found = re.findall(r"Resetting threadpool with num threads = (\d+)", result.stderr + result.stdout)
        if found and int(found[-1]) != self.threads:
            raise TransportError(f"the runner on {self._target()} used {found[-1]} threads instead of "
                                 f"{self.threads} while {what}; {BUILD_HINT} (it must take --cpu_threads)")
        if self._threads_confirmed is None:
            self._threads_confirmed = bool(found)

    def _explain(self, result: RunResult, what: str) -> str:
        """One line: why the runner failed, and what to do."""
        text = result.stderr + "\n" + result.stdout
        where = f"on {self._target()} while {what}"
        unknown = re.search(r"unknown command line flag '(\w+)'", text)
        if unknown and unknown.group(1) == "etdump_path":
            return (f"the runner {where} has no --etdump_path: it was built without the event tracer; rebuild it "
                    "with -DEXECUTORCH_BUILD_DEVTOOLS=ON -DEXECUTORCH_ENABLE_EVENT_TRACER=ON (docs/adb.md)")
        if unknown:
            return (f"the runner {where} does not know --{unknown.group(1)}; {BUILD_HINT}, from the ExecuTorch "
                    "release that exports the .pte files here")
        if result.returncode in (126, 127):
            return (f"the runner cannot be started {where} ({last_line(result.stderr)}); is it built for "
                    f"Android (ANDROID_ABI=arm64-v8a)? {BUILD_HINT}")
        errors = re.findall(r"^[EF] [\d:.]+ \S+\] (.*)$", result.stderr, re.MULTILINE)
        if errors:
            return f"the runner failed {where} (exit code {result.returncode}): {errors[-1].strip()}"
        return (f"the runner failed {where} (exit code {result.returncode}: {last_line(text)}); its log may be "
                "in `adb logcat -s ExecuTorch` (build with -DEXECUTORCH_PAL_DEFAULT=posix to get it on stderr)")

    def _shell(self, argv: list[str], what: str):
        result = self.transport.run(argv, 30)
        if result.returncode != 0:
            raise TransportError(f"adb: `{' '.join(argv[:2])}` failed on {self._target()} while {what}: "
                                 f"{last_line(result.stderr)}")
        return result

    def _remove(self, *parts: str) -> None:
        """``rm -rf`` a path in this run's folder (the folder itself without ``parts``); best effort."""
        try:
            self.transport.run(["rm", "-rf", "--", self._remote(*parts)], 30)
        except (TransportError, UsageError, OSError):
            pass   # best effort: the phone may be gone


@functools.lru_cache(maxsize=1)
def _check_probe() -> bytes:
    """The pre-flight's program: the trivial call probe (exported once per process)."""
    module, shape = call_probe()
    return export_probe(module, shape, RunnerTimer.runtime)


def runner_timeout_s(executions: int, bound_ms: float) -> float:
    """Timeout for one runner run: start-up plus every execution at the generous per-call bound, x SAFETY."""
    return RUNNER_START_S + SAFETY * executions * bound_ms / 1e3


def execute_times_ms(etdump: Path) -> list[float]:
    """The ``Method::execute`` duration (ms) of every execution recorded in an ETDump file."""
    with quiet():   # importing the devtools prints native chatter; the Inspector warns about debug buffers
        from executorch.devtools.inspector import Inspector, TimeScale

        try:
            inspector = Inspector(etdump_path=str(etdump), source_time_scale=TimeScale.NS,
                                  target_time_scale=TimeScale.MS)
        except Exception as e:   # flatbuffer and inspector errors come in many types
            first = (str(e).strip().splitlines() or ["unreadable"])[0]
            raise ValueError(f"{type(e).__name__}: {first[:120]}") from None
    # Executions may come in one event or several (blocks); their order is the order they ran.
    events = [e for block in inspector.event_blocks for e in block.events if e.name == "Method::execute"]
    if not events or any(e.perf_data is None for e in events):
        raise ValueError(f"expected Method::execute events with timings, found {len(events)} without")
    times = [float(t) for e in events for t in e.perf_data.raw]
    if not times or any(not 0 <= t < float("inf") for t in times):
        raise ValueError("the Method::execute timings are empty or not finite")
    return times
