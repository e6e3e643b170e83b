"""``alignrec-data images DATASET``: fetch, validate, resize and pack item images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from alignrec_data.cli._common import (
    check_engine,
    common_options,
    emit,
    engine_options,
    engine_output,
)
from alignrec_data.config import load_settings

if TYPE_CHECKING:
    from alignrec_data.images import ImagesResult

# alignrec_data.images.urls.IMAGE_MIRROR_ENV, repeated here: importing alignrec_data.images
# loads Pillow, pandas and pyarrow, too slow for --help (tests/core/test_cli_startup.py checks
# that they agree).
IMAGE_MIRROR_ENV = "ALIGNREC_IMAGE_MIRROR"


def summary_lines(result: ImagesResult) -> list[str]:
    """Human-readable result: coverage, reasons, what this run did, where the files are."""
    s = result.stats
    lines = [
        f"{s['dataset']}: {s['n_with_image']:,} of {s['n_items']:,} items have an image "
        f"(missing rate {100 * s['missing_rate']:.2f}%)",
    ]
    if s["reasons"]:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(s["reasons"].items()))
        lines.append(f"missing because: {reasons}")
    lines.append(
        f"this run: fetched {result.fetched:,} items ({result.requests:,} HTTP requests) in "
        f"{result.elapsed_s:.1f} s ({result.images_per_s:.1f} items/s); kept "
        f"{result.resumed_stored:,} stored images and {result.resumed_failed:,} known failures"
    )
    for host in result.hosts_down:
        n = s["hosts"].get(host, {}).get("skipped", 0)
        lines.append(
            f"host {host} did not answer: {n:,} items skipped (host-down); rerun later or "
            "pass --mirror to fetch them, --skip-images to go on without"
        )
    if result.skipped:
        lines.append(
            f"--skip-images: {result.skipped:,} items not fetched (reason skipped); rerun "
            "without --skip-images to fetch them"
        )
    elif result.fetched == 0:
        lines.append("nothing fetched: every item was already stored or known to be missing")
    lines.append(f"images: {result.images_dir} ({s['n_shards']} shards, index.parquet, stats.json)")
    return lines


@click.command("images")
@click.argument("dataset")
@click.option(
    "--mirror",
    "mirrors",
    metavar="PREFIX=REPLACEMENT",
    multiple=True,
    help=(
        "Rewrite image URLs starting with PREFIX to start with REPLACEMENT (http, https, "
        f"file URL or a local folder); repeatable; ${IMAGE_MIRROR_ENV} (whitespace-separated "
        "rules) when not given. Registry datasets with an image_base_url are read from their "
        "base URL's images/ folder by default."
    ),
)
@click.option(
    "--retry-missing",
    is_flag=True,
    help="Fetch every missing item again, also those that failed permanently (404, bad image).",
)
@click.option(
    "--force", is_flag=True, help="Ignore stored images and rebuild all (e.g. after new params)."
)
@click.option(
    "--skip-images",
    is_flag=True,
    help=(
        "Fetch nothing: write the index with every item not already stored marked 'skipped', "
        "so pretrain, extract and release run without images (with --force: no image at all). "
        "A later run without it fetches the skipped items."
    ),
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar on stderr [default: on a tty]."
)
@engine_options(
    "local: threads in this process. ray: shard tasks on a Ray cluster (pip install "
    "'alignrec[scale]'), same outputs, the per-host rate limit shared by all workers "
    "(docs/scale.md).",
    "the cluster's CPUs",
)
@common_options
def command(
    dataset: str,
    mirrors: tuple[str, ...],
    retry_missing: bool,
    force: bool,
    skip_images: bool,
    progress: bool | None,
    engine: str,
    address: str | None,
    workers: int | None,
    data_dir: Path,
    params: Path | None,
    fmt: str,
) -> None:
    """Fetch, validate, resize and pack the image of every item of DATASET.

    Reads DATA_DIR/DATASET/prepared/items.parquet. Each item's candidate URLs are tried in
    order (hi_res, large, the URL with its size modifier stripped, thumb) with bounded
    concurrency, a per-host rate limit and retries with back-off on 429/5xx. Images are
    decoded and verified with Pillow (decompression bombs are rejected from the header),
    converted to RGB, resized (shorter side images.shorter_side) and re-encoded as JPEG into
    parquet shards under DATA_DIR/DATASET/images/, with index.parquet (has_image and the
    reason when missing, one row per item) and stats.json. Each item makes at most
    images.max_requests_per_item requests; a host that does not answer images.host_failures
    times in a row is not asked again this run (its items: host-down, one warning). A rerun
    fetches only new items and those that failed with a time-out, connection error, 429, 5xx,
    host-down or skipped (--retry-missing: every missing item).

    \b
    Examples:
      alignrec-data images amazon-mini
      alignrec-data images amazon-baby --params params.yaml --format json
      alignrec-data images amazon-baby --mirror http://ecx.images-amazon.com/=https://m.example/
      alignrec-data images amazon-baby --mirror https://m.media-amazon.com/images/I/=/mnt/img/
      alignrec-data images amazon-baby --retry-missing
      alignrec-data images amazon-baby --skip-images
      alignrec-data images amazon2023-electronics --engine ray --address auto
      alignrec-data images amazon-baby --engine ray --workers 4
    """  # noqa: D301 (click needs a real \b)
    check_engine("images", dataset, engine, address, workers)  # before reading any input
    from alignrec_data.images import ImagesConfig, fetch_images

    config = load_settings(params, "images", ImagesConfig, dataset)
    options = dict(
        mirrors=list(mirrors) or None,
        params=params,
        retry_missing=retry_missing,
        force=force,
        skip_images=skip_images,
        progress=progress,
    )
    if engine == "ray":
        from alignrec_data.engine.ray_images import fetch_images_ray

        with engine_output(engine):
            result = fetch_images_ray(
                data_dir, dataset, config, address=address, workers=workers, **options
            )
    else:
        result = fetch_images(data_dir, dataset, config, **options)
    emit(fmt, result.to_dict(), summary_lines(result))
