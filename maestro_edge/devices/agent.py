#!/usr/bin/env python3
"""The measurement agent: copied to the target and run there with the target's python3.

It times small model "probes" (one layer at one rank each) with one runtime and prints JSON lines:
first ``{"fingerprint": {...}}`` (what machine and runtime produced the numbers), then one line per
probe::

    {"probe": "layer3/r32", "round_medians_ms": [...], "p50_ms": ..., "p90_ms": ..., "min_ms": ..., "calls": R*C}

Protocol, chosen for noisy shared CPUs: load every probe once, warm each up, then run R rounds; each
round visits the probes in a fresh random order (so drift and neighbours hit all probes alike) and
calls each C times, keeping that round's median. p50/p90 are taken over the round medians; min_ms is
the fastest single call. Times are wall-clock ``perf_counter`` around one inference call.

The file must stay a standalone script: only the stdlib is imported at module level; numpy and the
runtime (onnxruntime, or executorch + torch for .pte) are imported when needed, so ``--help`` and
error messages work on a bare target. Expected errors print one line on stderr and exit with 2.

    python3 agent.py --manifest manifest.json --runtime onnxruntime --threads 1 \\
        --warmup 5 --rounds 7 --calls 10 [--out results.jsonl]
    python3 agent.py --check --runtime onnxruntime --threads 1     # fingerprint only, runtime imported

``manifest.json``: ``{"probes": [{"name": ..., "file": ..., "input_shape": [1, 64, 8, 8]}, ...]}``,
with files relative to the manifest's folder. ``--manifest`` may also name a ``.zip`` bundle holding
``manifest.json`` and the probe files (one transfer per batch instead of one per file); it is unpacked
into a temporary folder beside the bundle and removed again when the agent ends.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import zipfile

RUNTIMES = ("onnxruntime", "executorch")
SEED = 0


class AgentError(Exception):
    """An expected failure: reported as one line on stderr, exit code 2."""


# ------------------------------------------------------------------------------------- manifest

BUNDLE_MANIFEST = "manifest.json"


def unpack_bundle(path: str) -> tuple[str, str]:
    """(manifest path, temporary folder to remove) for a .zip bundle of manifest.json + probe files."""
    folder = tempfile.mkdtemp(prefix=".bundle-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with zipfile.ZipFile(path) as bundle:
            bundle.extractall(folder)   # extractall drops absolute paths and '..' from member names
    except (OSError, zipfile.BadZipFile) as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise AgentError(f"bundle {path} cannot be unpacked ({e})") from None
    return os.path.join(folder, BUNDLE_MANIFEST), folder


def load_manifest(path: str) -> list[dict]:
    """Validated probes with absolute file paths."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AgentError(f"manifest {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise AgentError(f"manifest {path} is not readable JSON ({e})") from None
    probes = data.get("probes") if isinstance(data, dict) else None
    if not isinstance(probes, list) or not probes:
        raise AgentError(f"manifest {path} needs a non-empty 'probes' list")
    base, seen, out = os.path.dirname(os.path.abspath(path)), set(), []
    for i, p in enumerate(probes):
        if not isinstance(p, dict):
            raise AgentError(f"manifest {path}: probe #{i} is not an object")
        name, file, shape = p.get("name"), p.get("file"), p.get("input_shape")
        if not isinstance(name, str) or not name or name in seen:
            raise AgentError(f"manifest {path}: probe #{i} needs a unique string 'name', got {name!r}")
        if not isinstance(file, str) or not file:
            raise AgentError(f"manifest {path}: probe {name!r} needs a 'file'")
        if not (isinstance(shape, list) and shape and all(type(d) is int and d > 0 for d in shape)):
            raise AgentError(f"manifest {path}: probe {name!r} needs 'input_shape' as a list of positive ints")
        file = os.path.join(base, file)
        if not os.path.isfile(file):
            raise AgentError(f"probe {name!r}: file {file} does not exist")
        seen.add(name)
        out.append({"name": name, "file": file, "input_shape": shape})
    return out


# -------------------------------------------------------------------------------------- runtimes


def _import(module: str, runtime: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise AgentError(f"runtime {runtime} is not installed for {sys.executable} ({e}); "
                         f"install it (pip install {runtime}) or pick another --runtime") from None


def runtime_version(runtime: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(runtime)
    except metadata.PackageNotFoundError:
        return "unknown"


def make_loader(runtime: str, threads: int):
    """Import the runtime, set its threads, and return ``load(path, input) -> call()``."""
    if runtime == "onnxruntime":
        ort = _import("onnxruntime", runtime)

        def load(path, x):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: x}
            return lambda: session.run(None, feed)

        return load

    # executorch: the thread pool is global and must be sized before any program is loaded.
    portable_lib = _import("executorch.extension.pybindings.portable_lib", runtime)
    portable_lib._unsafe_reset_threadpool(threads)
    Runtime = _import("executorch.runtime", runtime).Runtime
    torch = _import("torch", runtime)

    def load(path, x):
        method = Runtime.get().load_program(path).load_method("forward")
        inputs = (torch.from_numpy(x),)
        return lambda: method.execute(inputs)

    return load


# ----------------------------------------------------------------------------------- fingerprint


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def fingerprint(runtime: str, threads: int) -> dict:
    fp = {
        "platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "runtime": runtime, "runtime_version": runtime_version(runtime), "threads": threads,
    }
    cpuinfo = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware"):  # x86, Raspberry Pi, older ARM kernels
        for line in cpuinfo.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                fp["cpu_model"] = v.strip()
                break
        if "cpu_model" in fp:
            break
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor:
        fp["cpufreq_governor"] = governor.strip()
    return fp


# ----------------------------------------------------------------------------------- measurement


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def measure(calls_by_name: dict, warmup: int, rounds: int, calls: int, seed: int = SEED) -> dict:
    """Run the interleaved protocol; returns {name: (round medians in ms, fastest call in ms)}."""
    for call in calls_by_name.values():
        for _ in range(warmup):
            call()
    order, rng = list(calls_by_name), random.Random(seed)
    medians = {name: [] for name in order}
    fastest = {name: float("inf") for name in order}
    clock = time.perf_counter_ns
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            call, times = calls_by_name[name], []
            for _ in range(calls):
                t0 = clock()
                call()
                times.append((clock() - t0) / 1e6)
            medians[name].append(quantile(times, 0.5))
            fastest[name] = min(fastest[name], min(times))
    return {name: (medians[name], fastest[name]) for name in medians}


def result_line(name: str, round_medians: list[float], fastest: float, calls: int) -> dict:
    return {"probe": name, "round_medians_ms": [round(m, 6) for m in round_medians],
            "p50_ms": round(quantile(round_medians, 0.5), 6), "p90_ms": round(quantile(round_medians, 0.9), 6),
            "min_ms": round(fastest, 6), "calls": len(round_medians) * calls}


def parse_output(text: str) -> tuple[dict, list[dict]]:
    """Host-side helper: (fingerprint, probe lines) from the agent's stdout."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
    if not lines or "fingerprint" not in lines[0]:
        raise ValueError("agent output does not start with a fingerprint line")
    return lines[0]["fingerprint"], [line for line in lines[1:] if "probe" in line]


# ------------------------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other expected error
        raise AgentError(message)


def _count(minimum: int):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="agent.py", description="Time model probes on this machine (maestro-edge agent).")
    ap.add_argument("--manifest", help="manifest.json, or a .zip bundle of manifest.json and the probe files")
    ap.add_argument("--check", action="store_true",
                    help="only import the runtime and print the fingerprint line (a cheap pre-flight check)")
    ap.add_argument("--runtime", required=True, choices=RUNTIMES)
    ap.add_argument("--threads", type=_count(1), default=1)
    ap.add_argument("--warmup", type=_count(0), default=5)
    ap.add_argument("--rounds", type=_count(1), default=7)
    ap.add_argument("--calls", type=_count(1), default=10)
    ap.add_argument("--out", help="also append every output line to this file")
    ap.add_argument("--seed", type=int, default=SEED)
    unpacked, out = None, None
    try:
        args = ap.parse_args(argv)
        if args.check:
            make_loader(args.runtime, args.threads)
            _import("numpy", "numpy")
            print(json.dumps({"fingerprint": fingerprint(args.runtime, args.threads)}), flush=True)
            return 0
        if not args.manifest:
            raise AgentError("--manifest is required (or --check)")
        manifest = args.manifest
        if os.path.isfile(manifest) and zipfile.is_zipfile(manifest):
            manifest, unpacked = unpack_bundle(manifest)
        probes = load_manifest(manifest)
        load = make_loader(args.runtime, args.threads)
        np = _import("numpy", "numpy")
        out = open(args.out, "a", encoding="utf-8") if args.out else None
    except AgentError as e:
        print(f"agent: error: {e}", file=sys.stderr, flush=True)
        if unpacked:
            shutil.rmtree(unpacked, ignore_errors=True)
        return 2

    def emit(obj):
        line = json.dumps(obj)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    try:
        emit({"fingerprint": fingerprint(args.runtime, args.threads)})
        rng, calls_by_name = np.random.default_rng(args.seed), {}
        for p in probes:
            x = rng.standard_normal(p["input_shape"], dtype=np.float32)
            try:
                call = load(p["file"], x)
                call()  # fail here, with the probe's name, if the input shape does not fit the model
                calls_by_name[p["name"]] = call
            except Exception as e:  # runtimes raise their own types for bad or mismatched files
                raise AgentError(f"probe {p['name']!r}: cannot load {p['file']} with {args.runtime}: "
                                 f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
        results = measure(calls_by_name, args.warmup, args.rounds, args.calls, args.seed)
        for p in probes:
            emit(result_line(p["name"], *results[p["name"]], args.calls))
    except AgentError as e:
        print(f"agent: error: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        if out:
            out.close()
        if unpacked:
            shutil.rmtree(unpacked, ignore_errors=True)
    return 0


if __name__ == "__main__":
    # Run as a script, Python puts this file's folder first on sys.path. In the maestro_edge checkout
    # that folder holds profile.py, which shadows the stdlib module that torch imports (cProfile).
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.exit(main())
