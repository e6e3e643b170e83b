"""``alignrec-data import {mmrec,lattice} FOLDER --name NAME``: existing benchmark folders."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import data_dir_option, emit, format_option
from alignrec_data.paths import DatasetPaths


def _lines(stats: dict, out: Path) -> list[str]:
    sp = stats["splits"]
    lines = [
        f"imported {stats['source']} folder as {stats['dataset']} -> {out}",
        f"  {stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} "
        "interactions",
        f"  train {sp['train']:,} / valid {sp['valid']:,} / test {sp['test']:,}",
    ]
    for variant, f in stats["features"].items():
        lines.append(f"  features/{variant}.parquet: {f['dim']}-d from {f['file']}")
    if stats["removed"]:
        lines.append(
            f"  removed {', '.join(stats['removed'])} of {stats['dataset']}: built on the "
            "replaced items"
        )
    return lines


@click.group("import")
def command() -> None:
    """Import a dataset folder of another layout into DATA_DIR/NAME/prepared/.

    Every source file is checked before anything is written. An existing dataset NAME is
    only replaced with --overwrite, which also removes what was built on its old items.

    \b
    Examples:
      alignrec-data import mmrec MMRec/data/baby --name baby
      alignrec-data import lattice LATTICE/data/baby --name amazon-baby-lattice
    """  # noqa: D301 (click needs a real \b)


_name_option = click.option(
    "--name", required=True, help="Name of the dataset to create under DATA_DIR."
)
_overwrite_option = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the prepared/ of an existing dataset NAME, and remove its features/, "
    "models/, metrics/, report/ and release/ (built on the old items).",
)


@command.command("mmrec")
@click.argument("folder", type=click.Path(path_type=Path))
@_name_option
@_overwrite_option
@data_dir_option
@format_option
def mmrec(folder: Path, name: str, overwrite: bool, data_dir: Path, fmt: str) -> None:
    """Import an MMRec folder: <name>.inter (+ id maps and every per-item *.npy as features).

    image_feat.npy becomes the feature variant mmrec-image, text_feat.npy mmrec-text, any other
    <stem>.npy mmrec-<stem>; each must have one finite row per item (checked before anything
    is written).

    \b
    Examples:
      alignrec-data import mmrec MMRec/data/baby --name baby
      alignrec-data import mmrec ../shared/data/ml100k-imdb --name ml100k --format json
      alignrec-data import mmrec MMRec/data/baby --name baby --overwrite
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.interop import import_mmrec

    stats = import_mmrec(folder, name, data_dir, overwrite=overwrite)
    emit(fmt, stats, _lines(stats, DatasetPaths.of(data_dir, name).prepared))


@command.command("lattice")
@click.argument("folder", type=click.Path(path_type=Path))
@_name_option
@_overwrite_option
@data_dir_option
@format_option
def lattice(folder: Path, name: str, overwrite: bool, data_dir: Path, fmt: str) -> None:
    """Import a LATTICE/MMHCL folder: train/val/test.json (+ user2id.json, item2id.json).

    \b
    Examples:
      alignrec-data import lattice ../shared/data/amazon-baby --name baby
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.interop import import_lattice

    stats = import_lattice(folder, name, data_dir, overwrite=overwrite)
    emit(fmt, stats, _lines(stats, DatasetPaths.of(data_dir, name).prepared))
