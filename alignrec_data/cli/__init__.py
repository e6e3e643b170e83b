"""The ``alignrec-data`` command line: one click group, one module per command.

Each command module defines ``command`` (a click command) as a thin wrapper over a library
function. Results go to stdout (``--format text|json``), logs and progress bars to stderr.
Errors the user can fix are :class:`alignrec_data.errors.AlignrecError`; the group turns them
into ``Error: ...`` plus a hint on stderr and the error's exit code (2 for bad usage). Any
other failure (a file system refusing a write, a bug) also ends in one ``Error:`` line and exit
code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
import traceback

import click

from alignrec_data.errors import AlignrecError
from alignrec_data.failures import as_alignrec_error


class CliError(click.ClickException):
    """A library error shown as ``Error: <message>`` with an optional hint."""

    def __init__(self, err: AlignrecError) -> None:
        super().__init__(str(err) + (f"\nHint: {err.hint}" if err.hint else ""))
        self.exit_code = err.exit_code


class AlignrecGroup(click.Group):
    """A group whose subcommands end every failure in one ``Error:`` line (no traceback).

    :class:`AlignrecError` keeps its exit code (2 bad usage, 1 failure); an OSError names the
    file and the fix (exit 1); anything else is reported as an internal error (exit 1) with
    the hint to rerun with ``--debug``, which shows the traceback.
    """

    def invoke(self, ctx: click.Context):  # noqa: D102
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted: nothing half-written is left; rerun to continue", err=True)
            sys.exit(130)
        except Exception as err:
            if debug and not isinstance(err, AlignrecError):
                raise
            if debug:
                traceback.print_exc()
            raise CliError(as_alignrec_error(err)) from err


@click.group(cls=AlignrecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("--debug", is_flag=True, help="Show the traceback of a failure (for bug reports).")
@click.version_option(package_name="alignrec", prog_name="alignrec-data")
def cli(verbose: int, quiet: bool, debug: bool) -> None:
    r"""Raw Amazon image+text data to released multimodal item features (AlignRec).

    \b
    Every dataset lives under DATA_DIR/<dataset>/{raw,prepared,images,features,models,
    metrics,release}; DATA_DIR is --data-dir, $ALIGNREC_DATA_DIR or ./data. Parameters come
    from --params, else ./params.yaml when present, else the packaged defaults.

    \b
    Examples:
      alignrec-data datasets
      alignrec-data download amazon-mini
      alignrec-data download amazon-baby --mirror https://my.mirror/amazon/
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


# Every module of this package not named _* is a command; --help lists them sorted by name.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        cli.add_command(importlib.import_module(f"{__name__}.{_module.name}").command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="alignrec-data")
