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
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "Target folder, e.g. MMRec/data/baby (created; existing files of the same names replaced)."
    ),
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
    data_dir: Path,
    fmt: str,
) -> None:
    """Write <name>.inter, u_id_mapping.csv and i_id_mapping.csv (tab-separated) into --out.

    \b
    Examples:
      alignrec-data export mmrec amazon-mini --out MMRec/data/mini
      alignrec-data export mmrec baby --out MMRec/data/baby --name baby
      alignrec-data export mmrec amazon-mini --features effnet-image,minilm-text \
          --out MMRec/data/mini
      alignrec-data export mmrec amazon-mini --layout alignrec --out AlignRec/data/mini
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.export_features import check_specs, export_features
    from alignrec_data.interop import export_mmrec

    check_specs(features, layout)  # fail before writing anything
    result = export_mmrec(data_dir, dataset, out, name=name)
    result["features"] = export_features(data_dir, dataset, out, features, layout)
    result["files"] += list(result["features"]["features"])
    emit(fmt, result, [f"exported {dataset} to {out}: " + ", ".join(result["files"])])
