"""The ``maestro-edge`` command line: a thin click layer over the library.

Imports of torch/executorch happen inside commands, so ``--help`` is instant. Expected failures
(MaestroError, bad flags) print one line on stderr and exit non-zero; no traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path

import click

from maestro_edge.errors import MaestroError
from maestro_edge.outputs import check_output_file, check_output_folder

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default.lod.pt"


def _echo_progress(quiet: bool):
    """Status lines and counted steps with an ETA on stderr; nothing with --quiet."""
    from maestro_edge.progress import Reporter, TerminalReporter

    return Reporter() if quiet else TerminalReporter()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="maestro-edge")
def cli():
    """Put one LoD-trained low-rank model onto many devices, each under its own latency budget.

    \b
    Example:
      maestro-edge fit --device pixel7 --ms 20
    """


@cli.command()
@click.option("--check", is_flag=True, help="Also test the connection of devices with a transport configured.")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def devices(check, as_json):
    """List the device profiles (profiles/*.toml).

    \b
    Example:
      maestro-edge devices
    """
    from maestro_edge.devices.profile import list_profiles

    profiles = list_profiles()
    if as_json:
        click.echo(json.dumps([{k: v for k, v in vars(p).items()} for p in profiles], indent=2))
        return
    click.echo(f"{'device':<10} {'runtime':<20} {'threads':>7}  {'transport':<9} {'latencies':<10} description")
    for p in profiles:
        click.echo(f"{p.name:<10} {p.runtime:<20} {p.threads:>7}  {p.transport:<9} {p.latency_source:<10} {p.description}")
    if check:
        from maestro_edge.devices.transports import make_transport

        for p in profiles:
            options = {k: v for k, v in p.target.items() if k in ("host", "port", "identity", "serial")}
            if p.transport == "ssh" and "host" not in options:
                click.echo(f"{p.name}: not checked (no host in the profile's [target]; 'maestro-edge profile --host' works)")
                continue
            try:
                with make_transport(p.transport, **options) as transport:
                    click.echo(f"{p.name}: reachable: {transport.check()}")
            except MaestroError as e:
                click.echo(f"{p.name}: NOT reachable: {e}")


ARCHS = ("small_cnn", "lenet5", "resnet18", "vgg19_bn")   # kept here: importing models pulls in torch


@cli.command()
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
    from maestro_edge.train.loop import Recipe
    from maestro_edge.train.run import train_checkpoint

    torch.set_num_threads(1)
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, gl_lambda=gl_lambda, shrink_threshold=shrink_threshold,
                    sampler=sampler, seed=seed, distill=distill, constant_shapes=constant_shapes, bn_samples=bn_samples,
                    warmup_epochs=warmup_epochs, compile=compile_step, clip_grad_norm=clip_grad_norm)
    reporter = _echo_progress(quiet)
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


def diverging(before: dict, after: dict) -> bool:
    """An epoch that more than doubled the train loss (or made it NaN) and lost validation accuracy."""
    return not after["train_loss"] <= 2 * before["train_loss"] and not after["val_accuracy"] >= before["val_accuracy"]


@cli.command()
@click.option("--device", required=True, help="Device name (see 'maestro-edge devices') or profile .toml path.")
@click.option("--host", default=None, help="ssh target user@address (ssh devices; default: the profile's [target]).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="ssh port.")
@click.option("--identity", type=click.Path(dir_okay=False), default=None, help="ssh private key file.")
@click.option("--python", "python", default=None,
              help="Python on the target that has the runtime (default python3), e.g. ~/venv/bin/python.")
@click.option("--serial", default=None, help="adb device serial (adb devices).")
@click.option("--runner", default=None,
              help="adb devices: ExecuTorch executor_runner built for the phone (see docs/adb.md).")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="LoD checkpoint (default: the embedded model).")
@click.option("--force", is_flag=True, help="Measure again from scratch, even if a table or a partial run exists.")
@click.option("--allow-busy", is_flag=True,
              help="Keep a host table even if other processes used the CPU meanwhile (flagged in its provenance).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def profile(device, host, port, identity, python, serial, runner, model_path, force, allow_busy, quiet):
    """Measure per-layer latency of a model on a device and cache the table.

    \b
    Every finished layer is saved as it is measured: an interrupted run resumes.
    Examples:
      maestro-edge profile --device host
      maestro-edge profile --device rpi5 --host pi@raspberrypi.local --python '~/venv/bin/python'
      maestro-edge profile --device pixel7 --serial 2A1B3C --runner ./executor_runner
    """
    from maestro_edge.devices.profile import find_profile
    from maestro_edge.latency.profile import journal_path, table_lock
    from maestro_edge.latency.remote import measure_device_table
    from maestro_edge.latency.table import cache_dir, cached_table_path, check_table_folder
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    prof = find_profile(device)
    target = {**prof.target, **{k: v for k, v in dict(host=host, port=port, identity=identity, python=python,
                                                           serial=serial, runner=runner).items() if v is not None}}
    if prof.transport == "ssh" and not target.get("host"):
        raise click.UsageError(f"{prof.name} is reached over ssh: pass --host user@address "
                               "(or set host in the profile's [target] table)")
    check_table_folder(cache_dir() / "latency")   # an unwritable cache is refused before the model is even loaded
    ckpt = LoDCheckpoint.load(model_path or DEFAULT_MODEL)
    path = cached_table_path(prof, ckpt.digest())
    say = _echo_progress(quiet).say
    # --force deletes nothing another process is measuring into (no cache folder yet: nothing to delete or reuse,
    # and measuring takes the lock itself)
    with table_lock(prof, path) if path.parent.is_dir() else contextlib.nullcontext():
        if force:
            path.unlink(missing_ok=True)
            journal_path(path).unlink(missing_ok=True)
        if path.is_file():
            from maestro_edge.fit import load_table

            table = load_table(path, ckpt, prof)
            click.echo(f"{path}: cached, measured {table.provenance.get('measured_at', 'at an unknown time')} on "
                       f"{prof.name} ({table.runtime}, {table.threads} thread(s)); pass --force to measure again")
            return
        from maestro_edge.fit import check_exportable

        say("exporting the whole model once (a model ExecuTorch cannot take fails here)")
        check_exportable(ckpt)
        table = measure_device_table(ckpt, prof, table_path=path, allow_busy=allow_busy,
                                     progress=lambda what, i, n: say(f"[{i}/{n}] {what}"), **target)
    click.echo(f"wrote {path}: {len(table.layers)} layers, overhead {table.overhead_ms:.3f} ms, "
               f"full model {table.full_model_ms:.3f} ms (measured on {prof.name}, {prof.runtime}, "
               f"{table.threads} thread(s))")
    from maestro_edge.latency.load import busy_warning

    warning = busy_warning(table)
    if warning:
        click.echo(f"warning: {warning}", err=True)


_bundle_option = click.option(
    "--bundle", is_flag=True,
    help="Also write model.bpte: the .pte with 16 held-out inputs and expected outputs (ExecuTorch BundledProgram) "
         "so the target can check itself.")


def _quality_options(command):
    for option in reversed([
        click.option("--eval", "eval_spec", default=None, metavar="MODULE:FUNCTION",
                     help="Score each truncated model with your function of the model (returns a float, higher is "
                          "better), importable from the current folder, e.g. myproject.evals:score."),
        click.option("--calibrate", "calibrate_spec", default=None, metavar="MODULE:FUNCTION",
                     help="With --eval: a function returning batches of model inputs to recalibrate BatchNorm on."),
        click.option("--full-delegation", is_flag=True,
                     help="Refuse a model with any op XNNPACK does not take (default: those run on ExecuTorch's "
                          "portable CPU kernels, and fit.json lists them)."),
    ]):
        command = option(command)
    return command


def _budgets(ctx, param, value):
    """'20' or '10,15,20' -> [20.0] or [10.0, 15.0, 20.0], each a positive, finite number of ms."""
    budgets = []
    for part in value.split(","):
        try:
            budget = float(part)
        except ValueError:
            raise click.BadParameter(f"{part.strip()!r} is not a number of milliseconds (use e.g. 20 or 10,15,20)")
        if not math.isfinite(budget) or budget <= 0:
            raise click.BadParameter(f"the budget must be a positive number of milliseconds, got {part.strip()}")
        budgets.append(budget)
    return budgets


@cli.command()
@click.option("--device", "devices_", multiple=True, required=True,
              help="Device name (see 'maestro-edge devices') or profile .toml path; repeat for several devices.")
@click.option("--ms", "budgets", required=True, callback=_budgets,
              help="Latency budget in milliseconds, or a comma-separated sweep (10,15,20).")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="LoD checkpoint (default: the embedded model).")
@click.option("--table", "table_path", type=click.Path(path_type=Path), default=None,
              help="Use this latency table (JSON from 'maestro-edge profile') instead of the cached/estimated one.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: out/<device>-<ms>ms; with several fits, the parent of those folders).")
@click.option("--host", default=None, help="ssh target user@address: measure the exported model there (one --device).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="ssh port.")
@click.option("--identity", type=click.Path(dir_okay=False), default=None, help="ssh private key file.")
@click.option("--python", "python", default=None, help="Python on the target that has the runtime (default python3).")
@click.option("--serial", default=None, help="adb device serial (one --device reached over adb).")
@click.option("--runner", default=None,
              help="ExecuTorch executor_runner built for the phone: measure the exported model there (docs/adb.md).")
@click.option("--json", "as_json", is_flag=True, help="Print fit.json on stdout (a list for several fits).")
@click.option("--pessimistic", is_flag=True,
              help="Estimated devices: solve so that the top of the estimate's error band meets the budget "
                   "(the band of the device class, from published measurements; see fit.json's error_band).")
@click.option("--baselines", is_flag=True,
              help="Also score the uniform-rank model that meets each budget (what you would get without the "
                   "solver; one more model to score per fit).")
@_bundle_option
@_quality_options
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def fit(devices_, budgets, model_path, table_path, out_dir, host, port, identity, python, serial, runner, as_json,
        pessimistic, baselines, bundle, eval_spec, calibrate_spec, full_delegation, quiet):
    """Pick per-layer ranks that meet the budget, export .pte and .onnx, verify them.

    \b
    Writes model.pte, model.onnx (and with --bundle model.bpte) and fit.json to one folder per device and budget.
    Examples:
      maestro-edge fit --device pixel7 --ms 20
      maestro-edge fit --device pixel7 --device rpi5 --ms 30,40,50 --baselines
      maestro-edge fit --device host --ms 30      (profiles this host first: about 5 minutes)
      maestro-edge fit --model my.lod --eval myproject.evals:score --device host --ms 5
    """
    from maestro_edge.devices.profile import find_profile

    profiles = [find_profile(d) for d in devices_]
    many = len(profiles) * len(budgets) > 1
    jobs = [(p, b, (out_dir or Path("out")) / f"{p.name}-{b:g}ms" if many or out_dir is None else out_dir)
            for p in profiles for b in budgets]
    for _, _, folder in jobs:
        check_output_folder(folder)
    if table_path is not None and len(profiles) > 1:
        raise click.BadParameter("a latency table belongs to one device; pass one --device with --table")
    flags = {k: v for k, v in dict(host=host, port=port, identity=identity, python=python).items() if v is not None}
    if flags and (len(profiles) > 1 or profiles[0].transport != "ssh"):
        raise click.BadParameter("--host/--port/--identity/--python need exactly one --device reached over ssh "
                                 "(several devices take theirs from each profile's [target])")
    adb_flags = {k: v for k, v in dict(serial=serial, runner=runner).items() if v is not None}
    if adb_flags and (len(profiles) > 1 or profiles[0].transport != "adb"):
        raise click.BadParameter("--serial/--runner need exactly one --device reached over adb "
                                 "(several devices take theirs from each profile's [target])")
    flags.update(adb_flags)

    import torch

    from maestro_edge.fit import Fitter, load_table
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    from maestro_edge.latency.table import cache_dir

    cache_dir()   # a cache path that is a file or a dangling link is refused before the model is loaded
    torch.set_num_threads(1)
    ckpt = LoDCheckpoint.load(model_path or DEFAULT_MODEL)
    table = load_table(table_path, ckpt, profiles[0]) if table_path else None
    fitter = Fitter(ckpt, progress=_echo_progress(quiet), bundle=bundle,
                    quality=_quality(ckpt, eval_spec, calibrate_spec), full_delegation=full_delegation,
                    baselines=baselines, pessimistic=pessimistic)
    records, failures = [], []
    with contextlib.ExitStack() as stack:
        timers = {p.name: _remote_timer(stack, p, flags) for p in profiles}
        for prof, budget, folder in jobs:
            if many and not quiet:
                click.echo(f"{prof.name} at {budget:g} ms:", err=True)
            try:
                records.append(fitter.fit(prof, budget, folder, table=table, timer=timers[prof.name]))
            except MaestroError as e:
                if not many:
                    raise
                failures.append(f"{prof.name} at {budget:g} ms: {e}")
                click.echo(f"Error: {failures[-1]}", err=True)
    if as_json:
        click.echo(json.dumps(records if many else records[0], indent=2))
    else:
        _print_summary(records, jobs)
    if failures:
        raise click.ClickException(f"{len(failures)} of {len(jobs)} fits failed (see above)")


def _quality(ckpt, eval_spec, calibrate_spec):
    """The user's --eval / --calibrate functions as fit's scorer (None: the checkpoint's default)."""
    from maestro_edge.entry_points import load_callable
    from maestro_edge.quality import UserMetric

    if calibrate_spec and not eval_spec:
        raise click.BadParameter("--calibrate needs --eval (recalibrated BatchNorm only matters to a measured "
                                 "metric); pass --eval too")
    if not eval_spec:
        return None
    calibration = load_callable(calibrate_spec, "--calibrate") if calibrate_spec else None
    return UserMetric(ckpt, load_callable(eval_spec, "--eval"), calibration,
                      name=eval_spec.partition(":")[2] if ckpt.program is None else None)


def _remote_timer(stack: contextlib.ExitStack, prof, flags: dict):
    """A timer on the device itself: over ssh when a host is known, over adb when a runner is; else None."""
    target = {**prof.target, **flags}
    over_ssh = prof.transport == "ssh" and target.get("host")
    over_adb = prof.transport == "adb" and (target.get("runner") or flags.get("serial"))   # --serial alone: error
    if not (over_ssh or over_adb):
        return None
    from maestro_edge.devices.transports import make_transport
    from maestro_edge.latency.remote import timer_for

    keys = ("host", "port", "identity") if over_ssh else ("serial",)
    transport = stack.enter_context(make_transport(prof.transport, **{k: target[k] for k in keys if k in target}))
    timer = timer_for(transport, prof, prof.threads, target.get("python", "python3"), target.get("runner"))
    stack.callback(timer.cleanup)
    return timer


def _value(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _score_text(score: dict | None, value) -> str:
    """'0.838 (0.814-0.860, n=1000)': a metric with its 95% interval and sample count where known."""
    if value is None:
        return "-"
    score = score or {}
    if score.get("ci95") and score.get("samples"):
        low, high = score["ci95"]
        return f"{value:.3f} ({low:.3f}-{high:.3f}, n={score['samples']})"
    return f"{value:.4f}"


def _predicted_text(record: dict) -> str:
    """'19.98 [15.4-22.6]': an estimate with its error band; a measured device's prediction alone."""
    text = f"{record['predicted_ms']:.4g}"
    if record.get("predicted_low_ms") is not None:
        text += f" [{record['predicted_low_ms']:.3g}-{record['predicted_high_ms']:.3g}]"
    return text


def _print_summary(records: list[dict], jobs) -> None:
    folders = {(p.name, b): f for p, b, f in jobs}
    metric = records[0].get("metric", {}) if records else {}
    name = str(metric.get("name", "accuracy"))[:12]
    rows = [(r["device"], f"{r['budget_ms']:g}", _predicted_text(r),
             f"{r['measured_ms']:.4g}" if r["measured_ms"] is not None else "-", r["latency_source"],
             _score_text(r.get("scores", {}).get("fitted"), r["accuracy"]),
             _score_text(r.get("scores", {}).get("dense"), r["dense_accuracy"]),
             f"{folders[(r['device'], r['budget_ms'])]}/") for r in records]
    header = ("device", "budget", "predicted [band]", "measured", "source", f"{name} (95%)", "dense", "folder")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.rjust(w) if i in (1, 2, 3) else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    click.echo("latencies in ms; measured = the exported model timed on the device, '-' = device not reachable")
    for band in {json.dumps(r["error_band"], sort_keys=True) for r in records if r.get("error_band")}:
        band = json.loads(band)
        click.echo(f"band of an estimate ({band['device_class']}s): the true latency fell within "
                   f"[{band['low_factor']:.2f}x, {band['high_factor']:.2f}x] the estimate for "
                   f"{band['coverage']:.0%} of {band['rows']} published measurements; --pessimistic solves for the top")
    fitted = records[0].get("scores", {}).get("fitted", {}) if records else {}
    dense = records[0].get("scores", {}).get("dense", {}) if records else {}
    if fitted.get("samples"):
        info = records[0].get("model", {})
        click.echo(f"{name}: {fitted['how']} on {fitted['samples']} held-out images ({info.get('eval_data')}), "
                   f"BatchNorm recalibrated on {info.get('bn_samples')}; dense: {dense.get('how')}")
    if metric.get("source") == "estimated":
        click.echo(f"{metric.get('name')} not measured (no --eval): the plan's estimated drop is in fit.json")
    loose = sorted({f"{r['device']} at {r['budget_ms']:g} ms" for r in records if not r["budget_binding"]})
    if loose:
        click.echo(f"not binding (the dense model already fits): {', '.join(loose)}")


@cli.command()
@click.option("--plan", "plan_path", type=click.Path(path_type=Path), required=True,
              help="A fit.json (or JSON with \"ranks\") naming the rank of every layer.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="LoD checkpoint the plan was made for (default: the embedded model).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@_bundle_option
@_quality_options
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def export(plan_path, model_path, out_dir, bundle, eval_spec, calibrate_spec, full_delegation, quiet):
    """Export a model truncated to the ranks of a plan as .pte and .onnx, verified against PyTorch.

    \b
    Writes model.pte, model.onnx (and with --bundle model.bpte) and export.json to the output folder.
    Example:
      maestro-edge export --plan out/pixel7-20ms/fit.json --out build/pixel7
    """
    check_output_folder(out_dir)
    import torch

    from maestro_edge.fit import Fitter, read_ranks
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    torch.set_num_threads(1)
    ckpt = LoDCheckpoint.load(model_path or DEFAULT_MODEL)
    fitter = Fitter(ckpt, progress=_echo_progress(quiet), bundle=bundle,
                    quality=_quality(ckpt, eval_spec, calibrate_spec), full_delegation=full_delegation)
    record = fitter.export(read_ranks(plan_path, ckpt), out_dir)
    click.echo(f"wrote {out_dir}/: {record['metric']['name']} {_value(record['accuracy'])} "
               f"(dense {_value(record['dense_accuracy'])})")


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path), default=Path("out"))
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="Where to write the HTML page (default: FOLDER/report.html).")
def report(folder, out_path):
    """Write a self-contained HTML report of every fit.json under FOLDER (default: out/).

    \b
    Pareto curve of accuracy vs latency per device, the rank chosen per layer, predicted vs measured
    latency, and a table of the exported artifacts.
    Example:
      maestro-edge fit --device pixel7 --device rpi5 --ms 30,40,50
      maestro-edge report out/
    """
    from maestro_edge.report import write_report

    click.echo(f"wrote {write_report(folder, out_path)}")


def main(argv=None) -> None:
    """Entry point: one line per error, exit 2 for usage errors, 1 for others, 130 on Ctrl-C."""
    try:
        code = cli.main(args=argv, prog_name="maestro-edge", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError:
        _fail("no command given; run 'maestro-edge --help' to see the commands", 2)
    except click.UsageError as e:
        command = e.ctx.command_path if e.ctx and e.ctx.parent else "maestro-edge"
        _fail(f"{e.format_message()} (see '{command} --help')", 2)
    except click.ClickException as e:
        _fail(e.format_message(), e.exit_code)
    except MaestroError as e:
        _fail(str(e), e.exit_code)
    except (KeyboardInterrupt, click.Abort):
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)   # --help/--version return their code here


def _fail(message: str, code: int) -> None:
    """One line on stderr, whatever the message holds (user input may carry newlines)."""
    click.echo("Error: " + " ".join(message.split()), err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
