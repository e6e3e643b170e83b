"""A real image server on 127.0.0.1 for the images tests, with scripted answers per path.

``ImageServer`` is a ``ThreadingHTTPServer`` in a daemon thread. Each path has a queue of
:class:`Reply` objects; the last one repeats for every later request, so ``[429, 200]`` means
"once 429, then always 200". Every request is logged with its arrival time (``time.monotonic``),
so tests can check the rate limiter and that a rerun makes no request::

    with ImageServer() as srv:
        srv.route("/a.jpg", Reply(body=jpeg_bytes))
        srv.route("/b.jpg", Reply(429, headers={"Retry-After": "1"}), Reply(body=jpeg_bytes))
        url = srv.url + "a.jpg"
        srv.log  # [Hit(path="/a.jpg", status=200, t=...), ...]

Unknown paths answer 404 with a small HTML page. ``ImageServer(port=...)`` binds a given port
(a host that comes back). Dead hosts: :func:`refused_port` (nothing listens: connections are
refused) and :class:`ClosingHost` (accepts each connection and closes it before any answer,
counting them).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    Attributes:
        status: HTTP status.
        body: Response body.
        content_type: Content-Type header.
        headers: Extra headers.
        delay: Seconds to sleep before answering (time-out tests).
        content_length: Send Content-Length (False: close the connection to end the body).
    """

    status: int = 200
    body: bytes = b""
    content_type: str = "image/jpeg"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_length: bool = True


@dataclass(frozen=True)
class Hit:
    """One logged request."""

    path: str
    status: int
    t: float


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up early (too-large, time-out tests) are expected: stay quiet."""


NOT_FOUND = Reply(404, b"<html><body><h1>404 Not Found</h1></body></html>", "text/html")


class ImageServer:
    """Scripted HTTP server with a request log (see the module docstring)."""

    def __init__(self, port: int = 0) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self._served: dict[str, int] = defaultdict(int)
        self.log: list[Hit] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", port), _handler(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL ending in ``/``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def route(self, path: str, *replies: Reply) -> str:
        """Script ``path``'s answers; returns its full URL."""
        with self._lock:
            self.routes[path] = list(replies)
            self._served[path] = 0
        return self.url + path.lstrip("/")

    def hits(self, path: str | None = None) -> list[Hit]:
        """Logged requests (to ``path`` only when given)."""
        with self._lock:
            return [h for h in self.log if path is None or h.path == path]

    def clear_log(self) -> None:
        """Forget the logged requests."""
        with self._lock:
            self.log.clear()

    def _next(self, path: str) -> Reply:
        with self._lock:
            replies = self.routes.get(path)
            if not replies:
                return NOT_FOUND
            i = min(self._served[path], len(replies) - 1)
            self._served[path] += 1
            return replies[i]

    def _record(self, path: str, status: int, t: float) -> None:
        with self._lock:
            self.log.append(Hit(path, status, t))

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            t = time.monotonic()
            path = urlsplit(self.path).path
            reply = server._next(path)
            server._record(path, reply.status, t)
            if reply.delay:
                time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.content_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (too-large, time-out): expected in these tests

    return Handler


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ClosingHost:
    """A loopback host that accepts every connection and closes it before any answer.

    ``connections`` counts the connections accepted (one per request the client made).
    """

    def __init__(self) -> None:
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        """Base URL ending in ``/``."""
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by __exit__
            self.connections += 1
            conn.close()

    def __enter__(self) -> ClosingHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
