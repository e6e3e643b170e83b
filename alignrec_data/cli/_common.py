"""Options shared by every command, defined once, and the result printer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from alignrec_data.config import resolve_params_path
from alignrec_data.paths import DATA_DIR_ENV, DEFAULT_DATA_DIR


def data_dir_option(f: Callable) -> Callable:
    """``--data-dir`` (env ``ALIGNREC_DATA_DIR``, default ``./data``)."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=DATA_DIR_ENV,
        default=DEFAULT_DATA_DIR,
        show_default=True,
        show_envvar=True,
        help="Folder holding one sub-folder per dataset.",
    )(f)


def _params_callback(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    return resolve_params_path(value)


def params_option(f: Callable) -> Callable:
    """``--params FILE`` (default ``./params.yaml`` when present, else packaged defaults)."""
    return click.option(
        "--params",
        "params",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        callback=_params_callback,
        help="Params YAML [default: ./params.yaml when present, else the packaged defaults].",
    )(f)


def format_option(f: Callable) -> Callable:
    """``--format text|json``: how results are printed on stdout."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Results on stdout as text lines or one JSON document.",
    )(f)


def common_options(f: Callable) -> Callable:
    """``--data-dir``, ``--params`` and ``--format`` together."""
    return data_dir_option(params_option(format_option(f)))


def emit(fmt: str, result: Any, lines: list[str] | str | None = None) -> None:
    """Print a result on stdout: ``lines`` as text, or ``result`` as one JSON document."""
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
        return
    if lines is None:
        lines = [json.dumps(result, indent=2, sort_keys=True, default=str)]
    elif isinstance(lines, str):
        lines = [lines]
    for line in lines:
        click.echo(line)
