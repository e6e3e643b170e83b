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
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from alignrec_data.atomic import write_json
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.images import store
from alignrec_data.images.config import ImagesConfig
from alignrec_data.images.fetch import SKIPPED, Fetcher
from alignrec_data.images.hosts import HOST_DOWN, host_stats, report_hosts_down, url_host
from alignrec_data.images.resume import Item, Previous, empty_row, plan
from alignrec_data.images.urls import Candidate, MirrorRules, mirror_rules
from alignrec_data.images.validate import ImageRejected, ImageSettings, process_image
from alignrec_data.links import check_links
from alignrec_data.paths import DatasetPaths
from alignrec_data.schema import ITEMS_FILE

log = logging.getLogger(__name__)

# Failures that mean "this URL has no image" (less informative than a bad image).
NOT_FOUND_REASONS = frozenset({"http-403", "http-404", "http-410", "file-not-found"})
# The attempt recorded when an item's request budget ran out before its last candidate.
REQUEST_LIMIT = "request-limit"

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Outcome:
    """The result of one item: an index row plus the stored image, if any."""

    row: dict[str, Any]
    image: bytes | None = None
    requests: int = 0


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
        return {
            "images_dir": str(self.images_dir),
            "stats": self.stats,
            "fetched": self.fetched,
            "resumed_stored": self.resumed_stored,
            "resumed_failed": self.resumed_failed,
            "requests": self.requests,
            "new_shards": self.new_shards,
            "removed_shards": self.removed_shards,
            "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": round(self.images_per_s, 2),
            "hosts_down": self.hosts_down,
            "skipped": self.skipped,
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
    rows = list(zip(cols["item_id"], cols["item_key"], cols["image_urls"], strict=True))
    keys = Counter(r[1] for r in rows)
    dupes = [k for k, n in keys.items() if n > 1]
    if dupes:
        msg = f"{path}: item_key must be unique, found duplicates such as {dupes[0]!r}"
        raise DataFormatError(msg)
    return [(int(i), str(k), list(u or [])) for i, k, u in rows]


def _summary_reason(attempts: Sequence[str]) -> str:
    """The reason shown for a missing item.

    ``host-down`` when a candidate's host was down (the next run asks it again), else the
    first failure that is not a plain "not found", else the first failure.
    """
    tried = [a for a in attempts if a != REQUEST_LIMIT]
    if HOST_DOWN in tried:
        return HOST_DOWN
    informative = [a for a in tried if a not in NOT_FOUND_REASONS]
    return (informative or tried)[0]


def _process_item(
    item: Item, fetcher: Fetcher, settings: ImageSettings, max_requests: int
) -> _Outcome:
    """Try an item's candidates in order, at most ``max_requests`` requests in all.

    Never raises for bad input. When the budget runs out, the remaining ``http(s)``
    candidates are not tried (``request-limit`` is added to ``attempts``); ``file://`` ones
    cost no request and are still read.
    """
    row = empty_row(item)
    attempts: list[str] = []
    failures: list[tuple[str, Candidate, int | None]] = []
    n_requests = 0
    for cand in item.candidates:
        if cand.error:
            attempts.append(cand.error)
            failures.append((cand.error, cand, None))
            continue
        left = max_requests - n_requests
        if left <= 0 and url_host(cand.url) != "file://":
            if REQUEST_LIMIT not in attempts:
                attempts.append(REQUEST_LIMIT)
            continue
        got = fetcher.fetch(cand.url, left)
        n_requests += got.requests
        if not got.ok:
            attempts.append(got.reason or "?")
            failures.append((got.reason or "?", cand, got.status))
            continue
        try:
            img = process_image(got.body or b"", settings)
        except ImageRejected as err:
            log.debug("%s %s: %s", item.item_key, cand.url, err)
            attempts.append(err.reason)
            failures.append((err.reason, cand, got.status))
            continue
        attempts.append("ok")
        row.update(
            has_image=True,
            url=cand.source,
            fetched_url=cand.url,
            http_status=got.status,
            sha256=img.sha256,
            width=img.width,
            height=img.height,
            attempts=attempts,
        )
        return _Outcome(row, img.data, n_requests)
    if not failures:
        row.update(reason="no-url")
        return _Outcome(row, None, n_requests)
    reason = _summary_reason(attempts)
    _, cand, status = next(f for f in failures if f[0] == reason)
    row.update(
        reason=reason, url=cand.source, fetched_url=cand.url, http_status=status, attempts=attempts
    )
    return _Outcome(row, None, n_requests)


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """Like ``pool.map`` but with at most ``window`` tasks in flight (bounded memory)."""
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()


def _stats(
    dataset: str,
    rows: list[dict[str, Any]],
    images_dir: Path,
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
        "shard_bytes": sum((images_dir / s).stat().st_size for s in shards),
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
    rules: MirrorRules = mirror_rules(dataset, mirrors, params)
    log.info("images %s: %d items, mirror rules %s", dataset, len(items), rules.rules)
    settings = config.recorded_settings()
    for path in store.clean_stale_temporaries(images_dir):
        log.info("removed %s, left by an interrupted run", path.name)
    # Index metadata also records the mirror rules: other mirrors may cure earlier failures.
    index_settings = {**settings, "mirrors": [[r.prefix, r.replacement] for r in rules.rules]}
    prev = Previous.read(images_dir, settings, index_settings, dataset, force)
    result, rows, todo = _plan_run(images_dir, dataset, items, rules, prev, retry_missing)
    if skip_images:
        rows += [{**empty_row(item), "reason": SKIPPED} for item in todo]
        result.skipped, todo = len(todo), []
        log.info("images %s: --skip-images: %d items not fetched", dataset, result.skipped)
    writer = _ShardWriter(images_dir, settings, int(config.shard_size_mb * 1_000_000))
    rows += _fetch_all(todo, config, writer, result, dataset, progress)
    result.new_shards = writer.names

    _write_outputs(result, dataset, rows, index_settings, settings)
    result.elapsed_s = time.monotonic() - start
    _log_done(result, dataset)
    return result


def _plan_run(
    images_dir: Path,
    dataset: str,
    items: list[tuple[int, str, list[str]]],
    rules: MirrorRules,
    prev: Previous,
    retry_missing: bool,
) -> tuple[ImagesResult, list[dict[str, Any]], list[Item]]:
    """What a rerun keeps (:func:`~alignrec_data.images.resume.plan`) and what it fetches.

    Returns the run's result so far, the index rows kept and the items to fetch.
    """
    kept = plan(items, rules, prev, retry_missing)
    result = ImagesResult(
        images_dir=images_dir, stats={}, resumed_stored=kept.stored, resumed_failed=kept.failed
    )
    log.info(
        "images %s: %d stored, %d known failures kept, %d to fetch",
        dataset,
        result.resumed_stored,
        result.resumed_failed,
        len(kept.todo),
    )
    return result, kept.rows, kept.todo


def _log_done(result: ImagesResult, dataset: str) -> None:
    """The run's last line: items with an image, missing rate, items fetched and time."""
    log.info(
        "images %s: %d/%d items have an image (missing rate %.2f%%); fetched %d in %.1f s",
        dataset,
        result.stats["n_with_image"],
        result.stats["n_items"],
        100 * result.stats["missing_rate"],
        result.fetched,
        result.elapsed_s,
    )


def _write_outputs(
    result: ImagesResult,
    dataset: str,
    rows: list[dict[str, Any]],
    index_settings: dict[str, Any],
    settings: dict[str, Any],
) -> None:
    """Write the index and stats.json, and delete the shards the index no longer refers to."""
    images_dir = result.images_dir
    store.write_index(images_dir, rows, index_settings)
    referenced = {r["shard"] for r in rows if r["shard"]}
    for path in store.shard_files(images_dir):
        if path.name not in referenced:
            path.unlink()
            result.removed_shards.append(path.name)
    result.stats = _stats(dataset, rows, images_dir, settings, result)
    write_json(images_dir / store.STATS_FILE, result.stats)


class _ShardWriter:
    """Buffer stored images and write a shard whenever ``limit`` bytes are buffered."""

    def __init__(self, images_dir: Path, settings: dict[str, Any], limit: int) -> None:
        self.images_dir, self.settings, self.limit = images_dir, settings, limit
        self.number = store.next_shard_number(images_dir)
        self.names: list[str] = []  # shards written
        self._records: list[dict[str, Any]] = []
        self._rows: list[dict[str, Any]] = []
        self._bytes = 0

    def add(self, row: dict[str, Any], image: bytes) -> None:
        """Buffer ``image`` for the index row ``row`` (its ``shard`` is set when written)."""
        self._records.append(
            {
                "item_id": row["item_id"],
                "item_key": row["item_key"],
                "image": image,
                "width": row["width"],
                "height": row["height"],
                "sha256": row["sha256"],
                "url": row["url"],
                "http_status": row["http_status"],
            }
        )
        self._rows.append(row)
        self._bytes += len(image)
        if self._bytes >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Write the buffered images as the next shard (nothing when none is buffered)."""
        if not self._records:
            return
        name = store.write_shard(self.images_dir, self.number, self._records, self.settings)
        for r in self._rows:
            r["shard"] = name
        self.names.append(name)
        self.number += 1
        self._records, self._rows, self._bytes = [], [], 0


def _fetch_all(
    todo: list[Item],
    config: ImagesConfig,
    writer: _ShardWriter,
    result: ImagesResult,
    dataset: str,
    progress: bool | None,
) -> list[dict[str, Any]]:
    """Fetch and process ``todo`` on a thread pool; the index rows, in item order."""
    img_settings = config.image_settings()
    rows: list[dict[str, Any]] = []
    if not todo:
        return rows
    with (
        Fetcher(config.fetch_settings()) as fetcher,
        ThreadPoolExecutor(config.concurrency, thread_name_prefix="images") as pool,
        tqdm(
            total=len(todo), desc=f"images {dataset}", unit="img", disable=_no_bar(progress)
        ) as bar,
    ):
        work = _ordered_map(
            pool,
            lambda it: _process_item(it, fetcher, img_settings, config.max_requests_per_item),
            todo,
            window=4 * config.concurrency,
        )
        for outcome in work:
            rows.append(outcome.row)
            result.fetched += 1
            result.requests += outcome.requests
            bar.update(1)
            if outcome.image is not None:
                writer.add(outcome.row, outcome.image)
        writer.flush()
    result.requests_by_host = dict(sorted(fetcher.requests_by_host.items()))
    result.hosts_down = fetcher.breaker.down
    report_hosts_down(rows, result.hosts_down, config.host_failures)
    return rows


def _no_bar(progress: bool | None) -> bool | None:
    """Tqdm's ``disable``: None disables the bar when stderr is not a terminal."""
    return None if progress is None else not progress
