"""``alignrec-data prepare DATASET``: raw files to the prepared dataset folder."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import common_options, emit
from alignrec_data.config import load_settings
from alignrec_data.paths import DatasetPaths

# One line per cleaning step and one per raw file.
_STEP = "  {step:<7} {interactions:>12,} interactions  {users:>10,} users  {items:>9,} items"
_RAW_FILE = "  {role:<7} {lines:,} lines, {bad_lines:,} bad ({file})"


def summary_lines(stats: dict, out: Path) -> list[str]:
    """Human-readable summary of ``stats.json``."""
    sp = stats["splits"]
    return [
        f"prepared {stats['dataset']} -> {out}",
        *(_STEP.format_map(step) for step in stats["steps"]),
        f"  split   {stats['split']['method']}: train {sp['train']:,} / valid {sp['valid']:,} "
        f"/ test {sp['test']:,}",
        *(_RAW_FILE.format(role=role, **log) for role, log in stats["bad_lines"].items()),
        f"  items without metadata {stats['items_without_metadata']:,}, "
        f"without image URL {stats['missing_image_url_rate']:.1%}",
    ]


@click.command("prepare")
@click.argument("dataset")
@click.option(
    "--strict", is_flag=True, help="Stop at the first bad raw line instead of counting it."
)
@click.option(
    "--no-verify",
    is_flag=True,
    help="Do not check the raw files' sha256 (use files changed on purpose as they are).",
)
@common_options
def command(
    dataset: str, strict: bool, no_verify: bool, data_dir: Path, params: Path | None, fmt: str
) -> None:
    """Turn DATASET's downloaded raw files into DATA_DIR/DATASET/prepared/.

    First checks the raw files against the sha256 recorded by `download` (registry or
    raw/alignrec.lock.json): a file changed since its download is an error. Streams the
    reviews, drops duplicate (user, item) pairs (keeping the earliest), applies the
    iterative k-core filter, renumbers users and items, assembles item text from the metadata
    and writes the split column; `prepare:` in the params file sets k, the split and the text
    template. Writes interactions.parquet, items.parquet, users.parquet and stats.json.

    \b
    Examples:
      alignrec-data prepare amazon-mini
      alignrec-data prepare amazon-baby --params params.yaml --strict
      alignrec-data prepare amazon2023-baby-products --format json
      alignrec-data prepare amazon-baby --no-verify
      alignrec-data prepare my-shop --params params.yaml   # declared: docs/declared.md
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.prepare import PrepareConfig, prepare_dataset

    config = load_settings(params, "prepare", PrepareConfig, dataset)
    stats = prepare_dataset(
        dataset, data_dir, config, strict=strict, verify=not no_verify, params=params
    )
    emit(fmt, stats, summary_lines(stats, DatasetPaths.of(data_dir, dataset).prepared))
