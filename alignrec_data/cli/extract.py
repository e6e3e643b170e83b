"""``alignrec-data extract DATASET``: write the item feature files (AlignRec + baselines)."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import (
    check_engine,
    common_options,
    emit,
    engine_options,
    engine_output,
)
from alignrec_data.config import load_settings


def summary_lines(dataset: str, m: dict) -> list[str]:
    """One line per feature file plus the speed."""
    lines = [f"{dataset}: {m['items']:,} items"]
    for name, v in m["variants"].items():
        lines.append(f"features/{name}.parquet: {v['dim']}-d, {v['missing']:,} marked missing")
    for entry, speed in (m.get("items_per_s") or {}).items():
        if speed:
            lines.append(f"{entry}: {speed:.1f} items/s")
    return lines


@click.command("extract")
@click.argument("dataset")
@engine_options(
    "local: this process. ray: item-id ranges as tasks on a Ray cluster (one GPU a task when "
    "it has GPUs; pip install 'alignrec[scale]'), merged into the same files (docs/scale.md).",
    "the cluster's GPUs, else CPUs",
)
@common_options
def command(
    dataset: str,
    engine: str,
    address: str | None,
    workers: int | None,
    data_dir: Path,
    params: Path | None,
    fmt: str,
) -> None:
    """Extract item features of DATASET with the pretrained encoder, baselines and models.

    Reads DATA_DIR/DATASET/prepared/items.parquet, images/ and (for the mmenc variants)
    models/mmenc.pt; writes DATA_DIR/DATASET/features/<variant>.parquet for each entry of
    `extract.variants`: the built-ins alignrec (joint CLS, the AlignRec feature),
    mmenc-image, mmenc-text, minilm-text (all-MiniLM-L6-v2, 384-d) and effnet-image
    (EfficientNet-Lite0, 1280-d), or entries {name, kind, model, ...} of kind hf-text,
    hf-image, hf-clip (three files), sentence-transformers, mmenc or effnet
    (docs/features.md). Models load from local folders or the huggingface_hub cache only.
    Items without an image (or text) are marked missing=True: their image (text) features
    are zero rows, joint features use the other input alone. Each file records its
    provenance in its metadata; metrics/extract.json holds dims, missing counts, items/s.
    With --engine ray the items are split among Ray workers and the parts merged into the
    same files; a rerun after a crash keeps the finished parts. Without Ray, use torchrun:
    `torchrun --nproc-per-node N -m alignrec_model.extract_dist DATASET --data-dir D`.

    \b
    Examples:
      alignrec-data extract amazon-mini
      alignrec-data extract amazon-baby --params params.yaml --format json
      alignrec-data extract amazon-baby --engine ray --workers 4
      alignrec-data extract amazon2023-electronics --engine ray --address auto
    """  # noqa: D301 (click needs a real \b)
    check_engine("extract", dataset, engine, address, workers)  # before reading any input
    from alignrec_model.extract import ExtractConfig, extract

    config = load_settings(params, "extract", ExtractConfig, dataset)
    if engine == "ray":
        from alignrec_data.engine.ray_extract import extract_ray

        with engine_output(engine):
            metrics = extract_ray(data_dir, dataset, config, address=address, workers=workers)
    else:
        metrics = extract(data_dir, dataset, config)
    emit(fmt, metrics, summary_lines(dataset, metrics))
