"""The low-speed rule: a server that trickles is cut, resumed with Range, then failed."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from alignrec_data.download import DownloadConfig, download_dataset, raise_for_failures
from alignrec_data.errors import DownloadError, UsageError
from alignrec_data.http import RetryPolicy, TooSlow, Watchdog, make_session, open_stream
from tests.download.conftest import FAST, gz_bytes
from tests.download.httpserver import Fault

# 1,000 bytes/s over 1 s: the trickles below (10 bytes/s) break it, a fast server never does.
SLOW_RULE = replace(FAST, retries=2, min_speed=1000, speed_window=1.0, timeout=30.0)


def test_trickled_body_is_cut_resumed_with_range_then_fails(make_spec, server, raw_dir):
    data = gz_bytes(3000)
    spec = make_spec({"reviews": ("r.json.gz", data)})
    for _ in range(3):  # every attempt: 2,000 bytes at once, then 1 byte every 0.1 s
        server.add_fault("/r.json.gz", Fault.trickle(0.1, after=2000))

    t0 = time.monotonic()
    [res] = download_dataset(spec, raw_dir, config=SLOW_RULE, progress=False)
    elapsed = time.monotonic() - t0

    assert res.status == "failed"
    # 3 attempts, each cut about one window (+ one check tick) after it stopped moving.
    assert elapsed < 3 * (SLOW_RULE.speed_window + 1.0), elapsed
    log = server.requests_for("/r.json.gz")
    assert len(log) == 3
    assert log[0].range is None
    offsets = [int(r.range.removeprefix("bytes=").rstrip("-")) for r in log[1:]]
    assert offsets[0] >= 2000 and offsets[1] >= offsets[0] + 2000, offsets  # resumed, not redone
    part = raw_dir / ".r.json.gz.part"
    assert part.read_bytes() == data[: part.stat().st_size]  # kept for a later resume
    assert part.stat().st_size >= offsets[1] + 2000
    assert not (raw_dir / "r.json.gz").exists()
    with pytest.raises(DownloadError) as ei:
        raise_for_failures([res])
    msg = str(ei.value)
    assert "\n" not in msg
    assert f"GET {server.url}r.json.gz is too slow: " in msg
    assert "below download.min_speed = 1000 bytes/s over download.speed_window = 1 s" in msg
    assert "cut 3 times" in msg and str(part) in msg
    assert "--mirror" in msg and "lower download.min_speed" in msg

    # A later run against a healthy server resumes the part file.
    kept = part.stat().st_size
    [again] = download_dataset(spec, raw_dir, config=SLOW_RULE, progress=False)
    assert again.status == "resumed"
    assert (raw_dir / "r.json.gz").read_bytes() == data
    assert server.requests_for("/r.json.gz")[-1].range == f"bytes={kept}-"


def test_steady_slow_server_above_the_rule_is_not_cut(make_spec, server, raw_dir):
    # ~10 KB/s with 1 MiB chunks: no chunk fills within the 0.5 s window, but bytes arrive
    # steadily (read1), so the rule (500 bytes/s) holds.
    data = gz_bytes(150)
    spec = make_spec({"reviews": ("r.json.gz", data)})
    server.add_fault("/r.json.gz", Fault.trickle(0.0001, after=0))
    cfg = replace(SLOW_RULE, min_speed=500, speed_window=0.5, chunk_size=1 << 20, retries=0)

    [res] = download_dataset(spec, raw_dir, config=cfg, progress=False)

    assert res.status == "fetched", res.error
    assert (raw_dir / "r.json.gz").read_bytes() == data


def test_rule_off_with_min_speed_zero(make_spec, server, raw_dir):
    data = b"u1,i1,5.0,1400000000\n"  # 21 bytes at 1 byte / 0.05 s: about 1 s
    spec = make_spec({"ratings": ("r.csv", data)})
    server.add_fault("/r.csv", Fault.trickle(0.05))
    cfg = replace(SLOW_RULE, min_speed=0, speed_window=0.3, retries=0)

    [res] = download_dataset(spec, raw_dir, config=cfg, progress=False, all_files=True)

    assert res.status == "fetched", res.error
    assert (raw_dir / "r.csv").read_bytes() == data


def test_server_that_never_answers_is_cut_by_the_rule(make_spec, server, raw_dir):
    spec = make_spec({"reviews": ("r.json.gz", gz_bytes(100))})
    for _ in range(3):
        server.add_fault("/r.json.gz", Fault.silent())
    cfg = replace(SLOW_RULE, retries=1)

    t0 = time.monotonic()
    [res] = download_dataset(spec, raw_dir, config=cfg, progress=False)
    elapsed = time.monotonic() - t0

    assert res.status == "failed"
    assert elapsed < 2 * (cfg.speed_window + 1.0), elapsed  # not timeout (30 s) per try
    assert "is too slow: 0 bytes in 1." in res.error
    assert "lower download.min_speed" in res.error
    assert len(server.requests_for("/r.json.gz")) == 2  # the first try and one retry


def test_watchdog_cuts_open_stream_and_counts_bytes(server, server_root: Path):
    (server_root / "f.bin").write_bytes(bytes(range(256)) * 100)
    server.add_fault("/f.bin", Fault.trickle(0.05, after=300))
    session = make_session(RetryPolicy(0))
    got = bytearray()
    t0 = time.monotonic()
    with pytest.raises(TooSlow) as ei, Watchdog(min_speed=1000, window=0.5) as dog:
        stream = open_stream(server.url + "f.bin", 0, session=session, timeout=30, chunk_size=4096)
        try:
            for chunk in stream.chunks:
                got += chunk
        finally:
            stream.close()
    assert time.monotonic() - t0 < 2.0
    assert dog.cuts == 1 and dog.expired
    assert ei.value.seen < 500 and ei.value.span >= 0.5
    assert len(got) >= 300 and got == (bytes(range(256)) * 100)[: len(got)]  # nothing lost


@pytest.mark.parametrize(("key", "value"), [("min_speed", -1.0), ("speed_window", 0.0)])
def test_bad_rule_values_are_refused(key, value):
    with pytest.raises(UsageError, match=rf"download\.{key} = {value!r} is out of range"):
        DownloadConfig(**{key: value})


def test_time_the_reader_spends_on_a_chunk_is_not_the_servers(server, server_root: Path):
    # A fast server, a slow consumer (a slow disk, or hashing a resumed part file): each chunk
    # takes longer than the window to handle, yet the server is never cut.
    body = bytes(range(256)) * 48  # 3 chunks of 4,096 bytes
    (server_root / "f.bin").write_bytes(body)
    session = make_session(RetryPolicy(0))
    got = bytearray()
    with Watchdog(min_speed=1000, window=0.4) as dog:
        stream = open_stream(server.url + "f.bin", 0, session=session, timeout=30, chunk_size=4096)
        try:
            for chunk in stream.chunks:
                time.sleep(0.6)
                got += chunk
        finally:
            stream.close()
    assert (dog.cuts, bytes(got)) == (0, body)
