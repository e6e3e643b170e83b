"""A watchdog that bounds an HTTP request in time where a per-read socket time-out cannot.

A server that trickles a byte at a time restarts a per-read time-out with every byte, and a
check between chunks is never reached while one read waits for a whole chunk. The
:class:`Watchdog` runs a thread that shuts the request's socket down when a total deadline
passes or when too few bytes arrived within a window (curl's ``--speed-limit`` /
``--speed-time``), which ends any read blocked on it. Sockets reach it through
:class:`WatchedAdapter` (a requests adapter), just before the response headers are read.

Shared by raw downloads (:mod:`alignrec_data.http`, :mod:`alignrec_data.download`: the speed
rule) and the image fetcher (:mod:`alignrec_data.images.fetch`: the deadline).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# The watchdog of the request the current thread is making (see Watchdog.__enter__).
_ACTIVE = threading.local()


def current_watchdog() -> Watchdog | None:
    """The :class:`Watchdog` whose context the current thread is in, or None."""
    return getattr(_ACTIVE, "dog", None)


class TooSlow(Exception):
    """A :class:`Watchdog` cut a response: fewer than its minimum bytes within its window.

    Attributes:
        seen: Bytes received within the window that broke the rule.
        span: That window's length in seconds.
    """

    def __init__(self, seen: int, span: float) -> None:
        super().__init__(f"too slow: {seen:,} bytes in {span:.1f} s")
        self.seen, self.span = seen, span


class Watchdog:
    """Shut the current thread's request socket down when the request breaks a time rule.

    Rules (either or both):

    * ``deadline``: the whole request (headers and body, redirects included) ends within this
      many seconds of creating the watchdog. Once passed, every later socket is shut at once.
    * ``min_speed`` / ``window``: at least ``min_speed * window`` bytes arrive within every
      ``window`` seconds (curl's ``--speed-limit`` / ``--speed-time``). The window restarts
      with each request (each socket handed over); the wait for the response headers counts
      as 0 bytes; the back-off sleeps between tries do not count (the retry detaches the
      socket first: :class:`alignrec_data.http.PolicyRetry`), nor does the time the reader
      spends on received bytes between :meth:`pause` and :meth:`resume` (a slow disk, or
      hashing a resumed part file, is not the server's fault).

    A per-read socket time-out bounds neither (every byte restarts it), and a check between
    chunks is never reached while one read waits for a whole chunk. The watchdog's thread
    checks the rules (every ``min(1, window / 4)`` seconds for the speed rule) and calls
    ``shutdown`` on the socket, so any ``recv`` blocked on it returns at once; the reader then
    sees :attr:`expired` and reports a time-out. Sockets reach the watchdog through
    :class:`WatchedAdapter` just before the headers are read; readers report body bytes with
    :meth:`saw` (:func:`alignrec_data.http.open_stream` does).

    Args:
        deadline: Seconds from now to the deadline (None: no deadline).
        min_speed: Bytes per second (0: no speed rule).
        window: Seconds over which ``min_speed`` is measured (0: no speed rule).
    """

    def __init__(
        self, deadline: float | None = None, *, min_speed: float = 0.0, window: float = 0.0
    ) -> None:
        self.deadline = time.monotonic() + deadline if deadline is not None else float("inf")
        self.expired = False  # a rule cut the current request
        self.cuts = 0  # sockets shut down so far
        self.seen, self.span = 0, 0.0  # speed rule: bytes within the window that broke it
        self.received = 0  # body bytes reported by saw()
        self.window = window
        self._min_bytes = min_speed * window if min_speed > 0 and window > 0 else 0.0
        self._tick = min(1.0, window / 4) if self._min_bytes else None
        self._passed = False  # the deadline has passed
        self._paused_at: float | None = None  # when pause() was called (None: running)
        self._paused_total = 0.0  # seconds spent paused; the speed rule's clock skips them
        self._samples: deque[tuple[float, int]] = deque()  # (time, received) in the window
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __enter__(self) -> Watchdog:
        if self.deadline != float("inf") or self._tick is not None:
            threading.Thread(target=self._run, name="alignrec-watchdog", daemon=True).start()
        _ACTIVE.dog = self
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.dog = None
        self._stop.set()
        self.detach()

    def saw(self, n: int) -> None:
        """Count ``n`` bytes received (called by the reader as they arrive)."""
        self.received += n

    def pause(self) -> None:
        """Stop the speed rule's clock: the reader is busy with received bytes, not waiting."""
        with self._lock:
            self._paused_at = time.monotonic()

    def resume(self) -> None:
        """Restart the speed rule's clock (the reader waits for the network again)."""
        with self._lock:
            if self._paused_at is not None:
                self._paused_total += time.monotonic() - self._paused_at
                self._paused_at = None

    def attach(self, sock: socket.socket | None) -> None:
        """Watch ``sock``, a new request's socket (shut at once when the deadline has passed)."""
        with self._lock:
            self._sock = sock
            self.expired = self._passed
            if self._passed:
                _shutdown(sock)
                return
            self._samples.clear()
            self._samples.append((time.monotonic() - self._paused_total, self.received))

    def detach(self) -> None:
        """Stop watching the current socket (between tries: the speed rule pauses)."""
        with self._lock:
            self._sock = None
            self._samples.clear()

    def error(self) -> TooSlow:
        """The error for a request this watchdog cut by the speed rule."""
        return TooSlow(self.seen, self.span)

    def _run(self) -> None:
        while True:
            waits = [self._tick] if self._tick is not None else []
            if not self._passed and self.deadline != float("inf"):
                waits.append(self.deadline - time.monotonic())
            if not waits or self._stop.wait(max(0.0, min(waits))):
                return
            self._check(time.monotonic())

    def _check(self, now: float) -> None:
        with self._lock:
            if not self._passed and now >= self.deadline:
                self._passed = True
                self._cut()
            if not self._min_bytes or self._sock is None or self._paused_at is not None:
                return
            now -= self._paused_total  # the speed rule's clock: time spent waiting
            self._samples.append((now, self.received))
            # Keep the newest sample at or before now - window: the start of the window.
            while len(self._samples) > 1 and self._samples[1][0] <= now - self.window:
                self._samples.popleft()
            start, count = self._samples[0]
            got = self.received - count
            if now - start >= self.window and got < self._min_bytes:
                self.seen, self.span = got, now - start
                self._cut()

    def _cut(self) -> None:
        self.expired = True
        if self._sock is not None:
            self.cuts += 1
            _shutdown(self._sock)
            self._sock = None


def _shutdown(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


class _WatchedMixin:
    """Hand the connection's socket to the current thread's :class:`Watchdog`."""

    sock: Any

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        dog = current_watchdog()
        if dog is not None:
            dog.attach(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


def _watched(pool: type) -> type:
    """A subclass of the connection pool ``pool`` whose connections are watched."""
    conn = pool.ConnectionCls
    watched = type(f"_Watched{conn.__name__}", (_WatchedMixin, conn), {})
    return type(f"_Watched{pool.__name__}", (pool,), {"ConnectionCls": watched})


_WATCHED_POOLS = {"http": _watched(HTTPConnectionPool), "https": _watched(HTTPSConnectionPool)}


class WatchedAdapter(HTTPAdapter):
    """A requests adapter whose connections hand their socket to the current :class:`Watchdog`.

    Outside a watchdog's context it behaves as :class:`requests.adapters.HTTPAdapter`.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager
