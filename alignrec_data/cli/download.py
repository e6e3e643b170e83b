"""``alignrec-data download DATASET``: fetch and verify a dataset's raw files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from alignrec_data.cli._common import common_options, emit
from alignrec_data.config import load_settings
from alignrec_data.errors import UsageError
from alignrec_data.lockfile import LOCK_NAME
from alignrec_data.paths import DatasetPaths
from alignrec_data.registry import MIRROR_ENV, get_dataset, resolve_base_url

if TYPE_CHECKING:
    from alignrec_data.download import FileResult

_VERB = {"verified": "already verified"}  # the other statuses are their own verb
_TRUST = {
    "registry": "sha256 from the registry",
    "lock": f"sha256 from {LOCK_NAME}",
    "first-use": f"trust on first use: sha256 recorded in {LOCK_NAME}",
}


def summary_line(r: FileResult) -> str:
    """One line per file: verb, name, size, hash and where the hash came from."""
    head = f"{_VERB.get(r.status, r.status):<17} {r.path.name}  "
    if r.status == "failed":
        return f"{head}{r.url}: {r.error}"
    if r.status == "missing":
        return f"{head}optional, not found at {r.url}; prepare does not read it"
    return f"{head}{r.bytes:,} bytes  sha256 {r.sha256}  ({_TRUST[r.trust]})"


@click.command("download")
@click.argument("dataset")
@click.option(
    "--mirror",
    metavar="URL_OR_PATH",
    help=(
        f"Base URL (http, https, file) or local folder replacing the official base URL; "
        f"${MIRROR_ENV} when unset. '{{dataset}}' and '{{release}}' are substituted."
    ),
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Target folder [default: DATA_DIR/DATASET/raw].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Files fetched in parallel [default: download.workers in params].",
)
@click.option(
    "--all-files",
    is_flag=True,
    help=(
        "Also fetch the optional files prepare does not read (the all-ratings CSV); one the "
        "source lacks is reported, not an error. Default: reviews and metadata only."
    ),
)
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr."
)
@common_options
def command(
    dataset: str,
    mirror: str | None,
    out: Path | None,
    workers: int | None,
    all_files: bool,
    progress: bool,
    data_dir: Path,
    params: Path | None,
    fmt: str,
) -> None:
    """Download DATASET's raw files and verify them (size, sha256, gzip integrity).

    By default only the files `prepare` reads: reviews and metadata. --all-files adds the
    optional ones (the all-ratings CSV); an optional file the host or mirror does not have
    (HTTP 404/410, no such local file) is reported "missing" and is not an error.

    Files stream into a temporary file in the target folder and are renamed only after the
    checks pass. A partial file is resumed (HTTP Range); connection errors, 5xx and 429 are
    retried with capped exponential back-off. Hashes the registry does not know are recorded
    in raw/alignrec.lock.json on the first download (trust on first use) and verified on every
    later run. Files already present and verified are not fetched again. One line per file on
    stdout: fetched / resumed / already verified / missing / failed. Never prompts.

    DATASET may be declared under `declared:` in the params file (docs/declared.md): its
    interactions and items files are copied or fetched from the paths and URLs declared there
    into raw/interactions.<format> and raw/items.<format>, through the same checks.

    \b
    Examples:
      alignrec-data download amazon-mini
      alignrec-data download amazon2018-gift-cards
      alignrec-data download amazon-baby --all-files
      alignrec-data download amazon-baby --workers 3
      alignrec-data download amazon-baby --mirror https://my.mirror/amazon2014/
      alignrec-data download amazon-baby --mirror /mnt/shared/amazon2014 --out /tmp/raw
      ALIGNREC_MIRROR=/mnt/shared/{release} alignrec-data download amazon2018-electronics
      alignrec-data download amazon-mini --format json
      alignrec-data download my-shop --params params.yaml   # declared: docs/declared.md
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.download import DownloadConfig, download_dataset, raise_for_failures

    spec = get_dataset(dataset, params=params)
    if spec.declared is not None and mirror is not None:
        msg = (
            f"--mirror does not apply to {spec.id}: a dataset declared in {params} names its "
            "own files (declared.<id>.interactions.path / items.path); change those instead"
        )
        raise UsageError(msg)
    config = load_settings(params, "download", DownloadConfig, dataset)
    raw_dir = out if out is not None else DatasetPaths.of(data_dir, spec.id).raw
    base = resolve_base_url(spec, mirror)
    results = download_dataset(
        spec,
        raw_dir,
        mirror=mirror,
        workers=workers,
        config=config,
        progress=progress,
        all_files=all_files,
    )
    skipped = [f for f in spec.files if f not in spec.files_for(all_files)]
    lines = [summary_line(r) for r in results]
    if all(r.status == "verified" for r in results):
        lines.append(f"nothing fetched: all {len(results)} files of {spec.id} already verified")
    if skipped:
        names = ", ".join(f.filename for f in skipped)
        lines.append(f"not fetched (optional, prepare does not read them): {names}; --all-files")
    result = {
        "dataset": spec.id,
        "alias_of": spec.alias_of,
        "raw_dir": str(raw_dir),
        "base_url": base,
        "all_files": all_files,
        "ok": all(r.status != "failed" for r in results),
        "files": [r.to_dict() for r in results],
        "not_fetched": [{"role": f.role, "name": f.name} for f in skipped],
    }
    emit(fmt, result, lines)
    raise_for_failures(results)
