"""Deadlines for calls to the Hugging Face Hub, shared by ``publish`` and the loaders.

Every Hub call made by :mod:`alignrec_data.publish` and the loaders
(:mod:`alignrec_data.hub_source`) runs inside :func:`hub_timeouts` (huggingface_hub's shared
HTTP client gets a connect / read / write timeout; it has none by default) and through
:func:`with_deadline` (the call as a whole, retries included, must end within a number of
seconds, else :class:`Deadline` is raised in the caller's thread). :func:`network_problem`
turns what a dead, stalled or non-HTTP server makes huggingface_hub raise into one line naming
the endpoint and the fix.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from alignrec_data.errors import UsageError

DEFAULT_TIMEOUT = 60.0  # seconds: connect, each wait for the server, each Hub call in total
MIN_TRANSFER_RATE = 1_000_000  # bytes/s assumed at worst when sizing a transfer's deadline

T = TypeVar("T")


class Deadline(Exception):
    """A Hub call did not end in time (raised in the caller's thread).

    Attributes:
        what: The call (e.g. ``repo_info``).
        seconds: Its deadline.
    """

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} did not end within {seconds:.0f} s")
        self.what = what
        self.seconds = seconds


def check_timeout(timeout: Any, option: str = "--timeout") -> float:
    """Return ``timeout`` as a float if it is a positive, finite number of seconds.

    Raises:
        UsageError: Anything else (the message names ``option``).
    """
    number = isinstance(timeout, int | float) and not isinstance(timeout, bool)
    if not (number and 0 < timeout < math.inf):
        msg = f"{option} must be a positive number of seconds, found {timeout!r}"
        raise UsageError(msg)
    return float(timeout)


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` part (never shown)."""
    return re.sub(r"(?<=//)[^/@]*@", "", url)


def check_endpoint(endpoint: str, option: str = "--endpoint") -> str:
    """Return ``endpoint`` (no trailing ``/``) if it is an ``http(s)://host[:port]`` URL.

    Raises:
        UsageError: Not an http(s) URL with a host, a bad port, or spaces / control characters.
    """
    value = str(endpoint).strip()
    try:
        parts = urlsplit(value)
        bad_char = any(c.isspace() or ord(c) < 32 for c in value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and not bad_char
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        ok = False
    if not ok:
        msg = (
            f"{option} {public_url(value)!r} is not a Hub URL; expected http(s)://HOST[:PORT], "
            "e.g. https://huggingface.co"
        )
        raise UsageError(msg)
    return value.rstrip("/")


def reason(err: BaseException) -> str:
    """The first line of an exception's message (one-line errors), at most 200 characters."""
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


# The client factory is process-wide: concurrent users share one installation (the first
# one's timeout), and the previous factory comes back when the last of them leaves.
_LOCK = threading.Lock()
_USERS = 0
_PREVIOUS: Any = None


@contextlib.contextmanager
def hub_timeouts(timeout: float) -> Iterator[None]:
    """Make huggingface_hub's shared HTTP client use ``timeout`` (connect, read, write, pool).

    huggingface_hub's client has no timeout by default; its factory is swapped for one that
    sets it (keeping any factory the user installed) and restored when the last concurrent
    user leaves, which also closes the client (a call abandoned at its deadline ends).
    Requests that pass their own timeout (``repo_info(timeout=)``, ``hf_hub_download``'s
    ``etag_timeout`` and ``HF_HUB_DOWNLOAD_TIMEOUT``) keep it.
    """
    global _USERS, _PREVIOUS
    import httpx2
    from huggingface_hub.utils import _http

    with _LOCK:
        if _USERS == 0:
            previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)

            def factory() -> Any:
                client = previous()
                client.timeout = httpx2.Timeout(timeout)
                return client

            _PREVIOUS = previous
            _http.set_client_factory(factory)
        _USERS += 1
    try:
        yield
    finally:
        with _LOCK:
            _USERS -= 1
            if _USERS == 0:
                _http.set_client_factory(_PREVIOUS)  # also closes our client
                _PREVIOUS = None


def with_deadline(call: Callable[[], T], seconds: float, what: str) -> T:
    """Run ``call`` in a daemon thread; raise :class:`Deadline` if it runs past ``seconds``.

    The thread is abandoned at the deadline: the client's own timeouts end it soon after, and
    a daemon thread never keeps the process alive.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err

    worker = threading.Thread(target=target, name=f"alignrec-hub-{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise Deadline(what, seconds)
    if "error" in box:
        raise box["error"]
    return box["value"]


def network_problem(
    err: BaseException,
    endpoint: str,
    doing: str,
    *,
    endpoint_hint: str = "--endpoint",
    timeout_hint: str = "--timeout",
) -> str | None:
    """One line for a Hub call that failed on the network, or None for other errors.

    Covered: :class:`Deadline`, httpx timeouts, refused / unresolvable connections, answers
    that are not HTTP, and huggingface_hub's "not a Hub answer" errors (also when wrapped in
    a ``LocalEntryNotFoundError``). ``doing`` completes "while ...", e.g. ``publishing
    ORG/NAME``.
    """
    import httpx2
    from huggingface_hub.errors import FileMetadataError

    endpoint = public_url(endpoint)
    cause = err.__cause__
    if not isinstance(err, Deadline | httpx2.HTTPError | httpx2.InvalidURL | FileMetadataError):
        if cause is not None and cause is not err:
            return network_problem(
                cause, endpoint, doing, endpoint_hint=endpoint_hint, timeout_hint=timeout_hint
            )
        return None
    if isinstance(err, Deadline):
        return (
            f"the Hub at {endpoint} did not finish {err.what} while {doing} within "
            f"{err.seconds:.0f} s (the deadline); check {endpoint_hint} and the network, or "
            f"raise {timeout_hint}"
        )
    if isinstance(err, httpx2.TimeoutException):
        return (
            f"the Hub at {endpoint} did not answer in time ({type(err).__name__}) while "
            f"{doing}; check {endpoint_hint} and the network, or raise {timeout_hint}"
        )
    if isinstance(err, httpx2.ConnectError):
        return (
            f"cannot connect to the Hub at {endpoint} ({reason(err)}) while {doing}; "
            f"check {endpoint_hint} / $HF_ENDPOINT and the network"
        )
    if isinstance(err, httpx2.TransportError | httpx2.InvalidURL | FileMetadataError):
        return (
            f"the server at {endpoint} did not answer as a Hub does ({type(err).__name__}: "
            f"{reason(err)}) while {doing}; check {endpoint_hint} / $HF_ENDPOINT"
        )
    return None  # an HTTP status error: the caller knows what it means for its call
