"""What every method in bench_peers shares, whatever the model: latency paired with the dense model and a
CPU-seconds ledger."""

from __future__ import annotations

import json
import time
from pathlib import Path

from peers.dense import cpu_seconds


class PairedLatency:
    """A candidate's measured latency as a fraction of the dense model's, both timed side by side in one
    interleaved session (this host is shared: only ratios measured together hold). Cached per architecture:
    the same channel counts cost the same, whichever channels a method kept."""

    def __init__(self, dense_module, example: tuple, protocol):
        from maestro_edge.export.pte import export_pte

        self.export, self.example, self.protocol = export_pte, example, protocol
        self.dense_pte = export_pte(dense_module, example).buffer
        self.cache: dict[tuple, float] = {}

    def fraction(self, module) -> float:
        key = tuple((n, tuple(p.shape)) for n, p in module.state_dict().items())
        if key not in self.cache:
            from maestro_edge.latency.measure import time_programs

            pte = self.export(module, self.example).buffer   # timed on the real inputs, not zeros
            timings = time_programs({"dense": (self.dense_pte, self.example), "candidate": (pte, self.example)},
                                    self.protocol)
            self.cache[key] = timings["candidate"].p50_ms / timings["dense"].p50_ms
        return self.cache[key]


class Ledger:
    """CPU-seconds and wall seconds per (method, step), saved as JSON after every entry (a killed run keeps them)."""

    def __init__(self, path: Path):
        self.path = path
        self.entries = json.loads(path.read_text()) if path.is_file() else {}

    def measure(self, key: str):
        ledger = self

        class _Span:
            def __enter__(self):
                self.cpu, self.wall = cpu_seconds(), time.perf_counter()
                return self

            def __exit__(self, kind, *_):
                if kind is None:
                    ledger.entries[key] = {"cpu_s": round(cpu_seconds() - self.cpu, 2),
                                           "wall_s": round(time.perf_counter() - self.wall, 2)}
                    ledger.path.write_text(json.dumps(ledger.entries, indent=1))
        return _Span()

    def cpu(self, key: str) -> float:
        return self.entries[key]["cpu_s"]
