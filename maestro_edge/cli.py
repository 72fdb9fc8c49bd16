"""The ``maestro-edge`` command line: a thin click layer over the library.

Imports of torch/executorch happen inside commands, so ``--help`` is instant. Expected failures
(MaestroError, bad flags) print one line on stderr and exit non-zero; no traceback.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from maestro_edge.errors import MaestroError

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default.lod.pt"


def _echo_progress(quiet: bool):
    return (lambda message: None) if quiet else (lambda message: click.echo(f"  {message}", err=True))


def _budget(ctx, param, value):
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"the budget must be a positive number of milliseconds, got {value:g}")
    return value


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
        for p in profiles:
            if p.transport == "local":
                click.echo(f"{p.name}: reachable (this machine)")
            else:
                click.echo(f"{p.name}: not checked; ssh/adb transports need --host/--serial (see 'maestro-edge profile --help')")


@cli.command()
@click.option("--arch", default="small_cnn", show_default=True, help="Architecture to train.")
@click.option("--data", "data_name", default="digits", show_default=True, help="Offline data set.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Checkpoint to write.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True)
@click.option("--gl-lambda", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Weight of the hierarchical group lasso.")
@click.option("--sampler", type=click.Choice(["single-layer", "independent"]), default="single-layer", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def train(arch, data_name, out, epochs, batch_size, lr, gl_lambda, sampler, seed, quiet):
    """Train a LoD model and save a checkpoint with its importance table.

    \b
    Example:
      maestro-edge train --arch small_cnn --data digits --epochs 30 --out lod.pt
    """
    if out.is_dir():
        raise click.BadParameter(f"{out} is a folder; give a file path", param_hint="--out")
    import torch

    from maestro_edge.train.loop import Recipe
    from maestro_edge.train.run import train_checkpoint

    torch.set_num_threads(1)
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, gl_lambda=gl_lambda, sampler=sampler, seed=seed)
    report = _echo_progress(quiet)

    def on_epoch(epoch, m):
        report(f"epoch {m['epoch']}/{epochs}: train loss {m['train_loss']:.3f}, val acc {m['val_accuracy']:.3f}, "
               f"{m['elapsed_s']:.0f} s")

    ckpt = train_checkpoint(arch, data_name, recipe, out, on_epoch=on_epoch)
    click.echo(f"wrote {out}: test accuracy {ckpt.metrics['test_accuracy']:.4f}, digest {ckpt.digest()}")


@cli.command()
@click.option("--device", required=True, help="Device name (see 'maestro-edge devices') or profile .toml path.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="LoD checkpoint (default: the embedded model).")
@click.option("--force", is_flag=True, help="Measure again even if a table is cached.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def profile(device, model_path, force, quiet):
    """Measure per-layer latency of a model on a device and cache the table.

    \b
    Example:
      maestro-edge profile --device host
    """
    from maestro_edge.devices.profile import find_profile
    from maestro_edge.latency.profile import measure_host_table
    from maestro_edge.latency.table import cached_table_path
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    prof = find_profile(device)
    if not prof.is_host:
        raise click.UsageError(f"profiling '{prof.name}' over {prof.transport} is not available yet; "
                               "only --device host can be measured in this version")
    ckpt = LoDCheckpoint.load(model_path or DEFAULT_MODEL)
    path = cached_table_path(prof.name, ckpt.digest())
    if force:
        path.unlink(missing_ok=True)
    say = _echo_progress(quiet)
    table = measure_host_table(ckpt, prof, table_path=path, progress=lambda what, i, n: say(f"[{i}/{n}] {what}"))
    click.echo(f"wrote {path}: {len(table.layers)} layers, overhead {table.overhead_ms:.3f} ms, "
               f"full model {table.full_model_ms:.3f} ms (measured, {prof.runtime}, {table.threads} thread(s))")


@cli.command()
@click.option("--device", required=True, help="Device name (see 'maestro-edge devices') or profile .toml path.")
@click.option("--ms", "budget_ms", type=float, required=True, callback=_budget, help="Latency budget in milliseconds.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="LoD checkpoint (default: the embedded model).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: out/<device>-<ms>ms).")
@click.option("--json", "as_json", is_flag=True, help="Print fit.json on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def fit(device, budget_ms, model_path, out_dir, as_json, quiet):
    """Pick per-layer ranks that meet the budget, export .pte and .onnx, verify them.

    \b
    Writes model.pte, model.onnx and fit.json to the output folder.
    Example:
      maestro-edge fit --device pixel7 --ms 20
    """
    from maestro_edge.devices.profile import find_profile

    prof = find_profile(device)
    out_dir = out_dir or Path("out") / f"{prof.name}-{budget_ms:g}ms"
    if out_dir.exists() and not out_dir.is_dir():
        raise click.BadParameter(f"{out_dir} is a file; give a folder path", param_hint="--out")

    import torch

    from maestro_edge.fit import fit as run_fit
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    torch.set_num_threads(1)
    ckpt = LoDCheckpoint.load(model_path or DEFAULT_MODEL)
    record = run_fit(ckpt, prof, budget_ms, out_dir, progress=_echo_progress(quiet))
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    measured = (f"measured {record['measured_ms']:.3f} ms" if record["measured_ms"] is not None
                else "not measured (device not reachable)")
    click.echo(f"{prof.name}: budget {budget_ms:g} ms, predicted {record['predicted_ms']:.3f} ms "
               f"({record['latency_source']}), {measured}; accuracy {record['accuracy']:.4f} "
               f"(dense {record['dense_accuracy']:.4f}) -> {out_dir}/")


@cli.command()
def export():
    """Export a model with given ranks (not yet: use 'fit', which exports)."""
    raise click.UsageError("'export' is not available yet; 'maestro-edge fit' exports .pte and .onnx")


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
      maestro-edge fit --device host --ms 0.1 && maestro-edge fit --device host --ms 0.15
      maestro-edge report out/
    """
    from maestro_edge.report import write_report

    click.echo(f"wrote {write_report(folder, out_path)}")


def main(argv=None) -> None:
    """Entry point: one line per error, exit 2 for usage errors, 1 for others, 130 on Ctrl-C."""
    try:
        code = cli.main(args=argv, prog_name="maestro-edge", standalone_mode=False)
    except click.UsageError as e:
        hint = f" (see 'maestro-edge {e.ctx.info_name} --help')" if e.ctx and e.ctx.parent else ""
        click.echo(f"Error: {e.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"Error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except MaestroError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, click.Abort):
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)   # --help/--version return their code here


if __name__ == "__main__":
    main()
