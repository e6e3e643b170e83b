"""``alignrec-data extract DATASET``: write the item feature files (AlignRec + baselines)."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import common_options, emit
from alignrec_data.config import load_settings


def summary_lines(dataset: str, m: dict) -> list[str]:
    """One line per feature file plus the speed."""
    lines = [f"{dataset}: {m['items']:,} items"]
    for name, v in m["variants"].items():
        lines.append(f"features/{name}.parquet: {v['dim']}-d, {v['missing']:,} marked missing")
    if m.get("mmenc_items_per_s"):
        lines.append(f"MMEnc: {m['mmenc_items_per_s']:.1f} items/s (3 passes per item)")
    return lines


@click.command("extract")
@click.argument("dataset")
@common_options
def command(dataset: str, data_dir: Path, params: Path | None, fmt: str) -> None:
    """Extract item features of DATASET with the pretrained encoder and the baselines.

    Reads DATA_DIR/DATASET/prepared/items.parquet, images/ and models/mmenc.pt; writes
    DATA_DIR/DATASET/features/<variant>.parquet for the variants of the `extract:` params
    section: alignrec (joint CLS, the AlignRec feature), mmenc-image, mmenc-text,
    minilm-text (all-MiniLM-L6-v2, 384-d) and effnet-image (EfficientNet-Lite0, 1280-d),
    plus metrics/extract.json. Items without an image are marked missing=True: their
    alignrec feature is the text-only output, their image features are zero rows.

    \b
    Examples:
      alignrec-data extract amazon-mini
      alignrec-data extract amazon-baby --params params.yaml --format json
    """  # noqa: D301 (click needs a real \b)
    from alignrec_model.extract import ExtractConfig, extract

    config = load_settings(params, "extract", ExtractConfig, dataset)
    metrics = extract(data_dir, dataset, config)
    emit(fmt, metrics, summary_lines(dataset, metrics))
