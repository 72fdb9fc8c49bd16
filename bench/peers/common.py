"""What every method in bench_peers shares: the data split, accuracy with its interval, latency paired with the
dense model, fine-tuning batches and a CPU-seconds ledger."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "user_cnn"))

import mynet  # noqa: E402  (the user's project, outside the package)

from peers.dense import cpu_seconds  # noqa: E402


@dataclass
class Data:
    """train (fine-tuning), val (every choice: importance, ratios, plans), test (reported only)."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @classmethod
    def load(cls, name: str) -> "Data":
        return cls(*mynet.load(name))

    @property
    def example(self) -> torch.Tensor:
        return self.train_x[:1]

    def batches(self, seed: int, batch: int = 64) -> list:
        """One epoch of shuffled (x, y) training batches; the order is the seed's."""
        order = torch.randperm(len(self.train_x), generator=torch.Generator().manual_seed(seed))
        return [(self.train_x[i], self.train_y[i]) for i in order.split(batch)]

    def calibration(self) -> list:
        return list(self.val_x.split(128))


@torch.no_grad()
def correct(model, x, y) -> int:
    model.eval()
    return sum(int((model(a).argmax(1) == b).sum()) for a, b in zip(x.split(500), y.split(500)))


def val_accuracy(data: Data):
    def val_accuracy(model) -> float:   # the name is the metric's name in fit.json
        return correct(model, data.val_x, data.val_y) / len(data.val_x)
    return val_accuracy


def test_score(model, data: Data) -> dict:
    """Test accuracy with its 95% Wilson interval (the same interval fit.json gives)."""
    from maestro_edge.quality import wilson_interval

    hits, n = correct(model, data.test_x, data.test_y), len(data.test_x)
    low, high = wilson_interval(hits, n)
    return {"accuracy": hits / n, "low": low, "high": high, "n": n}


class PairedLatency:
    """A candidate's measured latency as a fraction of the dense model's, both timed side by side in one
    interleaved session (this host is shared: only ratios measured together hold). Cached per architecture:
    the same channel counts cost the same, whichever channels a method kept."""

    def __init__(self, dense_module, example, protocol):
        from maestro_edge.export.pte import export_pte

        self.export, self.example, self.protocol = export_pte, example, protocol
        self.dense_pte = export_pte(dense_module, (example,)).buffer
        self.cache: dict[tuple, float] = {}

    def fraction(self, module) -> float:
        key = tuple((n, tuple(p.shape)) for n, p in module.state_dict().items())
        if key not in self.cache:
            from maestro_edge.latency.measure import time_programs

            spec = (self.example,)   # the real input, not zeros
            pte = self.export(module, (self.example,)).buffer
            timings = time_programs({"dense": (self.dense_pte, spec), "candidate": (pte, spec)}, self.protocol)
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


def fmt_interval(score: dict) -> str:
    return f"{score['accuracy']:.4f} [{score['low']:.4f}, {score['high']:.4f}]"


def finite(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x)
