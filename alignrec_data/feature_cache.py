"""The ``.npy`` cache of loaded feature matrices (:func:`alignrec_data.loaders.load_features`).

A feature set read from a release's parquet shards is written to
``<cache>/features/<key>.npy``; later loads memory-map that file copy-on-write
(``numpy.load(mmap_mode="c")``: no copy, writable). The key covers every shard's path, size,
modification time and sha256, so a changed shard is read and verified again. Cache folder:
``cache_dir``, else ``$ALIGNREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/alignrec``
(``~/.cache/alignrec``). A cache that cannot be read or written never breaks loading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from alignrec_data.atomic import atomic_path

log = logging.getLogger(__name__)

CACHE_ENV = "ALIGNREC_CACHE_DIR"


def cache_root(cache_dir: str | Path | None) -> Path:
    """The cache folder: ``cache_dir``, ``$ALIGNREC_CACHE_DIR`` or the XDG cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alignrec"


def cache_file(
    cache_dir: str | Path | None, shards: list[tuple[Path, dict[str, Any]]], variant: str
) -> Path:
    """The cache file of a feature set read from ``shards`` (each with its manifest entry)."""
    h = hashlib.sha256(variant.encode())
    for path, entry in shards:
        st = path.stat()
        rec = [str(path.resolve()), st.st_size, st.st_mtime_ns, entry["sha256"]]
        h.update(json.dumps(rec).encode())
    return cache_root(cache_dir) / "features" / f"{h.hexdigest()[:32]}.npy"


def read_cached(path: Path) -> np.ndarray | None:
    """The cached matrix, memory-mapped copy-on-write, or None (absent or unreadable)."""
    if not path.is_file():
        return None
    try:
        # Copy-on-write map: no read now, writable (torch.from_numpy needs that).
        return np.load(path, mmap_mode="c", allow_pickle=False).view(np.ndarray)
    except (ValueError, OSError) as err:
        log.warning("ignoring unreadable cache file %s (%s)", path, err)
        return None


def write_cache(path: Path, matrix: np.ndarray) -> None:
    """Write ``matrix`` to the cache (a read-only cache is logged, not raised)."""
    try:
        with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as f:
            np.save(f, matrix, allow_pickle=False)
    except OSError as err:  # a read-only cache must not break loading
        log.warning("could not write the feature cache %s (%s)", path, err)
