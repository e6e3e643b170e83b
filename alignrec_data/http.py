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
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import requests
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
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=1)
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
    # Raw bytes as sent (no Content-Encoding decoding); urllib3 raises ProtocolError when the
    # body ends before Content-Length (a cut connection), which the caller resumes.
    chunks = resp.raw.stream(chunk_size, decode_content=False)
    return Stream(url=current, start=start, total=total, chunks=chunks, _closer=resp)


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
