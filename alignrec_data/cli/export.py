"""``alignrec-data export mmrec DATASET --out FOLDER``: the MMRec / AlignRec layout."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import data_dir_option, emit, format_option

# alignrec_data.export_features.LAYOUTS, repeated here so that --help imports no numpy/pyarrow
# (tests/core/test_cli_startup.py checks that they agree).
LAYOUTS = ("mmrec", "alignrec")


@click.group("export")
def command() -> None:
    """Export a prepared dataset to the layout of another framework.

    \b
    Examples:
      alignrec-data export mmrec amazon-mini --out MMRec/data/mini
    """  # noqa: D301 (click needs a real \b)


@command.command("mmrec")
@click.argument("dataset")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),  # a file is refused by check_output_dir, in one line
    help=(
        "Target folder, e.g. MMRec/data/baby: new, empty or a previous export (it holds "
        "alignrec_export.json); the export's files are replaced, no other file is touched."
    ),
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Write into a non-empty --out that is not a previous export (files of the same "
    "names are replaced; other files are kept).",
)
@click.option(
    "--name",
    default=None,
    help="MMRec dataset name (<name>.inter) [default: the --out folder's name].",
)
@click.option(
    "--features",
    default=None,
    metavar="VARIANT[,VARIANT]",
    help="Feature variants written as image_feat.npy / text_feat.npy (row i = itemID i), e.g. "
    "effnet-image,minilm-text; MODALITY=PATH.npy takes a matrix from elsewhere.",
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="mmrec",
    show_default=True,
    help="mmrec: one image and one text file; alignrec: the fused feature (default "
    "alignrec) as image_feat.npy, no text file (the official AlignRec code).",
)
@data_dir_option
@format_option
def mmrec(
    dataset: str,
    out: Path,
    name: str | None,
    features: str | None,
    layout: str,
    overwrite: bool,
    data_dir: Path,
    fmt: str,
) -> None:
    """Write <name>.inter, u_id_mapping.csv and i_id_mapping.csv (tab-separated) into --out.

    Every input is checked before the first byte is written; then all files are written
    together (none on failure) with the marker alignrec_export.json listing them.

    \b
    Examples:
      alignrec-data export mmrec amazon-mini --out MMRec/data/mini
      alignrec-data export mmrec baby --out MMRec/data/baby --name baby
      alignrec-data export mmrec amazon-mini --features effnet-image,minilm-text \
          --out MMRec/data/mini
      alignrec-data export mmrec amazon-mini --layout alignrec --out AlignRec/data/mini
      alignrec-data export mmrec amazon-mini --out MMRec/data/mini --overwrite
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.interop import export_mmrec

    result = export_mmrec(
        data_dir, dataset, out, name=name, features=features, layout=layout, overwrite=overwrite
    )
    lines = [f"exported {dataset} to {out}: " + ", ".join(result["files"])]
    if result["removed"]:
        lines.append(f"  removed {', '.join(result['removed'])} (from the previous export)")
    emit(fmt, result, lines)
