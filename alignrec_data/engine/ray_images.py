"""The images stage on a Ray cluster (``alignrec-data images DS --engine ray``).

Same stage, same outputs, more machines. :func:`fetch_images_ray` runs
:func:`alignrec_data.images.fetch_images` (reading the items, the resume plan, the index and
stats) with a runner that, instead of threads in one process, splits the items to fetch into
shard tasks (:mod:`alignrec_data.engine.plan`: contiguous item-id ranges) and runs each as a
Ray task. A task runs the stage's own fetch loop
(:func:`alignrec_data.images.work.fetch_items`: same candidates, validation, resizing and
encoding, so the same rows and image bytes) and writes its own ``shard-NNNNN.parquet`` in the
images folder. The per-host rate limit and the host breaker are shared by every task through
one actor (:mod:`alignrec_data.engine.shared_hosts`): the limit is per host, for the whole
cluster, not per worker.

Resumable at two levels:

- A worker killed mid-task (``kill -9``, a lost node): Ray runs the task again (up to
  :data:`TASK_RETRIES` times); the shard is written once, by the run that finishes.
- The driver killed: every finished task left its shard and, just before it, the index rows
  of its items (``index-part-NNNNN.parquet``, failures included), so a rerun keeps the stored
  images and the permanent failures with the same index rows as an uninterrupted run, and
  fetches only the rest. Tasks and the actor die with the driver (Ray ends a dead driver's
  job); a task checks that the actor lives before it writes.

The images folder must be visible at the same path from every node (a shared file system)
when the cluster has more than one machine; alignrec must be installed on every node.
``ray`` is imported only when this engine runs (``pip install 'alignrec[scale]'``).
"""

from __future__ import annotations

import functools
import logging
import math
import socket
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from alignrec_data.engine.plan import ShardTask, items_per_shard, plan_shards, shard_count
from alignrec_data.engine.shared_hosts import HostState, SharedBreaker, SharedLimiter
from alignrec_data.errors import UsageError
from alignrec_data.images import store
from alignrec_data.images.config import ImagesConfig
from alignrec_data.images.fetch import Fetcher
from alignrec_data.images.resume import Item
from alignrec_data.images.stage import ImagesResult, RunnerOutput, fetch_images
from alignrec_data.images.work import ShardWriter, fetch_items

log = logging.getLogger(__name__)

T = TypeVar("T")

INSTALL_HINT = "pip install 'alignrec[scale]'"
# Times Ray runs a shard task again after its worker died.
TASK_RETRIES = 3
# Object store of a local instance started by this engine (only small rows travel in it).
LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024
# Seconds to wait for the cluster's address to accept a connection.
CONNECT_TIMEOUT_S = 5.0


def require_ray(workers: int | None = None) -> ModuleType:
    """Import ray, or fail with the install command.

    Args:
        workers: The ``--workers`` given, checked first (None: not given).

    Raises:
        UsageError: ``workers`` below 1, or ray is not installed.
    """
    if workers is not None and workers < 1:
        msg = f"--workers must be >= 1, found {workers}"
        raise UsageError(msg)
    try:
        import ray
    except ImportError as err:
        msg = f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}"
        raise UsageError(msg) from err  # one line: the message names the fix
    return ray


def fetch_shard(
    task: ShardTask[Item],
    config: ImagesConfig,
    images_dir: Path,
    index_settings: dict[str, Any],
    state: Any,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Fetch one shard task's items into its shard file (runs as a Ray task).

    Writes the task's index part, then its shard (a kill between the two only costs a fetch).

    Args:
        task: The items and the shard number.
        config: The ``images`` params.
        images_dir: The images folder (the same path on every node).
        index_settings: The settings recorded in the index (and in the shard, less mirrors).
        state: The :class:`~alignrec_data.engine.shared_hosts.HostState` actor handle.

    Returns:
        The index rows and the HTTP requests by host.
    """
    import ray

    def call(method: str, *args: Any) -> Any:
        return ray.get(getattr(state, method).remote(*args))

    fs = config.fetch_settings()
    limiter = SharedLimiter(call, fs.per_host_rate, config.concurrency)
    breaker = SharedBreaker(call, fs.host_failures)
    # One shard a task, written last (after the index part): no flush on the way.
    writer = ShardWriter(images_dir, config.recorded_settings(), math.inf, task.number)
    with Fetcher(fs, limiter, breaker) as fetcher:  # type: ignore[arg-type]
        rows = fetch_items(task.items, config, fetcher, writer)
    call("state")  # the driver still runs (else this raises and nothing is written)
    store.write_index(images_dir, rows, index_settings, part=task.number)
    writer.flush()
    return rows, dict(fetcher.requests_by_host)


def _run_shards(
    todo: list[Item],
    config: ImagesConfig,
    images_dir: Path,
    dataset: str,
    index_settings: dict[str, Any],
    done: Callable[[int], object],
    *,
    workers: int,
    shard_items: int,
) -> RunnerOutput:
    """The runner of :func:`~alignrec_data.images.fetch_images`: shard tasks on Ray."""
    import ray

    first = store.next_shard_number(images_dir)  # never overwrite a shard on disk
    tasks = plan_shards(todo, shard_count(len(todo), workers, shard_items), first)
    log.info(
        "images %s: %d items in %d shard tasks, %d at a time",
        dataset,
        len(todo),
        len(tasks),
        workers,
    )
    state = (
        ray.remote(HostState).options(num_cpus=0).remote(config.per_host_rate, config.host_failures)
    )
    remote = ray.remote(fetch_shard).options(num_cpus=1, max_retries=TASK_RETRIES)
    rows: list[dict[str, Any]] = []
    by_host: Counter[str] = Counter()

    def submit(task: ShardTask[Item]) -> Any:
        return remote.remote(task, config, images_dir, index_settings, state)

    for task, (task_rows, task_by_host) in run_tasks(ray, tasks, submit, workers):
        rows += task_rows
        by_host.update(task_by_host)
        done(len(task.items))
    # A killed worker's half-written temporaries (its task was run again): all tasks are done.
    for path in store.clean_stale_temporaries(images_dir):
        log.info("removed %s, left by a killed worker", path.name)
    return rows, by_host, ray.get(state.state.remote())[0]


def run_tasks(
    ray: ModuleType, tasks: Iterable[T], submit: Callable[[T], Any], workers: int
) -> Iterator[tuple[T, Any]]:
    """Run ``submit(task)`` (a Ray call) for ``tasks``, ``workers`` at a time, in order.

    Yields:
        Each task and its result, as the tasks finish.
    """
    queue = deque(tasks)
    pending: dict[Any, T] = {}
    while queue or pending:
        while queue and len(pending) < workers:
            task = queue.popleft()
            pending[submit(task)] = task
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            yield pending.pop(ref), ray.get(ref)


def _check_reachable(address: str) -> None:
    """Fail fast when ``HOST:PORT`` does not accept connections (Ray itself waits minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "ray://...": left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        msg = f"no Ray cluster answers at {address} ({err})"
        hint = "start one with `ray start --head` and pass the address it prints"
        raise UsageError(msg, hint=hint) from err


@contextmanager
def _connected(ray: ModuleType, address: str | None, workers: int | None) -> Iterator[None]:
    """Connect to the cluster at ``address``, or start a local one for the block (then stop it).

    Uses the instance this process started, if any (left running).
    """
    if address:
        _check_reachable(address)
    if ray.is_initialized():
        yield
        return
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=workers, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        msg = f"cannot connect to the Ray cluster at {address or 'a new local instance'}: {err}"
        hint = "start one with `ray start --head` and pass its address"
        raise UsageError(msg, hint=hint) from err
    try:
        yield
    finally:
        ray.shutdown()


def fetch_images_ray(
    data_dir: str | Path,
    dataset: str,
    config: ImagesConfig | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    shard_items: int | None = None,
    **kwargs: Any,
) -> ImagesResult:
    """Run the images stage with shard tasks on a Ray cluster (same outputs as one process).

    Args:
        data_dir: Folder holding one sub-folder per dataset.
        dataset: The dataset id.
        config: The ``images`` params (defaults when None); ``concurrency`` threads per task.
        address: The cluster (``ray start --head`` prints it; ``auto``: the one on this
            machine); None starts a local instance, or uses the one this process started.
        workers: Shard tasks at a time (None: the cluster's CPUs).
        shard_items: Most items in one shard task (None: from ``images.shard_size_mb``).
        **kwargs: The other keywords of :func:`~alignrec_data.images.fetch_images`.

    Returns:
        The run summary, as :func:`~alignrec_data.images.fetch_images` gives it.

    Raises:
        UsageError: Ray missing, the cluster unreachable, ``workers`` below 1, or what
            :func:`~alignrec_data.images.fetch_images` raises.
    """
    config = config or ImagesConfig()
    ray = require_ray(workers)
    with _connected(ray, address, workers):
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        per_task = shard_items or items_per_shard(config.shard_size_mb)
        runner = functools.partial(_run_shards, workers=n, shard_items=per_task)
        return fetch_images(data_dir, dataset, config, runner=runner, **kwargs)
