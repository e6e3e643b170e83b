"""Extract stage: one process vs 1 and 2 Ray CPU workers vs torchrun 2 ranks, side by side.

    .venv/bin/python benchmarks/scale_extract.py [--items 4000] [--minilm-items 1000] 2>/dev/null

Synthetic items (texts of 4-40 words, 48x40 photos of noise, every 7th item without one) are
encoded by a tiny random BERT (2 layers, 32 wide: ``hf-text``) and a tiny ViT (32-pixel
inputs: ``hf-image``), saved with ``save_pretrained`` like the tests'. In one run:

1. ``one process, 1 thread`` and ``one process, 2 threads``: :func:`alignrec_model.extract.extract`;
2. ``ray 1 worker`` and ``ray 2 workers`` (one thread each): ``extract_ray`` on a local Ray
   instance with 2 CPUs, after one warm-up run (the workers' first imports are not timed;
   the cold run is printed too);
3. ``torchrun 2 ranks``: ``torchrun --standalone --nproc-per-node 2 -m
   alignrec_model.extract_dist`` (wall time with start-up, and the compute time it records);
4. with ``--minilm-items`` > 0, the real all-MiniLM-L6-v2 (built-in ``minilm-text``): one
   process vs ray 2 workers.

Every configuration runs twice on fresh copies of the inputs; the second (warm) run is the
number, the first is printed for Ray as ``cold`` (worker start-up and first imports). Every
sharded run's files are compared with the one-process files (same keys, missing flags and
metadata; the largest row difference is printed: 0 for the tiny models, up to about 1e-7 for
MiniLM, whose length-sorted batches differ when the items are split). Prints the machine,
items/s, the ratios to one process (1 thread) and the CPU time an item (this process plus
the Ray tasks': on a machine whose cores other jobs use, the wall-time ratio says little and
the CPU time shows what sharding costs). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402
from _machine import machine_line  # noqa: E402
from PIL import Image  # noqa: E402

from alignrec_data.config import load_section  # noqa: E402
from alignrec_data.engine.ray_extract import extract_ray  # noqa: E402
from alignrec_data.features import read_features  # noqa: E402
from alignrec_model.extract import ExtractConfig, extract  # noqa: E402
from tests.encoder._data import write_dataset  # noqa: E402
from tests.feature_zoo._models import tiny_bert, tiny_vit  # noqa: E402

WORDS = "red wool scarf blue cotton shirt baby bottle soft warm knit cap sock toy".split()


def make_items(data_dir: Path, n: int, images: bool) -> None:
    """``n`` synthetic items (seeded) under ``data_dir/bench``."""
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, int(rng.integers(4, 41)))) for _ in range(n)]
    pics = [
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
        if images and i % 7 else None
        for i in range(n)
    ]  # fmt: skip
    write_dataset(data_dir, "bench", texts, pics)


def copy_inputs(src: Path, dst: Path) -> None:
    for sub in ("prepared", "images"):
        shutil.copytree(src / "bench" / sub, dst / "bench" / sub)


def max_diff(a: Path, b: Path) -> float | None:
    """Largest absolute difference of the rows of ``a``'s and ``b``'s feature files.

    None when the keys, ``missing`` flags or metadata of some file differ.
    """
    worst = 0.0
    for f in sorted((a / "bench" / "features").glob("*.parquet")):
        g = b / "bench" / "features" / f.name
        (ka, ra, ma), (kb, rb, mb) = read_features(f), read_features(g)
        same_meta = pq.read_schema(f).metadata == pq.read_schema(g).metadata
        if list(ka) != list(kb) or list(ma) != list(mb) or not same_meta:
            return None
        worst = max(worst, float(np.abs(ra - rb).max()))
    return worst


def write_params(path: Path, variants: list, threads: int) -> ExtractConfig:
    section = {"variants": variants, "num_threads": threads, "device": "cpu", "batch_size": 64}
    path.write_text(yaml.safe_dump({"extract": section}))
    return load_section(path, "extract", ExtractConfig)


def timed(fn) -> tuple[float, float]:
    """Wall seconds of ``fn()`` and the CPU seconds it used (this process + its Ray tasks)."""
    t0, c0 = time.perf_counter(), time.process_time()
    metrics = fn()
    cpu = time.process_time() - c0 + metrics.get("task_cpu_seconds", 0.0)
    return time.perf_counter() - t0, cpu


def torchrun(data_dir: Path, params: Path) -> tuple[float, float]:
    """Wall seconds of a 2-rank torchrun (start-up included) and the compute seconds."""
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node",
           "2", "-m", "alignrec_model.extract_dist", "bench", "--data-dir", str(data_dir),
           "--params", str(params)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, metrics["items"] / next(iter(metrics["items_per_s"].values()))


def compare(tmp: Path, n: int, variants: list, label: str, full: bool) -> None:
    """Run every configuration on ``n`` items (twice: cold, then warm) and print the table."""
    base = tmp / f"{label}-inputs"
    images = any(isinstance(v, dict) and v["kind"] == "hf-image" for v in variants)
    make_items(base, n, images=images)
    rows: list[tuple[str, float, float | None]] = []
    runs = 0

    def run(name: str, fn, threads: int = 1, cold: bool = False, **kw) -> Path:
        nonlocal runs
        for attempt in ("cold", "warm"):
            runs += 1
            data = tmp / f"{label}-{runs}"
            copy_inputs(base, data)
            cfg = write_params(data / "params.yaml", variants, threads)
            seconds, cpu = timed(lambda: fn(data, cfg, **kw))  # noqa: B023 (called at once)
            if attempt == "warm" or cold:
                rows.append((f"{name} ({attempt})" if cold else name, seconds, cpu))
        return data

    def one(data: Path, cfg: ExtractConfig) -> dict:
        return extract(data, "bench", cfg)

    def ray(data: Path, cfg: ExtractConfig, workers: int) -> dict:
        return extract_ray(data, "bench", cfg, workers=workers, progress=False)

    ref = run("one process, 1 thread", one)
    diffs = {}
    if full:
        run("one process, 2 threads", one, threads=2)
        run("ray 1 worker", ray, cold=True, workers=1)
    diffs["ray 2 workers"] = max_diff(ref, run("ray 2 workers", ray, cold=True, workers=2))
    if full:
        data = tmp / f"{label}-torchrun"
        copy_inputs(base, data)
        write_params(data / "params.yaml", variants, 1)
        wall, compute = torchrun(data, data / "params.yaml")
        rows.append(("torchrun 2 ranks (wall)", wall, None))
        rows.append(("torchrun 2 ranks (compute)", compute, None))
        diffs["torchrun"] = max_diff(ref, data)
    t1 = rows[0][1]
    print(f"\n{label}: {n} items; max |row difference| to one process: {diffs}")
    print(f"{'run':30s} {'seconds':>8s} {'items/s':>9s} {'vs 1 proc':>9s} {'CPU-ms/item':>11s}")
    for name, seconds, cpu in rows:
        per = f"{cpu / n * 1e3:11.2f}" if cpu is not None else f"{'-':>11s}"
        print(f"{name:30s} {seconds:8.2f} {n / seconds:9.1f} {t1 / seconds:8.2f}x {per}")
    print(f"load average after: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=4000)
    p.add_argument("--minilm-items", type=int, default=1000)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=128 * 2**20)  # fmt: skip
    print(f"machine: {machine_line()}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bert, vit = tiny_bert(tmp / "bert"), tiny_vit(tmp / "vit")
        tiny = [
            {"name": "bert", "kind": "hf-text", "model": str(bert)},
            {"name": "vit", "kind": "hf-image", "model": str(vit)},
        ]
        compare(tmp, args.items, tiny, "tiny BERT + tiny ViT", full=True)
        if args.minilm_items:
            compare(tmp, args.minilm_items, ["minilm-text"], "all-MiniLM-L6-v2", full=False)
    ray.shutdown()


if __name__ == "__main__":
    main()
