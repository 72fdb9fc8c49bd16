"""maestro-edge train: a LoD model from one of the built-in architectures and data sets."""

from __future__ import annotations

from pathlib import Path

import click

from maestro_edge.cli.options import echo_progress
from maestro_edge.outputs import check_output_file


ARCHS = ("small_cnn", "lenet5", "resnet18", "vgg19_bn")   # kept here: importing models pulls in torch


@click.command()
@click.option("--arch", type=click.Choice(ARCHS), default="small_cnn", show_default=True, help="Architecture to train.")
@click.option("--data", "data_name", type=click.Choice(["digits", "fashion-mnist"]), default="digits",
              show_default=True, help="Offline data set (fashion-mnist: Debian package dataset-fashion-mnist).")
@click.option("--input-size", type=click.IntRange(min=8), default=None,
              help="resnet18: resize inputs to this size inside the model (bilinear), e.g. 96 for phone-sized compute.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint to write (saved after every epoch; a rerun resumes it).")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True)
@click.option("--gl-lambda", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Weight of the hierarchical group lasso.")
@click.option("--shrink-threshold", type=click.FloatRange(min=0), default=1e-7, show_default=True,
              help="Progressive shrinking threshold after each epoch (0: off).")
@click.option("--sampler", type=click.Choice(["single-layer", "independent"]), default="single-layer", show_default=True,
              help="single-layer: Maestro's (one layer truncated per step); independent: every layer every step.")
@click.option("--distill", is_flag=True, help="Also train the full model and distil truncations from it (~2x cost).")
@click.option("--constant-shapes", is_flag=True, help="Mask instead of slicing (same shapes every step; for GPUs).")
@click.option("--compile", "compile_step", is_flag=True,
              help="torch.compile the step (CUDA graphs on a GPU; needs --constant-shapes, not --distill). "
                   "The first steps compile.")
@click.option("--clip-grad-norm", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Clip the gradient's global L2 norm to this before each step (0: off). LoD at a high --lr can "
                   "diverge; 5 kept ResNet-18 stable at --lr 0.1 (BENCHMARKS.md).")
@click.option("--warmup-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="First epochs at full rank (no sampling, lasso or shrinking), then an SVD re-split of every layer.")
@click.option("--bn-samples", type=click.IntRange(min=0), default=10000, show_default=True,
              help="Training images for BatchNorm recalibration before evaluation (0: all).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use at most this many images per split.")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue an unfinished --out checkpoint.")
@click.option("--device", "train_device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,   # = lod.metadata.MAX_SEED
              help="Seed of every random choice (data order, sampled ranks).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def train(arch, data_name, input_size, out, epochs, batch_size, lr, gl_lambda, shrink_threshold, sampler, distill, constant_shapes,
          compile_step, clip_grad_norm, warmup_epochs, bn_samples, limit, resume, train_device, precision, seed, quiet):
    """Train a LoD model and save a checkpoint with its importance table.

    \b
    Data-parallel: torchrun --nproc_per_node 2 -m maestro_edge train ... (gloo on CPU).
    Examples:
      maestro-edge train --arch small_cnn --data digits --epochs 30 --out lod.pt
      maestro-edge train --arch resnet18 --data fashion-mnist --epochs 30 --device cuda --precision bf16 --out r18.pt
    """
    check_output_file(out)
    if input_size is not None and arch != "resnet18":
        raise click.BadParameter(f"only resnet18 takes an input size, not {arch}", param_hint="--input-size")
    if compile_step and (distill or not constant_shapes):
        raise click.BadParameter("needs --constant-shapes and no --distill (sliced ranks would recompile every step)",
                                 param_hint="--compile")
    if warmup_epochs >= epochs:
        raise click.BadParameter(f"must be below --epochs ({epochs}): LoD needs at least one epoch after the warm-up",
                                 param_hint="--warmup-epochs")
    import torch

    if train_device == "cuda" and not torch.cuda.is_available():   # else a traceback from deep inside training
        why = ("no CUDA GPU is visible to this torch (check the NVIDIA driver and CUDA_VISIBLE_DEVICES)"
               if torch.backends.cuda.is_built() else
               f"CUDA is not available in this torch build ({torch.__version__} is CPU only: install a CUDA build)")
        raise click.BadParameter(f"{why}, or train with --device cpu", param_hint="--device")

    from maestro_edge.train.distributed import is_main_process
    from maestro_edge.train.loop import Recipe, diverging
    from maestro_edge.train.run import train_checkpoint

    torch.set_num_threads(1)
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, gl_lambda=gl_lambda, shrink_threshold=shrink_threshold,
                    sampler=sampler, seed=seed, distill=distill, constant_shapes=constant_shapes, bn_samples=bn_samples,
                    warmup_epochs=warmup_epochs, compile=compile_step, clip_grad_norm=clip_grad_norm)
    reporter = echo_progress(quiet)
    report = reporter.say
    seen = []

    def on_epoch(epoch, m):
        report(f"epoch {m['epoch']}/{epochs}: train loss {m['train_loss']:.3f}, val acc {m['val_accuracy']:.3f}, "
               f"{m['elapsed_s']:.0f} s")
        seen.append(m)
        if len(seen) > 1 and diverging(seen[-2], m):
            click.echo(f"Warning: the train loss rose from {seen[-2]['train_loss']:.3f} to {m['train_loss']:.3f} and "
                       "val accuracy fell: training is diverging. Stop it and train again with --clip-grad-norm 5 "
                       "or a lower --lr.", err=True)

    arch_kwargs = {"input_size": input_size} if input_size is not None else None
    ckpt = train_checkpoint(arch, data_name, recipe, out, on_epoch=on_epoch, arch_kwargs=arch_kwargs, resume=resume,
                            limit=limit, device=train_device, precision=precision, progress=reporter)
    if is_main_process():
        click.echo(f"wrote {out}: test accuracy {ckpt.metrics['test_accuracy']:.4f}, digest {ckpt.digest()}")
