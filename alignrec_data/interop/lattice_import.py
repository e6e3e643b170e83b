"""Import of a LATTICE / MMHCL folder.

The folder holds ``train.json``, ``val.json`` and ``test.json`` as ``{userID: [itemID, ...]}``,
and optionally ``user2id.json`` and ``item2id.json`` (raw key -> id). The layout has neither
ratings nor timestamps: both are stored as nulls. Without id maps a raw key is the id as a
string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.interop.ids import keys_from_map
from alignrec_data.interop.prepared import ImportedTables, run_import
from alignrec_data.interop.tables import is_id, json_type, read_json, read_json_map
from alignrec_data.schema import SPLIT_CODES

LATTICE_SPLIT_FILES = {"train": "train.json", "valid": "val.json", "test": "test.json"}
LATTICE_USER_MAP = "user2id.json"
LATTICE_ITEM_MAP = "item2id.json"


def _read_split_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)`` of a LATTICE split file ``{"userID": [itemID, ...]}``.

    Raises:
        DataFormatError: Not JSON, not an object of lists, or ids that are not integers in
            the 64-bit range.
    """
    expected = 'a LATTICE split file {"userID": [itemID, ...]}'
    data = read_json(path, expected)
    if not isinstance(data, dict):
        msg = f"{path} is not a valid split file: expected {expected}, found {json_type(data)}"
        raise DataFormatError(msg)
    us, its = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for user, lst in data.items():
        bad = (repr(x)[:80] for x in lst if not is_id(x)) if isinstance(lst, list) else None
        found = json_type(lst) if bad is None else next(bad, None)
        if found is not None:
            msg = (
                f"{path}: user {user!r}: expected a list of integer item ids (0 to 2**63-1), "
                f"found {found}"
            )
            raise DataFormatError(msg)
        try:
            uid = int(user)
        except ValueError as err:
            msg = f"{path}: user key {user!r} is not an integer id"
            raise DataFormatError(msg) from err
        if not is_id(uid):
            msg = f"{path}: user key {user!r} is not an integer id from 0 to 2**63-1"
            raise DataFormatError(msg)
        us.append(np.full(len(lst), uid, dtype=np.int64))
        its.append(np.asarray(lst, dtype=np.int64))
    return np.concatenate(us), np.concatenate(its)


def _read_lattice(folder: Path) -> ImportedTables:
    """Read and check the split files and the id maps of a LATTICE folder.

    Raises:
        UsageError: A split file is missing.
        DataFormatError: A file does not parse, no split file holds an interaction, or the ids
            do not fit.
    """
    split_files = list(LATTICE_SPLIT_FILES.values())
    us, its, codes = [], [], []
    for split, fname in LATTICE_SPLIT_FILES.items():
        path = folder / fname
        if not path.is_file():
            msg = f"{path} does not exist; a LATTICE folder holds {', '.join(split_files)}"
            raise UsageError(msg)
        u, i = _read_split_file(path)
        us.append(u)
        its.append(i)
        codes.append(np.full(len(u), SPLIT_CODES[split], dtype=np.int8))
    users, items = np.concatenate(us), np.concatenate(its)
    if len(users) == 0:
        msg = f"{folder}: the split files hold no interaction"
        raise DataFormatError(msg)
    ends = np.cumsum([len(u) for u in us])

    def locate(i: int | None) -> str:
        return str(folder if i is None else folder / split_files[np.searchsorted(ends, i, "right")])

    umap = read_json_map(folder / LATTICE_USER_MAP)
    imap = read_json_map(folder / LATTICE_ITEM_MAP)
    user_keys = keys_from_map(umap, users, "user", locate, folder / LATTICE_USER_MAP)
    item_keys = keys_from_map(imap, items, "item", locate, folder / LATTICE_ITEM_MAP)
    maps = [
        name for name, m in ((LATTICE_USER_MAP, umap), (LATTICE_ITEM_MAP, imap)) if m is not None
    ]
    # The layout has neither ratings nor timestamps.
    ratings, timestamps = pa.nulls(len(users), pa.float32()), pa.nulls(len(users), pa.int64())
    labels, files = np.concatenate(codes), [*split_files, *maps]
    return ImportedTables(
        "lattice", users, items, ratings, timestamps, labels, user_keys, item_keys, files
    )


def import_lattice(
    folder: str | Path, name: str, data_dir: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Import a LATTICE / MMHCL folder (``train.json``, ``val.json``, ``test.json``).

    Every file is read and checked before anything is written.

    Args:
        folder: The folder.
        name: The dataset name to create.
        data_dir: The data directory.
        overwrite: Replace an existing ``prepared/`` of ``name`` and remove the folders built
            on its old items (:data:`~alignrec_data.interop.prepared.DEPENDENT_FOLDERS`).

    Returns:
        The statistics written to ``stats.json``, plus ``removed``: the folders removed.

    Raises:
        UsageError: Bad folder or name, a split file missing, or ``name`` exists and no
            ``overwrite``.
        DataFormatError: A file is not ``{userID: [itemID, ...]}`` JSON.
    """
    return run_import(folder, name, data_dir, overwrite, _read_lattice)
