"""Hostile inputs for ``images``, ``prepare``, ``download`` and ``datasets``.

Servers that trickle or never answer, review files with no review in them, symbolic link loops
under ``raw/``, runs killed with ``kill -9``. Each test checks the exit code, the one ``Error:``
line (file or value, and the fix), that there is no traceback, and that nothing outside the
command's target changed.
"""

from __future__ import annotations

import gzip
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from alignrec_data.registry import get_dataset
from scripts.amazon_mini import MINI_DIR
from tests.download.httpserver import FaultServer
from tests.hostile.conftest import REPO, assert_clean_error, run, tree_digest
from tests.images.helpers import jpeg_bytes, write_items
from tests.images.server import ImageServer, Reply, refused_port

FIXTURES = REPO / "tests" / "data" / "prepare"


# --- loopback servers that misbehave ------------------------------------------------------------


class StallServer:
    """A raw TCP server on 127.0.0.1 that misbehaves on purpose.

    ``mode``: ``"trickle"`` answers 200 with a Content-Length of 10,000 then sends one byte
    every ``interval`` seconds; ``"silent"`` accepts the connection and never answers.
    """

    def __init__(self, mode: str, interval: float = 0.5) -> None:
        self.mode, self.interval = mode, interval
        self.stop = threading.Event()
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.conns: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.srv.getsockname()[1]}/"

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            if self.mode == "trickle":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 10000\r\n\r\n"
                )
            while not self.stop.wait(self.interval):
                if self.mode == "trickle":
                    conn.sendall(b"\xff")
        except OSError:
            pass

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def __enter__(self) -> StallServer:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.srv.close()
        for c in self.conns:
            c.close()


def _params(path: Path, section: str, **values: object) -> Path:
    path.write_text(
        f"{section}:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in values.items())
    )
    return path


# --- images: the total deadline holds while bytes trickle ---------------------------------------


@pytest.mark.parametrize("mode", ["trickle", "silent"])
def test_images_slow_server_is_bounded_by_the_timeouts(sandbox: Path, mode: str) -> None:
    data = sandbox / "data"
    prepared = data / "toy" / "prepared"
    params = _params(
        sandbox / "p.yaml",
        "images",
        timeout=1.0,
        total_timeout=2.0,
        retries=1,
        backoff=0.05,
        per_host_rate=0,
        concurrency=2,
    )
    with StallServer(mode) as slow, ImageServer() as good:
        ok_url = good.route("/ok.jpg", Reply(body=jpeg_bytes()))
        write_items(prepared, [[slow.url + "slow.jpg"], [ok_url]])
        before = tree_digest(sandbox / "outside"), tree_digest(prepared)
        t0 = time.monotonic()
        out = run("images", "toy", "--data-dir", data, "--params", params, "--format", "json")
        elapsed = time.monotonic() - t0
    assert "Traceback" not in out.stderr, out.stderr
    assert out.code == 0, out.stderr
    # Two attempts of at most total_timeout (2 s) each, plus the back-off: not 10,000 s.
    assert elapsed < 12, elapsed
    index = pq.read_table(data / "toy" / "images" / "index.parquet").to_pylist()
    assert [(r["has_image"], r["reason"]) for r in index] == [(False, "timeout"), (True, None)]
    assert index[0]["attempts"] == ["timeout"]
    assert (tree_digest(sandbox / "outside"), tree_digest(prepared)) == before


def test_images_dead_host_costs_seconds_and_is_fetched_when_back(sandbox: Path) -> None:
    """147 items, 7 candidate URLs each, on a host that refuses connections, with the default
    retries, back-off and rate limit: it used to take minutes and thousands of requests."""
    data = sandbox / "data"
    prepared = data / "toy" / "prepared"
    params = _params(sandbox / "p.yaml", "images", shorter_side=16, min_side=8, timeout=2.0)
    port = refused_port()
    base = f"http://127.0.0.1:{port}/I/"
    write_items(prepared, [[f"{base}{i}-{k}.jpg" for k in range(7)] for i in range(147)])
    args = ("images", "toy", "--data-dir", data, "--params", params)
    before = tree_digest(sandbox / "outside"), tree_digest(prepared)
    t0 = time.monotonic()
    out = run(*args, "--format", "json")
    elapsed = time.monotonic() - t0
    assert "Traceback" not in out.stderr, out.stderr
    assert out.code == 0, out.stderr
    assert elapsed < 10, elapsed
    doc = json.loads(out.stdout)
    host = f"127.0.0.1:{port}"
    assert doc["stats"]["reasons"] == {"host-down": 147} and doc["hosts_down"] == [host]
    assert doc["requests"] <= 5 + 16  # host_failures, plus one in flight per other worker
    assert doc["stats"]["hosts"][host]["skipped"] == 147
    warnings = [ln for ln in out.stderr.splitlines() if "did not answer" in ln]
    assert len(warnings) == 1, out.stderr
    assert warnings[0].startswith(f"WARNING alignrec_data.images.hosts: image host {host} did")
    assert "its 147 items are skipped this run" in warnings[0]
    assert "--mirror PREFIX=REPLACEMENT" in warnings[0] and "--skip-images" in warnings[0]
    assert (tree_digest(sandbox / "outside"), tree_digest(prepared)) == before

    # Text output says it too; the host comes back and the rerun fetches every item.
    with ImageServer(port=port) as srv:
        body = jpeg_bytes((40, 30))
        for i in range(147):
            srv.route(f"/I/{i}-0.jpg", Reply(body=body))
        fast = _params(sandbox / "f.yaml", "images", shorter_side=16, min_side=8, per_host_rate=0)
        back = run("images", "toy", "--data-dir", data, "--params", fast)
    assert back.code == 0, back.stderr
    assert "147 of 147 items have an image" in back.stdout
    assert "did not answer" not in back.stderr
    index = pq.read_table(data / "toy" / "images" / "index.parquet").to_pylist()
    assert all(r["has_image"] for r in index) and len(srv.hits()) == 147


def test_fetcher_deadline_ends_a_trickled_body_within_total_timeout() -> None:
    from alignrec_data.images.fetch import Fetcher, FetchSettings

    settings = FetchSettings(timeout=5.0, total_timeout=1.5, retries=0, per_host_rate=0)
    with StallServer("trickle", interval=0.2) as slow, Fetcher(settings) as f:
        t0 = time.monotonic()
        got = f.fetch(slow.url + "a.jpg")
        elapsed = time.monotonic() - t0
    assert (got.ok, got.reason, got.body) == (False, "timeout", None)
    assert elapsed < 3, elapsed


# --- prepare: a reviews file with no review in it -----------------------------------------------


def _baby_raw(data: Path, reviews: bytes) -> Path:
    """amazon-baby's raw folder with the given reviews bytes and the 2014 metadata fixture."""
    spec = get_dataset("amazon-baby")
    raw = data / "amazon-baby" / "raw"
    raw.mkdir(parents=True)
    (raw / spec.file("reviews").filename).write_bytes(reviews)
    meta = gzip.compress((FIXTURES / "meta_2014.json").read_bytes(), mtime=0)
    (raw / spec.file("meta").filename).write_bytes(meta)
    return raw


def _garbage() -> bytes:
    data = random.Random(15).randbytes(20_000)
    return b"\x00" + data  # never the gzip magic


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"", r"it is empty \(0 lines\)"),
        (gzip.compress(b"", mtime=0), r"it is empty \(0 lines\)"),
        (_garbage(), r"\d+ lines read, \d+ bad; first bad line 1: not valid JSON"),
        (
            b'{"hello": "world"}\n[1, 2, 3]\n{"reviewerID": "U1"}\n',
            r"3 lines read, 3 bad; first bad line 1: field 'unixReviewTime' must be a number, "
            r"found missing",
        ),
    ],
    ids=["empty", "empty-gzip", "binary", "json-not-reviews"],
)
def test_prepare_reports_a_reviews_file_without_reviews(
    sandbox: Path, content: bytes, found: str
) -> None:
    data = sandbox / "data"
    raw = _baby_raw(data, content)
    before = tree_digest(sandbox / "outside"), tree_digest(raw)
    out = run("prepare", "amazon-baby", "--data-dir", data, "--no-verify")
    assert_clean_error(
        out,
        1,
        r"raw reviews file \S*reviews_Baby_5\.json\.gz holds no readable review",
        found,
        r"reviewerID, asin, overall, unixReviewTime",
        r"delete it and run `alignrec-data download amazon-baby`",
    )
    assert "core filter" not in out.stderr
    assert not (data / "amazon-baby" / "prepared").exists()
    assert (tree_digest(sandbox / "outside"), tree_digest(raw)) == before


def test_prepare_keeps_the_k_core_message_when_k_core_removed_everything(sandbox: Path) -> None:
    data = sandbox / "data"
    reviews = gzip.compress((FIXTURES / "reviews_2014.json").read_bytes(), mtime=0)
    _baby_raw(data, reviews)
    out = run("prepare", "amazon-baby", "--data-dir", data, "--no-verify")
    assert_clean_error(
        out, 1, r"no interaction is left after the 5/5-core filter \(\d+ read\)", "lower prepare"
    )
    assert not (data / "amazon-baby" / "prepared").exists()


def test_prepared_folder_has_the_mode_of_a_plain_mkdir(sandbox: Path) -> None:
    data = sandbox / "data"
    reviews = gzip.compress((FIXTURES / "reviews_2014.json").read_bytes(), mtime=0)
    _baby_raw(data, reviews)
    # A staging folder left by a run killed with kill -9 (a pid that is no longer alive).
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = data / "amazon-baby" / f".prepared.tmp-{dead.pid}-x1y2z3"
    stale.mkdir()
    (stale / "items.parquet").write_bytes(b"half")
    params = _params(
        sandbox / "p.yaml", "prepare", min_user_interactions=1, min_item_interactions=1
    )
    out = run("prepare", "amazon-baby", "--data-dir", data, "--no-verify", "--params", params)
    assert out.code == 0, out.stderr
    plain = data / "amazon-baby" / "plain"
    plain.mkdir()
    prepared = data / "amazon-baby" / "prepared"
    assert prepared.stat().st_mode == plain.stat().st_mode
    assert not stale.exists()
    assert sorted(p.name for p in (data / "amazon-baby").iterdir()) == ["plain", "prepared", "raw"]


# --- symbolic link loops under raw/ -------------------------------------------------------------


def _loop(data: Path, kind: str) -> Path:
    """Make a broken link under amazon-mini and return it."""
    ds = data / "amazon-mini"
    if kind == "file-loop":
        (ds / "raw").mkdir(parents=True)
        link = ds / "raw" / "reviews_Mini_5.json.gz"
        link.symlink_to("reviews_Mini_5.json.gz")
    elif kind == "dir-loop":
        ds.mkdir(parents=True)
        link = ds / "raw"
        link.symlink_to("raw")
    else:  # dangling
        (ds / "raw").mkdir(parents=True)
        link = ds / "raw" / "meta_Mini.json.gz"
        link.symlink_to("/nonexistent/alignrec/meta_Mini.json.gz")
    return link


@pytest.mark.parametrize("kind", ["file-loop", "dir-loop", "dangling"])
def test_a_broken_link_under_raw_is_named_not_a_crash(sandbox: Path, kind: str) -> None:
    data = sandbox / "data"
    link = _loop(data, kind)
    before = tree_digest(sandbox)

    out = run("datasets", "--data-dir", data, "--format", "json")
    assert "Traceback" not in out.stderr and out.code == 0, out.stderr
    states = {d["id"]: d["local"] for d in json.loads(out.stdout)["datasets"]}
    assert states["amazon-mini"] == "broken"
    assert states["amazon-baby"] == "absent"

    problem = "loops" if kind != "dangling" else "which does not exist"
    for args in (("download", "amazon-mini"), ("prepare", "amazon-mini")):
        out = run(*args, "--data-dir", data)
        assert_clean_error(out, 2, str(link).replace(".", r"\."), problem, "remove the link")
    assert tree_digest(sandbox) == before


def test_a_looping_prepared_or_images_folder_is_named_not_a_crash(sandbox: Path) -> None:
    data = sandbox / "data"
    reviews = gzip.compress((FIXTURES / "reviews_2014.json").read_bytes(), mtime=0)
    _baby_raw(data, reviews)
    (data / "amazon-baby" / "prepared").symlink_to("prepared")
    params = _params(
        sandbox / "p.yaml", "prepare", min_user_interactions=1, min_item_interactions=1
    )
    before = tree_digest(sandbox)
    out = run("prepare", "amazon-baby", "--data-dir", data, "--no-verify", "--params", params)
    assert_clean_error(
        out,
        2,
        r"prepared folder \S*amazon-baby/prepared is a symbolic link that loops",
        "remove the link",
    )
    out = run("images", "amazon-baby", "--data-dir", data)
    assert_clean_error(
        out, 2, r"amazon-baby/prepared is a symbolic link that loops", "remove the link"
    )
    assert tree_digest(sandbox) == before
    (data / "amazon-baby" / "prepared").unlink()
    write_items(data / "amazon-baby" / "prepared", [[]])
    (data / "amazon-baby" / "images").symlink_to("images")
    before = tree_digest(sandbox)
    out = run("images", "amazon-baby", "--data-dir", data)
    assert_clean_error(
        out, 2, r"amazon-baby/images is a symbolic link that loops", "remove the link"
    )
    assert tree_digest(sandbox) == before


# --- kill -9: no leftovers a successful rerun does not clean ------------------------------------


def _spawn(*args: str | Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "alignrec_data", *[str(a) for a in args]],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for(cond, timeout: float = 60) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting for the killed run to get going")
        time.sleep(0.05)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_images_killed_mid_run_leaves_nothing_a_rerun_does_not_reuse_or_clean(
    sandbox: Path,
) -> None:
    data = sandbox / "data"
    images = data / "toy" / "images"
    params = _params(
        sandbox / "p.yaml",
        "images",
        per_host_rate=0,
        concurrency=1,
        shard_size_mb=0.000001,  # one shard per image: shards land before the kill
        timeout=30.0,
        total_timeout=60.0,
        retries=0,
    )
    with ImageServer() as srv, StallServer("trickle") as slow:
        urls = [
            [srv.route(f"/{i}.jpg", Reply(body=jpeg_bytes(color=(i * 60, 20, 20))))]
            for i in range(3)
        ]
        write_items(data / "toy" / "prepared", [*urls, [slow.url + "3.jpg"]])
        before = tree_digest(sandbox / "outside")
        proc = _spawn("images", "toy", "--data-dir", data, "--params", params)
        try:
            _wait_for(lambda: (images / "shard-00002.parquet").is_file())
            time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert not (images / "index.parquet").exists()
        # A shard temporary as write_parquet names it, left by another killed run.
        (images / f".shard-00007.parquet.tmp-{_dead_pid()}-abc123.parquet").write_bytes(b"PAR1")
        (images / f".index.parquet.tmp-{_dead_pid()}-def456.parquet").write_bytes(b"PAR1")
        mine = images / ".notes-of-the-user"
        mine.write_text("not ours\n")

        srv.route("/3.jpg", Reply(body=jpeg_bytes()))
        write_items(data / "toy" / "prepared", [*urls, [srv.url + "3.jpg"]])
        srv.clear_log()
        out = run("images", "toy", "--data-dir", data, "--params", params, "--format", "json")
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["resumed_stored"], result["fetched"]) == (3, 1)  # the orphan shards reused
    assert [h.path for h in srv.hits()] == ["/3.jpg"]
    hidden = sorted(p.name for p in images.iterdir() if p.name.startswith("."))
    assert hidden == [".notes-of-the-user"]
    index = pq.read_table(images / "index.parquet").to_pylist()
    assert all(r["has_image"] for r in index)
    assert tree_digest(sandbox / "outside") == before


class _StallAfter(BaseHTTPRequestHandler):
    """Serves MINI_DIR files: the full Content-Length, the first 40,000 bytes, then silence."""

    protocol_version = "HTTP/1.1"
    stop: threading.Event

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        body = (MINI_DIR / self.path.strip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body[:40_000])
            self.wfile.flush()
        except OSError:
            return
        self.stop.wait(60)


@pytest.fixture
def stall_after() -> Iterator[str]:
    stop = threading.Event()
    handler = type("H", (_StallAfter,), {"stop": stop})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    stop.set()
    httpd.shutdown()
    httpd.server_close()


def test_download_killed_mid_file_resumes_and_leaves_nothing(
    sandbox: Path, stall_after: str
) -> None:
    data = sandbox / "data"
    raw = data / "amazon-mini" / "raw"
    params = _params(sandbox / "p.yaml", "download", chunk_size=1024, timeout=60)
    before = tree_digest(sandbox / "outside")
    proc = _spawn(
        "download", "amazon-mini", "--data-dir", data, "--params", params, "--mirror", stall_after
    )
    parts = [raw / ".reviews_Mini_5.json.gz.part", raw / ".meta_Mini.json.gz.part"]
    try:
        _wait_for(lambda: all(p.is_file() and p.stat().st_size >= 30_000 for p in parts))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The .part files are the resumable state; a lock-file temporary of the dead run is not.
    (raw / f".alignrec.lock.json.tmp-{_dead_pid()}-zz9").write_text("{")
    with FaultServer(MINI_DIR) as srv:
        out = run(
            "download", "amazon-mini", "--data-dir", data, "--mirror", srv.url, "--format", "json"
        )
        ranges = [r.range for r in srv.requests]
    assert out.code == 0, out.stderr
    assert sorted(r["status"] for r in json.loads(out.stdout)["files"]) == ["resumed", "resumed"]
    assert all(r is not None and not r.startswith("bytes=0-") for r in ranges), ranges
    assert sorted(p.name for p in raw.iterdir()) == [
        "alignrec.lock.json",
        "meta_Mini.json.gz",
        "reviews_Mini_5.json.gz",
    ]
    assert tree_digest(sandbox / "outside") == before
