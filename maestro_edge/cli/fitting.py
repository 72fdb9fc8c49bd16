"""maestro-edge fit, export and report: ranks that meet a budget, the files for the device, the HTML report."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from maestro_edge.cli.options import (bundle_option, default_model, echo_progress, parse_budgets, quality,
                                      quality_options, recovery)
from maestro_edge.errors import MaestroError
from maestro_edge.outputs import check_output_folder


@click.command()
@click.option("--device", "devices_", multiple=True, required=True,
              help="Device name (see 'maestro-edge devices') or profile .toml path; repeat for several devices.")
@click.option("--ms", "budgets", required=True, callback=parse_budgets,
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
@click.option("--choose-among", "plan_candidates", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Also score up to N of the solver's next-best plans on validation data and keep the best "
                   "(one more score per plan; a user model needs --eval).")
@click.option("--recover-epochs", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Fine-tune each fitted model for N epochs, distilled from the dense one (built-in models: their "
                   "training images; your model: --train-data). Weights move, the latency does not.")
@click.option("--train-data", "train_data_spec", default=None, metavar="MODULE:FUNCTION",
              help="With --recover-epochs and your model: a function returning batches of model inputs to "
                   "fine-tune on (like --calibrate's; the dense model's outputs are the targets).")
@click.option("--allow-busy", is_flag=True,
              help="When the host's table is measured now: keep it even if other processes kept the cores busy "
                   "(flagged in the table and fit.json) instead of refusing.")
@bundle_option
@quality_options
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def fit(devices_, budgets, model_path, table_path, out_dir, host, port, identity, python, serial, runner, as_json,
        pessimistic, baselines, plan_candidates, recover_epochs, train_data_spec, allow_busy, bundle, eval_spec,
        calibrate_spec, full_delegation, quiet):
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
    flags = dict(host=host, port=port, identity=identity, python=python, serial=serial, runner=runner)
    given = [f"--{k}" for k, v in flags.items() if v is not None]
    if given and len(profiles) > 1:
        raise click.BadParameter(f"{'/'.join(given)} name one device's target: pass exactly one --device with them "
                                 "(several devices take theirs from each profile's [target])")

    import torch

    from maestro_edge.fit import Fitter
    from maestro_edge.latency.table import cache_dir, load_table
    from maestro_edge.latency.target import Target
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    targets = [Target.resolve(p, **flags) for p in profiles]   # flags only with one device (checked above)
    cache_dir()   # a cache path that is a file or a dangling link is refused before the model is loaded
    torch.set_num_threads(1)
    ckpt = LoDCheckpoint.load(model_path or default_model())
    table = load_table(table_path, ckpt, profiles[0]) if table_path else None
    fitter = Fitter(ckpt, progress=echo_progress(quiet), bundle=bundle,
                    quality=quality(ckpt, eval_spec, calibrate_spec), full_delegation=full_delegation,
                    baselines=baselines, pessimistic=pessimistic, plan_candidates=plan_candidates,
                    recovery=recovery(ckpt, recover_epochs, train_data_spec), allow_busy=allow_busy)
    records, failures, codes = [], [], set()
    with contextlib.ExitStack() as stack:
        timers = {t.name: stack.enter_context(t.timer_if_measurable()) for t in targets}
        for prof, budget, folder in jobs:
            if many and not quiet:
                click.echo(f"{prof.name} at {budget:g} ms:", err=True)
            try:
                records.append(fitter.fit(prof, budget, folder, table=table, timer=timers[prof.name]))
            except MaestroError as e:
                if not many:
                    raise
                failures.append(f"{prof.name} at {budget:g} ms: {e}")
                codes.add(e.exit_code)
                click.echo(f"Error: {failures[-1]}", err=True)
    if not records:   # nothing to summarise (no header, no legend): the errors above are the whole story
        error = MaestroError(f"all {len(jobs)} fits failed (see above); fix what they say and run again")
        error.exit_code = 2 if codes == {2} else 1   # every one a usage error (budgets): a usage error
        raise error
    if as_json:
        click.echo(json.dumps(records if many else records[0], indent=2))
    else:
        from maestro_edge.report.summary import summary_lines

        for line in summary_lines(records, {(p.name, b): f for p, b, f in jobs}):
            click.echo(line)
    if failures:
        raise click.ClickException(f"{len(failures)} of {len(jobs)} fits failed (see above)")


def _value(x) -> str:
    return "-" if x is None else f"{x:.4f}"


@click.command()
@click.option("--plan", "plan_path", type=click.Path(path_type=Path), required=True,
              help="A fit.json (or JSON with \"ranks\") naming the rank of every layer.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="LoD checkpoint the plan was made for (default: the embedded model).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@bundle_option
@quality_options
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
    ckpt = LoDCheckpoint.load(model_path or default_model())
    fitter = Fitter(ckpt, progress=echo_progress(quiet), bundle=bundle,
                    quality=quality(ckpt, eval_spec, calibrate_spec), full_delegation=full_delegation)
    record = fitter.export(read_ranks(plan_path, ckpt), out_dir)
    click.echo(f"wrote {out_dir}/: {record['metric']['name']} {_value(record['accuracy'])} "
               f"(dense {_value(record['dense_accuracy'])})")


@click.command()
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
