"""Per-host accounting of the images stage: a circuit breaker, counts, the host-down report.

The breaker stops asking a host that does not answer.

An image host that cannot be reached (DNS fails, the connection is refused or times out, the
TLS handshake fails, the socket is closed before any answer) costs every one of its items
``candidates * (retries + 1)`` requests and back-off waits before each is given up. The
breaker counts such connection-level failures per host, across all worker threads; after
``threshold`` of them in a row (no answer in between) the host is *down* for the rest of the
run: the fetcher makes no more requests to it and its candidates fail at once as
``"host-down"``. Any HTTP answer from the host, whatever its status, resets its count. A down
host stays down until the run ends (no half-open probing: the next run asks it again).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# The reason of a URL not asked because its host is down (see HostBreaker).
HOST_DOWN = "host-down"
# Reasons of an item of a down host that are shown as host-down (the host, not the URL).
HOST_DOWN_LABELLED = frozenset({"connection-error", "timeout", HOST_DOWN})


def url_host(url: str) -> str:
    """The host a URL asks (``netloc``, lower case), or ``"file://"`` for local files."""
    parts = urlsplit(url)
    return parts.netloc.lower() or f"{parts.scheme.lower()}://"


class HostBreaker:
    """Per-host count of consecutive connection failures; thread-safe.

    Args:
        threshold: Connection failures in a row after which a host is down for this run; 0
            never stops asking.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._failures: dict[str, int] = defaultdict(int)
        self._down: dict[str, threading.Event] = defaultdict(threading.Event)
        self._lock = threading.Lock()

    def is_down(self, host: str) -> bool:
        """True once ``host`` failed ``threshold`` times in a row."""
        with self._lock:
            return host in self._down and self._down[host].is_set()

    @property
    def down(self) -> list[str]:
        """The hosts that are down, sorted."""
        with self._lock:
            return sorted(h for h, ev in self._down.items() if ev.is_set())

    @property
    def failing(self) -> list[str]:
        """The hosts with at least one connection failure since their last answer, sorted."""
        with self._lock:
            return sorted(h for h, n in self._failures.items() if n > 0)

    def answered(self, host: str) -> None:
        """``host`` sent an HTTP answer (any status): its count of failures starts again."""
        with self._lock:
            self._failures[host] = 0

    def failed(self, host: str) -> bool:
        """Count a connection-level failure of ``host``.

        Returns:
            True when this failure made the host down (once per host and run).
        """
        if self.threshold <= 0:
            return False
        with self._lock:
            self._failures[host] += 1
            event = self._down[host]
            if event.is_set() or self._failures[host] < self.threshold:
                return False
            event.set()
            return True

    def sleep(self, host: str, seconds: float) -> bool:
        """Wait ``seconds`` before a retry to ``host``, or less if the host goes down meanwhile.

        Returns:
            True when the host is down (the retry must not be made).
        """
        with self._lock:
            event = self._down[host]
        return event.wait(seconds) if seconds > 0 else event.is_set()


def host_stats(
    rows: list[dict[str, Any]], requests_by_host: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Per host (of the URL that served or that failed): items ok, failed, skipped; requests.

    Item counts cover every item of the index (like ``reasons``); ``requests`` are this run's.
    """
    hosts: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "ok": 0, "failed": Counter(), "skipped": 0}
    )
    for r in rows:
        url = r["fetched_url"] or r["url"]
        if url is None:
            continue  # no-url, skipped: no host was asked
        e = hosts[url_host(url)]
        if r["has_image"]:
            e["ok"] += 1
        elif r["reason"] == HOST_DOWN:
            e["skipped"] += 1
        else:
            e["failed"][r["reason"]] += 1
    for host, n in requests_by_host.items():
        hosts[host]["requests"] = n
    return {h: {**e, "failed": dict(sorted(e["failed"].items()))} for h, e in sorted(hosts.items())}


def report_hosts_down(rows: list[dict[str, Any]], down: list[str], failures: int) -> None:
    """Label the failed items of down hosts ``host-down``; one warning per down host.

    Items that failed (connection error, time-out) before their host was found down get the
    same label as those skipped afterwards: what they have in common is the host.
    """
    skipped: Counter[str] = Counter()
    for r in rows:
        if r["has_image"] or r["fetched_url"] is None:
            continue
        host = url_host(r["fetched_url"])
        if host in down and r["reason"] in HOST_DOWN_LABELLED:
            r["reason"] = HOST_DOWN
            skipped[host] += 1
    for host in down:
        log.warning(
            "image host %s did not answer %d times in a row; its %d items are skipped this run "
            "(reason host-down; a rerun asks it again): pass --mirror PREFIX=REPLACEMENT to "
            "read them elsewhere, or rerun later; --skip-images builds without images",
            host,
            failures,
            skipped[host],
        )
