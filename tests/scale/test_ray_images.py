"""The images stage on a local Ray cluster: same outputs as one process, a global rate limit,
a shared breaker, and resume after a killed worker or a killed driver."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from alignrec_data.engine import ray_images
from alignrec_data.images import (
    ImagesConfig,
    fetch_images,
    iter_images,
    load_image_index,
    load_images,
)
from alignrec_data.images.store import index_parts, read_shard_catalog, shard_files
from alignrec_data.paths import DatasetPaths
from tests.conftest import REPO, shared_data
from tests.images.helpers import jpeg_bytes, write_items
from tests.images.server import ClosingHost, ImageServer, Reply
from tests.images.test_hm_sample import serve_hm
from tests.scale.conftest import ray_worker_pids

pytest.importorskip("ray", reason="ray is not installed: pip install 'alignrec[scale]'")

CONFIG = ImagesConfig(
    shorter_side=64,
    concurrency=4,
    per_host_rate=0,
    retries=1,
    backoff=0.01,
    timeout=5.0,
    max_pixels=20_000_000,
    max_bytes=2_000_000,
)
# What a user compares: per item, the outcome and the stored bytes' hash (not the shard names).
SAME = ["item_id", "item_key", "has_image", "reason", "url", "http_status", "sha256", "width",
        "height", "fetched_url", "candidates", "attempts"]  # fmt: skip


def _index(data_dir: Path) -> pd.DataFrame:
    return load_image_index(DatasetPaths.of(data_dir, "hm").images)[SAME]


def _images(data_dir: Path) -> dict[int, bytes]:
    return load_images(DatasetPaths.of(data_dir, "hm").images)


def _same_outputs(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(_index(a), _index(b))
    assert _images(a) == _images(b)


def test_hm_photos_same_index_and_images_as_one_process(tmp_path: Path, ray_address: str) -> None:
    folder = shared_data("hm-sample") / "images"
    with ImageServer() as srv:
        urls, keys, expected = serve_hm(srv, folder)
        for name in ("one", "ray"):
            write_items(DatasetPaths.of(tmp_path / name, "hm").prepared, urls, keys)
        one = fetch_images(tmp_path / "one", "hm", CONFIG, progress=False)
        got = ray_images.fetch_images_ray(
            tmp_path / "ray", "hm", CONFIG, workers=2, shard_items=40, progress=False
        )
        srv.clear_log()
        rerun = ray_images.fetch_images_ray(tmp_path / "ray", "hm", CONFIG, progress=False)
        assert srv.hits() == [] and rerun.fetched == 0 and rerun.resumed_stored == 101

    _same_outputs(tmp_path / "one", tmp_path / "ray")
    assert got.new_shards == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    assert (got.fetched, got.requests, got.stats["n_with_image"]) == (107, one.requests, 101)
    assert got.stats["reasons"] == one.stats["reasons"]
    index = load_image_index(DatasetPaths.of(tmp_path / "ray", "hm").images)
    reasons = dict(zip(index["item_key"], index["reason"].fillna("").tolist(), strict=True))
    assert reasons == {k: r or "" for k, (_, r) in expected.items()}
    # The readers of extract and pretrain read the distributed output unchanged.
    n = sum(
        min(im.size) == 64 for _, im in iter_images(DatasetPaths.of(tmp_path / "ray", "hm").images)
    )
    assert n == 101


def test_rate_limit_is_global_across_workers(tmp_path: Path, ray_address: str) -> None:
    rate, n = 20.0, 60
    config = ImagesConfig(**{**CONFIG.__dict__, "per_host_rate": rate, "shorter_side": 16})
    body = jpeg_bytes((40, 30))
    with ImageServer() as srv:
        urls = [[srv.route(f"/r/{i}.jpg", Reply(body=body))] for i in range(n)]
        write_items(DatasetPaths.of(tmp_path, "hm").prepared, urls)
        got = ray_images.fetch_images_ray(tmp_path, "hm", config, workers=2, progress=False)
        starts = sorted(h.t for h in srv.hits())
    assert got.stats["n_with_image"] == n and len(got.new_shards) == 2
    # Two workers, one host: the total, not each worker, stays at 20 requests/s. Per second
    # of the run (server-side arrival times), never more than the limit plus one of jitter.
    per_second = [sum(t0 <= t < t0 + 1.0 for t in starts) for t0 in starts if t0 + 1 <= starts[-1]]
    assert max(per_second) <= rate + 1, max(per_second)
    assert starts[-1] - starts[0] >= 0.9 * (n - 1) / rate


def test_host_breaker_is_shared(tmp_path: Path, ray_address: str) -> None:
    failures = 5
    config = ImagesConfig(
        **{**CONFIG.__dict__, "concurrency": 1, "retries": 0, "host_failures": failures}
    )
    with ClosingHost() as dead:
        urls = [[f"{dead.url}{i}.jpg"] for i in range(40)]
        write_items(DatasetPaths.of(tmp_path, "hm").prepared, urls)
        got = ray_images.fetch_images_ray(tmp_path, "hm", config, workers=2, progress=False)
        connections = dead.connections
        host = dead.url.split("/")[2]
    assert got.hosts_down == [host]
    assert got.stats["reasons"] == {"host-down": 40}
    # One count for the cluster: the threshold plus at most one request per worker thread,
    # not the threshold per worker (>= 10 here).
    assert failures <= connections <= failures + 2, connections


def _slow_hm(srv: ImageServer, folder: Path, delay: float) -> tuple[list[list[str]], list[str]]:
    files = sorted(folder.glob("*.jpg"))[:60]
    urls = [[srv.route(f"/s/{f.name}", Reply(body=f.read_bytes(), delay=delay))] for f in files]
    urls.append([srv.url + "s/missing.jpg"])  # a permanent failure (404)
    return urls, [f.stem for f in files] + ["missing"]


def test_killed_worker_is_retried_same_outputs(tmp_path: Path, ray_address: str) -> None:
    folder = shared_data("hm-sample") / "images"
    config = ImagesConfig(**{**CONFIG.__dict__, "concurrency": 2})
    with ImageServer() as srv:
        urls, keys = _slow_hm(srv, folder, delay=0.05)
        for name in ("one", "ray"):
            write_items(DatasetPaths.of(tmp_path / name, "hm").prepared, urls, keys)
        fetch_images(tmp_path / "one", "hm", config, progress=False)
        killed: list[int] = []

        def kill_one_worker() -> None:
            deadline = time.monotonic() + 20
            while not killed and time.monotonic() < deadline:
                pids = ray_worker_pids("fetch_shard")
                if pids and len(srv.hits()) >= 10:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                time.sleep(0.02)

        srv.clear_log()
        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        got = ray_images.fetch_images_ray(tmp_path / "ray", "hm", config, workers=2, progress=False)
        killer.join()
    assert killed, "no fetch_shard worker was seen running"
    assert got.fetched == 61
    images = DatasetPaths.of(tmp_path / "ray", "hm").images
    assert sorted(p.name for p in images.iterdir() if p.name.startswith(".")) == []
    _same_outputs(tmp_path / "one", tmp_path / "ray")


def test_killed_driver_then_rerun_same_outputs(tmp_path: Path, ray_address: str) -> None:
    folder = shared_data("hm-sample") / "images"
    params = tmp_path / "params.yaml"
    # shard_size_mb 0.25: about 10 items a shard task, so some shards finish before the kill.
    params.write_text(
        "images:\n  shorter_side: 64\n  concurrency: 2\n  per_host_rate: 0\n  retries: 1\n"
        "  backoff: 0.01\n  shard_size_mb: 0.25\n  max_pixels: 20000000\n  max_bytes: 2000000\n"
    )
    config = ImagesConfig(**{**CONFIG.__dict__, "concurrency": 2, "shard_size_mb": 0.25})
    with ImageServer() as srv:
        urls, keys = _slow_hm(srv, folder, delay=0.05)
        for name in ("one", "ray"):
            write_items(DatasetPaths.of(tmp_path / name, "hm").prepared, urls, keys)
        fetch_images(tmp_path / "one", "hm", config, progress=False)
        images = DatasetPaths.of(tmp_path / "ray", "hm").images
        cmd = [sys.executable, "-m", "alignrec_data.cli", "images", "hm", "--engine", "ray",
               "--address", ray_address, "--workers", "2", "--data-dir", str(tmp_path / "ray"),
               "--params", str(params), "--format", "json"]  # fmt: skip
        driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not shard_files(images) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        driver.kill()  # kill -9 the driver mid-run
        driver.wait()
        assert driver.returncode == -signal.SIGKILL, driver.stderr.read().decode()[-2000:]
        time.sleep(1.0)  # Ray ends the dead driver's tasks
        left = len(shard_files(images))
        assert 1 <= left < 7, left  # 7 shard tasks of 8-9 items
        stored_before = len(read_shard_catalog(images)[0])
        assert len(index_parts(images)) >= left  # each shard's index rows, written before it

        srv.clear_log()
        rerun = ray_images.fetch_images_ray(
            tmp_path / "ray", "hm", config, workers=2, progress=False
        )
    assert rerun.resumed_stored == stored_before >= 8  # the finished shards are kept
    assert rerun.fetched + rerun.resumed_stored + rerun.resumed_failed == 61
    _same_outputs(tmp_path / "one", tmp_path / "ray")
    assert index_parts(images) == []  # the full index replaced them
    assert json.loads((images / "stats.json").read_text())["n_with_image"] == 60


@pytest.mark.parametrize("command", ["images", "extract"])
def test_cli_engine_options(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """images and extract share the engine options and their checks (before any input)."""
    from click.testing import CliRunner

    from alignrec_data.cli import cli

    args = [command, "hm", "--data-dir", str(tmp_path)]
    res = CliRunner().invoke(cli, [*args, "--workers", "2"])
    assert res.exit_code == 2 and "--address and --workers need --engine ray" in res.output
    res = CliRunner().invoke(cli, [*args, "--engine", "ray", "--workers", "0"])
    assert res.exit_code == 2 and "0 is not in the range x>=1" in res.output
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    res = CliRunner().invoke(cli, [*args, "--engine", "ray", "--address", f"127.0.0.1:{port}"])
    # images connects first; extract first checks its inputs (here: no prepared items)
    expected = {"images": f"no Ray cluster answers at 127.0.0.1:{port}", "extract": "prepare hm"}
    assert res.exit_code == 2 and expected[command] in res.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    res = CliRunner().invoke(cli, [*args, "--engine", "ray"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "Error: --engine ray needs Ray, which is not installed: pip install 'alignrec[scale]'"
    ]
