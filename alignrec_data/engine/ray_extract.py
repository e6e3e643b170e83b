"""The extract stage on a Ray cluster (``alignrec-data extract DS --engine ray``).

The items are split into contiguous item-id ranges (:mod:`alignrec_data.engine.plan`); each
range is one Ray task that runs every ``extract.variants`` entry on its items
(:func:`alignrec_model.extract_dist.compute_shard`: the encoders of one process) and writes one
part per variant under ``features/.shards/``. When every task is done the driver merges the
parts into ``features/<variant>.parquet`` (:func:`alignrec_model.extract_dist.merge_run`:
same schema and metadata as one process) and removes the shards.

Resources: a task asks for one GPU when the cluster has GPUs and ``extract.device`` is not
``cpu``, else for one CPU; it sets its torch threads to ``extract.num_threads`` when set,
else to its one CPU, so tasks do not oversubscribe the cores.

Resumable: a killed worker's task is run again by Ray (up to :data:`TASK_RETRIES` times); a
killed driver leaves the finished parts, which a rerun with the same entries, models and items
keeps (the part keys, :func:`alignrec_data.engine.shards.shard_key`). The data folder must be
visible at the same path from every node; ``ray`` is imported only when this engine runs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tqdm.auto import tqdm

from alignrec_data.engine.plan import ShardTask, plan_shards, shard_count
from alignrec_data.engine.ray_images import TASK_RETRIES, _connected, require_ray, run_tasks
from alignrec_data.paths import DatasetPaths

log = logging.getLogger(__name__)

# Most items in one shard task (more tasks than workers only when a range would be larger).
SHARD_ITEMS = 20_000


def _shard_task(
    paths: DatasetPaths,
    cfg: Any,
    fingerprints: list[str],
    ids: list[int],
    number: int,
) -> dict[str, Any]:
    """One Ray task: :func:`~alignrec_model.extract_dist.compute_shard` on this worker's device.

    Its torch threads: ``extract.num_threads`` when set, else its one CPU.
    """
    from alignrec_model.extract_dist import compute_shard
    from alignrec_model.runtime import resolve_device

    device = resolve_device(cfg.device, "extract")  # Ray sets CUDA_VISIBLE_DEVICES per task
    return compute_shard(paths, cfg, fingerprints, ids, number, device, cfg.num_threads or 1)


def extract_ray(
    data_dir: str | Path,
    dataset: str,
    cfg: Any,
    *,
    address: str | None = None,
    workers: int | None = None,
    shard_items: int = SHARD_ITEMS,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the extract stage with shard tasks on a Ray cluster (same files as one process).

    Args:
        data_dir: The data directory.
        dataset: Dataset id.
        cfg: The ``extract`` params (:class:`~alignrec_model.extract.ExtractConfig`).
        address: The cluster (``auto``: the one on this machine); None starts a local
            instance, or uses the one this process started.
        workers: Tasks at a time (None: the cluster's GPUs when it has some and the device
            allows CUDA, else its CPUs).
        shard_items: Most items in one task.
        progress: Progress bar on stderr (None: on a tty).

    Returns:
        The metrics written to ``metrics/extract.json`` (with ``engine``, ``workers``,
        ``shards``, ``shards_kept`` and ``task_cpu_seconds``, the CPU time of the tasks).

    Raises:
        UsageError: Ray missing, the cluster unreachable, ``workers`` below 1, or what
            extraction raises (missing items table or model).
    """
    from alignrec_model.extract_dist import entry_fingerprints, merge_run
    from alignrec_model.pretrain import read_items

    ray = require_ray(workers)
    paths = DatasetPaths.of(data_dir, dataset)
    n = len(read_items(paths))
    fingerprints = entry_fingerprints(cfg.entries(), paths)
    with _connected(ray, address, workers):
        # One GPU a task when the cluster has GPUs and the device allows CUDA, else one CPU.
        gpu = ray.cluster_resources().get("GPU", 0) > 0 and cfg.device != "cpu"
        n_workers = workers or max(1, int(ray.cluster_resources().get("GPU" if gpu else "CPU", 1)))
        items = [SimpleNamespace(item_id=i) for i in range(n)]
        tasks = plan_shards(items, shard_count(n, n_workers, shard_items), 0)
        resources = {"num_cpus": 1, "num_gpus": int(gpu)}
        remote = ray.remote(_shard_task).options(max_retries=TASK_RETRIES, **resources)
        log.info(
            "extract %s: %d items in %d shard tasks, %d at a time",
            dataset,
            n,
            len(tasks),
            n_workers,
        )
        t0 = time.perf_counter()
        kept, cpu = 0, 0.0
        disable = None if progress is None else not progress

        def submit(task: ShardTask[Any]) -> Any:
            ids = [it.item_id for it in task.items]
            return remote.remote(paths, cfg, fingerprints, ids, task.number)

        with tqdm(total=n, desc=f"extract {dataset}", unit="item", disable=disable) as bar:
            for task, out in run_tasks(ray, tasks, submit, n_workers):
                kept += not out["computed"]
                cpu += out["cpu_seconds"]
                bar.update(len(task.items))
        seconds = time.perf_counter() - t0
    extra = {
        "engine": "ray",
        "workers": n_workers,
        "shards": len(tasks),
        "shards_kept": kept,
        "task_cpu_seconds": round(cpu, 2),
    }
    return merge_run(paths, cfg, [t.number for t in tasks], seconds, extra)
