"""A real HTTP server on 127.0.0.1 for download tests, with faults injected per path.

``FaultServer(root)`` serves the files under ``root`` from a ``ThreadingHTTPServer`` running in
a thread. It supports ``Range: bytes=N-`` (answers 206 with ``Content-Range``), sends bodies
with ``socket.sendfile`` (fast enough for the download benchmark) and records every request
with its Range header. Faults are queued per path and consumed one request at a time::

    with FaultServer(tmp_path) as srv:
        srv.add_fault("/a.gz", Fault.cut(1000))          # send 1000 bytes, then drop the socket
        srv.add_fault("/a.gz", Fault.status(429, retry_after=1))
        srv.add_fault("/a.gz", Fault.trickle(0.1, after=500))  # 500 bytes, then 1 byte / 0.1 s
        srv.add_fault("/a.gz", Fault.silent())           # read the request, never answer
        srv.ignore_range.add("/b.gz")                    # always answer 200 with the whole file
        url = srv.url + "a.gz"
        ...
        srv.requests  # [Request(path="/a.gz", range=None, status=200), ...]

Other helpers may reuse it (images stage, mirror tests): ``from tests.download.httpserver
import FaultServer, Fault``.
"""

from __future__ import annotations

import os
import re
import select
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class Request:
    """One request the server saw."""

    path: str
    range: str | None
    status: int


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for the next request to a path.

    Attributes:
        kind: ``"cut"``, ``"status"``, ``"redirect"``, ``"oversize"``, ``"hidden_oversize"``,
            ``"trickle"`` or ``"silent"``.
        n: Bytes sent before the cut (``cut``) or the trickle (``trickle``), status code
            (``status``) or extra bytes (``oversize``).
        headers: Extra headers (``Retry-After``, ``Location``).
        interval: Seconds between bytes (``trickle``).
    """

    kind: str
    n: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    interval: float = 0.0

    @classmethod
    def cut(cls, after: int) -> Fault:
        """Announce the full length, send ``after`` body bytes, then close the connection."""
        return cls("cut", after)

    @classmethod
    def status(cls, code: int, retry_after: int | None = None) -> Fault:
        """Answer ``code`` with a short body (and ``Retry-After`` when given)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls("status", code, headers)

    @classmethod
    def redirect(cls, location: str, code: int = 302) -> Fault:
        """Redirect to ``location``."""
        return cls("redirect", code, {"Location": location})

    @classmethod
    def oversize(cls, extra: int) -> Fault:
        """Send the file followed by ``extra`` more bytes (Content-Length included)."""
        return cls("oversize", extra)

    @classmethod
    def trickle(cls, interval: float, after: int = 0) -> Fault:
        """Announce the full length, send ``after`` body bytes, then one byte per ``interval``.

        Ends when the client goes away, the body is sent, or after 30 s (a stuck test).
        """
        return cls("trickle", after, interval=interval)

    @classmethod
    def silent(cls) -> Fault:
        """Read the request and never answer (until the client goes away, or 30 s)."""
        return cls("silent")

    @classmethod
    def hidden_oversize(cls, extra: int) -> Fault:
        """Like oversize but without Content-Length (body ends when the connection closes)."""
        return cls("hidden_oversize", extra)


class _QuietServer(ThreadingHTTPServer):
    """Client disconnects (expected when a test cuts or refuses a body) are not printed."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class FaultServer:
    """Threaded HTTP server over a folder, with per-path faults and a request log.

    Args:
        root: Folder to serve.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.ignore_range: set[str] = set()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL ending in ``/``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def add_fault(self, path: str, fault: Fault) -> None:
        """Queue ``fault`` for the next request to ``path`` (e.g. ``"/a.gz"``)."""
        with self._lock:
            self.faults[path].append(fault)

    def requests_for(self, path: str) -> list[Request]:
        """The logged requests to ``path``."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            q = self.faults.get(path)
            return q.popleft() if q else None

    def _log(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    def start(self) -> FaultServer:
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _make_handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _reply(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            path = unquote(urlsplit(self.path).path)
            rng = self.headers.get("Range")
            fault = server._next_fault(path)
            if fault is not None and fault.kind == "status":
                server._log(Request(path, rng, fault.n))
                self._reply(fault.n, b"injected fault\n", fault.headers)
                return
            if fault is not None and fault.kind == "redirect":
                server._log(Request(path, rng, fault.n))
                self._reply(fault.n, b"", fault.headers)
                return
            if fault is not None and fault.kind == "silent":
                server._log(Request(path, rng, 0))
                self.close_connection = True
                _wait_for_close(self.connection, 30.0)
                return
            local = (server.root / path.lstrip("/")).resolve()
            if not local.is_file() or server.root.resolve() not in local.parents:
                server._log(Request(path, rng, 404))
                self._reply(404, b"not found\n")
                return
            size = local.stat().st_size
            start = 0
            m = _RANGE.match(rng or "")
            if m and path not in server.ignore_range:
                start = int(m.group(1))
                if start >= size:
                    server._log(Request(path, rng, 416))
                    self._reply(416, b"", {"Content-Range": f"bytes */{size}"})
                    return
            count = size - start
            code = 206 if start else 200
            extra = fault.n if fault is not None and "oversize" in fault.kind else 0
            server._log(Request(path, rng, code))
            self.send_response(code)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            if fault is not None and fault.kind == "hidden_oversize":
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(count + extra))
            if code == 206:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            self.wfile.flush()
            cut_short = fault is not None and fault.kind in ("cut", "trickle")
            send = min(count, fault.n) if cut_short else count
            try:
                with local.open("rb") as f:
                    if send:
                        self.connection.sendfile(f, start, send)
                remaining = extra
                block = os.urandom(min(extra, 1 << 16))
                while remaining:
                    self.wfile.write(block[: min(remaining, len(block))])
                    remaining -= min(remaining, len(block))
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            if fault is not None and fault.kind == "trickle":
                self.close_connection = True
                _trickle(self.connection, local, start + send, size, fault.interval)
                return
            if fault is not None and fault.kind == "cut":
                # Drop the connection mid-body: the client sees fewer bytes than announced.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    return Handler


def _trickle(conn: socket.socket, local: Path, pos: int, size: int, interval: float) -> None:
    """Send ``local`` from ``pos`` one byte per ``interval`` s until done, gone, or 30 s."""
    deadline = time.monotonic() + 30.0
    with local.open("rb") as f:
        f.seek(pos)
        while pos < size and time.monotonic() < deadline:
            if _wait_for_close(conn, interval):
                return
            try:
                conn.sendall(f.read(1))
            except OSError:
                return
            pos += 1


def _wait_for_close(conn: socket.socket, seconds: float) -> bool:
    """Wait up to ``seconds``; True as soon as the client closed or reset the connection."""
    ready, _, _ = select.select([conn], [], [], seconds)
    if not ready:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
