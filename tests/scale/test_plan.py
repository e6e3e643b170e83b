"""The engine-agnostic parts: the shard plan and the shared limiter and breaker (no Ray)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from alignrec_data.engine import (
    HostState,
    SharedBreaker,
    SharedLimiter,
    items_per_shard,
    plan_shards,
    shard_count,
)
from alignrec_data.errors import UsageError


@dataclass(frozen=True)
class It:
    item_id: int


def test_shards_are_contiguous_id_ranges_numbered_after_existing() -> None:
    items = [It(i) for i in (9, 3, 0, 7, 1, 4, 8, 2, 6, 5)]  # any order in
    tasks = plan_shards(items, 3, first_number=12)
    assert [t.number for t in tasks] == [12, 13, 14]
    assert [[i.item_id for i in t.items] for t in tasks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    two = plan_shards(items[:2], 5, 0)  # items 9 and 3: never an empty shard
    assert [t.items for t in two] == [(It(3),), (It(9),)]


def test_shard_count() -> None:
    assert shard_count(100, workers=2, max_items=10_000) == 2  # keep both workers busy
    assert shard_count(100, workers=2, max_items=30) == 4  # no shard above max_items
    assert shard_count(1, workers=8, max_items=10) == 1
    assert shard_count(0, workers=2, max_items=10) == 0
    assert items_per_shard(256.0) == 10_240  # 256 MB of ~25 kB JPEGs
    with pytest.raises(UsageError, match=r"must be >= 1, found 0 and 10"):
        shard_count(5, workers=0, max_items=10)


def _local_call(state: HostState):
    lock = threading.Lock()

    def call(method: str, *args):
        with lock:  # an actor runs one call at a time
            return getattr(state, method)(*args)

    return call


def test_shared_limiter_holds_the_rate_over_two_workers() -> None:
    rate = 50.0
    state = HostState(rate, 0)
    workers = [SharedLimiter(_local_call(state), rate, threads=4) for _ in range(2)]
    starts: list[float] = []
    lock = threading.Lock()

    def run(limiter: SharedLimiter) -> None:
        for _ in range(10):
            limiter.wait("img.example")
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=run, args=(w,)) for w in workers for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    # 80 request starts at 50/s take at least 79 / 50 s; any 25 in a row span >= 24 / 50 s.
    assert starts[-1] - t0 >= 0.95 * 79 / rate
    assert min(b - a for a, b in zip(starts, starts[25:], strict=False)) >= 0.9 * 24 / rate
    assert workers[0].batch == 4 and workers[0].calls < 20  # slots asked in batches
    unlimited = SharedLimiter(_local_call(state), 0, threads=4)
    unlimited.wait("img.example")
    assert unlimited.calls == 0


def test_shared_breaker_one_count_for_all_workers() -> None:
    state = HostState(0, 3)
    a, b = (SharedBreaker(_local_call(state), 3) for _ in range(2))
    assert not a.failed("dead.example") and not b.failed("dead.example")
    assert a.is_down("dead.example") is False
    b.answered("dead.example")  # an answer resets the shared count
    assert state.breaker.failing == []
    assert not a.failed("dead.example") and not b.failed("dead.example")
    assert a.failed("dead.example") is True  # third in a row, over both workers
    assert b.is_down("dead.example") and b.down == ["dead.example"]
    assert b.sleep("dead.example", 5.0) is True  # a back-off ends at once
    assert SharedBreaker(_local_call(state), 0).is_down("dead.example") is False
