"""P7: wall time of a full per-layer host profile of a ResNet-18-size LoD model.

    python bench/bench_profile.py [--arch resnet18] [--size 28]

The model is the CIFAR-style ResNet-18 (11.17M parameters at 10 classes) on 1×SIZE×SIZE inputs,
factorized at full rank with random weights: profiling times shapes, not weights, so no training is
needed. Measured with the same code and protocol as `maestro-edge profile --device host`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from maestro_edge.devices.profile import find_profile
from maestro_edge.latency.profile import measure_host_table
from maestro_edge.latency.probes import layer_options
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.factorize import factorize_
from maestro_edge.lod.layers import lod_layers
from maestro_edge.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=28)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(args.arch, 1, 10)
    factorize_(model)
    ckpt = LoDCheckpoint(model=model.eval(), arch={"name": args.arch, "kwargs": {}, "in_channels": 1, "num_classes": 10},
                         data={"name": "none", "seed": 0, "input_shape": [1, 1, args.size, args.size]})
    layers = lod_layers(model)
    probes = sum(len(layer_options(l)) for l in layers.values())
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        table = measure_host_table(ckpt, find_profile("host"), table_path=Path(tmp) / "table.json",
                                   progress=lambda what, i, n: print(f"  [{i}/{n}] {what}", file=sys.stderr))
        seconds = time.perf_counter() - started
    params = sum(p.numel() for p in build_model(args.arch, 1, 10).parameters())
    print(f"| `python bench/bench_profile.py {' '.join(sys.argv[1:])}` | {date.today()} | {args.arch} "
          f"({params / 1e6:.2f}M params), 1x{args.size}x{args.size} | {len(layers)} layers, {probes} probes + 3 whole "
          f"models | {seconds / 60:.1f} min | dense model {table.full_model_ms:.2f} ms (measured) | "
          f"{'met' if seconds <= 300 else 'MISSED'} (goal <= 5 min) |")


if __name__ == "__main__":
    main()
