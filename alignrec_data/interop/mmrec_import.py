"""Import of an MMRec dataset folder.

The folder holds ``<name>.inter``: tab-separated with header ``userID itemID [rating]
[timestamp] x_label``, and optionally ``u_id_mapping.csv`` (``user_id<TAB>userID``) and
``i_id_mapping.csv`` (``asin<TAB>itemID``). Without id maps a raw key is the id as a string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.interop.ids import keys_from_maps
from alignrec_data.interop.prepared import ImportedTables, run_import
from alignrec_data.interop.tables import float_column, int_column, read_tsv, read_tsv_map
from alignrec_data.schema import SPLIT_CODES

USER_MAP_FILE = "u_id_mapping.csv"
ITEM_MAP_FILE = "i_id_mapping.csv"
INTER_COLUMNS = "userID itemID [rating] [timestamp] x_label"


def find_inter_file(folder: Path) -> Path:
    """``<folder>/<folder name>.inter``, else the only ``*.inter`` file of the folder."""
    own = folder / f"{folder.name}.inter"
    if own.is_file():
        return own
    found = sorted(p for p in folder.glob("*.inter") if p.is_file())
    if len(found) == 1:
        return found[0]
    msg = f"{folder}: expected one <name>.inter file, found {[p.name for p in found] or 'none'}"
    raise UsageError(msg)


def read_inter(path: str | Path) -> dict[str, Any]:
    """Read and check an MMRec ``.inter`` file.

    Returns:
        ``{"users", "items", "labels", "ratings", "timestamps", "lines"}``: int64 arrays, int8
        split codes, a float pyarrow array and an int64 pyarrow array (nulls for empty cells or
        a missing column), and the line number of each row.

    Raises:
        DataFormatError: Empty, binary, columns missing, or a value that is not what its column
            holds (the message names the file, line and column).
    """
    path = Path(path)
    expected = f"tab-separated columns {INTER_COLUMNS} with a header row"
    df, lines = read_tsv(path, expected)
    missing = [c for c in ("userID", "itemID", "x_label") if c not in df.columns]
    if missing:
        msg = (
            f"{path}: missing column(s) {missing}; found {list(df.columns)} (expected "
            "userID itemID rating timestamp x_label, tab-separated)"
        )
        raise DataFormatError(msg)
    if len(df) == 0:
        msg = f"{path} holds a header but no interaction; expected {expected}"
        raise DataFormatError(msg)
    users = int_column(df, "userID", lines, path, "user id")
    items = int_column(df, "itemID", lines, path, "item id")
    labels = int_column(df, "x_label", lines, path, "split label (0, 1 or 2)")
    bad = ~np.isin(labels, list(SPLIT_CODES.values()))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        msg = (
            f"{path}: line {lines[i]}: x_label must be 0 (train), 1 (valid) or 2 (test), found "
            f"{int(labels[i])}"
        )
        raise DataFormatError(msg)
    n = len(df)
    if "rating" in df.columns:
        ratings = pa.array(float_column(df, "rating", lines, path), pa.float64(), from_pandas=True)
    else:
        ratings = pa.nulls(n, pa.float32())
    if "timestamp" in df.columns:
        ts = int_column(
            df, "timestamp", lines, path, "timestamp", nullable=True, allow_point_zero=True
        )
        timestamps = pa.array(ts, pa.int64(), from_pandas=True)
    else:
        timestamps = pa.nulls(n, pa.int64())
    return {
        "users": users,
        "items": items,
        "labels": labels.astype(np.int8),
        "ratings": ratings,
        "timestamps": timestamps,
        "lines": lines,
    }


def _read_mmrec(folder: Path) -> ImportedTables:
    """Read and check the ``.inter`` file and the id maps of an MMRec folder."""
    inter_path = find_inter_file(folder)
    parsed = read_inter(inter_path)
    lines = parsed["lines"]

    def locate(i: int | None) -> str:
        return str(inter_path) if i is None else f"{inter_path}, line {lines[i]}"

    umap = read_tsv_map(folder / USER_MAP_FILE, "user_id", "userID")
    imap = read_tsv_map(folder / ITEM_MAP_FILE, "asin", "itemID")
    user_keys, item_keys, maps = keys_from_maps(
        parsed["users"],
        parsed["items"],
        locate,
        (folder / USER_MAP_FILE, umap),
        (folder / ITEM_MAP_FILE, imap),
    )
    return ImportedTables(
        "mmrec",
        parsed["users"],
        parsed["items"],
        parsed["ratings"],
        parsed["timestamps"],
        parsed["labels"],
        user_keys,
        item_keys,
        [inter_path.name, *maps],
    )


def import_mmrec(
    folder: str | Path, name: str, data_dir: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Import an MMRec dataset folder into ``<data_dir>/<name>/prepared/``.

    Every file is read and checked before anything is written.

    Args:
        folder: The MMRec folder (``<name>.inter`` and optional id maps).
        name: The dataset name to create.
        data_dir: The data directory.
        overwrite: Replace an existing ``prepared/`` of ``name`` and remove the folders built
            on its old items (:data:`~alignrec_data.interop.prepared.DEPENDENT_FOLDERS`).

    Returns:
        The statistics written to ``stats.json``, plus ``removed``: the folders removed.

    Raises:
        UsageError: Bad folder or name, or ``name`` exists and no ``overwrite``.
        DataFormatError: The files do not have the MMRec format.
    """
    return run_import(folder, name, data_dir, overwrite, _read_mmrec)
