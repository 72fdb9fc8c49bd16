"""Timing .pte programs in this process with the ExecuTorch runtime (the host's measurements).

Protocol (this machine is shared and noisy, notes/toolchain.md §5): a fixed thread count, warm-up
calls, then interleaved rounds — every round runs every program ``calls`` times in a fresh random
order — and statistics over the round medians. Ratios measured this way agree run to run to a few %.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from maestro_edge._quiet import quiet


@dataclass(frozen=True)
class Protocol:
    threads: int = 1
    warmup: int = 5
    rounds: int = 15
    calls: int = 20
    seed: int = 0

    def to_dict(self) -> dict:
        return {"threads": self.threads, "warmup": self.warmup, "rounds": self.rounds, "calls": self.calls}


QUICK = Protocol(warmup=3, rounds=7, calls=10)

def kind_of(kinds: str | dict[str, str], name: str) -> str:
    """A module's kind in a batch ("layer" probe or whole "model"): one for all, or per name (a calibration
    batch times both side by side)."""
    return kinds if isinstance(kinds, str) else kinds[name]


@dataclass(frozen=True)
class Timing:
    p50_ms: float        # median of the round medians: what tables and budgets use
    p90_ms: float        # 90th percentile of the round medians
    min_ms: float        # fastest round median
    rounds: int

    def to_dict(self) -> dict:
        return {"p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "min_ms": self.min_ms, "rounds": self.rounds}


def _set_threads(threads: int) -> None:
    with quiet():   # importing the runtime prints cpuinfo lines; resetting the pool prints one more
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime  # noqa: F401  (its first import prints too)

        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
    torch.set_num_threads(threads)


@contextlib.contextmanager
def executorch_threads(threads: int):
    """ExecuTorch's (and torch's) thread pool at ``threads`` for a while, e.g. all cores to score held-out
    images; restored after, so timing elsewhere keeps its protocol's count."""
    with quiet():   # the pool's first use prints cpuinfo lines from C++
        from executorch.extension.pybindings import portable_lib

        before, before_torch = portable_lib._threadpool_get_thread_count(), torch.get_num_threads()
    _set_threads(threads)
    try:
        yield
    finally:
        _set_threads(before)
        torch.set_num_threads(before_torch)


InputSpec = tuple   # a probe's input: a shape (a layer's float activation) or the model's real input tensors


def inputs_for(spec: InputSpec, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """The tensors to call a program with: for a shape, zeros (or random normal from ``generator``);
    for real inputs (token ids, masks, images), those inputs: nothing invents an input a model cannot take."""
    if all(isinstance(d, int) and not isinstance(d, bool) for d in spec):
        return (torch.zeros(spec) if generator is None else torch.randn(spec, generator=generator),)
    return tuple(spec)


def time_programs(programs: dict[str, tuple[bytes, InputSpec]], protocol: Protocol = Protocol()) -> dict[str, Timing]:
    """Time each ``name -> (pte bytes, input shape or inputs)`` program; returns ``name -> Timing``. The thread
    counts (ExecuTorch's pool, torch's) are the protocol's while timing and the caller's again after: a caller
    that trains next (``fit --recover-epochs``) keeps its cores."""
    with executorch_threads(protocol.threads):
        return _time_programs(programs, protocol)


def _time_programs(programs: dict[str, tuple[bytes, InputSpec]], protocol: Protocol) -> dict[str, Timing]:
    from executorch.runtime import Runtime

    generator = torch.Generator().manual_seed(protocol.seed)
    loaded = {}
    with quiet():   # the first Runtime.get() prints cpuinfo lines from C++
        runtime = Runtime.get()
        for name, (buffer, shape) in programs.items():
            loaded[name] = (runtime.load_program(buffer).load_method("forward"), inputs_for(shape, generator))

    def warm_up(name: str) -> None:
        method, inputs = loaded[name]
        for _ in range(protocol.warmup):
            method.execute(inputs)

    def one_round(name: str, _round: int) -> list[int]:
        method, inputs = loaded[name]
        samples = []
        for _ in range(protocol.calls):
            start = time.perf_counter_ns()
            method.execute(inputs)
            samples.append(time.perf_counter_ns() - start)
        return samples

    medians = interleaved_rounds(list(loaded), protocol, one_round, warm_up, per_ms=1e6)
    return {name: summarize(values) for name, values in medians.items()}


def interleaved_rounds(names: list[str], protocol: Protocol, one_round: Callable[[str, int], list[float]],
                       warm_up: Callable[[str], None] | None = None, per_ms: float = 1.0) -> dict[str, list[float]]:
    """The timing protocol, wherever the programs run (this process, a phone's runner): ``warm_up(name)`` for
    every name first (where warm-up is a separate step), then ``protocol.rounds`` rounds, each visiting every
    name once in a fresh order shuffled from ``protocol.seed``. ``one_round(name, round)`` runs the program
    ``protocol.calls`` times and returns those times (``per_ms`` units to a millisecond); the round keeps their
    median. Returns each name's round medians in ms, for :func:`summarize`. devices/agent.py does the same on a
    remote target with its own copy: it is a standalone script."""
    if warm_up is not None:
        for name in names:
            warm_up(name)
    medians: dict[str, list[float]] = {name: [] for name in names}
    order = list(names)
    shuffle = random.Random(protocol.seed)
    for r in range(protocol.rounds):
        shuffle.shuffle(order)
        for name in order:
            medians[name].append(statistics.median(one_round(name, r)) / per_ms)
    return medians


def summarize(round_medians_ms: list[float]) -> Timing:
    ordered = sorted(round_medians_ms)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return Timing(statistics.median(ordered), p90, ordered[0], len(ordered))
