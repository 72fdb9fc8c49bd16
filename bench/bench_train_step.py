"""Time one LoD training step against one dense training step, side by side, and log a markdown row.

    python bench/bench_train_step.py                      # CPU, the default model's architecture, 1 thread
    python bench/bench_train_step.py --device cuda --dtype bf16 --arch resnet18 --batch 256   # the GPU check

Both steps are the real ones (maestro_edge.train.loop.TrainStep): forward, cross-entropy, backward,
Nesterov SGD with the one-cycle schedule. The dense step runs the unfactorized model; the LoD steps
run the same model factorized at full rank, with Maestro's single-layer rank sampler and the group
lasso (``--gl-lambda``). Variants:

- ``lod``: the default recipe: factors sliced to the sampled rank (new shapes every step; the CPU
  path), layers above break-even rank run on their composed weight U_r V_r;
- ``lod-mask``: constant shapes, components beyond the sampled rank masked (the GPU path);
- ``-factors`` suffix: always the two-factor forward (no composed weights; the old code);
- ``-loop`` suffix: the group lasso as the per-layer Python loop (the old code) instead of fused;
- ``-distill`` suffix: plus the full-rank pass and self-distillation (~2x by construction);
- ``-compile`` suffix (also ``dense-compile``): the step's loss under torch.compile, CUDA graphs on a GPU
  (``lod-mask-compile``; Recipe.compile needs constant shapes); compilation happens in the warm-up rounds.

Defaults: CPU ``dense,lod,lod-mask,lod-factors-loop,lod-distill``;
CUDA ``dense,lod-mask,lod-mask-factors,lod-mask-loop,lod``
(cudnn.benchmark on, so the sliced ``lod`` pays autotuning for every new shape: that is the point
of masking). Rounds are interleaved (every variant once per round, in a rotating order) after a
warm-up, and medians are reported with the ratio to the dense median. The "LoD" column is ``lod``
on CPU and ``lod-mask`` on CUDA. A row is appended to bench/results/training.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from maestro_edge.lod.factorize import factorize_
from maestro_edge.lod.layers import lod_layers, set_compose_weights, set_constant_shapes
from maestro_edge.lod.regularize import group_lasso
from maestro_edge.models import build_model
from maestro_edge.train.loop import Recipe, TrainStep, make_optimizer
from maestro_edge.train.sampler import SingleLayerSampler

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "training.md"
SMALL_MODEL = ROOT / "tests" / "fixtures" / "digits.lod.pt"   # the embedded default when P6's CPU rows were measured
SUFFIXES = ("mask", "factors", "loop", "distill", "compile")
CPU_VARIANTS = "dense,lod,lod-mask,lod-factors-loop,lod-distill"
CUDA_VARIANTS = "dense,lod-mask,lod-mask-factors,lod-mask-loop,lod"


def parse_variant(name: str) -> set[str] | None:
    """The options of a variant name (``lod`` plus dash-separated suffixes, or dense[-compile]), None if not one."""
    if name in ("dense", "dense-compile"):
        return set(name.split("-")[1:])
    parts = name.split("-")
    if parts[0] != "lod" or not set(parts[1:]) <= set(SUFFIXES) or len(set(parts[1:])) != len(parts) - 1:
        return None
    return {"lod", *parts[1:]}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
HEADER = ("| date | machine | torch | threads | device | dtype | arch | input | batch | rounds×steps | dense ms | "
          "LoD ms (×dense) | other variants ms (×dense) | command |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")


class NoSampler:
    def step(self):
        return None

    def clear(self):
        return None


class LoopPenaltyStep(TrainStep):
    """TrainStep with the per-layer loop group lasso (what the training loop did before the fused one)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        model = self.model
        self.penalty = lambda: group_lasso(model, fused=False)


def default_arch() -> tuple[str, dict]:
    """The architecture of the small digits model (name, kwargs); pass --arch for another."""
    try:
        blob = torch.load(SMALL_MODEL, map_location="cpu", weights_only=True)
        return blob["arch"]["name"], dict(blob["arch"].get("kwargs", {}))
    except (OSError, RuntimeError, KeyError):
        return "small_cnn", {}


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def build_steps(args) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    in_channels = args.input[0]
    dense = build_model(args.arch, in_channels, 10, **args.arch_kwargs).to(device)
    lod = copy.deepcopy(dense)
    factorize_(lod)
    autocast = DTYPES[args.dtype]
    total = (args.warmup + args.rounds) * args.steps_per_sample * 2 + 10
    steps = {}
    for variant in args.variants:
        options = parse_variant(variant)
        is_dense = "lod" not in options
        model = copy.deepcopy(dense if is_dense else lod).to(device).train()
        recipe = Recipe(epochs=1, batch_size=args.batch, gl_lambda=0.0 if is_dense else args.gl_lambda,
                        distill="distill" in options, constant_shapes="mask" in options or is_dense,
                        compose_weights="factors" not in options, compile="compile" in options)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer, schedule = make_optimizer(model, recipe, total)
        sampler = NoSampler() if is_dense else SingleLayerSampler(model, seed=0)
        set_constant_shapes(model, recipe.constant_shapes)
        set_compose_weights(model, recipe.compose_weights)
        cls = LoopPenaltyStep if "loop" in options else TrainStep
        steps[variant] = cls(model, optimizer, sampler, recipe, schedule, autocast=autocast)
    return steps


def time_steps(args, steps: dict) -> dict[str, list[float]]:
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, *args.input, generator=g).to(device)
    if args.channels_last:
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    names = list(steps)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.warmup + args.rounds):
        order = names[round_ % len(names):] + names[:round_ % len(names)]    # rotate: no fixed position bias
        for name in order:
            sync()
            start = time.perf_counter()
            for _ in range(args.steps_per_sample):
                steps[name](x, y)
            sync()
            if round_ >= args.warmup:
                samples[name].append((time.perf_counter() - start) * 1e3 / args.steps_per_sample)
    return samples


def parse_input(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().split("x"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default=None, help="architecture (default: the digits CNN of tests/fixtures)")
    parser.add_argument("--input", type=parse_input, default=(1, 28, 28), help="C×H×W of one image (default 1x28x28)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="autocast dtype of the forward passes")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 30 CPU, 50 GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 3 CPU, 10 GPU)")
    parser.add_argument("--steps-per-sample", type=int, default=None, help="steps per timing (default 1 CPU, 10 GPU)")
    parser.add_argument("--gl-lambda", type=float, default=1e-4)
    parser.add_argument("--variants", default=None, help=f"comma-separated: dense, lod[-{'][-'.join(SUFFIXES)}] "
                        f"(default CPU {CPU_VARIANTS}; CUDA {CUDA_VARIANTS})")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format for models and input")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.rounds = args.rounds or (50 if cuda else 30)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 3)
    args.steps_per_sample = args.steps_per_sample or (10 if cuda else 1)
    args.variants = [v for v in (args.variants or (CUDA_VARIANTS if cuda else CPU_VARIANTS)).split(",") if v]
    if "dense" not in args.variants or any(parse_variant(v) is None for v in args.variants):
        parser.error(f"--variants must include dense; others are lod with suffixes from {', '.join(SUFFIXES)}")
    if args.arch is None:
        args.arch, args.arch_kwargs = default_arch()
    else:
        args.arch_kwargs = {}
    torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True

    steps = build_steps(args)
    lod_variant = next((v for v in args.variants if "lod" in parse_variant(v)), None)
    n_layers = len(lod_layers(steps[lod_variant].model)) if lod_variant else 0
    samples = time_steps(args, steps)
    med = {name: statistics.median(values) for name, values in samples.items()}
    dense = med["dense"]
    # Compiled variants are also compared with the compiled dense step: like with like.
    dense_compiled = med.get("dense-compile")

    def versus_compiled(name):
        return f", ×{med[name] / dense_compiled:.2f} dense-compile" if dense_compiled and "compile" in name else ""

    for name in args.variants:
        print(f"{name:16s} median {med[name]:8.2f} ms  min {min(samples[name]):8.2f} ms  x{med[name] / dense:.2f}"
              f"{versus_compiled(name)}")

    def cell(name):
        return f"{med[name]:.2f} (×{med[name] / dense:.2f}{versus_compiled(name)})" if name in med else "–"

    main_lod = "lod-mask" if cuda else "lod"
    others = "; ".join(f"{name} {cell(name)}" for name in args.variants if name not in ("dense", main_lod))
    layout = ", channels_last" if args.channels_last else ""
    arch = args.arch + (f" {args.arch_kwargs}" if args.arch_kwargs else "")
    command = "python bench/bench_train_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    row = (f"| {datetime.date.today().isoformat()} | {machine()} | {torch.__version__} | {args.threads} | "
           f"{args.device} | {args.dtype}{layout} | {arch} ({n_layers} LoD layers) | {'x'.join(map(str, args.input))} | "
           f"{args.batch} | {args.rounds}×{args.steps_per_sample} | {dense:.2f} | {main_lod} {cell(main_lod)} | "
           f"{others or '–'} | `{command.strip()}` |\n")
    print(row, end="")
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not args.out.exists():
            args.out.write_text("# LoD training step vs dense training step\n\n"
                                "Written by `bench/bench_train_step.py` (medians of interleaved rounds; "
                                "×dense = LoD median / dense median). Goals: LoD ≤ 1.5× dense on CPU, "
                                "≤ 1.3× on GPU (ResNet-18, bf16, batch 256).\n\n" + HEADER)
        with open(args.out, "a") as f:
            f.write(row)


if __name__ == "__main__":
    main()
