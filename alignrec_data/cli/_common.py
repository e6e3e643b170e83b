"""Options shared by every command, defined once, and the result printer."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from alignrec_data.config import resolve_params_path
from alignrec_data.errors import UsageError
from alignrec_data.paths import DATA_DIR_ENV, DEFAULT_DATA_DIR

# ``--data-dir`` (env ``ALIGNREC_DATA_DIR``, default ``./data``).
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DATA_DIR_ENV,
    default=DEFAULT_DATA_DIR,
    show_default=True,
    show_envvar=True,
    help="Folder holding one sub-folder per dataset.",
)

# ``--params FILE`` (default ``./params.yaml`` when present, else packaged defaults).
params_option = click.option(
    "--params",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=lambda ctx, param, value: resolve_params_path(value),
    help="Params YAML [default: ./params.yaml when present, else the packaged defaults].",
)

# ``--format text|json``: how results are printed on stdout.
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Results on stdout as text lines or one JSON document.",
)


def common_options(f: Callable) -> Callable:
    """``--data-dir``, ``--params`` and ``--format`` together."""
    return data_dir_option(params_option(format_option(f)))


def engine_options(engine_help: str, workers_default: str) -> Callable[[Callable], Callable]:
    """``--engine local|ray``, ``--address`` and ``--workers`` (images, extract; docs/scale.md).

    Args:
        engine_help: What ``ray`` does for this command.
        workers_default: What ``--workers`` defaults to, for the help.
    """

    def decorate(f: Callable) -> Callable:
        f = click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            help=f"With --engine ray: shard tasks at a time [default: {workers_default}].",
        )(f)
        f = click.option(
            "--address",
            metavar="ADDR",
            default=None,
            help="With --engine ray: the cluster's address (`ray start --head` prints it; "
            "'auto': the one on this machine) [default: start a local Ray instance].",
        )(f)
        return click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help=engine_help,
        )(f)

    return decorate


def check_engine(command: str, dataset: str, engine: str, address: str | None, workers: int | None):
    """Refuse ``--address`` / ``--workers`` without ``--engine ray``; with it, check Ray is there.

    Raises:
        UsageError: A Ray option without ``--engine ray``, or Ray not installed (the one-line
            ``pip install 'alignrec[scale]'`` hint), before any input is read.
    """
    if engine == "local" and (address is not None or workers is not None):
        msg = "--address and --workers need --engine ray"
        raise UsageError(msg, hint=f"alignrec-data {command} {dataset} --engine ray --workers N")
    if engine == "ray":
        from alignrec_data.engine.ray_images import require_ray

        require_ray()


def engine_output(engine: str) -> contextlib.AbstractContextManager:
    """While a Ray run lasts, what Ray prints on stdout goes to stderr.

    Ray's log monitor prints cluster events (``(raylet) A worker died ...``) on the driver's
    stdout; the command's result (``--format json``) must be alone there. The engines shut down
    the Ray instance they started before returning, so nothing of theirs prints after.
    """
    return contextlib.redirect_stdout(sys.stderr) if engine == "ray" else contextlib.nullcontext()


def emit(fmt: str, result: Any, lines: list[str] | str | None = None) -> None:
    """Print a result on stdout: ``lines`` as text, or ``result`` as one JSON document."""
    if fmt == "json" or lines is None:
        lines = json.dumps(result, indent=2, sort_keys=True, default=str)
    for line in [lines] if isinstance(lines, str) else lines:
        click.echo(line)
