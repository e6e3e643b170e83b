"""Interop with the two layouts multimodal recommenders share data in: MMRec and LATTICE.

- ``import_mmrec``: an MMRec dataset folder (``<name>.inter``: tab-separated with header
  ``userID itemID [rating] [timestamp] x_label``; optional ``u_id_mapping.csv``
  (``user_id<TAB>userID``) and ``i_id_mapping.csv`` (``asin<TAB>itemID``)).
- ``import_lattice``: the LATTICE / MMHCL layout (``train.json``, ``val.json``, ``test.json``
  as ``{userID: [itemID, ...]}``; optional ``user2id.json`` and ``item2id.json``, raw key -> id).
- ``export_mmrec``: a prepared dataset to the MMRec / AlignRec layout
  (:func:`write_mmrec_interactions` writes the ``.inter`` file and both id maps; the release
  stage adds the feature files next to them).

Imports keep the ids of the source (they must be contiguous from 0) and write the prepared
layout of :mod:`alignrec_data.schema` into ``<data-dir>/<name>/prepared/``. Unknown ratings
and timestamps are stored as nulls (the LATTICE layout has neither) and exported as empty
cells, so export then import gives identical tables. Without id maps a raw key is the id
as a string.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from alignrec_data.atomic import atomic_path
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.paths import DatasetPaths
from alignrec_data.prepare import (
    interactions_table,
    items_table,
    read_prepared,
    split_counts,
    users_table,
    write_prepared,
)
from alignrec_data.schema import SPLIT_CODES, SPLITS

logger = logging.getLogger(__name__)

USER_MAP_FILE = "u_id_mapping.csv"
ITEM_MAP_FILE = "i_id_mapping.csv"
LATTICE_SPLIT_FILES = {"train": "train.json", "valid": "val.json", "test": "test.json"}
LATTICE_USER_MAP = "user2id.json"
LATTICE_ITEM_MAP = "item2id.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        msg = (
            f"dataset name {name!r} is not valid: use letters, digits and ._- (not starting with "
            ". or -)"
        )
        raise UsageError(msg)
    return name


def _check_folder(folder: Path) -> Path:
    if not folder.is_dir():
        msg = f"{folder} is not a folder; pass the dataset folder to import"
        raise UsageError(msg)
    return folder


# --- id maps -----------------------------------------------------------------------------------


def _keys_from_map(
    mapping: dict[str, int] | None, used_ids: np.ndarray, what: str, where: str
) -> list[str]:
    """Raw keys by id for ids 0..n-1, n = 1 + the largest id used or mapped.

    Raises:
        DataFormatError: Ids repeat in the map, are negative, or leave gaps.
    """
    max_used = int(used_ids.max()) if len(used_ids) else -1
    if int(used_ids.min() if len(used_ids) else 0) < 0:
        msg = f"{where}: {what} ids must be >= 0, found {int(used_ids.min())}"
        raise DataFormatError(msg)
    if mapping is None:
        n = max_used + 1
        keys = [str(k) for k in range(n)]
        known = np.zeros(n, dtype=bool)
    else:
        ids = list(mapping.values())
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in ids):
            msg = f"{where}: {what} map values must be non-negative integer ids"
            raise DataFormatError(msg)
        if len(set(ids)) != len(ids):
            msg = f"{where}: {what} map gives the same id to two keys"
            raise DataFormatError(msg)
        n = max(max_used, max(ids, default=-1)) + 1
        keys = [""] * n
        known = np.zeros(n, dtype=bool)
        for key, idx in mapping.items():
            keys[idx] = str(key)
            known[idx] = True
        unmapped = np.setdiff1d(np.unique(used_ids), np.flatnonzero(known))
        if len(unmapped):
            msg = (
                f"{where}: {len(unmapped)} {what} id(s) used but not in the map, e.g. "
                f"{int(unmapped[0])}"
            )
            raise DataFormatError(msg)
    known[np.unique(used_ids)] = True
    if not known.all():
        msg = (
            f"{where}: {what} ids must be contiguous from 0; id {int(np.flatnonzero(~known)[0])} "
            f"of 0..{n - 1} is neither used nor mapped"
        )
        raise DataFormatError(msg)
    return keys


def _read_tsv_map(path: Path, key_col: str, id_col: str) -> dict[str, int] | None:
    if not path.is_file():
        return None
    df = pd.read_csv(
        path, sep="\t", dtype={key_col: str}, keep_default_na=False, quoting=csv.QUOTE_NONE
    )
    if key_col not in df.columns or id_col not in df.columns:
        msg = (
            f"{path}: expected tab-separated columns {key_col!r} and {id_col!r}, found "
            f"{list(df.columns)}"
        )
        raise DataFormatError(msg)
    try:
        ids = df[id_col].astype(np.int64)
    except (ValueError, TypeError) as err:
        msg = f"{path}: column {id_col!r} must hold integer ids"
        raise DataFormatError(msg) from err
    mapping = dict(zip(df[key_col].tolist(), ids.tolist(), strict=True))
    if len(mapping) != len(df):
        msg = f"{path}: a key appears twice in column {key_col!r}"
        raise DataFormatError(msg)
    return mapping


def _read_json_map(path: Path) -> dict[str, int] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        msg = f"{path} is not valid JSON: {err}"
        raise DataFormatError(msg) from err
    if not isinstance(data, dict):
        msg = f"{path}: expected an object {{raw key: id}}, found {type(data).__name__}"
        raise DataFormatError(msg)
    return data


# --- imports -----------------------------------------------------------------------------------


def _write_import(
    name: str,
    data_dir: str | Path,
    source: str,
    users: np.ndarray,
    items: np.ndarray,
    ratings: pa.Array,
    timestamps: pa.Array,
    codes: np.ndarray,
    user_keys: list[str],
    item_keys: list[str],
    files: list[str],
) -> dict[str, Any]:
    inter = interactions_table(users, items, user_keys, item_keys, ratings, timestamps, codes)
    pairs = users.astype(np.int64) * max(len(item_keys), 1) + items
    stats: dict[str, Any] = {
        "dataset": name,
        "source": source,
        "source_files": files,
        "users": len(user_keys),
        "items": len(item_keys),
        "interactions": inter.num_rows,
        "splits": split_counts(inter),
        "duplicate_pairs": int(len(pairs) - len(np.unique(pairs))),
        "has_ratings": ratings.null_count < len(ratings),
        "has_timestamps": timestamps.null_count < len(timestamps),
        "missing_image_url_rate": 1.0 if item_keys else 0.0,
    }
    write_prepared(
        DatasetPaths.of(data_dir, name).prepared,
        inter,
        items_table(item_keys, None),
        users_table(user_keys, users),
        stats,
    )
    logger.info(
        "imported %s from %s: %d users, %d items, %d interactions",
        name,
        source,
        len(user_keys),
        len(item_keys),
        inter.num_rows,
    )
    return stats


def find_inter_file(folder: Path) -> Path:
    """``<folder>/<folder name>.inter``, else the only ``*.inter`` file of the folder."""
    own = folder / f"{folder.name}.inter"
    if own.is_file():
        return own
    found = sorted(folder.glob("*.inter"))
    if len(found) == 1:
        return found[0]
    msg = f"{folder}: expected one <name>.inter file, found {[p.name for p in found] or 'none'}"
    raise UsageError(msg)


def import_mmrec(folder: str | Path, name: str, data_dir: str | Path) -> dict[str, Any]:
    """Import an MMRec dataset folder into ``<data_dir>/<name>/prepared/``.

    Args:
        folder: The MMRec folder (``<name>.inter`` and optional id maps).
        name: The dataset name to create.
        data_dir: The data directory.

    Returns:
        The statistics written to ``stats.json``.

    Raises:
        UsageError: Bad folder or name.
        DataFormatError: The files do not have the MMRec format.
    """
    folder = _check_folder(Path(folder))
    _check_name(name)
    inter_path = find_inter_file(folder)
    df = pd.read_csv(inter_path, sep="\t", quoting=csv.QUOTE_NONE)
    missing = [c for c in ("userID", "itemID", "x_label") if c not in df.columns]
    if missing:
        msg = (
            f"{inter_path}: missing column(s) {missing}; found {list(df.columns)} (expected "
            "userID itemID rating timestamp x_label, tab-separated)"
        )
        raise DataFormatError(msg)
    try:
        users = df["userID"].to_numpy(dtype=np.int64)
        items = df["itemID"].to_numpy(dtype=np.int64)
        labels = df["x_label"].to_numpy(dtype=np.int64)
    except (ValueError, TypeError) as err:
        msg = f"{inter_path}: userID, itemID and x_label must be integers without gaps ({err})"
        raise DataFormatError(msg) from err
    bad = ~np.isin(labels, list(SPLIT_CODES.values()))
    if bad.any():
        msg = (
            f"{inter_path}: x_label must be 0 (train), 1 (valid) or 2 (test), found "
            f"{int(labels[bad][0])}"
        )
        raise DataFormatError(msg)
    n = len(df)
    ratings = (
        pa.array(
            pd.to_numeric(df["rating"], errors="raise").to_numpy(dtype=np.float64),
            pa.float64(),
            from_pandas=True,
        )
        if "rating" in df.columns
        else pa.nulls(n, pa.float32())
    )
    if "timestamp" in df.columns:
        ts = pd.to_numeric(df["timestamp"], errors="raise").astype("Int64")
        timestamps = pa.array(ts, pa.int64(), from_pandas=True)
    else:
        timestamps = pa.nulls(n, pa.int64())
    files = [inter_path.name]
    umap = _read_tsv_map(folder / USER_MAP_FILE, "user_id", "userID")
    imap = _read_tsv_map(folder / ITEM_MAP_FILE, "asin", "itemID")
    files += [f for f, m in ((USER_MAP_FILE, umap), (ITEM_MAP_FILE, imap)) if m is not None]
    user_keys = _keys_from_map(umap, users, "user", str(folder))
    item_keys = _keys_from_map(imap, items, "item", str(folder))
    return _write_import(
        name,
        data_dir,
        "mmrec",
        users,
        items,
        ratings,
        timestamps,
        labels.astype(np.int8),
        user_keys,
        item_keys,
        files,
    )


def import_lattice(folder: str | Path, name: str, data_dir: str | Path) -> dict[str, Any]:
    """Import a LATTICE / MMHCL folder (``train.json``, ``val.json``, ``test.json``).

    Args:
        folder: The folder.
        name: The dataset name to create.
        data_dir: The data directory.

    Returns:
        The statistics written to ``stats.json``.

    Raises:
        UsageError: Bad folder or name, or a split file missing.
        DataFormatError: A file is not ``{userID: [itemID, ...]}`` JSON.
    """
    folder = _check_folder(Path(folder))
    _check_name(name)
    us, its, codes = [], [], []
    for split, fname in LATTICE_SPLIT_FILES.items():
        path = folder / fname
        if not path.is_file():
            msg = (
                f"{path} does not exist; a LATTICE folder holds "
                f"{', '.join(LATTICE_SPLIT_FILES.values())}"
            )
            raise UsageError(msg)
        data = _read_json_map(path)
        for user, lst in data.items():  # type: ignore[union-attr]
            if not isinstance(lst, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in lst
            ):
                msg = f"{path}: user {user!r}: expected a list of integer item ids"
                raise DataFormatError(msg)
            try:
                uid = int(user)
            except ValueError as err:
                msg = f"{path}: user key {user!r} is not an integer id"
                raise DataFormatError(msg) from err
            us.append(np.full(len(lst), uid, dtype=np.int64))
            its.append(np.asarray(lst, dtype=np.int64))
            codes.append(np.full(len(lst), SPLIT_CODES[split], dtype=np.int8))
    users = np.concatenate(us) if us else np.zeros(0, np.int64)
    items = np.concatenate(its) if its else np.zeros(0, np.int64)
    labels = np.concatenate(codes) if codes else np.zeros(0, np.int8)
    if len(users) == 0:
        msg = f"{folder}: the split files hold no interaction"
        raise DataFormatError(msg)
    files = list(LATTICE_SPLIT_FILES.values())
    umap = _read_json_map(folder / LATTICE_USER_MAP)
    imap = _read_json_map(folder / LATTICE_ITEM_MAP)
    files += [f for f, m in ((LATTICE_USER_MAP, umap), (LATTICE_ITEM_MAP, imap)) if m is not None]
    user_keys = _keys_from_map(umap, users, "user", str(folder))
    item_keys = _keys_from_map(imap, items, "item", str(folder))
    n = len(users)
    return _write_import(
        name,
        data_dir,
        "lattice",
        users,
        items,
        pa.nulls(n, pa.float32()),
        pa.nulls(n, pa.int64()),
        labels,
        user_keys,
        item_keys,
        files,
    )


# --- export ------------------------------------------------------------------------------------


def _check_tsv_keys(keys: list[str], what: str) -> None:
    for k in keys:
        if any(c in k for c in "\t\n\r") or k == "":
            msg = (
                f"{what} key {k!r} is empty or holds a tab or newline; it cannot be written to "
                "the tab-separated MMRec id map"
            )
            raise DataFormatError(msg)


def write_mmrec_interactions(
    interactions: pa.Table, items: pa.Table, users: pa.Table, out: str | Path, name: str
) -> list[Path]:
    """Write ``<name>.inter``, ``u_id_mapping.csv`` and ``i_id_mapping.csv`` into ``out``.

    Each file is written atomically. ``.inter`` rows follow the interactions table (sorted by
    user_id, timestamp, item_id); null ratings or timestamps are written as empty cells.

    Args:
        interactions: The prepared interactions table.
        items: The prepared items table.
        users: The prepared users table.
        out: Target folder (created if needed).
        name: Dataset name in MMRec (``<name>.inter``).

    Returns:
        The written files.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    codes = {s: SPLIT_CODES[s] for s in SPLITS}
    inter = pd.DataFrame(
        {
            "userID": interactions.column("user_id").to_numpy(),
            "itemID": interactions.column("item_id").to_numpy(),
            "rating": interactions.column("rating").to_pandas(),
            "timestamp": interactions.column("timestamp").to_pandas().astype("Int64"),
            "x_label": pd.Series(interactions.column("split").to_pylist())
            .map(codes)
            .astype(np.int64),
        }
    )
    ukeys = users.column("user_key").to_pylist()
    ikeys = items.column("item_key").to_pylist()
    _check_tsv_keys(ukeys, "user")
    _check_tsv_keys(ikeys, "item")
    written = []
    frames = (
        (f"{name}.inter", inter),
        (
            USER_MAP_FILE,
            pd.DataFrame({"user_id": ukeys, "userID": users.column("user_id").to_numpy()}),
        ),
        (
            ITEM_MAP_FILE,
            pd.DataFrame({"asin": ikeys, "itemID": items.column("item_id").to_numpy()}),
        ),
    )
    for fname, frame in frames:
        with atomic_path(out / fname) as tmp:
            frame.to_csv(tmp, sep="\t", index=False, quoting=csv.QUOTE_NONE, lineterminator="\n")
        written.append(out / fname)
    return written


def export_mmrec(
    data_dir: str | Path, dataset: str, out: str | Path, *, name: str | None = None
) -> dict[str, Any]:
    """Export a prepared dataset to the MMRec / AlignRec layout (interactions and id maps).

    Args:
        data_dir: The data directory.
        dataset: The prepared dataset.
        out: Target folder, e.g. ``MMRec/data/baby``.
        name: MMRec dataset name (``<name>.inter``); defaults to the name of ``out``.

    Returns:
        ``{"dataset", "out", "name", "files", "users", "items", "interactions", "splits"}``.
    """
    out = Path(out)
    name = _check_name(name or out.name)
    inter, items, users = read_prepared(DatasetPaths.of(data_dir, dataset).prepared)
    files = write_mmrec_interactions(inter, items, users, out, name)
    logger.info("exported %s to %s", dataset, out)
    return {
        "dataset": dataset,
        "out": str(out),
        "name": name,
        "files": [f.name for f in files],
        "users": users.num_rows,
        "items": items.num_rows,
        "interactions": inter.num_rows,
        "splits": split_counts(inter),
    }
