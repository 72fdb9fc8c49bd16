"""The ``maestro-edge`` command line: a thin click layer over the library, one module per group of commands.

Imports of torch/executorch happen inside commands, so ``--help`` is instant. Expected failures
(MaestroError, bad flags) print one line on stderr and exit non-zero; no traceback.

    training.py   train
    targets.py    devices, profile
    fitting.py    fit, export, report
    options.py    what several commands share (options, progress, the default model)
"""

from __future__ import annotations

import signal
import sys
import threading
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


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the process is, so it unwinds like Ctrl-C: every ``finally`` runs (locks
    and staging folders are removed, a profile's journal keeps what was measured). A BaseException, so no
    ``except Exception`` on the way turns it into another error."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, _frame):
    raise Terminated(signum)


def main(argv=None) -> None:
    """Entry point: one line per error, exit 2 for usage errors, 1 for others, 130 on Ctrl-C, 128 + the signal's
    number on SIGTERM (143) and SIGHUP (129)."""
    handled = (signal.SIGTERM, signal.SIGHUP) if threading.current_thread() is threading.main_thread() else ()
    # a signal the caller ignores stays ignored (`nohup maestro-edge profile ...` must survive the hangup)
    before = {sig: signal.signal(sig, _terminate) for sig in handled if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        _run(argv)
    finally:
        for sig, handler in before.items():   # main() called in-process (tests, a user's script) restores them
            signal.signal(sig, handler)


def _run(argv) -> None:
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
    except Terminated as e:
        name = signal.Signals(e.signum).name
        click.echo(f"Terminated by {name}; nothing half-written was left (run the command again to go on).", err=True)
        sys.exit(128 + e.signum)
    sys.exit(code if isinstance(code, int) else 0)   # --help/--version return their code here


def _fail(message: str, code: int) -> None:
    """One line on stderr, whatever the message holds (user input may carry newlines)."""
    click.echo("Error: " + " ".join(message.split()), err=True)
    sys.exit(code)

