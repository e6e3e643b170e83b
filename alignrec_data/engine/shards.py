"""Shard files of a sharded feature extraction and the one merge into the feature files.

A worker (a Ray task, a torchrun rank) computes the rows of some items for every entry and
writes one part per feature variant::

    features/.shards/<variant>/part-NNNNN.parquet

A part holds ``item_id`` (int64), ``embedding`` (fixed-size list of float32) and ``missing``
(bool) for its items, in any order (Ray: a contiguous id range; torchrun: ids ``r::world``),
and in its schema metadata the feature file's metadata (``alignrec.feature``, as the single
process writes it) plus ``alignrec.shard``: ``{"key", "items"}``. The key is a sha256 of
what the rows depend on (the entry, the model weights' sha256, the item ids and texts: see
:func:`shard_key`); a rerun keeps a part whose key matches and recomputes the others, so a
changed model or item set never reuses stale rows.

:func:`merge_parts` is the only way parts become ``features/<variant>.parquet``: it checks
that the parts cover every item once and agree on their metadata, then writes the file with
:func:`alignrec_data.features.write_features` (atomic; the same schema and metadata as one
process writes). :func:`remove_shards` drops the shard folder once every variant is merged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.atomic import write_parquet
from alignrec_data.errors import DataFormatError
from alignrec_data.features import write_features

SHARDS_DIR = ".shards"
PART_TEMPLATE = "part-{:05d}.parquet"
SHARD_META = "alignrec.shard"


def shard_dir(features_dir: str | Path, variant: str) -> Path:
    """``features/.shards/<variant>``."""
    return Path(features_dir) / SHARDS_DIR / variant


def part_path(features_dir: str | Path, variant: str, number: int) -> Path:
    """``features/.shards/<variant>/part-<number:05d>.parquet``."""
    return shard_dir(features_dir, variant) / PART_TEMPLATE.format(number)


def shard_key(
    entry: dict[str, Any],
    weights_sha256: str,
    ids: Sequence[int],
    texts: Sequence[str],
    settings: dict[str, Any],
) -> str:
    """sha256 of what one entry's rows for ``ids`` depend on.

    Args:
        entry: The entry's fields (``dataclasses.asdict``).
        weights_sha256: The combined sha256 of the model weights.
        ids: The item ids of the part, in the part's order.
        texts: Their texts.
        settings: Other inputs of the rows (device type, bf16).

    Returns:
        A hex digest.
    """
    h = hashlib.sha256()
    head = {"entry": entry, "weights": weights_sha256, "settings": settings}
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    h.update(np.asarray(ids, dtype=np.int64).tobytes())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def _read_meta(path: Path) -> dict[str, Any]:
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def part_key(path: str | Path) -> str | None:
    """The key recorded in a part, or None when the file is absent or unreadable."""
    try:
        return _read_meta(Path(path)).get(SHARD_META, {}).get("key")
    except (OSError, pa.ArrowInvalid, ValueError):
        return None


def write_part(
    path: str | Path,
    ids: np.ndarray,
    matrix: np.ndarray,
    missing: np.ndarray,
    metadata: dict[str, Any],
    key: str,
) -> None:
    """Atomically write one part (see the module docstring).

    Args:
        path: The part file (:func:`part_path`).
        ids: (n,) item ids; row k of ``matrix`` is item ``ids[k]``.
        matrix: (n, d) float32 rows.
        missing: (n,) bool.
        metadata: The feature file's metadata (key -> JSON value).
        key: :func:`shard_key` of the rows.
    """
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, d = matrix.shape
    meta = {**metadata, SHARD_META: {"key": key, "items": int(n)}}
    table = pa.table(
        {
            "item_id": pa.array(np.asarray(ids, dtype=np.int64)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), d),
            "missing": pa.array(np.asarray(missing, dtype=bool)),
        },
        metadata={k: json.dumps(v, sort_keys=True) for k, v in meta.items()},
    )
    write_parquet(path, table)


def merge_parts(
    features_dir: str | Path, variant: str, item_keys: Sequence[str], numbers: Sequence[int]
) -> Path:
    """Merge the parts ``numbers`` of ``variant`` into ``features/<variant>.parquet``.

    Args:
        features_dir: The dataset's ``features`` folder.
        variant: The feature variant.
        item_keys: Raw keys of all items, row i = item i.
        numbers: The part numbers of the run.

    Returns:
        The feature file written.

    Raises:
        DataFormatError: A part is missing, the parts do not cover every item exactly once,
            or they disagree on their metadata (parts of different runs).
    """
    n = len(item_keys)
    matrix: np.ndarray | None = None
    missing = np.zeros(n, dtype=bool)
    seen = np.zeros(n, dtype=np.int64)
    meta: dict[str, Any] | None = None
    for number in numbers:
        path = part_path(features_dir, variant, number)
        if not path.is_file():
            msg = f"shard {path} is missing; run the extraction again to compute it"
            raise DataFormatError(msg)
        table = pq.read_table(path)
        part_meta = _read_meta(path)
        part_meta.pop(SHARD_META, None)
        meta = part_meta if meta is None else meta  # every part as the first
        if part_meta != meta:
            msg = f"shard {path} was written with other metadata than the first part: {part_meta}"
            raise DataFormatError(msg)
        ids = table.column("item_id").to_numpy()
        emb = table.column("embedding").combine_chunks()
        rows = emb.values.to_numpy(zero_copy_only=False).reshape(len(ids), emb.type.list_size)
        if matrix is None:
            matrix = np.zeros((n, rows.shape[1]), dtype=np.float32)
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            msg = f"shard {path} holds item ids outside 0..{n - 1}"
            raise DataFormatError(msg)
        matrix[ids] = rows
        missing[ids] = table.column("missing").to_numpy(zero_copy_only=False)
        np.add.at(seen, ids, 1)
    if matrix is None or not (seen == 1).all():
        bad = np.flatnonzero(seen != 1)[:5].tolist()
        msg = f"shards of {variant} do not cover every item exactly once (e.g. items {bad})"
        raise DataFormatError(msg)
    target = Path(features_dir) / f"{variant}.parquet"
    write_features(target, list(item_keys), matrix, missing, meta or None)
    return target


def remove_shards(features_dir: str | Path, variants: Sequence[str]) -> None:
    """Remove the parts of ``variants``, and the shard folder once it is empty."""
    for variant in variants:
        shutil.rmtree(shard_dir(features_dir, variant), ignore_errors=True)
    root = Path(features_dir) / SHARDS_DIR
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
