"""The shard plan of a distributed images run, independent of the engine that runs it.

The items to fetch are split into **contiguous ranges of item id** (sorted by ``item_id``),
one range a shard task, one parquet shard file a task. Contiguous ranges, not ``id % n``:
each shard file then holds one id range, so readers that go through the index in id order
(extract, release) open one file at a time, and a rerun after a crash re-plans only the
items still to fetch into new ranges. ``id % n`` would spread every shard over the whole id
space and gain nothing (the fetch cost of an item does not depend on its id).

Shard numbers continue after the highest shard already in the images folder, so a plan never
overwrites a shard of an earlier run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Generic, TypeVar

from alignrec_data.errors import UsageError

T = TypeVar("T")

# Guess of one stored JPEG's size (shorter side 256, quality 90: 15-25 kB) used to turn
# images.shard_size_mb into a number of items per shard task.
BYTES_PER_IMAGE_GUESS = 25_000


@dataclass(frozen=True)
class ShardTask(Generic[T]):
    """One unit of distributed work: the items of one shard file.

    Attributes:
        number: The shard number (file ``shard-<number:05d>.parquet``).
        items: The items, in item-id order.
    """

    number: int
    items: tuple[T, ...]


def items_per_shard(shard_size_mb: float) -> int:
    """Items in one shard task so that its file is about ``shard_size_mb`` MB."""
    return max(1, int(shard_size_mb * 1_000_000 // BYTES_PER_IMAGE_GUESS))


def shard_count(n_items: int, workers: int, max_items: int) -> int:
    """How many shard tasks: enough to keep ``workers`` busy and none above ``max_items``.

    Args:
        n_items: Items to fetch.
        workers: Tasks that run at the same time.
        max_items: Most items in one task.

    Returns:
        ``max(workers, ceil(n_items / max_items))``, at most ``n_items`` (0 for no items).

    Raises:
        UsageError: ``workers`` or ``max_items`` below 1.
    """
    if workers < 1 or max_items < 1:
        msg = f"workers and items per shard must be >= 1, found {workers} and {max_items}"
        raise UsageError(msg)
    return min(n_items, max(workers, math.ceil(n_items / max_items)))  # 0 items: 0 tasks


def plan_shards(items: Sequence[T], n_shards: int, first_number: int) -> list[ShardTask[T]]:
    """Split ``items`` into ``n_shards`` contiguous id ranges of near-equal size.

    Args:
        items: The items (any objects with an ``item_id`` attribute, which orders them).
        n_shards: How many tasks (see :func:`shard_count`).
        first_number: The number of the first shard (one past the highest on disk).

    Returns:
        The tasks, numbered ``first_number``, ``first_number + 1``, ...; none is empty.
    """
    ordered = sorted(items, key=attrgetter("item_id"))
    n, k = len(ordered), min(n_shards, len(ordered))
    return [
        ShardTask(first_number + i, tuple(ordered[i * n // k : (i + 1) * n // k])) for i in range(k)
    ]
