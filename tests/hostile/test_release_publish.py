"""Hostile inputs to `release`, `publish` and the release loaders (issue 15).

Each test asserts the exit code, the one `Error:` line naming the file or value and the fix,
no traceback, and that nothing outside the target changed (the target too, when refused).
The publish tests talk to loopback servers that refuse, stall, trickle or answer garbage.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alignrec_data import loaders
from alignrec_data.errors import DataFormatError
from alignrec_data.release import MANIFEST_NAME, ReleaseConfig, build_release
from tests.hostile.conftest import REPO, assert_clean_error, run, tree_digest
from tests.release.fixtures import make_dataset

TOKEN = "hf_hostile_secret_0123456789abcdefXYZ"
DATASET = "amazon-mini"


@pytest.fixture
def data(sandbox: Path) -> Path:
    """The sandbox's data dir with one small dataset (encoder, raw files, metrics...)."""
    make_dataset(sandbox / "data", DATASET, variants={"alignrec": 8, "minilm-text": 6})
    make_dataset(sandbox / "data", "other", variants={"alignrec": 4}, extras=False)
    return sandbox / "data"


@pytest.fixture
def released(sandbox: Path, data: Path) -> Path:
    """A release of the dataset in ``sandbox/rel`` (small shards: several per config)."""
    out = sandbox / "rel"
    build_release(data, DATASET, out, ReleaseConfig(shard_size_mb=0.002))
    return out


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift HF_HUB_OFFLINE (it also blocks loopback) and provide a token."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)


def release(sandbox: Path, *args: str | Path):
    """``alignrec-data release`` run from the sandbox (packaged params, not the repo's)."""
    return run("release", DATASET, "--data-dir", sandbox / "data", *args, cwd=sandbox)


# ----------------------------------------------------------------------------- release --out


def test_release_refuses_a_folder_that_is_not_a_release(sandbox: Path, data: Path) -> None:
    outside = sandbox / "outside"
    before = tree_digest(sandbox)
    out = release(sandbox, "--out", outside)
    assert_clean_error(out, 2, r"outside", r"is not empty and is not a previous release folder")
    assert "alignrec_release.json" in out.error_line and "--overwrite" in out.error_line
    assert tree_digest(sandbox) == before  # src/main.py and NOTES.md are still there

    # With --overwrite the folder becomes the release; nothing else changes.
    out = release(sandbox, "--out", outside, "--overwrite")
    assert out.code == 0, out.stderr
    assert (outside / MANIFEST_NAME).is_file() and not (outside / "NOTES.md").exists()
    after = tree_digest(sandbox)
    assert {k: v for k, v in after.items() if not k.startswith("outside")} == {
        k: v for k, v in before.items() if not k.startswith("outside")
    }
    # A previous release is replaced without --overwrite (it holds the manifest).
    assert release(sandbox, "--out", outside).code == 0


@pytest.mark.parametrize(
    "target",
    [
        ".",  # the data dir
        DATASET,  # the dataset's own folder (raw/, prepared/, models/...)
        f"{DATASET}/models",
        f"{DATASET}/features",
        f"{DATASET}/prepared",
        "other",  # another dataset
        "other/release",  # another dataset's release
    ],
)
def test_release_never_replaces_a_dataset_folder(sandbox: Path, data: Path, target: str) -> None:
    before = tree_digest(sandbox)
    out = release(sandbox, "--out", data / target, "--overwrite")
    assert_clean_error(out, 2, r"would replace .* which holds a dataset's files; choose a folder")
    assert tree_digest(sandbox) == before


def test_release_to_a_file_shaped_out(sandbox: Path, data: Path) -> None:
    before = tree_digest(sandbox)
    notes = sandbox / "outside" / "NOTES.md"
    out = release(sandbox, "--out", notes)
    assert_clean_error(out, 2, r"NOTES\.md exists and is not a folder; choose a new or empty")
    out = release(sandbox, "--out", notes / "rel")
    assert_clean_error(out, 2, r"NOTES\.md is a file, not a folder; choose another folder")
    assert tree_digest(sandbox) == before


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def test_killed_release_leaves_the_old_one_and_the_rerun_cleans_up(
    sandbox: Path, data: Path
) -> None:
    out = data / DATASET / "release"
    assert release(sandbox).code == 0
    old = tree_digest(out)
    # A real `kill -9` mid-build: the shard writer is slowed down so the kill lands inside.
    script = (
        "import sys, time\n"
        "import alignrec_data.release as r\n"
        "orig = r.write_config\n"
        "def slow(*a, **k):\n"
        "    time.sleep(60)\n"
        "    return orig(*a, **k)\n"
        "r.write_config = slow\n"
        f"r.build_release({str(data)!r}, {DATASET!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not list(out.parent.glob(f".release.tmp-{proc.pid}-*")):
            assert proc.poll() is None and time.monotonic() < deadline, "no staging folder seen"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    leftover = list(out.parent.glob(".release.tmp-*"))
    assert len(leftover) == 1 and leftover[0].is_dir()
    # Also the leftover of an earlier crash (a pid that no longer runs), with a file in it.
    stale = out.parent / f".release.tmp-{_dead_pid()}-x1y2z3"
    (stale / "items").mkdir(parents=True)
    (stale / "items" / "train-00000-of-00001.parquet").write_bytes(b"partial")
    assert tree_digest(out) == old  # the killed build did not touch the release

    result = release(sandbox)
    assert result.code == 0, result.stderr
    assert not list(out.parent.glob(".release.*"))  # both leftovers removed
    assert tree_digest(out) == old  # same inputs: the same release


# ----------------------------------------------------------------------------- non-finite


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_release_refuses_non_finite_embeddings(sandbox: Path, data: Path, value: float) -> None:
    path = data / DATASET / "features" / "minilm-text.parquet"
    table = pq.read_table(path)
    emb = table.column("embedding").combine_chunks()
    values = emb.flatten().to_numpy().reshape(-1, emb.type.list_size).copy()
    values[[3, 5], 1] = value
    values[5, 2] = value
    flat = pa.array(values.ravel(), pa.float32())
    table = table.set_column(
        table.column_names.index("embedding"),
        "embedding",
        pa.FixedSizeListArray.from_arrays(flat, emb.type.list_size),
    )
    pq.write_table(table, path)
    before = tree_digest(sandbox)
    out = release(sandbox)
    assert_clean_error(
        out,
        1,
        r"minilm-text\.parquet of variant 'minilm-text': 3 non-finite \(NaN or infinite\) "
        r"value\(s\) in 2 of 40 items",
        r"nothing was written. Re-run `alignrec-data extract`",
    )
    assert tree_digest(sandbox) == before  # no release, no staging folder


# ----------------------------------------------------------------------------- manifest


def _rewrite_a_shard(folder: Path) -> Path:
    """Replace a feature shard by a valid parquet file with other embeddings."""
    shard = sorted((folder / "features-alignrec").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    emb = table.column("embedding").combine_chunks()
    flat = pa.array(np.full(len(emb) * emb.type.list_size, 7.0, np.float32))
    table = table.set_column(
        table.column_names.index("embedding"),
        "embedding",
        pa.FixedSizeListArray.from_arrays(flat, emb.type.list_size),
    )
    pq.write_table(table, shard)
    return shard


def test_release_without_manifest_is_refused_everywhere(
    sandbox: Path, released: Path, online: None
) -> None:
    (released / MANIFEST_NAME).unlink()
    _rewrite_a_shard(released)
    before = tree_digest(sandbox)
    missing = r"has no alignrec_release\.json .* rebuild it with `alignrec-data release"
    for load in (
        lambda: loaders.load_features(released, "alignrec", cache_dir=sandbox / "cache"),
        lambda: loaders.load_interactions(released, "train"),
        lambda: loaders.load_items(released),
        lambda: loaders.open_release(released),
    ):
        with pytest.raises(DataFormatError, match=missing):
            load()
    for extra in (["--dry-run"], ["--endpoint", "http://127.0.0.1:9"]):
        out = run("publish", released, "--repo-id", "alice/x", *extra)
        assert_clean_error(out, 1, str(released), missing)
        assert TOKEN not in out.stdout + out.stderr
    # A card whose front matter does not parse: one line, not an internal error.
    card = released / "README.md"
    card.write_text("---\nconfigs: [unclosed\n---\nbody\n")
    out = run("publish", released, "--repo-id", "alice/x", "--dry-run")
    assert_clean_error(out, 2, r"README\.md: its YAML front matter does not parse")
    assert tree_digest(sandbox) == {**before, "rel/README.md": tree_digest(released)["README.md"]}


def test_publish_refuses_a_parquet_file_the_manifest_does_not_list(
    sandbox: Path, released: Path
) -> None:
    extra = released / "features-alignrec" / "train-00099-of-00099.parquet"
    extra.write_bytes(sorted((released / "items").glob("*.parquet"))[0].read_bytes())
    before = tree_digest(sandbox)
    out = run("publish", released, "--repo-id", "alice/x", "--dry-run")
    assert_clean_error(
        out,
        1,
        r"features-alignrec/train-00099-of-00099\.parquet is not listed in "
        r"alignrec_release\.json .* remove it or rebuild the release",
    )
    assert tree_digest(sandbox) == before


# ----------------------------------------------------------------------------- publish network


class _Server:
    """A TCP server on 127.0.0.1 that handles each connection with ``behaviour(conn)``."""

    def __init__(self, behaviour) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.behaviour(conn, self.stop)
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def _stall(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait()  # accept, read nothing, answer nothing


def _trickle(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while not stop.wait(0.2):  # a header that never ends, one byte at a time
        conn.sendall(b"X")


def _garbage(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"\x00\x01 this is not HTTP \xff\xfe\r\n\r\n")
    conn.close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    s = _Server(request.param)
    yield s
    s.close()


@pytest.mark.parametrize(
    ("server", "pattern"),
    [
        (_stall, r"did not (finish create_repo .* within 2 s|answer in time)"),
        (_trickle, r"did not (finish create_repo .* within 2 s|answer in time)"),
        (_garbage, r"did not answer as a Hub does"),
    ],
    indirect=["server"],
)
def test_publish_ends_at_the_deadline_or_on_garbage(
    sandbox: Path, released: Path, online: None, server: _Server, pattern: str
) -> None:
    before = tree_digest(sandbox)
    start = time.monotonic()
    out = run(
        "publish", released, "--repo-id", "alice/x", "--endpoint", server.url, "--timeout", "2"
    )
    elapsed = time.monotonic() - start
    assert_clean_error(out, 1, pattern, r"127\.0\.0\.1", r"--endpoint|--timeout")
    assert elapsed < 8, elapsed  # the 2 s deadline holds (some slack for a busy machine)
    assert TOKEN not in out.stdout + out.stderr
    assert tree_digest(sandbox) == before


def test_publish_to_a_refused_or_malformed_endpoint(
    sandbox: Path, released: Path, online: None
) -> None:
    before = tree_digest(sandbox)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()  # nothing listens there: the connection is refused
    out = run("publish", released, "--repo-id", "alice/x", "--endpoint", closed, "--timeout", "5")
    assert_clean_error(
        out, 1, r"cannot connect to the Hub at http://127\.0\.0\.1:\d+", "--endpoint"
    )
    assert TOKEN not in out.stdout + out.stderr

    for bad in (
        "not a url",
        "ftp://example.org",
        "http://",
        "http://127.0.0.1:99999",
        "http://a b",
    ):
        out = run("publish", released, "--repo-id", "alice/x", "--endpoint", bad)
        assert_clean_error(out, 2, r"--endpoint .* is not a Hub URL; expected http\(s\)://HOST")
    out = run("publish", released, "--repo-id", "alice/x", "--endpoint", f"http://u:{TOKEN}@x:1:2")
    assert_clean_error(out, 2, "is not a Hub URL")
    assert TOKEN not in out.stdout + out.stderr
    for bad in ("0", "-1", "soon"):
        out = run("publish", released, "--repo-id", "alice/x", "--timeout", bad)
        assert_clean_error(out, 2, r"--timeout")
    assert tree_digest(sandbox) == before
