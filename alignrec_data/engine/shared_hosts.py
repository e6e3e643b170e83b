"""A per-host rate limit and host breaker shared by every worker of a distributed run.

The limit is per image host, not per process: workers on several machines must share it.
One :class:`HostState` (run as one actor by the engine) holds the project's own
:class:`~alignrec_data.images.fetch.HostRateLimiter` and
:class:`~alignrec_data.images.hosts.HostBreaker`. Each worker talks to it through
:class:`SharedLimiter` and :class:`SharedBreaker`, which the
:class:`~alignrec_data.images.fetch.Fetcher` takes in place of its own. They only need a
``call(method, *args)`` function that runs a :class:`HostState` method remotely, so this
module does not import any engine.

Keeping the overhead low:

- The limiter asks for ``batch`` request slots of a host at once and hands them to its
  threads in order. Slots are start times fixed by the state's clock, sent as offsets from
  "now" (clocks of different machines are not compared). A slot not used in time (more than
  half an interval late) is dropped, never used late, so slots never bunch up: the total
  rate of all workers stays at ``per_host_rate``.
- The breaker keeps a copy of the down hosts, refreshed at most every
  :data:`REFRESH_SECONDS`, after every failure it reports and before every request to a host
  with failures counted; an answer is reported only for such a host. A healthy host costs
  no call; a failing one costs one call a request, so the whole cluster makes at most
  ``threshold`` plus one request per worker thread to a dead host.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from alignrec_data.images.fetch import HostRateLimiter
from alignrec_data.images.hosts import HostBreaker

# Seconds of requests a limiter asks for at once (at least one slot, at most one per thread).
BATCH_SECONDS = 0.1
# Seconds between two refreshes of the breaker's copy of the down hosts.
REFRESH_SECONDS = 0.5

Call = Callable[..., Any]


class HostState:
    """The shared per-host state: request slots and the breaker (one instance a run).

    Args:
        rate: Requests per second per host (0 = unlimited).
        threshold: Connection failures in a row after which a host is down (0 = never).
    """

    def __init__(self, rate: float, threshold: int) -> None:
        self.limiter = HostRateLimiter(rate)
        self.breaker = HostBreaker(threshold)

    def reserve(self, host: str, n: int) -> list[float]:
        """The next ``n`` start times of ``host``, as seconds from now."""
        now = time.monotonic()
        return [slot - now for slot in self.limiter.reserve(host, n)]

    def state(self) -> tuple[list[str], list[str]]:
        """The down hosts and the hosts with failures counted."""
        return self.breaker.down, self.breaker.failing

    def answered(self, host: str) -> tuple[list[str], list[str]]:
        """``host`` answered: its failure count starts again. Returns :meth:`state`."""
        self.breaker.answered(host)
        return self.state()

    def failed(self, host: str) -> tuple[bool, list[str], list[str]]:
        """Count a connection failure of ``host``; True first when it made the host down."""
        return (self.breaker.failed(host), *self.state())


class SharedLimiter(HostRateLimiter):
    """The worker side of the shared rate limit (the ``wait(host)`` the fetcher calls).

    Args:
        call: Runs a :class:`HostState` method: ``call("reserve", host, n)``.
        rate: Requests per second per host (0 = unlimited: no call at all).
        threads: Threads of this worker (the most slots asked at once).
    """

    def __init__(self, call: Call, rate: float, threads: int) -> None:
        super().__init__(rate)
        self._call = call
        self.batch = max(1, min(threads, math.ceil(rate * BATCH_SECONDS))) if rate > 0 else 0
        self._slots: dict[str, deque[float]] = {}
        self.calls = 0  # remote calls made (the overhead)

    def _slot(self, host: str) -> float:
        """The next of the slots of ``host`` asked from the shared state in batches."""
        with self._lock:
            slots = self._slots.setdefault(host, deque())
            late = time.monotonic() - self.interval / 2
            while slots and slots[0] < late:
                slots.popleft()  # not used in time: dropped, never used late
            if not slots:
                offsets = self._call("reserve", host, self.batch)
                self.calls += 1
                now = time.monotonic()
                slots.extend(now + o for o in offsets)
            return slots.popleft()


class SharedBreaker:
    """The worker side of the shared host breaker (the :class:`HostBreaker` methods).

    Args:
        call: Runs a :class:`HostState` method.
        threshold: Connection failures in a row after which a host is down (0 = never: no
            call at all).
    """

    def __init__(self, call: Call, threshold: int) -> None:
        self._call = call
        self.threshold = threshold
        self._down: frozenset[str] = frozenset()
        self._failing: frozenset[str] = frozenset()
        self._stamp = -math.inf

    def _update(self, down: list[str], failing: list[str]) -> None:
        self._down, self._failing = frozenset(down), frozenset(failing)
        self._stamp = time.monotonic()

    def _refresh(self, force: bool = False) -> None:
        """Ask for the down hosts when ``force`` or stale (never when the breaker is off)."""
        if self.threshold > 0 and (force or time.monotonic() - self._stamp >= REFRESH_SECONDS):
            self._update(*self._call("state"))

    def is_down(self, host: str) -> bool:
        """True once ``host`` is down for this run.

        A host with failures counted is asked about every time (it may go down any moment);
        any other, as of the last refresh.
        """
        self._refresh(force=host in self._failing)
        return host in self._down

    @property
    def down(self) -> list[str]:
        """The hosts that are down, sorted."""
        self._refresh(force=True)
        return sorted(self._down)

    def answered(self, host: str) -> None:
        """``host`` answered; reported only when it has failures counted."""
        if host in self._failing:  # never when the breaker is off: failed() reports nothing
            self._update(*self._call("answered", host))

    def failed(self, host: str) -> bool:
        """Report a connection failure; True when it made the host down."""
        if self.threshold <= 0:
            return False
        went_down, down, failing = self._call("failed", host)
        self._update(down, failing)
        return bool(went_down)

    def sleep(self, host: str, seconds: float) -> bool:
        """Wait ``seconds`` before a retry, less if the host goes down; True when it is down."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.is_down(host):
                return True
            time.sleep(min(left, REFRESH_SECONDS))
        return self.is_down(host)
