"""Sharded feature extraction: the worker step, the one merge, and the torchrun entry point.

A sharded run splits the items among workers; each worker computes the rows of its items for
every ``extract.variants`` entry (:func:`compute_shard`, the same encoders as one process)
and writes one part per variant (:mod:`alignrec_data.engine.shards`); then one process merges
the parts into ``features/<variant>.parquet`` with the same schema and metadata as
:func:`alignrec_model.extract.extract` writes (:func:`merge_run`). Two engines drive it:

- Ray (``alignrec-data extract DS --engine ray``, :mod:`alignrec_data.engine.ray_extract`):
  contiguous item-id ranges, one Ray task per range.
- torchrun, for clusters without Ray::

      torchrun --nproc-per-node N -m alignrec_model.extract_dist DS --data-dir D --params P

  Rank ``r`` of ``W`` computes the items ``r::W`` (part ``r``), waits at a barrier (gloo on
  CPU, NCCL on CUDA, one GPU a rank: ``LOCAL_RANK``), and rank 0 merges.

Parts are keyed by the entry, the weights' sha256 and the item ids and texts, so a rerun after
a killed worker or driver keeps the finished parts and computes only the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignrec_data.atomic import write_json
from alignrec_data.engine import shards
from alignrec_data.paths import DatasetPaths
from alignrec_model.extract import METRICS_FILE, ExtractConfig, record_speed
from alignrec_model.extractors import VariantEntry, build_encoder, entry_source, weights_sha256
from alignrec_model.pretrain import read_items
from alignrec_model.runtime import resolve_device

logger = logging.getLogger(__name__)


def entry_fingerprints(entries: Sequence[VariantEntry], paths: DatasetPaths) -> list[str]:
    """The weights' sha256 of each entry (the part keys depend on it).

    Raises:
        UsageError: A model that cannot be found (raised by building its encoder, which
            names the fix).
    """
    out = []
    for entry in entries:
        sha = weights_sha256(entry_source(entry, paths).path)
        if not sha:
            build_encoder(entry, paths, "cpu")  # raises the kind's own error for missing weights
        out.append(sha)
    return out


def compute_shard(
    paths: DatasetPaths,
    cfg: ExtractConfig,
    fingerprints: Sequence[str],
    ids: Sequence[int],
    number: int,
    device: torch.device | str,
    threads: int,
) -> dict[str, Any]:
    """Write part ``number`` of every variant for the items ``ids`` (the worker step).

    A part whose recorded key matches is kept (an earlier run wrote it).

    Args:
        paths: The dataset's paths (the same path on every node).
        cfg: The ``extract`` params.
        fingerprints: :func:`entry_fingerprints` of ``cfg.entries()``.
        ids: The item ids of this shard (any order; the part keeps it).
        number: The part number.
        device: Where the encoders run.
        threads: torch CPU threads of this worker (``extract.num_threads`` when set, else the
            CPUs given to it), so that workers do not oversubscribe the cores.

    Returns:
        ``{"number", "items", "computed": [variants], "kept": [variants], "seconds",
        "cpu_seconds"}`` (wall and CPU time of this process for the shard).
    """
    device = torch.device(device)
    torch.set_num_threads(max(1, threads))
    items = read_items(paths)
    rows = items.iloc[np.asarray(ids, dtype=np.int64)].reset_index(drop=True)
    texts = rows["text"].fillna("").astype(str).tolist()
    ids = rows["item_id"].to_numpy()
    images: dict = {}
    out: dict[str, Any] = {"number": number, "items": len(ids), "computed": [], "kept": []}
    # What the rows depend on besides the entry, weights and items.
    settings = {"device": device.type, "bf16": bool(cfg.bf16 and device.type == "cuda")}
    t0, c0 = time.perf_counter(), time.process_time()
    for entry, sha in zip(cfg.entries(), fingerprints, strict=True):
        key = shards.shard_key(dataclasses.asdict(entry), sha, ids, texts, settings)
        variants = entry.variants()
        targets = {v: shards.part_path(paths.features, v, number) for v in variants.values()}
        if all(shards.part_key(p) == key for p in targets.values()):
            out["kept"] += list(targets)
            continue
        encoder = build_encoder(entry, paths, device, cfg.bf16)
        feats = encoder.rows(paths, rows, images)
        for output, variant in variants.items():
            matrix, missing = feats[variant]
            meta = encoder.metadata(output, matrix.shape[1])
            shards.write_part(targets[variant], ids, matrix, missing, meta, key)
            out["computed"].append(variant)
        del encoder
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    return out


def merge_run(
    paths: DatasetPaths,
    cfg: ExtractConfig,
    numbers: Sequence[int],
    seconds: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge every variant's parts ``numbers``, remove the shards, write the metrics.

    Args:
        paths: The dataset's paths.
        cfg: The ``extract`` params.
        numbers: The part numbers of the run.
        seconds: Wall time of the sharded computation (``items_per_s`` of every entry is
            items / this time: the entries ran one after the other in each worker).
        extra: More metrics (engine, workers, shards).

    Returns:
        The metrics written to ``metrics/extract.json`` (the single process's keys, plus
        ``extra``).
    """
    from alignrec_data.features import read_features

    items = read_items(paths)
    keys = items["item_key"].astype(str).tolist()
    n = len(keys)
    metrics: dict[str, Any] = {"items": n, "variants": {}, "items_per_s": {}}
    variants = [v for e in cfg.entries() for v in e.variants().values()]
    for variant in variants:
        target = shards.merge_parts(paths.features, variant, keys, numbers)
        _, matrix, missing = read_features(target)
        metrics["variants"][variant] = {"dim": int(matrix.shape[1]), "missing": int(missing.sum())}
    for entry in cfg.entries():
        record_speed(metrics, entry, n, seconds)
    shards.remove_shards(paths.features, variants)
    metrics.update(extra or {})
    write_json(paths.metrics / METRICS_FILE, metrics)
    logger.info("merged %d feature files for %d items", len(variants), n)
    return metrics


def run_rank(data_dir: str | Path, dataset: str, cfg: ExtractConfig) -> dict[str, Any] | None:
    """One torchrun rank: compute items ``rank::world``, barrier, rank 0 merges.

    Returns:
        The metrics on rank 0, None on the other ranks.
    """
    import torch.distributed as dist

    paths = DatasetPaths.of(data_dir, dataset)
    device = resolve_device(cfg.device, "extract")
    if device.type == "cuda":  # one GPU a rank: cuda:LOCAL_RANK
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        n = len(read_items(paths))
        fingerprints = entry_fingerprints(cfg.entries(), paths)
        threads = cfg.num_threads or max(1, (os.cpu_count() or 1) // world)
        t0 = time.perf_counter()
        ids = np.arange(rank, n, world)  # rank r takes the items r::world
        done = compute_shard(paths, cfg, fingerprints, ids, rank, device, threads)
        logger.info("rank %d: %d items, computed %s", rank, done["items"], done["computed"])
        reports: list[Any] = [None] * world
        dist.all_gather_object(reports, done)  # also the barrier: every part is written
        seconds = time.perf_counter() - t0
        metrics = None
        if rank == 0:
            kept = sum(not r["computed"] for r in reports)
            extra = {"engine": "torchrun", "workers": world, "shards": world, "shards_kept": kept}
            metrics = merge_run(paths, cfg, range(world), seconds, extra)
        dist.barrier()
        return metrics
    finally:
        dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``-m alignrec_model.extract_dist DS [--data-dir D] [--params P]``."""
    from alignrec_data.config import load_settings
    from alignrec_data.errors import UsageError

    parser = argparse.ArgumentParser(prog="alignrec_model.extract_dist", description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--data-dir", default="data", type=Path)
    parser.add_argument("--params", default=None, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_settings(args.params, "extract", ExtractConfig, args.dataset)
        metrics = run_rank(args.data_dir, args.dataset, cfg)
    except UsageError as err:
        print(f"Error: {err}", file=sys.stderr)  # noqa: T201 (the entry point's one handler)
        return 2
    if metrics is not None:
        import json

        print(json.dumps(metrics, sort_keys=True))  # noqa: T201 (results to stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
