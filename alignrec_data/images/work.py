"""The images stage's fetch loop: one item's candidates in order, a thread pool, the shards.

:func:`fetch_items` fetches and processes a list of items on a bounded thread pool, in item
order, into a :class:`ShardWriter`. The single-process stage (:mod:`~alignrec_data.images.stage`)
and each shard task of a distributed engine (:mod:`alignrec_data.engine`) both run it, so they
give the same index rows and the same image bytes for the same inputs.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alignrec_data.images import store
from alignrec_data.images.config import ImagesConfig
from alignrec_data.images.fetch import Fetcher
from alignrec_data.images.hosts import HOST_DOWN, url_host
from alignrec_data.images.resume import Item, empty_row
from alignrec_data.images.urls import Candidate
from alignrec_data.images.validate import ImageRejected, ImageSettings, process_image

log = logging.getLogger(__name__)

# Failures that mean "this URL has no image" (less informative than a bad image).
NOT_FOUND_REASONS = frozenset({"http-403", "http-404", "http-410", "file-not-found"})
# The attempt recorded when an item's request budget ran out before its last candidate.
REQUEST_LIMIT = "request-limit"

T = TypeVar("T")
R = TypeVar("R")


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
) -> tuple[dict[str, Any], bytes | None]:
    """Try an item's candidates in order, at most ``max_requests`` requests in all.

    Never raises for bad input. When the budget runs out, the remaining ``http(s)``
    candidates are not tried (``request-limit`` is added to ``attempts``); ``file://`` ones
    cost no request and are still read.

    Returns:
        The index row and the stored image (None when missing).
    """
    row = empty_row(item)
    attempts: list[str] = []
    failures: dict[str, tuple[Candidate, int | None]] = {}  # the first candidate of a reason
    n_requests = 0
    for cand in item.candidates:
        left = max_requests - n_requests
        if cand.error:
            reason, status = cand.error, None
        elif left <= 0 and url_host(cand.url) != "file://":
            if REQUEST_LIMIT not in attempts:
                attempts.append(REQUEST_LIMIT)
            continue
        else:
            got = fetcher.fetch(cand.url, left)
            n_requests += got.requests
            reason, status = got.reason or "?", got.status
            if got.ok:
                try:
                    img = process_image(got.body or b"", settings)
                except ImageRejected as err:
                    log.debug("%s %s: %s", item.item_key, cand.url, err)
                    reason = err.reason
                else:
                    attempts.append("ok")
                    row.update(
                        has_image=True,
                        url=cand.source,
                        fetched_url=cand.url,
                        http_status=status,
                        sha256=img.sha256,
                        width=img.width,
                        height=img.height,
                        attempts=attempts,
                    )
                    return row, img.data
        attempts.append(reason)
        failures.setdefault(reason, (cand, status))
    if not failures:
        row.update(reason="no-url")
        return row, None
    reason = _summary_reason(attempts)
    cand, status = failures[reason]
    row.update(
        reason=reason, url=cand.source, fetched_url=cand.url, http_status=status, attempts=attempts
    )
    return row, None


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


class ShardWriter:
    """Buffer stored images and write a shard whenever ``limit`` bytes are buffered.

    Shards are numbered from ``number`` (None: one past the highest in ``images_dir``).
    """

    def __init__(
        self, images_dir: Path, settings: dict[str, Any], limit: float, number: int | None = None
    ) -> None:
        self.images_dir, self.settings, self.limit = images_dir, settings, limit
        self.number = store.next_shard_number(images_dir) if number is None else number
        self._buffer: list[dict[str, Any]] = []  # shard rows: the index row and its image
        self._bytes = 0

    def add(self, row: dict[str, Any], image: bytes) -> None:
        """Buffer ``image`` for the index row ``row``, naming in it the shard it goes to."""
        row["shard"] = store.SHARD_TEMPLATE.format(self.number)
        self._buffer.append({**row, "image": image})
        self._bytes += len(image)
        if self._bytes >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Write the buffered images as the next shard (nothing when none is buffered)."""
        if not self._buffer:
            return
        store.write_shard(self.images_dir, self.number, self._buffer, self.settings)
        self.number += 1
        self._buffer, self._bytes = [], 0


def fetch_items(
    items: Sequence[Item],
    config: ImagesConfig,
    fetcher: Fetcher,
    writer: ShardWriter,
    done: Callable[[int], object] | None = None,
) -> list[dict[str, Any]]:
    """Fetch and process ``items`` on ``config.concurrency`` threads into ``writer``'s shards.

    The one fetch loop of the stage, also run by each shard task of a distributed engine
    (:mod:`alignrec_data.engine`), so both give the same rows and image bytes.

    Args:
        items: The items to fetch.
        config: The ``images`` params.
        fetcher: The fetcher (its limiter and breaker may be shared beyond this process).
        writer: Where stored images go (the caller flushes the last shard: a shard task
            writes its index part first).
        done: Called with 1 after each item (a progress bar's ``update``).

    Returns:
        The index rows in item order (the fetcher counts the HTTP requests).
    """
    img_settings = config.image_settings()
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(config.concurrency, thread_name_prefix="images") as pool:
        work = _ordered_map(
            pool,
            lambda it: _process_item(it, fetcher, img_settings, config.max_requests_per_item),
            items,
            window=4 * config.concurrency,
        )
        for row, image in work:
            rows.append(row)
            if done is not None:
                done(1)
            if image is not None:
                writer.add(row, image)
    return rows
