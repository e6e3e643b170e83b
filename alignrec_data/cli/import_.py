"""``alignrec-data import {mmrec,lattice} FOLDER --name NAME``: existing benchmark folders."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import data_dir_option, emit, format_option
from alignrec_data.paths import DatasetPaths


def _lines(stats: dict, out: Path) -> list[str]:
    sp = stats["splits"]
    return [
        f"imported {stats['source']} folder as {stats['dataset']} -> {out}",
        f"  {stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} "
        "interactions",
        f"  train {sp['train']:,} / valid {sp['valid']:,} / test {sp['test']:,}",
    ]


@click.group("import")
def command() -> None:
    """Import a dataset folder of another layout into DATA_DIR/NAME/prepared/.

    \b
    Examples:
      alignrec-data import mmrec MMRec/data/baby --name baby
      alignrec-data import lattice LATTICE/data/baby --name amazon-baby-lattice
    """  # noqa: D301 (click needs a real \b)


def _name_option(f):
    return click.option(
        "--name", required=True, help="Name of the dataset to create under DATA_DIR."
    )(f)


@command.command("mmrec")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@_name_option
@data_dir_option
@format_option
def mmrec(folder: Path, name: str, data_dir: Path, fmt: str) -> None:
    """Import an MMRec folder: <name>.inter (+ u_id_mapping.csv, i_id_mapping.csv).

    \b
    Examples:
      alignrec-data import mmrec MMRec/data/baby --name baby
      alignrec-data import mmrec ../shared/data/ml100k-imdb --name ml100k --format json
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.interop import import_mmrec

    stats = import_mmrec(folder, name, data_dir)
    emit(fmt, stats, _lines(stats, DatasetPaths.of(data_dir, name).prepared))


@command.command("lattice")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@_name_option
@data_dir_option
@format_option
def lattice(folder: Path, name: str, data_dir: Path, fmt: str) -> None:
    """Import a LATTICE/MMHCL folder: train/val/test.json (+ user2id.json, item2id.json).

    \b
    Examples:
      alignrec-data import lattice ../shared/data/amazon-baby --name baby
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.interop import import_lattice

    stats = import_lattice(folder, name, data_dir)
    emit(fmt, stats, _lines(stats, DatasetPaths.of(data_dir, name).prepared))
