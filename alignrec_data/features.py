"""Item feature files: ``<data-dir>/<dataset>/features/<variant>.parquet``.

One row per item, sorted by ``item_id`` (0..N-1, row i = item i, as MMRec's ``.npy`` files):
``item_id`` (int64), ``item_key`` (string, the raw asin / parent_asin), ``embedding``
(fixed-size list of float32, length d) and ``missing`` (bool: the item lacked the input this
feature needs, e.g. an image; its embedding is then written explicitly, see the producer).
A producer may record its provenance in the schema metadata (``metadata``: key -> JSON value,
e.g. ``alignrec.import`` of an MMRec import); a release shows it on the card.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.atomic import write_parquet
from alignrec_data.errors import DataFormatError, UsageError

T = TypeVar("T")

FEATURE_COLUMNS = ["item_id", "item_key", "embedding", "missing"]


def features_table(
    item_keys: list[str] | np.ndarray,
    matrix: np.ndarray,
    missing: np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
) -> pa.Table:
    """Build a feature table; row i of ``matrix`` is item i.

    Args:
        item_keys: Raw keys, one per item, in item_id order.
        matrix: (N, d) array, converted to float32.
        missing: Optional (N,) bool array; defaults to all False.
        metadata: Optional provenance, stored in the schema metadata as key -> JSON text.

    Returns:
        A table of columns ``item_id`` (int64), ``item_key`` (string), ``embedding`` (float32
        list of size d) and ``missing`` (bool).
    """
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(item_keys):
        msg = f"feature matrix has shape {matrix.shape}, expected ({len(item_keys)}, d)"
        raise ValueError(msg)
    n, d = matrix.shape
    if not np.isfinite(matrix).all():
        msg = "feature matrix contains NaN or infinite values"
        raise ValueError(msg)
    missing_arr = np.zeros(n, dtype=bool) if missing is None else np.asarray(missing, dtype=bool)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), d)
    meta = {k: json.dumps(v, sort_keys=True, allow_nan=False) for k, v in (metadata or {}).items()}
    ids = pa.array(np.arange(n, dtype=np.int64))
    keys = pa.array([str(k) for k in item_keys], pa.string())
    columns = [ids, keys, emb, pa.array(missing_arr)]
    return pa.Table.from_arrays(columns, names=FEATURE_COLUMNS, metadata=meta or None)


def write_features(
    path: str | Path,
    item_keys: list[str] | np.ndarray,
    matrix: np.ndarray,
    missing: np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Atomically write a feature file (see module docstring and :func:`features_table`)."""
    write_parquet(path, features_table(item_keys, matrix, missing, metadata))


def open_feature_file(path: Path, read: Callable[[Path], T]) -> T:
    """``read(path)`` (the table or the schema) with a missing or unreadable file named.

    Raises:
        UsageError: The file does not exist.
        DataFormatError: It is not a readable parquet file.
    """
    if not path.is_file():
        msg = f"feature file {path} does not exist; run `alignrec-data extract` first"
        raise UsageError(msg)
    try:
        return read(path)
    except (pa.ArrowInvalid, OSError) as err:
        msg = f"feature file {path} is not a readable parquet file: {err}"
        raise DataFormatError(msg) from err


def read_features(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a feature file.

    Args:
        path: A ``<variant>.parquet`` file.

    Returns:
        ``(item_keys, matrix, missing)``: object array of keys, (N, d) float32, (N,) bool;
        row i is item i.

    Raises:
        UsageError: The file does not exist.
        DataFormatError: The file is not a feature file or ids are not 0..N-1 in order.
    """
    path = Path(path)
    table = open_feature_file(path, pq.read_table)
    names = table.column_names
    for col in ("item_id", "embedding"):
        if col not in names:
            msg = f"feature file {path} has no column {col!r} (found {names})"
            raise DataFormatError(msg)
    ids = table.column("item_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        msg = f"feature file {path}: item_id must be 0..N-1 in order"
        raise DataFormatError(msg)
    emb = table.column("embedding").combine_chunks()
    if not pa.types.is_fixed_size_list(emb.type):
        msg = f"feature file {path}: embedding must be a fixed-size list, found {emb.type}"
        raise DataFormatError(msg)
    d = emb.type.list_size
    matrix = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, d)
    keys = table.column("item_key").to_pylist() if "item_key" in names else [str(i) for i in ids]
    missing = np.zeros(len(ids), dtype=bool)
    if "missing" in names:
        missing = table.column("missing").to_numpy(zero_copy_only=False).astype(bool)
    return np.asarray(keys, dtype=object), matrix, missing
