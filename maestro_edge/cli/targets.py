"""maestro-edge devices and profile: the device profiles, and measuring a model on one device."""

from __future__ import annotations

import json
from pathlib import Path

import click

from maestro_edge.cli.options import default_model, echo_progress


@click.command()
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
        from maestro_edge.latency.target import reachability

        for p in profiles:
            click.echo(f"{p.name}: {reachability(p)}")


@click.command()
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
    from maestro_edge.latency.load import busy_warning
    from maestro_edge.latency.table import cache_dir, check_table_folder
    from maestro_edge.latency.target import Target
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    prof = find_profile(device)
    target = Target.resolve(prof, host=host, port=port, identity=identity, python=python, serial=serial, runner=runner)
    target.require()                              # e.g. an ssh device without a host: before the model is loaded
    check_table_folder(cache_dir() / "latency")   # an unwritable cache is refused before the model is even loaded
    ckpt = LoDCheckpoint.load(model_path or default_model())
    say = echo_progress(quiet).say
    table, path, cached = target.profile_table(ckpt, force, allow_busy, say=say,
                                               progress=lambda what, i, n: say(f"[{i}/{n}] {what}"))
    if cached:
        click.echo(f"{path}: cached, measured {table.provenance.get('measured_at', 'at an unknown time')} on "
                   f"{prof.name} ({table.runtime}, {table.threads} thread(s)); pass --force to measure again")
        return
    click.echo(f"wrote {path}: {len(table.layers)} layers, overhead {table.overhead_ms:.3f} ms, "
               f"full model {table.full_model_ms:.3f} ms (measured on {prof.name}, {prof.runtime}, "
               f"{table.threads} thread(s))")
    warning = busy_warning(table)
    if warning:
        click.echo(f"warning: {warning}", err=True)
