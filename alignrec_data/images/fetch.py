"""Fetching image bytes over ``http(s)://`` and ``file://``, politely and with hard limits.

- Per-host rate limit (:class:`HostRateLimiter`): request starts to one host are spaced at
  least ``1 / per_host_rate`` seconds apart, across all worker threads (retries included).
- Retries on time-outs, connection errors and the statuses raw downloads retry too (408, 429,
  500, 502, 503, 504), waiting as the shared :class:`alignrec_data.http.RetryPolicy` says:
  ``backoff * 2**(retry - 1)`` seconds, or the server's ``Retry-After`` (seconds or HTTP
  date), capped at ``max_retry_after``. This loop is the fetcher's own (not the session's):
  it also retries time-outs inside the body and waits for the rate limit before every try.
- Bounded memory: a response is read in chunks and abandoned as soon as it exceeds
  ``max_bytes`` (also when ``Content-Length`` announces more).
- Bounded time: ``timeout`` bounds connecting and each socket read; ``total_timeout`` bounds
  one whole request, headers and body, even from a server that trickles one byte at a time:
  a watchdog (:class:`alignrec_data.http.Watchdog`, shared with raw downloads) shuts the
  request's socket down at the deadline, which ends any read blocked on it, and the attempt
  fails as ``"timeout"``.
- Bounded requests: ``fetch(url, max_requests)`` makes at most that many attempts (the stage's
  per-item budget, ``images.max_requests_per_item``).
- Dead hosts: connection-level failures (DNS, refused, connect time-out, TLS, closed before any
  answer) are counted per host by a :class:`~alignrec_data.images.hosts.HostBreaker`; after
  ``host_failures`` in a row the host is down for the rest of the run and its URLs fail at once
  as ``"host-down"``, without a request (a back-off wait is cut short when that happens).

A failed fetch is a :class:`FetchResult` with a short ``reason`` (``"http-404"``,
``"timeout"``, ``"too-large"``, ``"connection-error"``, ``"file-not-found"``...), never an
exception: image servers are untrusted and many URLs are dead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from alignrec_data.http import RETRY_STATUSES, USER_AGENT, RetryPolicy, Watchdog, make_session
from alignrec_data.images.hosts import HOST_DOWN, HostBreaker, url_host
from alignrec_data.images.urls import file_url_path

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
# Redirects followed for one image URL (requests follows them).
IMAGE_REDIRECTS = 5
# The reason of an item not fetched at all (``alignrec-data images --skip-images``).
SKIPPED = "skipped"
# Reasons a later run may cure (the stage retries items that failed with one of these): the
# retried statuses, any other 5xx (see is_transient), a host that was down, a skipped fetch.
TRANSIENT_REASONS = frozenset(
    {
        "timeout",
        "connection-error",
        HOST_DOWN,
        SKIPPED,
        *(f"http-{status}" for status in RETRY_STATUSES),
    }
)


def is_transient(reason: str | None) -> bool:
    """True for a failure a later run may cure.

    Time-outs, connection errors, HTTP 408, 429 and any 5xx, a host that was down
    (``host-down``) and an item not fetched at all (``skipped``).
    """
    http_5xx = reason is not None and reason.startswith("http-5") and len(reason) == 8
    return reason in TRANSIENT_REASONS or http_5xx


@dataclass(frozen=True)
class FetchSettings:
    """Network limits of a fetch (a subset of the ``images`` params).

    Attributes:
        max_bytes: Largest response body accepted, in bytes.
        timeout: Seconds to connect and for each read.
        total_timeout: Seconds for one whole request (headers and body), per attempt.
        retries: Extra attempts after the first on a retryable failure.
        backoff: Seconds before the first retry; doubles each retry.
        max_retry_after: Cap on any wait, Retry-After included, in seconds.
        per_host_rate: Requests per second per host (0 = unlimited).
        user_agent: The User-Agent header.
        pool_size: HTTP connections kept per host (the worker count).
        host_failures: Connection-level failures in a row after which a host is down for
            the rest of the run (0 = never).
    """

    max_bytes: int = 16_000_000
    timeout: float = 20.0
    total_timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0
    max_retry_after: float = 60.0
    per_host_rate: float = 10.0
    user_agent: str = USER_AGENT
    pool_size: int = 16
    host_failures: int = 5

    def retry_policy(self) -> RetryPolicy:
        """The retry policy: ``max_retry_after`` caps the back-off and ``Retry-After`` alike."""
        return RetryPolicy(self.retries, self.backoff, self.max_retry_after, self.max_retry_after)


@dataclass(frozen=True)
class FetchResult:
    """What one URL gave.

    Attributes:
        url: The URL fetched.
        body: The response body (None on failure).
        status: The final HTTP status, or None (``file://`` URLs, no response).
        reason: None on success, else a short failure reason.
        requests: How many requests were made (retries included; 0 for ``file://``).
    """

    url: str
    body: bytes | None
    status: int | None
    reason: str | None
    requests: int

    @property
    def ok(self) -> bool:
        """True when a body was received."""
        return self.reason is None


class HostRateLimiter:
    """Space the starts of requests to one host at least ``1 / rate`` seconds apart.

    Thread-safe: each caller reserves the next free slot of its host under a lock, then
    sleeps outside the lock until that slot.

    Args:
        rate: Requests per second per host; 0 or less means no limit.
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, host: str, n: int = 1) -> list[float]:
        """Reserve the next ``n`` free start times of ``host`` (``time.monotonic`` seconds).

        Without a limit every slot is now. A shared limiter (several processes, see
        :mod:`alignrec_data.engine`) hands out slots this way instead of sleeping.
        """
        now = time.monotonic()
        with self._lock:
            first = max(now, self._next.get(host, now))
            self._next[host] = first + n * self.interval
        return [first + i * self.interval for i in range(n)]

    def wait(self, host: str) -> None:
        """Block until a request to ``host`` may start."""
        if self.interval > 0:
            time.sleep(max(0.0, self._slot(host) - time.monotonic()))

    def _slot(self, host: str) -> float:
        """The start time of the next request to ``host`` (a shared limiter asks elsewhere)."""
        return self.reserve(host)[0]


class _TooLarge(Exception):
    """The body is longer than ``max_bytes``."""


class _Deadline(Exception):
    """The request's ``total_timeout`` passed."""


class Fetcher(AbstractContextManager["Fetcher"]):
    """Fetch URLs with retries, a per-host rate limit and a size cap; safe to share by threads.

    Each thread gets its own :class:`requests.Session` (connection reuse per thread). The
    rate limiter, the host breaker and the request counts are shared by all threads.

    Args:
        settings: The limits.
        limiter: Rate limiter shared beyond this process (anything with ``wait(host)``);
            None: a :class:`HostRateLimiter` of ``settings.per_host_rate``.
        breaker: Host breaker shared beyond this process (the :class:`HostBreaker` methods);
            None: a :class:`HostBreaker` of ``settings.host_failures``.
    """

    def __init__(
        self,
        settings: FetchSettings,
        limiter: HostRateLimiter | None = None,
        breaker: HostBreaker | None = None,
    ) -> None:
        self.settings = settings
        self.policy = settings.retry_policy()
        self.limiter = limiter if limiter is not None else HostRateLimiter(settings.per_host_rate)
        self.breaker = breaker if breaker is not None else HostBreaker(settings.host_failures)
        self.requests_by_host: Counter[str] = Counter()
        self._local = threading.local()
        self._sessions = ExitStack()  # every thread's session, closed by close()
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            # No retries in the session: _fetch_http retries (rate limit, body time-outs).
            session = make_session(
                None,
                user_agent=self.settings.user_agent,
                accept="image/*",
                pool_size=self.settings.pool_size,
                hosts=4,
                max_redirects=IMAGE_REDIRECTS,
            )
            self._local.session = session
            with self._lock:
                self._sessions.enter_context(session)
        return session

    def close(self) -> None:
        """Close every thread's session."""
        with self._lock:
            self._sessions.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str, max_requests: int | None = None) -> FetchResult:
        """Fetch one ``http(s)://`` or ``file://`` URL.

        Args:
            url: The URL.
            max_requests: Most requests to make, retries included (None: ``retries + 1``;
                fewer when smaller). ``file://`` URLs make none.

        Returns:
            The result; failures are results with a ``reason``, never exceptions.
        """
        scheme = urlsplit(url).scheme.lower()
        if scheme == "file":
            return self._fetch_file(url)
        if scheme in ("http", "https"):
            return self._fetch_http(url, max_requests)
        return FetchResult(url, None, None, "unsupported-url", 0)

    def _fetch_file(self, url: str) -> FetchResult:
        path = file_url_path(url)
        try:
            size = path.stat().st_size
            if not path.is_file():
                return FetchResult(url, None, None, "file-not-found", 0)
            if size > self.settings.max_bytes:
                return FetchResult(url, None, None, "too-large", 0)
            with path.open("rb") as fh:
                body = fh.read(self.settings.max_bytes + 1)
        except FileNotFoundError:
            return FetchResult(url, None, None, "file-not-found", 0)
        except OSError as err:
            log.debug("reading %s failed: %s", url, err)
            return FetchResult(url, None, None, "file-error", 0)
        if len(body) > self.settings.max_bytes:
            return FetchResult(url, None, None, "too-large", 0)
        return FetchResult(url, body, None, None, 0)

    def _fetch_http(self, url: str, max_requests: int | None) -> FetchResult:
        s, policy, host = self.settings, self.policy, url_host(url)
        status: int | None = None
        reason = "connection-error"
        n = 0
        tries = policy.retries + 1
        tries = tries if max_requests is None else min(tries, max_requests)
        timeouts = (s.timeout, min(s.timeout, s.total_timeout))  # connect, each read
        for attempt in range(tries):
            if self.breaker.is_down(host):
                return FetchResult(url, None, status, HOST_DOWN, n)
            self.limiter.wait(host)
            if self.breaker.is_down(host):  # went down while this thread waited its turn
                return FetchResult(url, None, status, HOST_DOWN, n)
            n += 1
            with self._lock:
                self.requests_by_host[host] += 1
            retry_after: str | None = None
            answered = False
            with Watchdog(s.total_timeout) as dog:
                try:
                    with self._session().get(
                        url, stream=True, timeout=timeouts, allow_redirects=True
                    ) as resp:
                        answered = True
                        self.breaker.answered(host)
                        status = resp.status_code
                        if status == 200:
                            body = self._read_capped(resp, dog)
                            return FetchResult(url, body, status, None, n)
                        reason = f"http-{status}"
                        if status not in policy.statuses:
                            return FetchResult(url, None, status, reason, n)
                        retry_after = resp.headers.get("Retry-After")
                except _TooLarge:
                    return FetchResult(url, None, status, "too-large", n)
                except (_Deadline, requests.Timeout) as err:
                    reason = "timeout"
                    if isinstance(err, requests.ConnectTimeout) and not dog.expired:
                        self._host_failed(host, err)
                except requests.RequestException as err:
                    # Connection refused/reset, bad chunked encoding, invalid redirect, or the
                    # watchdog cut a response that went on past total_timeout.
                    log.debug("GET %s failed: %s", url, err)
                    reason = "timeout" if dog.expired else "connection-error"
                    unanswered = not answered and not dog.expired
                    if unanswered and isinstance(err, requests.ConnectionError):
                        self._host_failed(host, err)  # DNS, refused, TLS, closed unanswered
            if attempt < tries - 1:
                delay = policy.delay(attempt + 1, retry_after)
                log.debug("GET %s: %s, retry %d in %.2f s", url, reason, attempt + 1, delay)
                if self.breaker.sleep(host, delay):
                    return FetchResult(url, None, status, HOST_DOWN, n)
        return FetchResult(url, None, status, reason, n)

    def _host_failed(self, host: str, err: Exception) -> None:
        """Count a connection-level failure (the stage warns about down hosts at the end)."""
        if self.breaker.failed(host):
            log.debug("host %s is down for this run (last error: %s)", host, err)

    def _read_capped(self, resp: requests.Response, dog: Watchdog) -> bytes:
        """Read a streamed body, stopping at ``max_bytes`` or the request's deadline.

        The deadline is checked after every chunk and enforced inside a blocked read by the
        watchdog (which ends the read early: a body cut that way is never returned).
        """
        s = self.settings
        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > s.max_bytes:
            raise _TooLarge
        buf = bytearray()
        for chunk in resp.iter_content(CHUNK_SIZE):
            buf += chunk
            if len(buf) > s.max_bytes:
                raise _TooLarge
            if dog.expired or time.monotonic() > dog.deadline:
                raise _Deadline
        if dog.expired:
            raise _Deadline
        return bytes(buf)
