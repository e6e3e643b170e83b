"""Benchmark: streaming ``prepare`` vs a pandas read-everything-then-filter baseline.

Generates N reviews in the Amazon 2023 format (gzipped JSONL, plus a metadata file), then runs
two preparations of the same data, each in its own subprocess so that peak RSS is measured
per run (``os.wait4`` rusage of that child):

- ``streaming``: ``alignrec_data.prepare.prepare_dataset`` (5-core, random split, item text).
- ``baseline``: the way MMRec's notebooks work: ``pandas.read_json(lines=True)`` of the whole
  reviews file, then drop duplicates, iterative 5-core with ``value_counts``, read the whole
  metadata file, join, per-user random split with ``groupby``.

Prints reviews per second (N / wall time of the child, start-up included) and peak RSS of each,
their ratios, and the machine. Not a test.

    python benchmarks/prepare_bench.py --n 1000000
    python benchmarks/prepare_bench.py --n 5000000 --skip-baseline
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import machine_line  # noqa: E402

DATASET = "amazon2023-baby-products"  # any 2023 registry id: only its raw file names are used
REVIEWS = "Baby_Products.jsonl.gz"
META = "meta_Baby_Products.jsonl.gz"
REPO = Path(__file__).resolve().parents[1]

_WORDS = (
    "soft warm bottle teether stroller blanket cotton organic safe easy clean travel night "
    "gift cute sturdy light foldable baby toddler"
).split()


def generate(raw: Path, n: int, seed: int = 0) -> None:
    """Write N reviews (users and items Zipf-like, ~1% duplicates) and one meta line per item."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_users, n_items = max(10, n // 4), max(10, n // 20)
    texts = [" ".join(rng.choice(_WORDS, size=40)) for _ in range(256)]
    line = (
        '{"rating": %d.0, "title": "Review %d", "text": "%s", "images": [], "asin": "V%09d", '
        '"parent_asin": "P%09d", "user_id": "U%012d", "timestamp": %d, "helpful_vote": %d, '
        '"verified_purchase": true}\n'
    )
    t0 = 1_500_000_000_000
    with gzip.open(raw / REVIEWS, "wt", compresslevel=1, encoding="utf-8") as f:
        for start in range(0, n, 200_000):
            m = min(200_000, n - start)
            users = (n_users * rng.random(m) ** 2).astype(np.int64)
            items = (n_items * rng.random(m) ** 1.5).astype(np.int64)
            ratings = rng.integers(1, 6, m)
            ts = t0 + rng.integers(0, 3 * 365 * 86400 * 1000, m)
            tx = rng.integers(0, len(texts), m)
            votes = rng.integers(0, 5, m)
            f.write(
                "".join(
                    line
                    % (
                        ratings[k],
                        start + k,
                        texts[tx[k]],
                        items[k],
                        items[k],
                        users[k],
                        ts[k],
                        votes[k],
                    )
                    for k in range(m)
                )
            )
    meta = (
        '{"main_category": "Baby", "title": "Item %d %s", "average_rating": 4.1, '
        '"rating_number": 3, '
        '"features": ["%s"], "description": ["%s <b>bold</b> &amp; more"], "price": 9.99, '
        '"images": [{"thumb": "https://m.media-amazon.com/images/I/%d._SS40_.jpg", '
        '"large": "https://m.media-amazon.com/images/I/%d.jpg", "variant": "MAIN", '
        '"hi_res": null}], '
        '"videos": [], "store": "Brand %d", "categories": ["Baby Products", "Nursery"], '
        '"details": {}, "parent_asin": "P%09d", "bought_together": null}\n'
    )
    with gzip.open(raw / META, "wt", compresslevel=1, encoding="utf-8") as f:
        for start in range(0, n_items, 100_000):
            ids = range(start, min(n_items, start + 100_000))
            f.write(
                "".join(
                    meta
                    % (i, texts[i % 256][:30], texts[i % 7][:20], texts[i % 256], i, i, i % 500, i)
                    for i in ids
                )
            )


def run_streaming(data_dir: Path) -> dict:
    from alignrec_data.prepare import PrepareConfig, prepare_dataset

    # Generated files were never downloaded: there is no recorded sha256 to verify.
    stats = prepare_dataset(DATASET, data_dir, PrepareConfig(), verify=False)
    return {"users": stats["users"], "items": stats["items"], "interactions": stats["interactions"]}


def run_baseline(data_dir: Path) -> dict:
    import pandas as pd

    raw = data_dir / DATASET / "raw"
    df = pd.read_json(raw / REVIEWS, lines=True, compression="gzip")
    df = df[["user_id", "parent_asin", "rating", "timestamp"]].rename(
        columns={"parent_asin": "item"}
    )
    df = df.sort_values("timestamp", kind="stable").drop_duplicates(
        ["user_id", "item"], keep="first"
    )
    while True:  # iterative 5-core
        uc = df.user_id.value_counts()
        ic = df.item.value_counts()
        ok = df.user_id.map(uc).ge(5) & df.item.map(ic).ge(5)
        if ok.all():
            break
        df = df[ok]
    meta = pd.read_json(raw / META, lines=True, compression="gzip")
    meta = meta[meta.parent_asin.isin(df.item.unique())]
    meta["text"] = (
        meta.title.fillna("")
        + " "
        + meta.store.fillna("")
        + " "
        + meta.categories.map(" ".join)
        + " "
        + meta.description.map(" ".join)
    )
    df["userID"] = df.user_id.astype("category").cat.codes
    df["itemID"] = df.item.astype("category").cat.codes
    rng = np.random.default_rng(0)
    df = df.sample(frac=1.0, random_state=rng)
    df["rank"] = df.groupby("userID").cumcount()
    n = df.groupby("userID").userID.transform("size")
    tot = (n * 2) // 10
    valid = np.where(n < 10, 1, tot // 2)
    test = np.where(n < 10, 1, tot - tot // 2)
    df["x_label"] = np.where(
        df["rank"] < n - valid - test, 0, np.where(df["rank"] < n - test, 1, 2)
    )
    return {
        "users": int(df.userID.nunique()),
        "items": int(df.itemID.nunique()),
        "interactions": len(df),
    }


def measure(kind: str, data_dir: Path) -> dict:
    """Run one preparation in a child process; wall time and that child's peak RSS."""
    env = dict(
        os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")
    )
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--run", kind, "--workdir", str(data_dir.parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        return {"kind": kind, "failed": f"exit status {status}"}
    result = json.loads(out.decode().strip().splitlines()[-1])
    return {"kind": kind, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, **result}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5_000_000, help="reviews to generate")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/alignrec-prepare-bench"))
    p.add_argument("--skip-baseline", action="store_true", help="only the streaming run")
    p.add_argument("--run", choices=["streaming", "baseline"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    data_dir = args.workdir / "data"
    if args.run:
        fn = run_streaming if args.run == "streaming" else run_baseline
        print(json.dumps(fn(data_dir)))
        return 0
    raw = data_dir / DATASET / "raw"
    stamp = raw / f".generated-{args.n}"
    if not stamp.exists():
        t0 = time.perf_counter()
        for f in raw.glob("*"):
            f.unlink()
        generate(raw, args.n)
        stamp.touch()
        print(
            f"generated {args.n:,} reviews in {time.perf_counter() - t0:.1f} s "
            f"({(raw / REVIEWS).stat().st_size / 2**20:.0f} MiB gz reviews, "
            f"{(raw / META).stat().st_size / 2**20:.0f} MiB gz meta)"
        )
    print(f"machine: {machine_line()}")
    runs = [measure("streaming", data_dir)]
    if not args.skip_baseline:
        runs.append(measure("baseline", data_dir))
    for r in runs:
        if "failed" in r:
            print(f"{r['kind']:<9} FAILED {r['failed']}")
            continue
        print(
            f"{r['kind']:<9} n={args.n:,}  {args.n / r['wall_s']:>10,.0f} reviews/s  wall "
            f"{r['wall_s']:7.1f} s  "
            f"peak RSS {r['peak_rss_mb']:8.0f} MB  -> {r['users']:,} users {r['items']:,} items "
            f"{r['interactions']:,} interactions"
        )
    if len(runs) == 2 and all("failed" not in r for r in runs):
        s, b = runs
        print(
            f"streaming vs baseline: {b['wall_s'] / s['wall_s']:.2f}x throughput, "
            f"{s['peak_rss_mb'] / b['peak_rss_mb']:.2f} of the peak RSS "
            f"(goals: >= 3x, < 0.33 and < 2048 MB)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
