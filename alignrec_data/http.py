"""The one HTTP stack of raw downloads and image fetching: session, retry policy, streams.

Who does what:

* ``requests`` (:func:`make_session`: one :class:`requests.Session` per file, or per image
  worker thread) speaks HTTP, with ``stream=True`` so the body is read chunk by chunk.
* :class:`RetryPolicy` says which answers are retried (:data:`RETRY_STATUSES`) and how long to
  wait first: capped exponential back-off, or the server's ``Retry-After`` (seconds or an HTTP
  date; :func:`retry_after_seconds`) up to its own cap. Raw downloads hand the retries before
  the body to ``urllib3.util.Retry`` driven by the policy (:class:`PolicyRetry`, mounted
  through the session's adapter) and resume cuts inside the body with the policy's back-off
  (:mod:`alignrec_data.download_job`); the image fetcher (:mod:`alignrec_data.images.fetch`)
  loops itself, since it also retries time-outs inside the body and rate-limits every try.
* Written here because neither library does it: Range requests and the interpretation of
  ``206`` / ``200`` / ``416`` answers for resuming (:func:`open_stream`); following redirects by
  hand so that a redirect to another scheme is refused (requests follows any redirect); reading
  ``file://`` URLs (requests has no file adapter); raw body bytes without
  ``Content-Encoding`` decoding, so a ``.gz`` file served with ``Content-Encoding: gzip`` is
  stored as the server's bytes, the bytes its sha256 is about.
* :mod:`alignrec_data.watchdog` (re-exported here): a :class:`Watchdog` that bounds a request in
  time where a per-read socket time-out cannot (a total deadline, a low-speed rule). The body
  is read with ``read1`` (at most one ``recv`` per call) so the watchdog sees bytes as they
  arrive, not only when a whole chunk is complete.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import requests
import urllib3.exceptions
from urllib3.util.retry import Retry

from alignrec_data import __version__
from alignrec_data.errors import DownloadError
from alignrec_data.watchdog import TooSlow as TooSlow  # re-exported: callers catch it from here
from alignrec_data.watchdog import Watchdog, WatchedAdapter, current_watchdog

log = logging.getLogger(__name__)

USER_AGENT = f"alignrec-data/{__version__} (+https://github.com/alignrec/alignrec)"
# Answers worth retrying (the server may answer later), for raw files and images alike.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 10  # redirects followed for one request
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_CONTENT_RANGE_UNSAT = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta seconds or HTTP date) into seconds (>= 0).

    Returns None for a missing or unreadable value (the back-off applies then).
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Which HTTP answers are retried, how often, and how long to wait before each retry.

    Attributes:
        retries: Retries after the first try.
        backoff_base: Seconds before the first retry; doubles on each retry.
        backoff_cap: Longest back-off in seconds.
        retry_after_max: Longest ``Retry-After`` honoured, in seconds (a server may ask for
            hours; it gets this many seconds).
        statuses: HTTP statuses retried.
    """

    retries: int = 0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    retry_after_max: float = 300.0
    statuses: frozenset[int] = RETRY_STATUSES

    def backoff(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1-based), without ``Retry-After``.

        ``backoff_base * 2**(retry - 1)``, capped at ``backoff_cap``.
        """
        return min(self.backoff_cap, self.backoff_base * 2 ** (retry - 1))

    def delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds before retry number ``retry`` (1-based).

        Args:
            retry: The retry about to be made (1 for the first).
            retry_after: The ``Retry-After`` header of the answer that failed, if any: when
                readable it replaces the back-off, capped at ``retry_after_max``.
        """
        asked = retry_after_seconds(retry_after)
        return self.backoff(retry) if asked is None else min(asked, self.retry_after_max)


class PolicyRetry(Retry):
    """urllib3's ``Retry`` for a :class:`RetryPolicy`: its statuses, its waits.

    It retries connection errors, read errors before the body and the policy's statuses; the
    wait before each retry is :meth:`RetryPolicy.delay` (``Retry-After`` on any retried
    status). The current :class:`Watchdog` does not count the wait.
    """

    policy: RetryPolicy = RetryPolicy()

    @classmethod
    def of(cls, policy: RetryPolicy) -> PolicyRetry:
        """The ``Retry`` that carries out ``policy`` for GET requests."""
        retry = cls(
            total=policy.retries,  # bounds connection, read and status retries alike
            other=0,
            redirect=0,  # redirects are followed by hand in open_stream (scheme check)
            allowed_methods=frozenset({"GET"}),
            status_forcelist=policy.statuses,
            # The policy's statuses only (urllib3 would also retry 413 with Retry-After);
            # Retry-After itself is honoured by sleep() below.
            respect_retry_after_header=False,
            raise_on_status=False,  # the last answer comes back; open_stream reports it
            raise_on_redirect=False,
        )
        retry.policy = policy
        return retry

    def new(self, **kw: Any) -> PolicyRetry:  # noqa: D102
        retry = super().new(**kw)
        retry.policy = self.policy
        return retry

    def sleep(self, response: Any = None) -> None:
        """Wait before the next try as the policy says; the current :class:`Watchdog` pauses."""
        dog = current_watchdog()
        if dog is not None:
            dog.detach()
        header = response.headers.get("Retry-After") if response is not None else None
        time.sleep(self.policy.delay(len(self.history), header))


def make_session(
    policy: RetryPolicy | None = None,
    *,
    user_agent: str = USER_AGENT,
    accept: str | None = None,
    pool_size: int = 1,
    hosts: int = 1,
    max_redirects: int = MAX_REDIRECTS,
) -> requests.Session:
    """A requests Session whose connections hand their sockets to the current :class:`Watchdog`.

    Bodies are asked for as stored (``Accept-Encoding: identity``: the sha256 of a raw file
    is about the server's bytes; images are compressed already, and no gzip bomb comes back).

    Args:
        policy: Retries made by the session itself (connection errors, read errors before
            the body, the policy's statuses; :class:`PolicyRetry`). None: none, the caller
            retries.
        user_agent: The ``User-Agent`` header.
        accept: The ``Accept`` header (None: requests' default).
        pool_size: Connections kept per host (the threads sharing the session).
        hosts: Hosts whose connection pools are kept.
        max_redirects: Redirects requests follows when asked to (``allow_redirects=True``).
    """
    retries: Any = 0 if policy is None else PolicyRetry.of(policy)
    session = requests.Session()
    session.max_redirects = max_redirects
    adapter = WatchedAdapter(max_retries=retries, pool_connections=hosts, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": user_agent, "Accept-Encoding": "identity"})
    if accept is not None:
        session.headers["Accept"] = accept
    return session


@dataclass
class Stream:
    """An opened body, positioned at :attr:`start`.

    Attributes:
        url: The URL finally read (after redirects).
        start: Offset of the first body byte in the file (0 when the server sent it all).
        total: Full file size when the server said it, else None.
        chunks: Iterator over the body's raw bytes.
        close: Releases the connection or file.
    """

    url: str
    start: int
    total: int | None
    chunks: Iterator[bytes]
    close: Callable[[], None] = field(repr=False)


class RangeNotSatisfiable(Exception):
    """The server answered 416: the offset is at or past the end of a file of ``total`` bytes."""

    def __init__(self, total: int | None) -> None:
        super().__init__(total)
        self.total = total


class NotThere(DownloadError):
    """The file does not exist: HTTP 404 or 410, or no such local file."""


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
        NotThere: HTTP 404 or 410, or a missing local file.
        DownloadError: Another 4xx/5xx after retries, a refused redirect.
        requests.RequestException: Connection errors left after the retries.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return _open_file(url, offset, chunk_size)
    if scheme not in ("http", "https"):
        msg = f"cannot download {url}: unsupported URL scheme {scheme!r}"
        raise DownloadError(msg)
    headers = {"Range": f"bytes={offset}-"} if offset > 0 else {}
    resp, current = _get_following(session, url, headers, timeout)
    if resp.status_code == 416 and offset > 0:
        m = _CONTENT_RANGE_UNSAT.match(resp.headers.get("Content-Range", ""))
        resp.close()
        raise RangeNotSatisfiable(int(m.group(1)) if m else None)
    if resp.status_code >= 400:
        resp.close()
        msg = f"GET {current} failed: HTTP {resp.status_code} {resp.reason or ''}".rstrip()
        error = NotThere if resp.status_code in (404, 410) else DownloadError
        raise error(msg, hint=moved_hint(current.rsplit("/", 1)[-1]))
    if resp.status_code not in (200, 206):
        resp.close()
        msg = f"GET {current}: unexpected HTTP {resp.status_code} {resp.reason}"
        raise DownloadError(msg)
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
        start, total = offset, (None if m.group(3) == "*" else int(m.group(3)))
    else:
        length = resp.headers.get("Content-Length")
        start, total = 0, (int(length) if length and length.isdigit() else None)
    # Outside a watchdog's context, one without rules (it never cuts) counts the bytes.
    chunks = _body(resp, chunk_size, current_watchdog() or Watchdog())
    return Stream(url=current, start=start, total=total, chunks=chunks, close=resp.close)


def _get_following(
    session: requests.Session, url: str, headers: dict[str, str], timeout: float
) -> tuple[requests.Response, str]:
    """GET ``url``, following up to :data:`MAX_REDIRECTS` redirects that keep the scheme.

    Returns:
        The final answer (not a redirect) and the URL that gave it.
    """
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        resp = session.get(
            current, headers=headers, stream=True, timeout=timeout, allow_redirects=False
        )
        if not resp.is_redirect:
            return resp, current
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
    msg = f"GET {url}: more than {MAX_REDIRECTS} redirects"
    raise DownloadError(msg)


def _body(resp: requests.Response, chunk_size: int, dog: Watchdog) -> Iterator[bytes]:
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
    held, flushed = 0, time.monotonic()
    while True:
        try:
            piece = raw.read1(chunk_size - held, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            if held:
                yield b"".join(pieces)
            if dog.expired:
                raise dog.error() from err
            raise
        if not piece:
            if held:
                yield b"".join(pieces)
            if dog.expired and raw.length_remaining is None:
                # A body without Content-Length ends when the socket does: cut, not complete.
                raise dog.error()
            return
        dog.saw(len(piece))
        pieces.append(piece)
        held += len(piece)
        if held >= chunk_size or time.monotonic() - flushed >= 1.0:
            chunk = piece if len(pieces) == 1 else b"".join(pieces)
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
        raise NotThere(msg, hint=moved_hint(path.name)) from err
    except OSError as err:
        msg = f"cannot read {url}: {err}"
        raise DownloadError(msg) from err
    total = path.stat().st_size
    if offset > total:
        f.close()
        raise RangeNotSatisfiable(total)
    f.seek(offset)
    chunks = iter(lambda: f.read(chunk_size), b"")
    return Stream(url=url, start=offset, total=total, chunks=chunks, close=f.close)
