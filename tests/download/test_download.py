"""Downloads against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from alignrec_data.download import (
    DownloadConfig,
    download_dataset,
    raise_for_failures,
    verify_dataset,
)
from alignrec_data.errors import ChecksumError, DownloadError, UsageError
from alignrec_data.lockfile import LOCK_NAME
from alignrec_data.registry import FileSpec
from tests.download.conftest import FAST, dev_full_available, gz_bytes, sha
from tests.download.httpserver import Fault


def _leftovers(raw_dir: Path) -> list[str]:
    """Temporary or corrupt files left in the raw folder."""
    return sorted(p.name for p in raw_dir.iterdir() if ".part" in p.name or "corrupt" in p.name)


def test_fetch_then_second_run_verifies_without_fetching(make_spec, server, raw_dir):
    reviews, meta = gz_bytes(2000, 1), gz_bytes(1500, 2)
    ratings = b"u1,i1,5.0,1400000000\nu2,i1,3.0,1400000001\n"
    spec = make_spec(
        {
            "reviews": ("reviews_Toy_5.json.gz", reviews),
            "meta": ("meta_Toy.json.gz", meta),
            "ratings": ("ratings_Toy.csv", ratings),
        }
    )
    results = download_dataset(
        spec, raw_dir, config=FAST, workers=3, progress=False, all_files=True
    )

    assert [r.status for r in results] == ["fetched"] * 3
    assert [r.trust for r in results] == ["registry"] * 3
    assert (raw_dir / "reviews_Toy_5.json.gz").read_bytes() == reviews
    assert (raw_dir / "meta_Toy.json.gz").read_bytes() == meta
    assert (raw_dir / "ratings_Toy.csv").read_bytes() == ratings
    assert results[0].transferred == len(reviews)
    assert _leftovers(raw_dir) == []
    lock = json.loads((raw_dir / LOCK_NAME).read_text())
    assert lock["files"]["meta_Toy.json.gz"]["sha256"] == sha(meta)
    assert lock["files"]["meta_Toy.json.gz"]["url"] == server.url + "meta_Toy.json.gz"
    lock_bytes = (raw_dir / LOCK_NAME).read_bytes()

    n_requests = len(server.requests)
    again = download_dataset(spec, raw_dir, config=FAST, progress=False, all_files=True)
    assert [r.status for r in again] == ["verified"] * 3
    assert [r.transferred for r in again] == [0, 0, 0]
    assert len(server.requests) == n_requests  # nothing fetched
    assert (raw_dir / LOCK_NAME).read_bytes() == lock_bytes  # unchanged: DVC sees no change


def test_cut_mid_file_resumes_only_missing_bytes(make_spec, server, raw_dir):
    data = gz_bytes(4000)
    spec = make_spec({"reviews": ("r.json.gz", data)})
    cut = len(data) // 3
    server.add_fault("/r.json.gz", Fault.cut(cut))

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "resumed"
    assert (raw_dir / "r.json.gz").read_bytes() == data
    log = server.requests_for("/r.json.gz")
    assert [(r.range, r.status) for r in log] == [(None, 200), (f"bytes={cut}-", 206)]
    assert res.transferred == len(data)  # cut bytes + the rest, nothing twice


def test_partial_file_from_earlier_run_is_resumed(make_spec, server, raw_dir):
    data = gz_bytes(3000)
    spec = make_spec({"reviews": ("r.json.gz", data)})
    raw_dir.mkdir(parents=True)
    half = len(data) // 2
    (raw_dir / ".r.json.gz.part").write_bytes(data[:half])

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "resumed"
    assert res.transferred == len(data) - half
    assert [r.range for r in server.requests] == [f"bytes={half}-"]
    assert (raw_dir / "r.json.gz").read_bytes() == data
    assert _leftovers(raw_dir) == []


def test_server_ignoring_range_restarts_cleanly(make_spec, server, raw_dir):
    data = gz_bytes(3000)
    spec = make_spec({"reviews": ("r.json.gz", data)})
    server.ignore_range.add("/r.json.gz")
    server.add_fault("/r.json.gz", Fault.cut(10000))

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "fetched"  # a restart, not a resume
    assert (raw_dir / "r.json.gz").read_bytes() == data  # no duplicated prefix
    log = server.requests_for("/r.json.gz")
    assert [(r.range, r.status) for r in log] == [(None, 200), ("bytes=10000-", 200)]


def test_429_retry_after_is_honoured(make_spec, server, raw_dir):
    data = gz_bytes(200)
    spec = make_spec({"reviews": ("r.json.gz", data)})
    server.add_fault("/r.json.gz", Fault.status(429, retry_after=1))

    t0 = time.monotonic()
    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)
    elapsed = time.monotonic() - t0

    assert res.status == "fetched"
    assert [r.status for r in server.requests] == [429, 200]
    assert elapsed >= 0.95  # waited Retry-After: 1 s, not the 0.01 s back-off


def test_retry_after_is_capped(make_spec, server, raw_dir):
    spec = make_spec({"reviews": ("r.json.gz", gz_bytes(200))})
    server.add_fault("/r.json.gz", Fault.status(503, retry_after=3600))
    cfg = replace(FAST, retry_after_max=0.05)

    t0 = time.monotonic()
    [res] = download_dataset(spec, raw_dir, config=cfg, progress=False)

    assert res.status == "fetched"
    assert time.monotonic() - t0 < 5


def test_500_then_success(make_spec, server, raw_dir):
    data = gz_bytes(200)
    spec = make_spec({"reviews": ("r.json.gz", data)})
    server.add_fault("/r.json.gz", Fault.status(500))
    server.add_fault("/r.json.gz", Fault.status(502))

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "fetched"
    assert [r.status for r in server.requests] == [500, 502, 200]


def test_persistent_500_fails_after_retries(make_spec, server, raw_dir):
    spec = make_spec({"reviews": ("r.json.gz", gz_bytes(200))})
    for _ in range(10):
        server.add_fault("/r.json.gz", Fault.status(500))
    cfg = replace(FAST, retries=2)

    [res] = download_dataset(spec, raw_dir, config=cfg, progress=False)

    assert res.status == "failed"
    assert "HTTP 500" in res.error
    assert len(server.requests) == 3  # first try + 2 retries
    assert not (raw_dir / "r.json.gz").exists()


def test_404_names_url_and_mirror(make_spec, server, raw_dir, server_root):
    spec = make_spec({"reviews": ("r.json.gz", gz_bytes(100))})
    (server_root / "r.json.gz").unlink()

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "failed"
    with pytest.raises(DownloadError, match=r"GET http://127\.0\.0\.1:\d+/r\.json\.gz .*404") as ei:
        raise_for_failures([res])
    assert "--mirror" in ei.value.hint and "ALIGNREC_MIRROR" in ei.value.hint
    assert [r.status for r in server.requests] == [404]  # 404 is not retried


def test_moved_host_connection_refused(make_spec, raw_dir):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    spec = make_spec({"reviews": ("r.json.gz", gz_bytes(10))}, base_url=f"http://127.0.0.1:{port}/")

    [res] = download_dataset(spec, raw_dir, config=replace(FAST, retries=1), progress=False)

    assert res.status == "failed"
    assert f"http://127.0.0.1:{port}/r.json.gz" in res.error
    assert "--mirror" in res.exception.hint


def test_checksum_mismatch_keeps_bad_bytes_aside(make_spec, server, raw_dir):
    data = gz_bytes(500)
    wrong = "0" * 64
    spec = make_spec({"reviews": ("r.json.gz", data)}, registry={"reviews": (len(data), wrong)})

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "failed"
    assert not (raw_dir / "r.json.gz").exists()
    aside = raw_dir / f"r.json.gz.corrupt-{sha(data)[:8]}"
    assert aside.read_bytes() == data
    assert _leftovers(raw_dir) == [aside.name]
    with pytest.raises(ChecksumError, match=rf"r\.json\.gz: expected sha256 {wrong}.*{sha(data)}"):
        raise_for_failures([res])


def test_truncated_gzip_is_rejected(make_spec, server, raw_dir):
    data = gz_bytes(2000)[:-100]  # lost its tail: CRC and end marker missing
    spec = make_spec({"reviews": ("r.json.gz", data)}, hashes=False)

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "failed"
    assert "not a complete gzip file" in res.error
    assert not (raw_dir / "r.json.gz").exists()
    assert (raw_dir / f"r.json.gz.corrupt-{sha(data)[:8]}").read_bytes() == data
    assert (
        not (raw_dir / LOCK_NAME).exists() or "r.json.gz" not in (raw_dir / LOCK_NAME).read_text()
    )


@pytest.mark.parametrize("name", ["../evil.json.gz", "a/../../evil.json.gz", "/etc/evil.gz", ".."])
def test_name_escaping_the_data_folder_is_refused(make_spec, server, raw_dir, tmp_path, name):
    spec = make_spec({"reviews": ("ok.json.gz", gz_bytes(10))})
    bad = replace(spec, files=(FileSpec("reviews", name, None, None),))

    with pytest.raises(UsageError, match="not a safe relative file name"):
        download_dataset(bad, raw_dir, config=FAST, progress=False)

    assert not (tmp_path / "data" / "toy" / "evil.json.gz").exists()
    assert not (tmp_path / "data" / "evil.json.gz").exists()
    assert server.requests == []  # refused before any request


def test_redirect_to_another_scheme_is_refused(make_spec, server, raw_dir):
    spec = make_spec({"reviews": ("r.json.gz", gz_bytes(100))})
    server.add_fault("/r.json.gz", Fault.redirect("ftp://127.0.0.1/r.json.gz"))

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "failed"
    assert "redirect from http:// to ftp:// is refused" in res.error
    assert not (raw_dir / "r.json.gz").exists()


def test_redirect_on_same_scheme_is_followed(make_spec, server, raw_dir, server_root):
    data = gz_bytes(100)
    spec = make_spec({"reviews": ("r.json.gz", data)})
    (server_root / "moved").mkdir()
    (server_root / "moved" / "r.json.gz").write_bytes(data)
    server.add_fault("/r.json.gz", Fault.redirect("/moved/r.json.gz", code=301))

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "fetched"
    assert [r.path for r in server.requests] == ["/r.json.gz", "/moved/r.json.gz"]


@pytest.mark.parametrize("fault", [Fault.oversize(3 << 20), Fault.hidden_oversize(3 << 20)])
def test_oversized_response_is_cut_and_rejected(make_spec, server, raw_dir, fault):
    data = gz_bytes(300)
    spec = make_spec({"reviews": ("r.json.gz", data)})
    server.add_fault("/r.json.gz", fault)

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "failed"
    assert isinstance(res.exception, ChecksumError)
    assert f"{len(data):,} bytes" in res.error
    assert ("refused" if fault.kind == "oversize" else "cut off and rejected") in res.error
    assert not (raw_dir / "r.json.gz").exists()
    assert _leftovers(raw_dir) == []  # nothing beyond the registry size is kept


def test_trust_on_first_use_then_detects_changed_upstream(make_spec, server, raw_dir, server_root):
    data = gz_bytes(500)
    spec = make_spec({"reviews": ("r.json.gz", data)}, hashes=False)

    [first] = download_dataset(spec, raw_dir, config=FAST, progress=False)
    assert (first.status, first.trust) == ("fetched", "first-use")
    entry = json.loads((raw_dir / LOCK_NAME).read_text())["files"]["r.json.gz"]
    assert (entry["sha256"], entry["size"], entry["trust"]) == (sha(data), len(data), "first-use")
    assert entry["when"].endswith("Z")

    [second] = download_dataset(spec, raw_dir, config=FAST, progress=False)
    assert (second.status, second.trust) == ("verified", "lock")

    # Upstream replaces the file; the local copy is gone: the new bytes must not be accepted.
    changed = data[:-20] + bytes(20)  # same size, other bytes
    (server_root / "r.json.gz").write_bytes(changed)
    (raw_dir / "r.json.gz").unlink()
    [third] = download_dataset(spec, raw_dir, config=FAST, progress=False)
    assert third.status == "failed"
    assert isinstance(third.exception, ChecksumError)
    assert sha(data) in third.error and sha(changed) in third.error
    assert LOCK_NAME in third.exception.hint
    assert not (raw_dir / "r.json.gz").exists()

    # A bigger upstream file is refused at the announced length (the lock pins the size).
    (server_root / "r.json.gz").write_bytes(data + b"more")
    [fourth] = download_dataset(spec, raw_dir, config=FAST, progress=False)
    assert f"has {len(data):,} bytes (recorded in {LOCK_NAME}); refused" in fourth.error


def test_locally_changed_file_is_detected_and_fetched_again(make_spec, server, raw_dir):
    data = gz_bytes(500)
    spec = make_spec({"reviews": ("r.json.gz", data)}, hashes=False)
    download_dataset(spec, raw_dir, config=FAST, progress=False)
    assert [r.status for r in verify_dataset(spec, raw_dir)] == ["verified"]

    tampered = gzip.compress(b"tampered\n", mtime=0)
    (raw_dir / "r.json.gz").write_bytes(tampered)
    with pytest.raises(ChecksumError, match=r"r\.json\.gz changed: expected sha256 " + sha(data)):
        verify_dataset(spec, raw_dir)

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)
    assert (res.status, res.trust) == ("fetched", "lock")
    assert (raw_dir / "r.json.gz").read_bytes() == data
    assert (raw_dir / f"r.json.gz.corrupt-{sha(tampered)[:8]}").read_bytes() == tampered


def test_present_unrecorded_file_is_checked_and_recorded(make_spec, server, raw_dir):
    good, broken = gz_bytes(300), gz_bytes(300, seed=5)[:-50]
    spec = make_spec({"reviews": ("r.json.gz", good), "meta": ("m.json.gz", good)}, hashes=False)
    raw_dir.mkdir(parents=True)
    (raw_dir / "r.json.gz").write_bytes(good)  # copied in by hand, no lock entry
    (raw_dir / "m.json.gz").write_bytes(broken)  # a broken copy

    rev, meta = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert (rev.status, rev.trust, rev.transferred) == ("verified", "first-use", 0)
    assert (meta.status, meta.trust) == ("fetched", "first-use")  # broken copy replaced
    assert (raw_dir / "m.json.gz").read_bytes() == good
    assert (raw_dir / f"m.json.gz.corrupt-{sha(broken)[:8]}").read_bytes() == broken
    assert [r.path for r in server.requests] == ["/m.json.gz"]
    lock = json.loads((raw_dir / LOCK_NAME).read_text())["files"]
    assert lock["r.json.gz"]["sha256"] == lock["m.json.gz"]["sha256"] == sha(good)


def test_local_folder_and_file_url_mirrors(make_spec, server, raw_dir, tmp_path, monkeypatch):
    data = gz_bytes(300)
    spec = make_spec({"reviews": ("sub/r.json.gz", data)})
    mirror = tmp_path / "mirror"
    (mirror / "sub").mkdir(parents=True)
    (mirror / "sub" / "r.json.gz").write_bytes(data)

    [res] = download_dataset(spec, raw_dir, mirror=str(mirror), config=FAST, progress=False)
    assert res.status == "fetched"
    assert res.url == (mirror / "sub" / "r.json.gz").as_uri()
    assert (raw_dir / "r.json.gz").read_bytes() == data  # flat in raw/
    assert server.requests == []  # the official URL was not touched

    (raw_dir / "r.json.gz").unlink()
    monkeypatch.setenv("ALIGNREC_MIRROR", mirror.as_uri())
    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)
    assert res.status == "fetched" and res.url.startswith("file://")
    assert server.requests == []


def test_missing_file_in_local_mirror_names_it(make_spec, raw_dir, tmp_path):
    spec = make_spec({"reviews": ("r.json.gz", gz_bytes(10))})
    [res] = download_dataset(spec, raw_dir, mirror=str(tmp_path), config=FAST, progress=False)
    assert res.status == "failed"
    assert f"{(tmp_path / 'r.json.gz').as_uri()} does not exist" in res.error
    assert "--mirror" in res.exception.hint


@pytest.mark.skipif(not dev_full_available(), reason="needs /dev/full to produce ENOSPC")
def test_no_space_left_is_a_clear_error(make_spec, server, raw_dir):
    spec = make_spec({"reviews": ("r.json.gz", gz_bytes(300))})
    raw_dir.mkdir(parents=True)
    # A real ENOSPC: the temporary file is a link to /dev/full, whose writes fail with ENOSPC.
    os.symlink("/dev/full", raw_dir / ".r.json.gz.part")

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "failed"
    assert "no space left on the device" in res.error
    assert "free some space" in res.exception.hint
    assert not (raw_dir / "r.json.gz").exists()


def test_config_rejects_bad_values():
    with pytest.raises(UsageError, match=r"download\.workers = 0 is out of range"):
        DownloadConfig(workers=0)
    assert DownloadConfig(backoff_base=1, backoff_cap=5).retry_policy().backoff(10) == 5
