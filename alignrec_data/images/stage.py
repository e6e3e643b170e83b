"""The ``images`` stage: fetch, validate, resize and pack every item's image.

Input: ``<data-dir>/<ds>/prepared/items.parquet`` (``item_id``, ``item_key``, ``image_urls``).
Output: ``<data-dir>/<ds>/images/`` (shards, ``index.parquet``, ``stats.json``; layout in
:mod:`alignrec_data.images.store`).

For each item the candidates (:func:`~alignrec_data.images.urls.image_candidates`, after the
mirror rewrite) are tried in order until one gives an acceptable image
(:func:`~alignrec_data.images.validate.process_image`). Work runs on a bounded thread pool;
results are consumed in item order, so shards are deterministic. A rerun (resume) keeps every
stored image and every permanent failure (``http-404``, ``not-an-image``...) whose candidate
URLs are unchanged, and only fetches the rest: new items, items that failed with a transient
reason (time-out, 429, 5xx, connection error), or all missing items with ``retry_missing``
(:mod:`alignrec_data.images.resume`). The settings: :mod:`alignrec_data.images.config`.

Fail fast: an item makes at most ``max_requests_per_item`` requests over all its candidates,
and a host that does not answer ``host_failures`` times in a row is not asked again this run
(:class:`~alignrec_data.images.hosts.HostBreaker`): its items are recorded as ``host-down``,
one warning names the host and the fix, and the next run asks it again. With
``skip_images`` nothing is fetched: every item not already stored is recorded as ``skipped``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from alignrec_data.atomic import write_json
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.images import store
from alignrec_data.images.config import ImagesConfig
from alignrec_data.images.fetch import SKIPPED, Fetcher
from alignrec_data.images.hosts import host_stats, report_hosts_down
from alignrec_data.images.resume import Item, empty_row, plan
from alignrec_data.images.urls import mirror_rules
from alignrec_data.images.work import ShardWriter, fetch_items
from alignrec_data.links import check_links
from alignrec_data.paths import DatasetPaths
from alignrec_data.schema import ITEMS_FILE

log = logging.getLogger(__name__)

# What a runner returns: the index rows of the items it fetched, the HTTP requests by host
# and the hosts found down.
RunnerOutput = tuple[list[dict[str, Any]], dict[str, int], list[str]]
# Fetches a run's items into shards: called as
# ``runner(todo, config, images_dir, dataset, index_settings, done)``, ``done(n)`` after each n
# items; the default fetches in this process (a distributed one: alignrec_data.engine).
Runner = Callable[..., RunnerOutput]


@dataclass
class ImagesResult:
    """What a run of the images stage did.

    Attributes:
        images_dir: The output folder.
        stats: The content of ``stats.json``.
        fetched: Items processed in this run (the rest were resumed).
        resumed_stored: Items whose stored image was kept.
        resumed_failed: Items whose permanent failure was kept without a new request.
        requests: HTTP requests made (retries included).
        new_shards: Shard files written in this run.
        removed_shards: Shard files deleted because the index no longer refers to them.
        elapsed_s: Wall-clock seconds.
        hosts_down: Hosts not asked any more in this run (they did not answer).
        skipped: Items not fetched because of ``skip_images``.
    """

    images_dir: Path
    stats: dict[str, Any]
    fetched: int = 0
    resumed_stored: int = 0
    resumed_failed: int = 0
    requests: int = 0
    new_shards: list[str] = field(default_factory=list)
    removed_shards: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    hosts_down: list[str] = field(default_factory=list)
    skipped: int = 0
    requests_by_host: dict[str, int] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        """Items processed per second in this run."""
        return self.fetched / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "requests_by_host"}
        return {
            **d,
            "images_dir": str(self.images_dir),
            "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": round(self.images_per_s, 2),
        }


def _read_items(path: Path, dataset: str) -> list[tuple[int, str, list[str]]]:
    if not path.is_file():
        msg = f"prepared items file {path} does not exist"
        raise UsageError(msg, hint=f"run `alignrec-data prepare {dataset}` first")
    needed = ["item_id", "item_key", "image_urls"]
    names = pq.read_schema(path).names
    missing = [c for c in needed if c not in names]
    if missing:
        msg = (
            f"{path}: expected columns {', '.join(needed)}, missing {', '.join(missing)}; "
            f"rerun `alignrec-data prepare {dataset}` with this version of alignrec"
        )
        raise DataFormatError(msg)
    cols = pq.read_table(path, columns=needed).to_pydict()
    dupes = [k for k, n in Counter(cols["item_key"]).items() if n > 1]
    if dupes:
        msg = f"{path}: item_key must be unique, found duplicates such as {dupes[0]!r}"
        raise DataFormatError(msg)
    rows = zip(cols["item_id"], cols["item_key"], cols["image_urls"], strict=True)
    return [(int(i), str(k), list(u or [])) for i, k, u in rows]


def _stats(
    dataset: str,
    rows: list[dict[str, Any]],
    settings: dict[str, Any],
    result: ImagesResult,
) -> dict[str, Any]:
    import PIL

    n = len(rows)
    stored = [r for r in rows if r["has_image"]]
    reasons = Counter(r["reason"] for r in rows if not r["has_image"])
    served = Counter(str(len(r["attempts"]) - 1) for r in stored if r["attempts"])
    shards = sorted({r["shard"] for r in stored})
    return {
        "dataset": dataset,
        "n_items": n,
        "n_with_image": len(stored),
        "n_missing": n - len(stored),
        "missing_rate": round((n - len(stored)) / n, 6) if n else 0.0,
        "reasons": dict(sorted(reasons.items())),
        "served_by_candidate": dict(sorted(served.items(), key=lambda kv: int(kv[0]))),
        "n_shards": len(shards),
        "shard_bytes": sum((result.images_dir / s).stat().st_size for s in shards),
        "mean_width": round(sum(r["width"] for r in stored) / len(stored), 2) if stored else 0,
        "mean_height": round(sum(r["height"] for r in stored) / len(stored), 2) if stored else 0,
        "hosts": host_stats(rows, result.requests_by_host),
        "hosts_down": result.hosts_down,
        "settings": settings,
        "pillow": PIL.__version__,
    }


def fetch_images(
    data_dir: str | Path,
    dataset: str,
    config: ImagesConfig | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    params: str | Path | None = None,
    retry_missing: bool = False,
    force: bool = False,
    skip_images: bool = False,
    progress: bool | None = None,
    runner: Runner | None = None,
) -> ImagesResult:
    """Run the images stage for one dataset (resumable).

    Args:
        data_dir: Folder holding one sub-folder per dataset.
        dataset: The dataset id.
        config: The ``images`` params (defaults when None).
        mirrors: ``PREFIX=REPLACEMENT`` URL rewrites; None uses ``$ALIGNREC_IMAGE_MIRROR``.
            Registry datasets with an ``image_base_url`` also get their default rewrite.
        params: The params file (a dataset declared there gets its local-image rule).
        retry_missing: Fetch again every item without a stored image, not only those that
            failed with a transient reason.
        force: Ignore what is stored and rebuild every image (old shards are then removed).
        skip_images: Fetch nothing: items not already stored get reason ``skipped`` (a later
            run without it fetches them), so later stages run without images. With ``force``
            the output holds no image at all.
        progress: Show a tqdm bar on stderr (None: only on a terminal).
        runner: What fetches the items to fetch (None: threads in this process); see
            :data:`Runner` and :func:`alignrec_data.engine.ray_images.fetch_images_ray`.

    Returns:
        The run summary; ``stats`` is also written to ``images/stats.json``.

    Raises:
        UsageError: No prepared items, bad params or mirrors, or stored images made with other
            encoding settings (without ``force``).
        DataFormatError: A malformed items file or unreadable shard.
    """
    config = config or ImagesConfig()
    start = time.monotonic()
    paths = DatasetPaths.of(data_dir, dataset)
    images_dir = paths.images
    check_links([images_dir, paths.prepared / ITEMS_FILE], "images input or output")
    items = _read_items(paths.prepared / ITEMS_FILE, dataset)
    rules = mirror_rules(dataset, mirrors, params)
    log.info("images %s: %d items, mirror rules %s", dataset, len(items), rules.rules)
    settings = config.recorded_settings()
    for path in store.clean_stale_temporaries(images_dir):
        log.info("removed %s, left by an interrupted run", path.name)
    # Index metadata also records the mirror rules: other mirrors may cure earlier failures.
    index_settings = {**settings, "mirrors": [[r.prefix, r.replacement] for r in rules.rules]}
    kept = plan(
        items, rules, images_dir, index_settings, dataset, force=force, retry_missing=retry_missing
    )
    result = ImagesResult(images_dir, {}, resumed_stored=kept.stored, resumed_failed=kept.failed)
    log.info(
        "images %s: %d stored, %d known failures kept, %d to fetch",
        dataset,
        kept.stored,
        kept.failed,
        len(kept.todo),
    )
    rows, todo = kept.rows, kept.todo
    if skip_images:
        rows += [{**empty_row(item), "reason": SKIPPED} for item in todo]
        result.skipped, todo = len(todo), []
        log.info("images %s: --skip-images: %d items not fetched", dataset, result.skipped)
    if todo:
        run = runner or _fetch_local
        rows += _fetch(run, todo, config, result, dataset, progress, index_settings)
    _finish(result, dataset, rows, index_settings, settings, start)
    return result


def _finish(
    result: ImagesResult,
    dataset: str,
    rows: list[dict[str, Any]],
    index_settings: dict[str, Any],
    settings: dict[str, Any],
    start: float,
) -> None:
    """Write the index and stats.json, delete the shards the index no longer refers to, log."""
    images_dir = result.images_dir
    store.write_index(images_dir, rows, index_settings)
    for path in store.index_parts(images_dir):
        path.unlink()  # the index now holds their rows
    referenced = {r["shard"] for r in rows if r["shard"]}
    for path in store.shard_files(images_dir):
        if path.name not in referenced:
            path.unlink()
            result.removed_shards.append(path.name)
    result.stats = _stats(dataset, rows, settings, result)
    write_json(images_dir / store.STATS_FILE, result.stats)
    result.elapsed_s = time.monotonic() - start
    log.info(
        "images %s: %d/%d items have an image (missing rate %.2f%%); fetched %d in %.1f s",
        dataset,
        result.stats["n_with_image"],
        result.stats["n_items"],
        100 * result.stats["missing_rate"],
        result.fetched,
        result.elapsed_s,
    )


def _fetch(
    runner: Runner,
    todo: list[Item],
    config: ImagesConfig,
    result: ImagesResult,
    dataset: str,
    progress: bool | None,
    index_settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """Fetch ``todo`` with ``runner`` under a progress bar; the new index rows, item order.

    Records the requests and the down hosts in ``result`` and labels the items of down hosts.
    """
    disable = None if progress is None else not progress  # None: no bar unless on a terminal
    with tqdm(total=len(todo), desc=f"images {dataset}", unit="img", disable=disable) as bar:
        rows, by_host, result.hosts_down = runner(
            todo, config, result.images_dir, dataset, index_settings, bar.update
        )
    result.fetched = len(rows)
    result.requests = sum(by_host.values())
    result.new_shards = sorted({r["shard"] for r in rows if r["shard"]})
    result.requests_by_host = dict(sorted(by_host.items()))
    report_hosts_down(rows, result.hosts_down, config.host_failures)
    return rows


def _fetch_local(
    todo: list[Item],
    config: ImagesConfig,
    images_dir: Path,
    dataset: str,
    index_settings: dict[str, Any],
    done: Callable[[int], object],
) -> RunnerOutput:
    """The default runner: a thread pool in this process.

    ``index_settings`` is unused: one process writes no index part (a killed run leaves its
    shards, which the next run reuses; see :mod:`~alignrec_data.images.store`).
    """
    limit = int(config.shard_size_mb * 1_000_000)
    writer = ShardWriter(images_dir, config.recorded_settings(), limit)
    with Fetcher(config.fetch_settings()) as fetcher:
        rows = fetch_items(todo, config, fetcher, writer, done)
    writer.flush()
    return rows, fetcher.requests_by_host, fetcher.breaker.down
