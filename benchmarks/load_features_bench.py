"""Load 60,000 x 768 float32 features with ``load_features`` (torch) vs ``numpy.load``.

    python benchmarks/load_features_bench.py [--items 60000] [--dim 768] [--repeat 5]

Builds a release folder with one feature config (default 500 MB shards: one shard) in a temp
folder, then times: ``numpy.load`` of the same matrix saved as ``.npy`` (page cache warm),
the first ``load_features`` (sha256 check of the shard, parquet read, cache write) and the
cached ``load_features`` (memory-mapped ``.npy`` cache, ``torch.from_numpy``). Because a
cached load maps the file lazily, the "+ sum" rows also time one full pass over the data,
which is what a fair comparison with ``numpy.load`` (which reads everything) needs.
Goal: cached load within 2x of ``numpy.load``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    import torch

    from alignrec_data.features import write_features
    from alignrec_data.loaders import load_features
    from alignrec_data.release import build_release

    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=60_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n, d = args.items, args.dim

    tmp = Path(tempfile.mkdtemp(prefix="alignrec-bench-"))
    try:
        rng = np.random.default_rng(0)
        matrix = rng.standard_normal((n, d), dtype=np.float32)
        keys = [f"B{i:09d}" for i in range(n)]
        ds = tmp / "data" / "bench"
        (ds / "prepared").mkdir(parents=True)
        pq.write_table(
            pa.table({"item_id": pa.array(np.arange(n)), "item_key": pa.array(keys)}),
            ds / "prepared" / "items.parquet",
        )
        pq.write_table(
            pa.table(
                {
                    "user_id": pa.array([0, 0, 0]),
                    "item_id": pa.array([0, 1, 2]),
                    "split": pa.array(["train", "valid", "test"]),
                }
            ),
            ds / "prepared" / "interactions.parquet",
        )
        write_features(ds / "features" / "alignrec.parquet", keys, matrix)
        t = time.perf_counter()
        build_release(tmp / "data", "bench", tmp / "release")
        t_release = time.perf_counter() - t
        npy = tmp / "matrix.npy"
        np.save(npy, matrix)
        cache = tmp / "cache"

        np.load(npy)  # warm the page cache
        t_np = best(lambda: np.load(npy), args.repeat)
        t_np_torch = best(lambda: torch.from_numpy(np.load(npy)), args.repeat)

        t = time.perf_counter()
        first = load_features(tmp / "release", "alignrec", return_type="torch", cache_dir=cache)
        t_first = time.perf_counter() - t
        assert first.shape == (n, d) and torch.equal(first, torch.from_numpy(matrix))

        def cached():
            return load_features(tmp / "release", "alignrec", return_type="torch", cache_dir=cache)

        cached()
        t_cached = best(cached, args.repeat)
        t_cached_sum = best(lambda: float(cached().sum()), args.repeat)
        t_np_sum = best(lambda: float(torch.from_numpy(np.load(npy)).sum()), args.repeat)
        assert torch.equal(cached(), first)

        shard = next((tmp / "release" / "features-alignrec").glob("*.parquet"))
        print(
            f"machine: {os.cpu_count()} cpus, {cpu_model()}, "
            f"torch threads {torch.get_num_threads()}"
        )
        print(
            f"matrix: {n} x {d} float32 = {matrix.nbytes / 2**20:.1f} MiB; "
            f"shard {shard.stat().st_size / 2**20:.1f} MiB (zstd); release build {t_release:.2f} s"
        )
        print(f"{'operation':<52} {'seconds':>9} {'x numpy.load':>13}")
        rows = [
            ("numpy.load(.npy)", t_np, t_np),
            ("torch.from_numpy(numpy.load(.npy))", t_np_torch, t_np),
            ("load_features, first load (verify+parquet+cache)", t_first, t_np),
            ("load_features, cached (mmap) -> torch", t_cached, t_np),
            ("numpy.load -> torch, + sum over all values", t_np_sum, t_np_sum),
            ("load_features cached -> torch, + sum over all values", t_cached_sum, t_np_sum),
        ]
        for name, sec, ref in rows:
            print(f"{name:<52} {sec:>9.4f} {sec / ref:>12.2f}x")
        ok = t_cached <= 2 * t_np and t_cached_sum <= 2 * t_np_sum
        print(f"goal (cached load within 2x of numpy.load): {'met' if ok else 'NOT met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
