"""Dead image hosts cost seconds: the per-host breaker, the per-item request budget, per-host
counts in stats.json, and a rerun that fetches what a down host left."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest

from alignrec_data.images import HostBreaker, ImagesConfig, fetch_images, load_image_index
from alignrec_data.images.fetch import Fetcher, FetchSettings, is_transient
from alignrec_data.paths import DatasetPaths
from tests.images.helpers import jpeg_bytes, write_items
from tests.images.server import ClosingHost, ImageServer, Reply, refused_port

DS = "toy"
N_ITEMS = 150
# Real back-off (not 0.01 s) and several workers: what a dead host used to cost is visible.
CONFIG = ImagesConfig(
    shorter_side=16,
    min_side=8,
    max_bytes=100_000,
    concurrency=4,
    per_host_rate=0,
    retries=3,
    backoff=0.5,
    timeout=2.0,
    host_failures=5,
    max_requests_per_item=4,
    shard_size_mb=1.0,
)


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGNREC_IMAGE_MIRROR", raising=False)
    monkeypatch.delenv("ALIGNREC_MIRROR", raising=False)


def three_candidates(base: str, n: int = N_ITEMS) -> list[list[str]]:
    """``n`` items, each with three candidate URLs on ``base``; only the third one exists."""
    return [[f"{base}I/{i}a.jpg", f"{base}I/{i}b.jpg", f"{base}I/{i}c.jpg"] for i in range(n)]


def serve_third_candidates(srv: ImageServer, n: int = N_ITEMS) -> None:
    body = jpeg_bytes((40, 30))
    for i in range(n):
        srv.route(f"/I/{i}c.jpg", Reply(body=body))


def breaker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "did not answer" in r.getMessage()
    ]


def test_refused_host_costs_seconds_and_a_rerun_fetches_everything(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = refused_port()
    base = f"http://127.0.0.1:{port}/"
    host = f"127.0.0.1:{port}"
    paths = DatasetPaths.of(data_dir, DS)
    write_items(paths.prepared, three_candidates(base))

    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING):
        down = fetch_images(data_dir, DS, CONFIG, progress=False)
    elapsed = time.monotonic() - t0
    # Before the breaker: 150 items x 3 candidates x 4 attempts = 1,800 requests and minutes
    # of back-off. Now: host_failures, plus at most one request in flight per other worker.
    assert elapsed < 5, elapsed
    assert down.requests <= CONFIG.host_failures + CONFIG.concurrency, down.requests
    index = load_image_index(paths.images)
    assert set(index["reason"]) == {"host-down"} and not index["has_image"].any()
    assert down.hosts_down == [host]
    (warning,) = breaker_warnings(caplog)
    assert warning.startswith(f"image host {host} did not answer 5 times in a row; its 150 items")
    assert "--mirror PREFIX=REPLACEMENT" in warning and "--skip-images" in warning
    stats = json.loads((paths.images / "stats.json").read_text())
    assert stats["reasons"] == {"host-down": N_ITEMS} and stats["hosts_down"] == [host]
    assert stats["hosts"] == {
        host: {"requests": down.requests, "ok": 0, "failed": {}, "skipped": N_ITEMS}
    }

    # The host is back on the same port: the rerun asks again and fetches every item.
    caplog.clear()
    with ImageServer(port=port) as srv, caplog.at_level(logging.WARNING):
        serve_third_candidates(srv)
        back = fetch_images(data_dir, DS, CONFIG, progress=False)
        assert len(srv.hits()) == 3 * N_ITEMS  # two 404s then the image, for every item
    assert back.fetched == N_ITEMS and back.stats["n_with_image"] == N_ITEMS
    assert back.hosts_down == [] and breaker_warnings(caplog) == []
    assert back.stats["hosts"][host] == {
        "requests": 3 * N_ITEMS,
        "ok": N_ITEMS,
        "failed": {},
        "skipped": 0,
    }
    assert back.stats["served_by_candidate"] == {"2": N_ITEMS}


def test_requests_to_a_host_that_hangs_up_are_bounded(data_dir: Path) -> None:
    """A host that accepts each connection and closes it unanswered: the server counts."""
    paths = DatasetPaths.of(data_dir, DS)
    with ClosingHost() as dead:
        write_items(paths.prepared, three_candidates(dead.url))
        result = fetch_images(data_dir, DS, CONFIG, progress=False)
    assert dead.connections == result.requests
    assert dead.connections <= CONFIG.host_failures + CONFIG.concurrency, dead.connections
    assert set(load_image_index(paths.images)["reason"]) == {"host-down"}


def test_two_hosts_one_dead_the_live_one_is_fetched(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = refused_port()
    dead = f"http://127.0.0.1:{port}/"
    paths = DatasetPaths.of(data_dir, DS)
    with ImageServer() as srv, caplog.at_level(logging.WARNING):
        body = jpeg_bytes((40, 30))
        live = [srv.route(f"/L/{i}.jpg", Reply(body=body)) for i in range(40)]
        urls = (
            [[f"{dead}D/{i}.jpg"] for i in range(40)]  # only on the dead host
            + [[u] for u in live[:20]]  # only on the live host
            + [[f"{dead}D/x{i}.jpg", u] for i, u in enumerate(live[20:])]  # dead first
        )
        write_items(paths.prepared, urls)
        result = fetch_images(data_dir, DS, CONFIG, progress=False)
    index = load_image_index(paths.images)
    assert index["has_image"].tolist() == [False] * 40 + [True] * 40
    assert set(index["reason"][:40]) == {"host-down"}
    live_host, dead_host = srv.url.split("/")[2], f"127.0.0.1:{port}"
    assert result.hosts_down == [dead_host] and len(breaker_warnings(caplog)) == 1
    hosts = result.stats["hosts"]
    assert hosts[live_host] == {"requests": 40, "ok": 40, "failed": {}, "skipped": 0}
    assert hosts[dead_host]["skipped"] == 40 and hosts[dead_host]["ok"] == 0
    assert hosts[dead_host]["requests"] <= CONFIG.host_failures + CONFIG.concurrency


def test_requests_per_item_are_bounded(data_dir: Path) -> None:
    """A host that answers (503, 404) never trips the breaker; the per-item budget holds."""
    paths = DatasetPaths.of(data_dir, DS)
    config = ImagesConfig(**{**CONFIG.__dict__, "backoff": 0.01, "max_requests_per_item": 3})
    with ImageServer() as srv:
        u = srv.url
        srv.route("/busy.jpg", Reply(503, b"busy", "text/html"))
        write_items(
            paths.prepared,
            [
                [u + "busy.jpg", u + "never-tried.jpg"],
                [u + f"gone{k}.jpg" for k in range(6)],  # six 404s: only three asked
            ],
        )
        first = fetch_images(data_dir, DS, config, progress=False)
        assert first.requests == 6 and len(srv.hits()) == 6
        asked = {h.path for h in srv.hits()}
        assert asked == {"/busy.jpg", "/gone0.jpg", "/gone1.jpg", "/gone2.jpg"}
        index = load_image_index(paths.images)
        assert list(index["reason"]) == ["http-503", "http-404"]
        assert list(index["attempts"][0]) == ["http-503", "request-limit"]
        assert list(index["attempts"][1]) == ["http-404"] * 3 + ["request-limit"]
        assert first.hosts_down == []

        # A rerun retries the transient failure only (the 404s are kept, no request).
        srv.clear_log()
        again = fetch_images(data_dir, DS, config, progress=False)
        assert {h.path for h in srv.hits()} == {"/busy.jpg"} and again.resumed_failed == 1


def test_breaker_counts_failures_in_a_row_per_host() -> None:
    b = HostBreaker(3)
    assert not b.failed("a") and not b.failed("a")
    b.answered("a")  # any answer starts the count again
    assert not b.failed("a") and not b.failed("a") and not b.failed("b")
    assert b.failed("a") and b.is_down("a") and not b.is_down("b")
    assert not b.failed("a")  # reported once
    assert b.down == ["a"]
    never = HostBreaker(0)
    assert not any(never.failed("a") for _ in range(100)) and never.down == []


def test_breaker_cuts_a_back_off_wait_short() -> None:
    b = HostBreaker(1)
    threading.Timer(0.1, b.failed, args=("a",)).start()
    t0 = time.monotonic()
    assert b.sleep("a", 30.0) is True
    assert time.monotonic() - t0 < 5
    assert b.sleep("b", 0.01) is False


def test_fetcher_stops_asking_a_down_host() -> None:
    settings = FetchSettings(retries=0, per_host_rate=0, timeout=2.0, host_failures=2)
    url = f"http://127.0.0.1:{refused_port()}/a.jpg"
    with Fetcher(settings) as f:
        got = [f.fetch(url) for _ in range(5)]
        assert f.breaker.down == [url.split("/")[2]]
        assert f.requests_by_host == {url.split("/")[2]: 2}
    assert [g.reason for g in got] == ["connection-error"] * 2 + ["host-down"] * 3
    assert [g.requests for g in got] == [1, 1, 0, 0, 0]
    assert is_transient("host-down") and is_transient("skipped")


def test_new_params_are_checked(tmp_path: Path) -> None:
    from alignrec_data.config import load_section
    from alignrec_data.errors import UsageError

    p = tmp_path / "params.yaml"
    p.write_text("images:\n  host_failures: -1\n  max_requests_per_item: 0\n")
    with pytest.raises(
        UsageError,
        match=r"images.host_failures = -1 is out of range: expected >= 0 \(0 = never stop "
        r"asking\); images.max_requests_per_item = 0 is out of range: expected >= 1",
    ):
        load_section(p, "images", ImagesConfig)
