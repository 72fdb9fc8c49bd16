"""P3 the way users work (issue "Any PyTorch model"): a dense CNN they trained, then maestro-edge.

    python bench/bench_user_p3.py --work /tmp/p3u train --dense-epochs 2 --lod-epochs 1
    python bench/bench_user_p3.py --work /tmp/p3u measure --budgets 0.9,0.75,0.6,0.5,0.4

The model is examples/user_cnn's TwoBranchNet (depthwise conv, functional forward, upsampling, concat) on
Fashion-MNIST (Debian's dataset-fashion-mnist): 55k train, 1k of the 5k validation images, 10k test.
- train: dense in a plain loop; then (a) its exact SVD split, and (b) the same split LoD-fine-tuned for
  ``--lod-epochs`` epochs distilled from the dense model (the extra cost is printed). Importance for both
  on the *validation* images; both saved as user checkpoints (the public API only).
- measure: one host table per checkpoint (profiled fresh into ``<work>/cache``); per budget (a fraction of
  the dense model's measured latency) `fit` (solver + closed loop, BatchNorm recalibrated on validation
  images) for (a) and (b) (a fit folder left by an earlier run is reused), and (c) the largest uniform rank
  fraction of (a) that the table says fits, on the grid ranks. Then every model is exported and timed side by
  side in one interleaved session, and scored on the *test* set.
Prints markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "user_cnn"))
os.environ["MYNET_DATA"] = "fashion-mnist"

import mynet  # noqa: E402  (the user's project, outside the package)
from finetune import dense_training  # noqa: E402

UNIFORM_STEPS = 32
VALIDATION = 1000   # images that score importance and fits and recalibrate BatchNorm (~4 s per score here)


def held_out():
    _, _, vx, vy, tx, ty = mynet.load("fashion-mnist")
    return vx[:VALIDATION], vy[:VALIDATION], tx, ty


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    return sum((model(a).argmax(1) == b).sum().item() for a, b in zip(x.split(500), y.split(500))) / len(x)


def train(args) -> None:
    import maestro_edge as me

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    train_x, train_y, *_ = mynet.load("fashion-mnist")
    train_x, train_y = train_x[: args.limit], train_y[: args.limit]
    vx, vy, tx, ty = held_out()
    val_score = lambda m: accuracy(m, vx, vy)   # noqa: E731  importance and fit on validation, never on test
    val_score.__name__ = "val_accuracy"
    model = mynet.TwoBranchNet(args.width)
    started = time.perf_counter()
    dense_training(model, train_x, train_y, args.dense_epochs)
    times = {"dense_training_s": time.perf_counter() - started}
    dense = copy.deepcopy(model).eval()
    log = {"dense_test_accuracy": accuracy(dense, tx, ty), "dense_epochs": args.dense_epochs}
    me.factorize_(model)
    for name, lod_epochs in (("svd", 0), ("lod", args.lod_epochs)):
        if lod_epochs:
            loader = list(zip(train_x.split(64), train_y.split(64)))
            started = time.perf_counter()
            me.train_lod(model, loader, F.cross_entropy, epochs=lod_epochs, lr=1e-3, teacher=dense)
            times["lod_finetune_s"] = time.perf_counter() - started
        started = time.perf_counter()
        table = me.importance_table(model, val_score, train_x[:1])
        times[f"{name}_importance_s"] = time.perf_counter() - started
        me.LoDCheckpoint.from_model(model, train_x[:1], importance=table).save(work / f"{name}.lod")
        log[f"{name}_full_rank_test_accuracy"] = accuracy(model, tx, ty)
    log.update(times, lod_epochs=args.lod_epochs, width=args.width)
    (work / "train.json").write_text(json.dumps(log, indent=2))
    print(json.dumps(log, indent=2))


def uniform_choices(ckpt, table, budget_ms: float):
    """The largest single rank fraction whose predicted latency fits (c: what a user gets without a solver), on
    the ranks the table measured (fit.uniform_choices: off the grid predictions ran up to 18% short)."""
    from maestro_edge.fit import uniform_choices as on_grid

    for step in range(UNIFORM_STEPS, 0, -1):
        choices = on_grid(ckpt.model, step / UNIFORM_STEPS)
        if table.predict_ms(choices) <= budget_ms:
            return choices, step / UNIFORM_STEPS
    return None, None


def measure(args) -> None:
    work = Path(args.work)
    os.environ["MAESTRO_EDGE_CACHE"] = str(work / "cache")
    from maestro_edge.devices.profile import find_profile
    from maestro_edge.errors import InfeasibleBudget
    from maestro_edge.export.pte import export_pte
    from maestro_edge.export.truncate import deployable
    from maestro_edge.fit import Fitter, latency_table_for
    from maestro_edge.latency.load import busy_warning
    from maestro_edge.latency.measure import Protocol, time_programs
    from maestro_edge.lod.checkpoint import LoDCheckpoint
    from maestro_edge.quality import UserMetric, recalibrate_bn_batches_

    host = find_profile("host")
    vx, vy, tx, ty = held_out()
    val_score = lambda m: accuracy(m, vx, vy)   # noqa: E731
    calibration = lambda: list(vx.split(128))   # noqa: E731
    ckpts = {name: LoDCheckpoint.load(work / f"{name}.lod") for name in ("svd", "lod")}
    tables = {}
    for name, ckpt in ckpts.items():
        started = time.perf_counter()
        tables[name] = latency_table_for(ckpt, host, print)
        print(f"{name}: table {time.perf_counter() - started:.0f} s, dense {tables[name].full_model_ms:.4f} ms, "
              f"recheck {tables[name].provenance.get('layer_recheck')}, load {tables[name].provenance.get('load')}")
        if busy_warning(tables[name]):
            print(f"WARNING {name}: {busy_warning(tables[name])}")
    dense_ms = tables["svd"].full_model_ms
    fitters = {name: Fitter(ckpt, quality=UserMetric(ckpt, val_score, calibration, name="val_accuracy"))
               for name, ckpt in ckpts.items()}
    rows, programs = [], {}

    def add(label, ckpt, choices, budget):
        small = deployable(ckpt.model, choices)
        recalibrate_bn_batches_(small, calibration())
        programs[label] = (export_pte(small, ckpt.examples).buffer, ckpt.examples)
        rows.append({"label": label, "budget_ms": budget, "test_accuracy": accuracy(small, tx, ty),
                     "predicted_ms": (tables["svd"] if ckpt is ckpts["svd"] else tables["lod"]).predict_ms(choices)})

    add("dense", ckpts["svd"], {n: "dense" for n in tables["svd"].layers}, None)   # the user's model itself
    for fraction in [float(f) for f in args.budgets.split(",")]:
        budget = fraction * dense_ms
        for name in ("svd", "lod"):
            folder = work / "fits" / f"{name}-{fraction}"
            try:   # a fit an earlier run of this command made is kept (a rerun re-times and re-scores it only)
                record = json.loads((folder / "fit.json").read_text()) if (folder / "fit.json").is_file() else \
                    fitters[name].fit(host, budget, folder, table=tables[name])
            except InfeasibleBudget as e:   # below the fastest plan: say so, go on with the other budgets
                print(f"{name}@{fraction}: {e}")
                rows.append({"label": f"{name}+solver@{fraction}", "budget_ms": budget, "infeasible": str(e)})
                continue
            add(f"{name}+solver@{fraction}", ckpts[name], record["ranks"], budget)
        choices, step = uniform_choices(ckpts["svd"], tables["svd"], budget)
        if choices:
            add(f"uniform({step:.3f})@{fraction}", ckpts["svd"], choices, budget)
    print(f"timing {len(programs)} models side by side")
    timings = time_programs(programs, Protocol(threads=host.threads))
    for row in rows:
        if row["label"] in timings:
            row["measured_ms"] = timings[row["label"]].p50_ms
    (work / "measure.json").write_text(json.dumps(rows, indent=2))
    print(f"dense: {timings['dense'].p50_ms:.4f} ms measured here; budgets are fractions of the table's {dense_ms:.4f} ms")
    print("| model @ budget fraction | budget ms | predicted ms | measured ms | measured / dense | test accuracy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        budget = "-" if r["budget_ms"] is None else f"{r['budget_ms']:.4f}"
        if "infeasible" in r:
            print(f"| {r['label']} | {budget} | below the fastest plan | - | - | - |")
            continue
        print(f"| {r['label']} | {budget} | {r['predicted_ms']:.4f} | {r['measured_ms']:.4f} | "
              f"{r['measured_ms'] / timings['dense'].p50_ms:.1%} | {r['test_accuracy']:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True)
    sub = parser.add_subparsers(dest="step", required=True)
    t = sub.add_parser("train")
    t.add_argument("--dense-epochs", type=int, default=2)
    t.add_argument("--lod-epochs", type=int, default=1)
    t.add_argument("--width", type=int, default=32)
    t.add_argument("--limit", type=int, default=None, help="train on the first N images only (a smoke run)")
    m = sub.add_parser("measure")
    m.add_argument("--budgets", default="0.9,0.75,0.6,0.5,0.4")
    args = parser.parse_args()
    {"train": train, "measure": measure}[args.step](args)


if __name__ == "__main__":
    main()
