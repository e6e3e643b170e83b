"""One local Ray instance for the whole session (about 5 s to start, a small object store)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

RAY_CPUS = 2
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # only index rows travel through it


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start Ray with 2 CPUs (no dashboard) once; yield the address other drivers join."""
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'alignrec[scale]'")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp_dir = Path("/tmp") / f"ray-tests-{os.getpid()}"  # not another session's /tmp/ray
    ray.init(
        num_cpus=RAY_CPUS,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        log_to_driver=False,
        _temp_dir=str(temp_dir),
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def ray_worker_pids(task_name: str) -> list[int]:
    """Pids of the Ray worker processes now running ``task_name`` (their title ``ray::NAME``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(f"ray::{task_name}".encode()):
            pids.append(int(proc.name))
    return pids
