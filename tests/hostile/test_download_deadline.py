"""Hostile servers for ``download``: a body that trickles and a server that never answers.

A per-read time-out never ends either (every byte restarts it); the low-speed rule
(``download.min_speed`` over ``download.speed_window``) does. Each attempt is cut about one
window after the bytes stopped coming, resumed with Range like a cut connection, and after
``download.retries`` cuts the file fails with one line naming the URL, the speed seen, the rule
and the fix. The ``.part`` files stay for a later resume; nothing outside ``raw/`` changes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from alignrec_data.registry import get_dataset
from scripts.amazon_mini import MINI_DIR
from tests.download.httpserver import Fault, FaultServer
from tests.hostile.conftest import assert_clean_error, run, tree_digest

FAST_AT_FIRST = 3000  # body bytes each attempt gets at full speed before the trickle


def _params(path: Path, **values: object) -> Path:
    path.write_text("download:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in values.items()))
    return path


def _offset(rng: str | None) -> int:
    return 0 if rng is None else int(rng.removeprefix("bytes=").rstrip("-"))


def test_download_from_a_trickling_server_is_cut_resumed_then_fails(sandbox: Path) -> None:
    data = sandbox / "data"
    raw = data / "amazon-mini" / "raw"
    params = _params(
        sandbox / "p.yaml",
        min_speed=1000,
        speed_window=1.0,
        retries=1,
        backoff_base=0.01,
        timeout=30.0,
        workers=2,
    )
    names = [f.name for f in get_dataset("amazon-mini").files]
    before = tree_digest(sandbox / "outside")
    with FaultServer(MINI_DIR) as srv:
        for name in names:
            for _ in range(2):  # the first try and one resume: 1 byte every 0.1 s after 3,000
                srv.add_fault(f"/{name}", Fault.trickle(0.1, after=FAST_AT_FIRST))
        t0 = time.monotonic()
        out = run(
            "download", "amazon-mini", "--data-dir", data, "--params", params, "--mirror", srv.url
        )
        elapsed = time.monotonic() - t0
        logs = {name: srv.requests_for(f"/{name}") for name in names}

    assert_clean_error(
        out,
        1,
        rf"GET {srv.url}\S+\.json\.gz is too slow: \d+ bytes in 1\.\d s \(\d+ bytes/s\)",
        r"below download\.min_speed = 1000 bytes/s over download\.speed_window = 1 s",
        r"cut 2 times",
        r"another mirror \(--mirror URL_OR_PATH or ALIGNREC_MIRROR\) or lower download\.min_speed",
    )
    assert "Hint:" not in out.stderr  # the one line says it all
    # Two attempts per file, the files in parallel: each cut about a window after it stalled.
    assert elapsed < 2 * (1.0 + 1.0) + 2, elapsed
    for log in logs.values():
        assert [_offset(r.range) for r in log] == [0, _offset(log[1].range)], log
        assert log[1].range is not None and _offset(log[1].range) >= FAST_AT_FIRST, log
    parts = {name: raw / f".{name}.part" for name in names}
    for name, part in parts.items():
        assert part.stat().st_size >= _offset(logs[name][1].range) + FAST_AT_FIRST
        assert part.read_bytes() == (MINI_DIR / name).read_bytes()[: part.stat().st_size]
    assert sorted(p.name for p in raw.iterdir()) == sorted(p.name for p in parts.values())
    assert sorted(p.name for p in data.iterdir()) == ["amazon-mini"]
    assert sorted(p.name for p in (data / "amazon-mini").iterdir()) == ["raw"]
    assert tree_digest(sandbox / "outside") == before

    # The part files are resumed by a later run against a healthy mirror.
    kept = {name: part.stat().st_size for name, part in parts.items()}
    with FaultServer(MINI_DIR) as srv:
        again = run(
            "download", "amazon-mini", "--data-dir", data, "--mirror", srv.url, "--format", "json"
        )
        ranges = {name: [r.range for r in srv.requests_for(f"/{name}")] for name in names}
    assert again.code == 0, again.stderr
    assert [f["status"] for f in json.loads(again.stdout)["files"]] == ["resumed", "resumed"]
    assert ranges == {name: [f"bytes={kept[name]}-"] for name in names}
    assert tree_digest(sandbox / "outside") == before


def test_download_from_a_server_that_never_answers_is_cut(sandbox: Path) -> None:
    data = sandbox / "data"
    params = _params(
        sandbox / "p.yaml", min_speed=1000, speed_window=1.0, retries=1, backoff_base=0.01
    )
    name = get_dataset("amazon-mini").files[0].name
    before = tree_digest(sandbox / "outside")
    with FaultServer(MINI_DIR) as srv:
        for _ in range(2):
            srv.add_fault(f"/{name}", Fault.silent())
        t0 = time.monotonic()
        out = run(
            "download", "amazon-mini", "--data-dir", data, "--params", params, "--mirror", srv.url
        )
        elapsed = time.monotonic() - t0
    # Not the 60 s read time-out per try: about one window each.
    assert elapsed < 2 * (1.0 + 1.0) + 2, elapsed
    assert_clean_error(
        out,
        1,
        rf"GET {srv.url}{name} is too slow: 0 bytes in 1\.\d s",
        r"lower download\.min_speed",
    )
    assert tree_digest(sandbox / "outside") == before
