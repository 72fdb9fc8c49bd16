"""P3: accuracy at equal measured latency on the host — LoD+solver vs uniform rank vs SVD-of-dense vs dense.

    python bench/bench_accuracy.py --work /tmp/p3 [--data fashion-mnist] [--epochs 4] [--budgets 5]

Trains (once; reused from --work) a LoD model with `train_checkpoint` and the same architecture
conventionally (dense), then SVD-factorizes the dense one (balanced, like LoD's init, but never
LoD-trained) and scores its truncations on the same held-out split. For budgets spread between the
fastest plan and the dense model, on this host (ExecuTorch XNNPACK, 1 thread):
  - LoD + solver:      `fit` on the LoD model;
  - SVD + solver:      `fit` on the SVD-of-dense model (same solver, its own importance table);
  - uniform rank:      the LoD model with one rank fraction in every layer, the largest whose MEASURED
                       latency meets the budget;
  - dense:             the conventionally trained dense model (one latency, one accuracy).
Every latency in the table is measured; accuracy is on the held-out test split after BN recalibration.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

from maestro_edge.data import load_dataset
from maestro_edge.devices.profile import find_profile
from maestro_edge.export.pte import lower_to_pte
from maestro_edge.fit import Fitter, latency_table_for
from maestro_edge.latency.measure import Protocol, time_programs
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.factorize import factorize_
from maestro_edge.train.importance import accuracy_importance_table
from maestro_edge.lod.layers import lod_layers
from maestro_edge.models import build_model
from maestro_edge.train.evaluate import evaluate, recalibrate_bn_
from maestro_edge.train.loop import Recipe
from maestro_edge.train.run import train_checkpoint

ARCH, ARCH_KWARGS = "small_cnn", {"widths": [32, 64, 128, 128], "hidden": 256}


def train_dense(data, recipe: Recipe) -> torch.nn.Module:
    """The same architecture trained conventionally: SGD + one-cycle, cross-entropy, no LoD."""
    torch.manual_seed(recipe.seed)
    model = build_model(ARCH, data.in_channels, data.num_classes, **ARCH_KWARGS)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                                weight_decay=recipe.weight_decay)
    steps = recipe.epochs * math.ceil(len(data.train_x) / recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(recipe.seed)
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(data.train_x), generator=generator)
        for start in range(0, len(order), recipe.batch_size):
            batch = order[start:start + recipe.batch_size]
            loss = F.cross_entropy(model(data.train_x[batch]), data.train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def models(work: Path, data_name: str, recipe: Recipe):
    work.mkdir(parents=True, exist_ok=True)
    data = load_dataset(data_name, recipe.seed)
    arch = {"name": ARCH, "kwargs": ARCH_KWARGS, "in_channels": data.in_channels, "num_classes": data.num_classes}
    meta = {"name": data_name, "seed": recipe.seed, "input_shape": list(data.input_shape)}
    lod_path, svd_path, dense_path = work / "lod.pt", work / "svd.pt", work / "dense.pt"
    if lod_path.exists() and Recipe.from_dict(LoDCheckpoint.load(lod_path).recipe) != recipe:
        sys.exit(f"{lod_path} was trained with another recipe; use another --work folder")
    if not lod_path.exists() or not LoDCheckpoint.load(lod_path).progress.get("complete"):   # absent or unfinished
        started = time.perf_counter()
        train_checkpoint(ARCH, data_name, recipe, lod_path, arch_kwargs=ARCH_KWARGS,
                         on_epoch=lambda e, m: print(f"  lod epoch {m['epoch']}: val {m['val_accuracy']:.4f}", file=sys.stderr))
        print(f"  LoD training {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if not svd_path.exists():
        started = time.perf_counter()
        dense = train_dense(data, recipe)
        torch.save(dense.state_dict(), dense_path)
        print(f"  dense training {time.perf_counter() - started:.0f} s", file=sys.stderr)
        factorize_(dense)
        LoDCheckpoint(model=dense, arch=arch, data=meta, recipe={**recipe.to_dict(), "note": "SVD of a dense model"},
                      importance=accuracy_importance_table(dense, data.val_x, data.val_y)).save(svd_path)
    dense = build_model(ARCH, data.in_channels, data.num_classes, **ARCH_KWARGS)
    dense.load_state_dict(torch.load(dense_path, weights_only=True))
    return data, LoDCheckpoint.load(lod_path), LoDCheckpoint.load(svd_path), dense.eval()


def measure(module, shape, protocol) -> float:
    return time_programs({"m": (lower_to_pte(module, (torch.zeros(shape),)), shape)}, protocol)["m"].p50_ms


def uniform_at(fitter: Fitter, budget: float, protocol: Protocol):
    """Largest rank fraction (1/32 steps) whose measured latency meets ``budget``: (fraction, ms, accuracy)."""
    layers = lod_layers(fitter.ckpt.model)
    lo, hi, best = 1, 32, None
    while lo <= hi:   # measured latency grows with the fraction: binary search on it
        mid = (lo + hi) // 2
        plan = {n: max(1, math.ceil(l.active_rank * mid / 32)) for n, l in layers.items()}
        small, score = fitter.accuracy_of(plan)
        accuracy = score.value
        ms = measure(small, fitter.ckpt.input_shape, protocol)
        if ms <= budget:
            best, lo = (mid / 32, ms, accuracy), mid + 1
        else:
            hi = mid - 1
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the trained models (reused)")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--budgets", type=int, default=5)
    parser.add_argument("--warmup-epochs", type=int, default=0,
                        help="LoD only: first epochs at full rank, then SVD re-split (within --epochs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = Recipe(epochs=args.epochs, batch_size=128, lr=0.05, warmup_epochs=args.warmup_epochs)
    data, lod, svd, dense = models(args.work, args.data, recipe)
    protocol = Protocol()
    host = find_profile("host")
    say = lambda m: print(f"  {m}", file=sys.stderr)  # noqa: E731
    lod_table, svd_table = latency_table_for(lod, host, say), latency_table_for(svd, host, say)
    dense_ms = measure(dense, lod.input_shape, protocol)
    dense_acc = evaluate(dense, data.test_x, data.test_y)[0]
    fastest = lod_table.overhead_ms + sum(min(l.dense_ms, *l.rank_ms.values()) for l in lod_table.layers.values())
    budgets = [round(fastest + (dense_ms - fastest) * (i + 1) / (args.budgets + 1), 4) for i in range(args.budgets)]
    print(f"command: `python bench/bench_accuracy.py {' '.join(sys.argv[1:])}`; date {date.today()}; host, ExecuTorch "
          f"XNNPACK, 1 thread; data {args.data} (test {len(data.test_x)} images); {ARCH} {ARCH_KWARGS}; "
          f"LoD test acc {lod.metrics.get('test_accuracy', float('nan')):.4f}, dense {dense_acc:.4f} at {dense_ms:.3f} ms "
          f"(measured)\n")
    print("| budget ms | LoD+solver acc (measured ms) | SVD-of-dense+solver acc (ms) | uniform-rank acc (fraction, ms) | "
          "dense acc (ms) |")
    print("|---|---|---|---|---|")
    lod_fitter, svd_fitter = Fitter(lod), Fitter(svd)
    with tempfile.TemporaryDirectory() as tmp:
        for budget in budgets:
            cells = []
            for name, fitter, table in (("lod", lod_fitter, lod_table), ("svd", svd_fitter, svd_table)):
                try:
                    r = fitter.fit(host, budget, Path(tmp) / f"{name}-{budget}", table=table)
                    cells.append(f"{r['accuracy']:.4f} ({r['measured_ms']:.3f})")
                except Exception as e:  # an infeasible budget for one method is a result, not a crash
                    cells.append(f"none ({type(e).__name__})")
            u = uniform_at(lod_fitter, budget, protocol)
            cells.append(f"{u[2]:.4f} ({u[0]:.2f}, {u[1]:.3f})" if u else "none fits")
            cells.append(f"{dense_acc:.4f} ({dense_ms:.3f})" if dense_ms <= budget else f"does not fit ({dense_ms:.3f})")
            print(f"| {budget:.4f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
