"""The ``maestro-edge`` command line: a thin click layer over the library, one module per group of commands.

Imports of torch/executorch happen inside commands, so ``--help`` is instant. Expected failures
(MaestroError, bad flags) print one line on stderr and exit non-zero; no traceback.

    training.py   train
    targets.py    devices, profile
    fitting.py    fit, export, report
    options.py    what several commands share (options, progress, the default model)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from maestro_edge.cli.fitting import export, fit, report
from maestro_edge.cli.options import Defaults
from maestro_edge.cli.targets import devices, profile
from maestro_edge.cli.training import train
from maestro_edge.errors import MaestroError

DEFAULT_MODEL = Path(__file__).parents[1] / "assets" / "default.lod.pt"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="maestro-edge")
@click.pass_context
def cli(ctx):
    """Put one LoD-trained low-rank model onto many devices, each under its own latency budget.

    \b
    Example:
      maestro-edge fit --device pixel7 --ms 20
    """
    ctx.obj = Defaults(model=DEFAULT_MODEL)   # read when a command runs (tests point it at a smaller model)


cli.add_command(devices)
cli.add_command(train)
cli.add_command(profile)
cli.add_command(fit)
cli.add_command(export)
cli.add_command(report)


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

