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
reason (time-out, 429, 5xx, connection error), or all missing items with ``retry_missing``.
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
from alignrec_data.config import to_dict
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.images import store
from alignrec_data.images.fetch import Fetcher, FetchSettings, is_transient
from alignrec_data.images.urls import Candidate, MirrorRules, image_candidates, mirror_rules
from alignrec_data.images.validate import ImageRejected, ImageSettings, process_image
from alignrec_data.paths import DatasetPaths
from alignrec_data.registry import check_links
from alignrec_data.schema import ITEMS_FILE

log = logging.getLogger(__name__)

# Failures that mean "this URL has no image" (less informative than a bad image).
NOT_FOUND_REASONS = frozenset({"http-403", "http-404", "http-410", "file-not-found"})
# Settings that change the stored bytes: shards made with others cannot be mixed in.
ENCODE_KEYS = ("shorter_side", "jpeg_quality", "jpeg_subsampling")
# Settings that decide acceptance: when they change, earlier failures are retried.
ACCEPT_KEYS = ("max_pixels", "min_side", "max_bytes")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ImagesConfig:
    """The ``images`` section of ``params.yaml``.

    Attributes:
        shorter_side: Resize so the shorter side has this many pixels (never upscaled).
        jpeg_quality: Quality of the stored JPEG (1-95).
        jpeg_subsampling: Chroma subsampling of the stored JPEG: 0 = 4:4:4, 1 = 4:2:2,
            2 = 4:2:0.
        max_pixels: Largest ``width * height`` decoded; larger images are rejected from the
            header alone as ``decompression-bomb``.
        min_side: Smallest accepted shorter side in pixels (``too-small`` below: placeholder
            1x1 GIFs).
        max_bytes: Largest response body per image in bytes (``too-large`` above; never read
            further).
        concurrency: Worker threads fetching and processing images.
        per_host_rate: Requests per second to one host (0 = unlimited).
        retries: Extra attempts on 429, 5xx, 408, time-outs and connection errors.
        backoff: Seconds before the first retry, doubling each retry (unless Retry-After).
        max_retry_after: Cap on any retry wait, Retry-After included, in seconds.
        timeout: Seconds to connect and for each read.
        total_timeout: Seconds for one whole request (headers and body) per attempt, also
            while bytes trickle (a watchdog cuts the connection at the deadline).
        shard_size_mb: Start a new shard after this many MB of stored JPEG bytes.
        user_agent: User-Agent header sent to image servers.
    """

    shorter_side: int = 256  # 224-px encoder crops fit; ~15-25 kB a JPEG
    jpeg_quality: int = 90
    jpeg_subsampling: int = 2  # 4:2:0, libjpeg's default
    max_pixels: int = 40_000_000  # Amazon hi_res images are ~2-4 Mpx
    min_side: int = 16
    max_bytes: int = 16_000_000
    concurrency: int = 16
    per_host_rate: float = 10.0
    retries: int = 3
    backoff: float = 1.0
    max_retry_after: float = 60.0
    timeout: float = 20.0
    total_timeout: float = 60.0
    shard_size_mb: float = 256.0
    user_agent: str = "alignrec-data/0.1 (+https://github.com/alignrec/alignrec)"

    def __post_init__(self) -> None:
        checks = [
            ("shorter_side", self.shorter_side >= 1, ">= 1"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 95, "between 1 and 95"),
            ("jpeg_subsampling", self.jpeg_subsampling in (0, 1, 2), "0, 1 or 2"),
            ("max_pixels", self.max_pixels >= 1, ">= 1"),
            ("min_side", self.min_side >= 1, ">= 1"),
            ("max_bytes", self.max_bytes >= 1, ">= 1"),
            ("concurrency", self.concurrency >= 1, ">= 1"),
            ("per_host_rate", self.per_host_rate >= 0, ">= 0 (0 = unlimited)"),
            ("retries", self.retries >= 0, ">= 0"),
            ("backoff", self.backoff >= 0, ">= 0"),
            ("max_retry_after", self.max_retry_after >= 0, ">= 0"),
            ("timeout", self.timeout > 0, "> 0"),
            ("total_timeout", self.total_timeout > 0, "> 0"),
            ("shard_size_mb", self.shard_size_mb > 0, "> 0"),
        ]
        for name, ok, expected in checks:
            if not ok:
                msg = f"params images.{name}: expected {expected}, found {getattr(self, name)!r}"
                raise UsageError(msg)

    def image_settings(self) -> ImageSettings:
        """The validation and encoding settings."""
        return ImageSettings(
            shorter_side=self.shorter_side,
            jpeg_quality=self.jpeg_quality,
            jpeg_subsampling=self.jpeg_subsampling,
            max_pixels=self.max_pixels,
            min_side=self.min_side,
        )

    def fetch_settings(self) -> FetchSettings:
        """The network settings."""
        return FetchSettings(
            max_bytes=self.max_bytes,
            timeout=self.timeout,
            total_timeout=self.total_timeout,
            retries=self.retries,
            backoff=self.backoff,
            max_retry_after=self.max_retry_after,
            per_host_rate=self.per_host_rate,
            user_agent=self.user_agent,
            pool_size=self.concurrency,
        )

    def recorded_settings(self) -> dict[str, Any]:
        """Settings recorded with the shards and index (those that change the outcome)."""
        d = to_dict(self)
        return {k: d[k] for k in (*ENCODE_KEYS, *ACCEPT_KEYS)}


@dataclass(frozen=True)
class _Item:
    item_id: int
    item_key: str
    candidates: tuple[Candidate, ...]


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
    """The reason shown for a missing item: the first that is not a plain "not found"."""
    informative = [a for a in attempts if a not in NOT_FOUND_REASONS]
    return (informative or list(attempts))[0]


def _empty_row(item: _Item) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "item_key": item.item_key,
        "has_image": False,
        "reason": None,
        "url": None,
        "http_status": None,
        "sha256": None,
        "width": None,
        "height": None,
        "shard": None,
        "fetched_url": None,
        "candidates": [c.source for c in item.candidates],
        "attempts": [],
    }


def _process_item(item: _Item, fetcher: Fetcher, settings: ImageSettings) -> _Outcome:
    """Try an item's candidates in order; never raises for bad input."""
    row = _empty_row(item)
    attempts: list[str] = []
    failures: list[tuple[str, Candidate, int | None]] = []
    n_requests = 0
    for cand in item.candidates:
        if cand.error:
            attempts.append(cand.error)
            failures.append((cand.error, cand, None))
            continue
        got = fetcher.fetch(cand.url)
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


def _check_shard_settings(
    by_shard: dict[str, Any], wanted: dict[str, Any], images_dir: Path, dataset: str
) -> None:
    for name, got in sorted(by_shard.items()):
        got_encode = {k: (got or {}).get(k) for k in ENCODE_KEYS}
        want_encode = {k: wanted[k] for k in ENCODE_KEYS}
        if got_encode != want_encode:
            msg = (
                f"{images_dir / name} holds images made with {got_encode}, but the params say "
                f"{want_encode}; images made with different settings cannot be mixed"
            )
            raise UsageError(
                msg, hint=f"rerun with `alignrec-data images {dataset} --force` to rebuild them"
            )


def _stats(
    dataset: str, rows: list[dict[str, Any]], images_dir: Path, settings: dict[str, Any]
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
        "settings": settings,
        "pillow": PIL.__version__,
    }


def fetch_images(
    data_dir: str | Path,
    dataset: str,
    config: ImagesConfig | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    retry_missing: bool = False,
    force: bool = False,
    progress: bool | None = None,
) -> ImagesResult:
    """Run the images stage for one dataset (resumable).

    Args:
        data_dir: Folder holding one sub-folder per dataset.
        dataset: The dataset id.
        config: The ``images`` params (defaults when None).
        mirrors: ``PREFIX=REPLACEMENT`` URL rewrites; None uses ``$ALIGNREC_IMAGE_MIRROR``.
            Registry datasets with an ``image_base_url`` also get their default rewrite.
        retry_missing: Fetch again every item without a stored image, not only those that
            failed with a transient reason.
        force: Ignore what is stored and rebuild every image (old shards are then removed).
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
    rules: MirrorRules = mirror_rules(dataset, mirrors)
    log.info("images %s: %d items, mirror rules %s", dataset, len(items), rules.rules)
    settings = config.recorded_settings()
    img_settings = config.image_settings()
    for path in store.clean_stale_temporaries(images_dir):
        log.info("removed %s, left by an interrupted run", path.name)

    catalog_rows: dict[str, dict[str, Any]] = {}
    old_index: dict[str, dict[str, Any]] = {}
    old_accept: dict[str, Any] | None = None
    if not force:
        catalog_rows, by_shard = store.read_shard_catalog(images_dir)
        _check_shard_settings(by_shard, settings, images_dir, dataset)
        index_path = images_dir / store.INDEX_FILE
        if index_path.is_file():
            old_accept = store.read_settings(index_path)
            old_index = {r["item_key"]: r for r in store.read_index_rows(images_dir)}
    # Index metadata also records the mirror rules: other mirrors may cure earlier failures.
    index_settings = {**settings, "mirrors": [[r.prefix, r.replacement] for r in rules.rules]}
    accept_same = old_accept is not None and all(
        old_accept.get(k) == index_settings[k] for k in (*ACCEPT_KEYS, "mirrors")
    )

    result = ImagesResult(images_dir=images_dir, stats={})
    rows: list[dict[str, Any]] = []
    todo: list[_Item] = []
    for item_id, item_key, urls in items:
        item = _Item(item_id, item_key, tuple(rules.resolve(u) for u in image_candidates(urls)))
        cand_urls = [c.source for c in item.candidates]
        prev = old_index.get(item_key)
        if item_key in catalog_rows:
            stored = catalog_rows[item_key]
            row = _empty_row(item)
            row.update(
                has_image=True,
                url=stored["url"],
                http_status=stored["http_status"],
                sha256=stored["sha256"],
                width=stored["width"],
                height=stored["height"],
                shard=stored["shard"],
                fetched_url=prev.get("fetched_url")
                if prev is not None and prev["has_image"]
                else None,
                attempts=list(prev["attempts"]) if prev is not None and prev["has_image"] else [],
            )
            rows.append(row)
            result.resumed_stored += 1
        elif (
            prev is not None
            and not prev["has_image"]
            and not retry_missing
            and accept_same
            and list(prev["candidates"]) == cand_urls
            and not any(is_transient(a) for a in prev["attempts"])
        ):
            row = _empty_row(item)
            row.update(
                reason=prev["reason"],
                url=prev["url"],
                fetched_url=prev.get("fetched_url"),
                http_status=prev["http_status"],
                attempts=list(prev["attempts"]),
            )
            rows.append(row)
            result.resumed_failed += 1
        elif not item.candidates:
            rows.append({**_empty_row(item), "reason": "no-url"})
        else:
            todo.append(item)

    log.info(
        "images %s: %d stored, %d known failures kept, %d to fetch",
        dataset,
        result.resumed_stored,
        result.resumed_failed,
        len(todo),
    )
    shard_limit = int(config.shard_size_mb * 1_000_000)
    number = store.next_shard_number(images_dir)
    buffer: list[dict[str, Any]] = []
    buffered_rows: list[dict[str, Any]] = []
    buffered_bytes = 0

    def flush() -> None:
        nonlocal number, buffered_bytes
        if not buffer:
            return
        name = store.write_shard(images_dir, number, buffer, settings)
        for r in buffered_rows:
            r["shard"] = name
        result.new_shards.append(name)
        number += 1
        buffer.clear()
        buffered_rows.clear()
        buffered_bytes = 0

    with (
        Fetcher(config.fetch_settings()) as fetcher,
        ThreadPoolExecutor(config.concurrency, thread_name_prefix="images") as pool,
        tqdm(
            total=len(todo), desc=f"images {dataset}", unit="img", disable=_no_bar(progress)
        ) as bar,
    ):
        work = _ordered_map(
            pool,
            lambda it: _process_item(it, fetcher, img_settings),
            todo,
            window=4 * config.concurrency,
        )
        for outcome in work:
            rows.append(outcome.row)
            result.fetched += 1
            result.requests += outcome.requests
            bar.update(1)
            if outcome.image is None:
                continue
            r = outcome.row
            buffer.append(
                {
                    "item_id": r["item_id"],
                    "item_key": r["item_key"],
                    "image": outcome.image,
                    "width": r["width"],
                    "height": r["height"],
                    "sha256": r["sha256"],
                    "url": r["url"],
                    "http_status": r["http_status"],
                }
            )
            buffered_rows.append(r)
            buffered_bytes += len(outcome.image)
            if buffered_bytes >= shard_limit:
                flush()
        flush()

    store.write_index(images_dir, rows, index_settings)
    referenced = {r["shard"] for r in rows if r["shard"]}
    for path in store.shard_files(images_dir):
        if path.name not in referenced:
            path.unlink()
            result.removed_shards.append(path.name)
    result.stats = _stats(dataset, rows, images_dir, settings)
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
    return result


def _no_bar(progress: bool | None) -> bool | None:
    """Tqdm's ``disable``: None disables the bar when stderr is not a terminal."""
    return None if progress is None else not progress
