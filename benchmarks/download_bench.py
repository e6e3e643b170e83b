"""Download throughput versus curl on the same loopback server, and time to resume at 50 %.

Serves one file of ``--size-mb`` MB (random bytes) from the test suite's threaded HTTP server
(``tests/download/httpserver.py``: ``ThreadingHTTPServer`` sending bodies with
``socket.sendfile``, so the server is not the bottleneck) on 127.0.0.1, then in the same run,
alternating, ``--repeats`` times each:

* ``curl -sS --fail -o FILE URL`` (transfer only);
* ``alignrec_data.download.download_dataset`` with the file's sha256 in the registry entry
  (transfer + size + sha256 check + rename + lock file; what a user waits for);
* our transport alone (``alignrec_data.http.open_stream`` to a file, no verification), to
  separate the HTTP path from the sha256 cost.

The sha256 of every byte is required before the rename, so a verified download can never be
faster than one core hashing: the script also prints hashlib's sha256 speed on this machine
(CPUs without SHA extensions hash at a few hundred MB/s, below curl on loopback).

Then the resume case: the server cuts the connection after 50 % of the body, the first call
(with ``retries=0``) fails and leaves the ``.part`` file, and a second call resumes it with a
Range request; its time is reported next to a full download.

    PYTHONPATH=. .venv/bin/python benchmarks/download_bench.py --size-mb 1024
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_line  # noqa: E402

from alignrec_data.download import DownloadConfig, download_dataset  # noqa: E402
from alignrec_data.http import RetryPolicy, make_session, open_stream  # noqa: E402
from alignrec_data.registry import DatasetSpec, FileSpec  # noqa: E402
from tests.download.httpserver import Fault, FaultServer  # noqa: E402


def make_file(path: Path, size: int) -> str:
    """Write ``size`` pseudo-random bytes (a 16 MiB random block repeated); return sha256."""
    block = os.urandom(16 << 20)
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            part = block[: min(left, len(block))]
            f.write(part)
            h.update(part)
            left -= len(part)
    return h.hexdigest()


def spec_for(url: str, name: str, size: int, sha: str) -> DatasetSpec:
    return DatasetSpec(
        id="bench",
        release="2014",
        category="Bench",
        description="",
        license="",
        citation="",
        homepage="",
        base_url=url,
        files=(FileSpec("reviews", name, size, sha),),
    )


def time_curl(url: str, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(out), url], check=True)
    dt = time.perf_counter() - t0
    out.unlink()
    return dt


def sha256_speed(nbytes: int = 256 << 20) -> float:
    """MB/s of hashlib.sha256 on one core (in memory)."""
    data = os.urandom(16 << 20)
    h = hashlib.sha256()
    t0 = time.perf_counter()
    for _ in range(nbytes // len(data)):
        h.update(data)
    return nbytes / 1e6 / (time.perf_counter() - t0)


def time_transport(url: str, out: Path, chunk_size: int) -> float:
    """Our HTTP path alone: open_stream (requests + urllib3) to a file, no verification."""
    session = make_session(RetryPolicy(0))
    t0 = time.perf_counter()
    stream = open_stream(url, 0, session=session, timeout=60, chunk_size=chunk_size)
    with out.open("wb") as f:
        for chunk in stream.chunks:
            f.write(chunk)
    stream.close()
    dt = time.perf_counter() - t0
    out.unlink()
    return dt


def time_ours(spec: DatasetSpec, raw: Path, cfg: DownloadConfig) -> float:
    t0 = time.perf_counter()
    [res] = download_dataset(spec, raw, config=cfg, progress=False)
    dt = time.perf_counter() - t0
    if res.status != "fetched":
        raise SystemExit(f"download failed: {res.error}")
    shutil.rmtree(raw)
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each client (best is used)")
    ap.add_argument("--chunk-kb", type=int, default=1024, help="our read size in KiB")
    args = ap.parse_args(argv)
    if shutil.which("curl") is None:
        print("curl not found on PATH; cannot compare", file=sys.stderr)
        return 1
    print(f"machine: {machine_line()}")
    size = args.size_mb << 20
    cfg = DownloadConfig(workers=1, retries=3, backoff_base=0.01, chunk_size=args.chunk_kb << 10)
    with tempfile.TemporaryDirectory(prefix="alignrec-dlbench-") as tmp:
        tmp = Path(tmp)
        root = tmp / "srv"
        root.mkdir()
        t0 = time.perf_counter()
        sha = make_file(root / "big.bin", size)
        print(f"file: {args.size_mb} MiB random bytes, written in {time.perf_counter() - t0:.1f} s")
        with FaultServer(root) as srv:
            url = srv.url + "big.bin"
            spec = spec_for(srv.url, "big.bin", size, sha)
            curl_t, ours_t, transport_t = [], [], []
            for _ in range(args.repeats):
                curl_t.append(time_curl(url, tmp / "curl.out"))
                ours_t.append(time_ours(spec, tmp / "raw", cfg))
                transport_t.append(time_transport(url, tmp / "t.out", cfg.chunk_size))
            mb = size / 1e6
            best_curl, best_ours = min(curl_t), min(ours_t)
            print(
                f"curl          : best {best_curl:.2f} s = {mb / best_curl:7.0f} MB/s   "
                f"(runs: {', '.join(f'{t:.2f}' for t in curl_t)} s)"
            )
            print(
                f"alignrec-data : best {best_ours:.2f} s = {mb / best_ours:7.0f} MB/s   "
                f"(runs: {', '.join(f'{t:.2f}' for t in ours_t)} s; includes sha256 check)"
            )
            best_tr = min(transport_t)
            print(
                f"our transport : best {best_tr:.2f} s = {mb / best_tr:7.0f} MB/s   "
                f"(runs: {', '.join(f'{t:.2f}' for t in transport_t)} s; no verification; "
                f"ratio to curl {best_curl / best_tr:.2f})"
            )
            print(
                f"sha256 (hashlib, one core, in memory): {sha256_speed():.0f} MB/s "
                "= the ceiling of any verified download here"
            )
            ratio = best_curl / best_ours
            print(
                f"ratio (ours / curl throughput): {ratio:.2f}  (goal >= 0.80: "
                f"{'met' if ratio >= 0.8 else 'NOT met'}); median ratio "
                f"{statistics.median(curl_t) / statistics.median(ours_t):.2f}"
            )

            # Resume after a cut at 50 %.
            raw = tmp / "raw"
            srv.add_fault("/big.bin", Fault.cut(size // 2))
            [first] = download_dataset(spec, raw, config=replace(cfg, retries=0), progress=False)
            part = raw / ".big.bin.part"
            assert first.status == "failed" and part.stat().st_size == size // 2, first
            n_before = len(srv.requests)
            t0 = time.perf_counter()
            [res] = download_dataset(spec, raw, config=cfg, progress=False)
            resume_t = time.perf_counter() - t0
            ranges = [r.range for r in srv.requests[n_before:]]
            print(
                f"resume after a cut at 50 %: {resume_t:.2f} s (status {res.status}, "
                f"{res.transferred / 1e6:.0f} MB transferred, requests {ranges}); "
                f"a full download takes {best_ours:.2f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
