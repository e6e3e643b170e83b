"""Hostile Hubs against the release loaders (issue 15: every network call has a deadline).

The loaders (``open_release``, ``load_features``, ``load_interactions``, ``load_items``,
``to_mmrec``) are given a Hub repo id and an endpoint that stalls, trickles, refuses, answers
garbage or answers HTTP that is not a Hub. Each must end near its ``timeout`` with one
``DownloadError`` line naming the repo, the endpoint, what failed and the fix, and write
nothing outside the Hub cache. A real (loopback) Hub still loads, and a Hub that goes away
afterwards falls back to the Hub cache.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from alignrec_data import loaders
from alignrec_data.errors import DownloadError, UsageError
from alignrec_data.publish import publish_release
from alignrec_data.release import ReleaseConfig, build_release
from tests.hostile.conftest import tree_digest
from tests.hostile.test_release_publish import _garbage, _Server, _stall, _trickle
from tests.release.fixtures import make_dataset
from tests.release.hub_server import HubServer

TOKEN = "hf_hostile_loader_0123456789abcdefXYZ"
TIMEOUT = 2.0
SLACK = 2.0  # a busy machine: the loader must end within TIMEOUT + SLACK


def _http_not_hub(conn: socket.socket, stop: threading.Event) -> None:
    """An HTTP server, but not a Hub: 200 and a page of text for everything."""
    conn.recv(65536)
    body = b"<html>hello</html>"
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (len(body), body)
    )
    conn.close()


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift HF_HUB_OFFLINE (it also blocks loopback); no token from the environment."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(scope="module")
def rel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("data")
    make_dataset(data_dir, variants={"alignrec": 8, "minilm-text": 6}, extras=False)
    out = tmp_path_factory.mktemp("rel") / "release"
    build_release(data_dir, "amazon-mini", out, ReleaseConfig(shard_size_mb=0.004))
    return out


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    s = _Server(request.param)
    yield s
    s.close()


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer({TOKEN: "alice"}, orgs={"alice": ["lab"]}) as server:
        yield server


def _refused_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()  # nothing listens there: connections are refused
    return url


def _fails_in_time(load, pattern: str, timeout: float = TIMEOUT) -> str:
    """Run ``load``; assert one DownloadError line matching ``pattern`` before the deadline."""
    start = time.monotonic()
    with pytest.raises(DownloadError, match=pattern) as err:
        load()
    elapsed = time.monotonic() - start
    assert elapsed < timeout + SLACK, elapsed
    message = str(err.value)
    assert "\n" not in message, message
    assert TOKEN not in message
    return message


# ----------------------------------------------------------------------------- hostile hubs


@pytest.mark.parametrize(
    ("server", "pattern"),
    [
        (
            _stall,
            r"did not finish repo_info while loading dataset repo hostile/\w+@main within 2 s",
        ),
        (_trickle, r"did not (finish repo_info .* within 2 s|answer in time)"),
        (_garbage, r"did not answer as a Hub does \(\w+"),
        (_http_not_hub, r"did not answer as a Hub does \(FileMetadataError"),
    ],
    indirect=["server"],
)
def test_load_features_ends_at_the_deadline_or_on_garbage(
    tmp_path: Path, online: None, server: _Server, pattern: str, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    before = tree_digest(tmp_path)
    repo = f"hostile/{server.behaviour.__name__.strip('_')}"
    message = _fails_in_time(
        lambda: loaders.load_features(
            repo,
            "alignrec",
            endpoint=server.url,
            token=TOKEN,
            timeout=TIMEOUT,
            cache_dir=tmp_path / "cache",
        ),
        pattern,
    )
    assert repo in message and server.url in message, message
    assert "endpoint=" in message, message  # the fix
    if "deadline" in message or "in time" in message:
        assert "raise timeout= (now 2 s)" in message, message
    assert TOKEN not in caplog.text
    assert tree_digest(tmp_path) == before


def test_every_loader_has_the_deadline(tmp_path: Path, online: None) -> None:
    stall = _Server(_stall)
    try:
        for name, load in {
            "open_release": lambda: loaders.open_release(
                "hostile/every", endpoint=stall.url, timeout=1
            ),
            "load_features": lambda: loaders.load_features(
                "hostile/every", endpoint=stall.url, timeout=1, cache=False
            ),
            "load_interactions": lambda: loaders.load_interactions(
                "hostile/every", "train", endpoint=stall.url, timeout=1
            ),
            "load_items": lambda: loaders.load_items(
                "hostile/every", endpoint=stall.url, timeout=1.0
            ),
            "to_mmrec": lambda: loaders.to_mmrec(
                "hostile/every", tmp_path / "out", endpoint=stall.url, timeout=1
            ),
        }.items():
            message = _fails_in_time(load, r"within 1 s \(the deadline\)", timeout=1)
            assert "hostile/every@main" in message and stall.url in message, (name, message)
        assert not (tmp_path / "out").exists()
    finally:
        stall.close()


def test_refused_connection(tmp_path: Path, online: None) -> None:
    url = _refused_url()
    message = _fails_in_time(
        lambda: loaders.load_items("hostile/refused", endpoint=url, timeout=30),
        r"cannot connect to the Hub at http://127\.0\.0\.1:\d+ \(.+\) while loading dataset "
        r"repo hostile/refused@main; check endpoint= / \$HF_ENDPOINT and the network",
        timeout=0,  # refused: no waiting for the 30 s timeout
    )
    assert "not in the Hub cache either" in message


@pytest.mark.parametrize(
    "endpoint", ["not a url", "ftp://example.org", "http://", "http://127.0.0.1:99999"]
)
def test_malformed_endpoint(endpoint: str) -> None:
    with pytest.raises(UsageError, match=r"^endpoint .* is not a Hub URL; expected http"):
        loaders.load_items("hostile/x", endpoint=endpoint)


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), "60", None, True])
def test_bad_timeout(timeout) -> None:
    with pytest.raises(UsageError, match=r"^timeout must be a positive number of seconds"):
        loaders.load_items("hostile/x", timeout=timeout)


# ----------------------------------------------------------------------------- a real hub


def test_load_from_the_loopback_hub_then_from_the_cache_when_it_is_gone(
    rel: Path, hub: HubServer, online: None, caplog
) -> None:
    result = publish_release(rel, "lab/loaders", endpoint=hub.url, token=TOKEN, timeout=10)
    local = loaders.load_features(rel, "alignrec", cache=False)
    x = loaders.load_features("lab/loaders", "alignrec", endpoint=hub.url, timeout=10, cache=False)
    np.testing.assert_array_equal(x, local)
    inter = loaders.load_interactions("lab/loaders", "test", endpoint=hub.url, timeout=10)
    np.testing.assert_array_equal(
        inter["item_id"], loaders.load_interactions(rel, "test")["item_id"]
    )
    items = loaders.load_items("lab/loaders", endpoint=hub.url, timeout=10)
    assert items.equals(loaders.load_items(rel))

    # The Hub goes away: the branch and the pinned commit load from the Hub cache alone.
    caplog.set_level(logging.WARNING)
    gone = _refused_url()
    for revision in (None, result.commit):
        start = time.monotonic()
        x = loaders.load_features(
            "lab/loaders", "alignrec", revision=revision, endpoint=gone, timeout=10, cache=False
        )
        assert time.monotonic() - start < SLACK
        np.testing.assert_array_equal(x, local)
    assert "cannot connect to the Hub" in caplog.text and "trying the Hub cache" in caplog.text
    # What the cache does not hold is the error, not a wait.
    with pytest.raises(DownloadError, match=r"minilm-text.*not in the Hub cache either"):
        loaders.load_features("lab/loaders", "minilm-text", endpoint=gone, timeout=10)


def test_a_stalled_shard_download_ends_at_its_deadline(
    rel: Path, hub: HubServer, online: None
) -> None:
    publish_release(rel, "lab/stalled", endpoint=hub.url, token=TOKEN, timeout=10)
    stop = threading.Event()
    base = hub.httpd.RequestHandlerClass

    class StallShards(base):  # the manifest comes, the shards never do
        def _dispatch(self) -> None:
            if self.command == "GET" and self.path.endswith(".parquet"):
                self.close_connection = True
                stop.wait()
                return
            super()._dispatch()

    hub.httpd.RequestHandlerClass = StallShards
    try:
        message = _fails_in_time(
            lambda: loaders.load_items("lab/stalled", endpoint=hub.url, timeout=TIMEOUT),
            r"did not finish the download of items/train-\d+-of-\d+\.parquet while loading "
            r"dataset repo lab/stalled@main within 2 s \(the deadline\); check endpoint= and "
            r"the network, or raise timeout= \(now 2 s\)",
        )
        assert hub.url in message
    finally:
        stop.set()
