"""Opening a byte stream from an http(s):// or file:// URL, from an offset.

Who does what:

* ``requests`` (one :class:`requests.Session` per file) speaks HTTP, with ``stream=True`` so the
  body is read chunk by chunk.
* ``urllib3.util.Retry`` (mounted through :class:`requests.adapters.HTTPAdapter`) retries
  connection errors, read errors before the body, 5xx and 429 with capped exponential back-off
  and honours ``Retry-After`` (urllib3 honours it for 413/429/503; :class:`CappedRetry` caps it).
* Written here because neither library does it: Range requests and the interpretation of
  ``206`` / ``200`` / ``416`` answers for resuming (:func:`open_stream`); following redirects by
  hand so that a redirect to another scheme is refused (requests follows any redirect); reading
  ``file://`` URLs (requests has no file adapter); raw body bytes without
  ``Content-Encoding`` decoding, so a ``.gz`` file served with ``Content-Encoding: gzip`` is
  stored as the server's bytes, the bytes its sha256 is about.
* Also written here, shared with the image fetcher (:mod:`alignrec_data.images.fetch`): a
  :class:`Watchdog` that bounds a request in time where a per-read socket time-out cannot (a
  server that trickles a byte at a time restarts that time-out with every byte). It shuts the
  request's socket down when a total deadline passes or when too few bytes arrived within a
  window (curl's ``--speed-limit`` / ``--speed-time``), which ends any read blocked on it.
  The body is read with ``read1`` (at most one ``recv`` per call) so the watchdog sees bytes
  as they arrive, not only when a whole chunk is complete.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import requests
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from alignrec_data import __version__
from alignrec_data.errors import DownloadError

log = logging.getLogger(__name__)

USER_AGENT = f"alignrec-data/{__version__} (+https://github.com/alignrec/alignrec)"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 10
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_CONTENT_RANGE_UNSAT = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$")


class CappedRetry(Retry):
    """urllib3's Retry with ``Retry-After`` capped at :attr:`retry_after_max` seconds.

    A server may ask to wait for hours; we honour the header up to the cap.
    """

    retry_after_max: float = 300.0

    def get_retry_after(self, response: Any) -> float | None:  # noqa: D102
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.retry_after_max)

    def new(self, **kw: Any) -> CappedRetry:  # noqa: D102
        retry = super().new(**kw)
        retry.retry_after_max = self.retry_after_max
        return retry

    def sleep(self, response: Any = None) -> None:
        """Wait before the next try; the current :class:`Watchdog` does not count the wait."""
        dog = current_watchdog()
        if dog is not None:
            dog.detach()
        super().sleep(response)


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
      as 0 bytes; urllib3's back-off sleeps between tries do not count (:class:`CappedRetry`),
      nor does the time the reader spends on received bytes between :meth:`pause` and
      :meth:`resume` (a slow disk, or hashing a resumed part file, is not the server's fault).

    A per-read socket time-out bounds neither (every byte restarts it), and a check between
    chunks is never reached while one read waits for a whole chunk. The watchdog's thread
    checks the rules (every ``min(1, window / 4)`` seconds for the speed rule) and calls
    ``shutdown`` on the socket, so any ``recv`` blocked on it returns at once; the reader then
    sees :attr:`expired` and reports a time-out. Sockets reach the watchdog through
    :class:`WatchedAdapter` just before the headers are read; readers report body bytes with
    :meth:`saw` (:func:`open_stream` does).

    Args:
        deadline: Seconds from now to the deadline (None: no deadline).
        min_speed: Bytes per second (0: no speed rule).
        window: Seconds over which ``min_speed`` is measured (0: no speed rule).
    """

    def __init__(
        self, deadline: float | None = None, *, min_speed: float = 0.0, window: float = 0.0
    ) -> None:
        now = time.monotonic()
        self.deadline = now + deadline if deadline is not None else float("inf")
        self.expired = False  # a rule cut the current request
        self.cuts = 0  # sockets shut down so far
        self.seen, self.span = 0, 0.0  # speed rule: bytes within the window that broke it
        self.received = 0  # body bytes reported by saw()
        self.min_speed, self.window = min_speed, window
        self._min_bytes = min_speed * window if min_speed > 0 and window > 0 else 0.0
        self._tick = min(1.0, window / 4) if self._min_bytes else None
        self._passed = False  # the deadline has passed
        self._paused_at: float | None = None  # when pause() was called (None: running)
        self._paused_total = 0.0  # seconds spent paused; the speed rule's clock skips them
        self._samples: deque[tuple[float, int]] = deque()  # (time, received) in the window
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watchdog:
        if self.deadline != float("inf") or self._tick is not None:
            self._thread = threading.Thread(target=self._run, name="alignrec-watchdog")
            self._thread.daemon = True
            self._thread.start()
        _ACTIVE.dog = self
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.dog = None
        self._stop.set()
        with self._lock:
            self._sock = None

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
            samples = self._samples
            samples.append((now, self.received))
            # Keep the newest sample at or before now - window: the start of the window.
            while len(samples) > 1 and samples[1][0] <= now - self.window:
                samples.popleft()
            start, count = samples[0]
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
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _WatchedMixin:
    """Hand the connection's socket to the current thread's :class:`Watchdog`."""

    sock: Any

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        dog = current_watchdog()
        if dog is not None:
            dog.attach(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedMixin, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedMixin, urllib3.connection.HTTPSConnection):
    pass


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


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


def make_session(
    retries: int, backoff_base: float, backoff_cap: float, retry_after_max: float
) -> requests.Session:
    """A requests Session whose adapter retries with capped exponential back-off.

    Args:
        retries: Retries per request for connection errors, 5xx and 429.
        backoff_base: First back-off in seconds (doubles on each retry).
        backoff_cap: Longest back-off in seconds.
        retry_after_max: Longest ``Retry-After`` honoured, in seconds.
    """
    retry = CappedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        redirect=0,  # redirects are followed by hand in open_stream (scheme check)
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_base,
        backoff_max=backoff_cap,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer comes back; open_stream turns it into an error
        raise_on_redirect=False,
    )
    retry.retry_after_max = retry_after_max
    session = requests.Session()
    adapter = WatchedAdapter(max_retries=retry, pool_connections=1, pool_maxsize=1)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    return session


@dataclass
class Stream:
    """An opened body, positioned at :attr:`start`.

    Attributes:
        url: The URL finally read (after redirects).
        start: Offset of the first body byte in the file (0 when the server sent it all).
        total: Full file size when the server said it, else None.
        chunks: Iterator over the body's raw bytes.
    """

    url: str
    start: int
    total: int | None
    chunks: Iterator[bytes]
    _closer: Any = field(default=None, repr=False)

    def close(self) -> None:
        """Release the connection or file."""
        if self._closer is not None:
            self._closer.close()


class RangeNotSatisfiable(Exception):
    """The server answered 416: the offset is at or past the end of a file of ``total`` bytes."""

    def __init__(self, total: int | None) -> None:
        super().__init__(total)
        self.total = total


def moved_hint(name: str) -> str:
    """The hint shown when a URL fails: how to point at a mirror."""
    return (
        f"the host may have moved or be down: pass --mirror URL_OR_PATH (or set "
        f"ALIGNREC_MIRROR) to a base URL or local folder that holds {name}"
    )


def open_stream(
    url: str, offset: int, *, session: requests.Session, timeout: float, chunk_size: int
) -> Stream:
    """Open ``url`` for reading from byte ``offset``.

    Args:
        url: An ``http(s)://`` or ``file://`` URL.
        offset: First byte wanted; > 0 sends ``Range: bytes=<offset>-``.
        session: Session from :func:`make_session` (unused for file URLs).
        timeout: Connect and read timeout in seconds.
        chunk_size: Size of the chunks yielded.

    Inside a :class:`Watchdog` context the request's socket is handed to the watchdog and
    the body's bytes are reported to it as they arrive; a cut by its speed rule ends the
    body with :class:`TooSlow`.

    Returns:
        The stream. ``start`` is ``offset`` when the server honoured the range and 0 when it
        sent the whole file (a clean restart is then up to the caller).

    Raises:
        RangeNotSatisfiable: HTTP 416 for a non-zero offset.
        DownloadError: 4xx/5xx after retries, a refused redirect, a missing local file.
        requests.RequestException: Connection errors left after the retries.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return _open_file(url, offset, chunk_size)
    if scheme not in ("http", "https"):
        msg = f"cannot download {url}: unsupported URL scheme {scheme!r}"
        raise DownloadError(msg)
    headers = {"Range": f"bytes={offset}-"} if offset > 0 else {}
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        resp = session.get(
            current, headers=headers, stream=True, timeout=timeout, allow_redirects=False
        )
        if resp.is_redirect:
            target = urljoin(current, resp.headers.get("Location", ""))
            resp.close()
            old, new = urlsplit(current).scheme.lower(), urlsplit(target).scheme.lower()
            if new != old:
                msg = (
                    f"GET {current} redirected to {target}: a redirect from {old}:// to "
                    f"{new}:// is refused (a mirror or host must not change the scheme)"
                )
                raise DownloadError(msg, hint="use the final URL as --mirror if you trust it")
            log.debug("redirect %s -> %s", current, target)
            current = target
            continue
        break
    else:
        resp.close()
        msg = f"GET {url}: more than {MAX_REDIRECTS} redirects"
        raise DownloadError(msg)

    if resp.status_code == 416 and offset > 0:
        m = _CONTENT_RANGE_UNSAT.match(resp.headers.get("Content-Range", ""))
        resp.close()
        raise RangeNotSatisfiable(int(m.group(1)) if m else None)
    if resp.status_code >= 400:
        reason = resp.reason or ""
        resp.close()
        name = current.rsplit("/", 1)[-1]
        msg = f"GET {current} failed: HTTP {resp.status_code} {reason}".rstrip()
        raise DownloadError(msg, hint=moved_hint(name))
    if resp.status_code not in (200, 206):
        resp.close()
        msg = f"GET {current}: unexpected HTTP {resp.status_code} {resp.reason}"
        raise DownloadError(msg)

    start, total = 0, None
    if resp.status_code == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if m is None or int(m.group(1)) != offset:
            # A 206 for another range than asked: do not splice it, restart from zero.
            resp.close()
            log.warning(
                "GET %s: unexpected Content-Range %r; restarting from 0",
                current,
                resp.headers.get("Content-Range"),
            )
            return open_stream(url, 0, session=session, timeout=timeout, chunk_size=chunk_size)
        start = offset
        total = None if m.group(3) == "*" else int(m.group(3))
    else:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    chunks = _body(resp, chunk_size, current_watchdog())
    return Stream(url=current, start=start, total=total, chunks=chunks, _closer=resp)


def _body(resp: requests.Response, chunk_size: int, dog: Watchdog | None) -> Iterator[bytes]:
    """The raw body bytes as sent (no Content-Encoding decoding), in chunks of ``chunk_size``.

    Read with ``read1`` (at most one ``recv`` per call) and gathered into chunks, so ``dog``
    counts bytes as they arrive, and a chunk is also handed on after a second without
    filling (slow links show progress). Bytes received before an error are yielded first.
    While the caller handles a chunk, ``dog``'s speed clock is paused.

    Raises:
        TooSlow: ``dog`` cut the response (its speed rule).
        urllib3.exceptions.HTTPError: ``ProtocolError`` when the body ends before
            ``Content-Length`` (a cut connection), ``ReadTimeoutError``; the caller resumes.
    """
    raw = resp.raw
    pieces: list[bytes] = []
    held = 0
    flushed = time.monotonic()
    while True:
        try:
            piece = raw.read1(chunk_size - held, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            if held:
                yield b"".join(pieces)
            if dog is not None and dog.expired:
                raise dog.error() from err
            raise
        if not piece:
            if held:
                yield b"".join(pieces)
            if dog is not None and dog.expired and raw.length_remaining is None:
                # A body without Content-Length ends when the socket does: cut, not complete.
                raise dog.error()
            return
        if dog is not None:
            dog.saw(len(piece))
        pieces.append(piece)
        held += len(piece)
        if held >= chunk_size or time.monotonic() - flushed >= 1.0:
            chunk = piece if len(pieces) == 1 else b"".join(pieces)
            if dog is None:
                yield chunk
            else:
                dog.pause()
                yield chunk
                dog.resume()
            pieces, held, flushed = [], 0, time.monotonic()


def _open_file(url: str, offset: int, chunk_size: int) -> Stream:
    """Open a ``file://`` URL (a local mirror) from ``offset``."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        msg = f"cannot read {url}: file:// URLs must name a local path (file:///...)"
        raise DownloadError(msg)
    path = Path(url2pathname(unquote(parts.path)))
    try:
        f = path.open("rb")
    except FileNotFoundError as err:
        msg = f"{url} does not exist (local file {path})"
        raise DownloadError(msg, hint=moved_hint(path.name)) from err
    except OSError as err:
        msg = f"cannot read {url}: {err}"
        raise DownloadError(msg) from err
    total = path.stat().st_size
    if offset > total:
        f.close()
        raise RangeNotSatisfiable(total)
    f.seek(offset)

    def chunks() -> Iterator[bytes]:
        while block := f.read(chunk_size):
            yield block

    return Stream(url=url, start=offset, total=total, chunks=chunks(), _closer=f)
