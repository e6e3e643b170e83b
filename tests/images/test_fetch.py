"""Fetcher against a real loopback HTTP server: retries, Retry-After, rate limit, caps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from alignrec_data.http import retry_after_seconds
from alignrec_data.images.fetch import Fetcher, FetchSettings, HostRateLimiter
from tests.images.helpers import jpeg_bytes
from tests.images.server import ImageServer, Reply

FAST = FetchSettings(timeout=2.0, total_timeout=5.0, retries=2, backoff=0.05, per_host_rate=0)


@pytest.fixture
def server():
    with ImageServer() as srv:
        yield srv


def test_429_with_retry_after_then_success(server: ImageServer) -> None:
    body = jpeg_bytes()
    url = server.route(
        "/a.jpg", Reply(429, b"slow down", "text/plain", {"Retry-After": "1"}), Reply(body=body)
    )
    with Fetcher(FAST) as f:
        got = f.fetch(url)
    assert got.ok and got.body == body and got.status == 200 and got.requests == 2
    hits = server.hits("/a.jpg")
    assert [h.status for h in hits] == [429, 200]
    assert hits[1].t - hits[0].t >= 0.95  # waited for Retry-After, not the 0.05 s back-off


def test_retry_after_is_capped(server: ImageServer) -> None:
    url = server.route(
        "/a.jpg", Reply(503, headers={"Retry-After": "3600"}), Reply(body=jpeg_bytes())
    )
    settings = FetchSettings(retries=1, backoff=0.01, max_retry_after=0.2, per_host_rate=0)
    t0 = time.monotonic()
    with Fetcher(settings) as f:
        assert f.fetch(url).ok
    assert time.monotonic() - t0 < 2


def test_5xx_retries_exhausted_and_404_not_retried(server: ImageServer) -> None:
    url = server.route("/busy.jpg", Reply(503, b"busy", "text/html"))
    with Fetcher(FAST) as f:
        got = f.fetch(url)
        assert (got.ok, got.reason, got.status, got.requests) == (False, "http-503", 503, 3)
        gone = f.fetch(server.url + "gone.jpg")
    assert (gone.reason, gone.status, gone.requests) == ("http-404", 404, 1)
    assert len(server.hits("/gone.jpg")) == 1


def test_per_host_rate_limit_spaces_requests(server: ImageServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    urls = [server.route(f"/{i}.jpg", Reply(body=b"x")) for i in range(5)]
    settings = FetchSettings(per_host_rate=5.0, retries=0)  # >= 0.2 s between request starts
    with Fetcher(settings) as f, ThreadPoolExecutor(5) as pool:
        assert all(r.ok for r in pool.map(f.fetch, urls))
    times = sorted(h.t for h in server.hits())  # arrival times recorded by the server
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) == 5
    # 5 threads asked at once, yet arrivals are spaced (tolerance: scheduling jitter on a
    # loaded 2-core machine).
    assert min(gaps) >= 0.15, gaps
    assert times[-1] - times[0] >= 0.75, gaps


def test_limiter_is_per_host() -> None:
    lim = HostRateLimiter(2.0)  # 0.5 s per host
    t0 = time.monotonic()
    lim.wait("a")
    lim.wait("b")  # another host: no wait
    assert time.monotonic() - t0 < 0.2
    lim.wait("a")
    assert time.monotonic() - t0 >= 0.45


def test_response_bytes_are_capped(server: ImageServer) -> None:
    big = b"\xff" * 200_000
    announced = server.route("/big.jpg", Reply(body=big))
    hidden = server.route("/stream.jpg", Reply(body=big, content_length=False))
    settings = FetchSettings(max_bytes=50_000, per_host_rate=0, retries=0)
    with Fetcher(settings) as f:
        a, b = f.fetch(announced), f.fetch(hidden)
    assert (a.reason, a.body) == ("too-large", None)
    assert (b.reason, b.body) == ("too-large", None)


def test_timeout_is_a_reason_not_a_crash(server: ImageServer) -> None:
    url = server.route("/slow.jpg", Reply(body=b"late", delay=1.0))
    settings = FetchSettings(timeout=0.2, retries=1, backoff=0.01, per_host_rate=0)
    with Fetcher(settings) as f:
        got = f.fetch(url)
    assert (got.ok, got.reason, got.requests) == (False, "timeout", 2)


def test_connection_refused_is_a_reason() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed right after: nothing listens there
    with Fetcher(FetchSettings(retries=0, per_host_rate=0, timeout=1)) as f:
        got = f.fetch(f"http://127.0.0.1:{port}/x.jpg")
    assert got.reason == "connection-error" and got.status is None


def test_file_urls(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"abc")
    (tmp_path / "big.jpg").write_bytes(b"x" * 2000)
    with Fetcher(FetchSettings(max_bytes=1000)) as f:
        ok = f.fetch((tmp_path / "a.jpg").as_uri())
        assert (ok.body, ok.status, ok.reason, ok.requests) == (b"abc", None, None, 0)
        assert f.fetch((tmp_path / "nope.jpg").as_uri()).reason == "file-not-found"
        assert f.fetch(tmp_path.as_uri()).reason == "file-not-found"  # a folder
        assert f.fetch((tmp_path / "big.jpg").as_uri()).reason == "too-large"
        assert f.fetch("ftp://example.com/a.jpg").reason == "unsupported-url"


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
