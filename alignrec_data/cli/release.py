"""``alignrec-data release DATASET``: build the Hugging Face dataset folder of a dataset."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from alignrec_data.cli._common import common_options, emit


@click.command("release")
@click.argument("dataset")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Release folder, replaced as a whole when it is a previous release or empty "
    "[default: DATA_DIR/DATASET/release].",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace --out even if it is a non-empty folder that is not a release (its files are "
    "deleted). The data dir and dataset folders are never replaced.",
)
@click.option(
    "--features",
    help="Comma-separated feature variants to release [default: release.features, else all].",
)
@click.option(
    "--images/--no-images",
    default=None,
    help="Add the (large) `images` config of packed image bytes [default: release.images].",
)
@click.option(
    "--shard-size-mb",
    type=float,
    help="Largest shard [default: release.shard_size_mb].",
)
@click.option("--repo-id", help="Repo id shown in the card's load_dataset lines.")
@common_options
def command(
    dataset: str,
    out: Path | None,
    overwrite: bool,
    features: str | None,
    images: bool | None,
    shard_size_mb: float | None,
    repo_id: str | None,
    data_dir: Path,
    params: Path | None,
    fmt: str,
) -> None:
    """Build a Hugging Face dataset repository folder (no loading script) for DATASET.

    Configs `items`, `interactions` (train / validation / test) and one `features-<variant>`
    per feature file (and `images` with --images), as parquet shards
    `<config>/<split>-0000i-of-0000n.parquet`, plus the dataset card README.md and the
    manifest alignrec_release.json. Options override the `release:` params.

    Every input is checked before anything is written (NaN / infinite embeddings are
    refused); the folder is built beside --out and swapped in at the end. An existing --out
    is replaced only if it holds alignrec_release.json (a previous release) or is empty,
    unless --overwrite.

    \b
    Examples:
      alignrec-data release amazon-mini
      alignrec-data release amazon-baby --out release/baby --repo-id my-org/alignrec-baby
      alignrec-data release amazon-baby --features alignrec,minilm-text --images
      alignrec-data release amazon-mini --out old-notes-folder --overwrite
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.config import load_settings
    from alignrec_data.export_features import parse_feature_specs
    from alignrec_data.release import ReleaseConfig, build_release

    options = {"images": images, "shard_size_mb": shard_size_mb, "repo_id": repo_id}
    if features is not None:
        options["features"] = tuple(parse_feature_specs(features))
    config = load_settings(params, "release", ReleaseConfig, dataset, given=options)
    result = build_release(data_dir, dataset, out, config, params_path=params, overwrite=overwrite)
    lines = [
        f"release of {dataset} -> {result.out} ({result.files} files, {result.total_bytes:,} bytes)"
    ]
    for name, splits in result.configs.items():
        parts = ", ".join(f"{sp} {n:,}" for sp, n in splits.items())
        lines.append(f"  {name:<24} {parts}")
    lines += [f"  note: {n}" for n in result.notes]
    emit(fmt, dataclasses.asdict(result), lines)  # the Path `out` is printed as text
