"""Interop with the two layouts multimodal recommenders share data in: MMRec and LATTICE.

- ``import_mmrec``: an MMRec dataset folder (``<name>.inter``: tab-separated with header
  ``userID itemID [rating] [timestamp] x_label``; optional ``u_id_mapping.csv``
  (``user_id<TAB>userID``) and ``i_id_mapping.csv`` (``asin<TAB>itemID``)).
- ``import_lattice``: the LATTICE / MMHCL layout (``train.json``, ``val.json``, ``test.json``
  as ``{userID: [itemID, ...]}``; optional ``user2id.json`` and ``item2id.json``, raw key -> id).
- ``export_mmrec``: a prepared dataset to the MMRec / AlignRec layout: the ``.inter`` file and
  both id maps (:func:`mmrec_frames`) and, with ``features``, the feature files of
  :mod:`alignrec_data.export_features`, plus the marker :data:`EXPORT_MARKER`, all written by
  :func:`write_export`, the one writer of this layout (``to_mmrec`` of a release uses it too).

Imports keep the ids of the source (they must be contiguous from 0) and write the prepared
layout of :mod:`alignrec_data.schema` into ``<data-dir>/<name>/prepared/``. Unknown ratings
and timestamps are stored as nulls (the LATTICE layout has neither) and exported as empty
cells, so export then import gives identical tables. Without id maps a raw key is the id
as a string.

Safety: every source file is parsed and checked (format, integer range, contiguous ids) before
the first byte is written, and ids are range-checked before anything is allocated by id, so a
forged id such as 9000000000000 is an error, not 24 GB of memory. An import over a dataset that
already has ``prepared/`` needs ``overwrite=True`` and then removes the folders that were built
on the old items (:data:`DEPENDENT_FOLDERS`). An export writes only its own files into ``out``,
all or none (every file goes to a temporary first), and never deletes a file it did not write.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from alignrec_data.atomic import atomic_dir, atomic_path, clean_stale, write_json, write_parquet
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.export_features import (
    FEATURE_FILES,
    FeatureInput,
    assign_files,
    check_specs,
    resolve_features,
    write_npy_to,
)
from alignrec_data.outputs import check_output_dir, protected_folders
from alignrec_data.paths import DatasetPaths, check_name
from alignrec_data.prepare import (
    interactions_table,
    items_table,
    read_prepared,
    split_counts,
    users_table,
)
from alignrec_data.schema import (
    INTERACTIONS_FILE,
    ITEMS_FILE,
    SPLIT_CODES,
    SPLITS,
    STATS_FILE,
    USERS_FILE,
)

logger = logging.getLogger(__name__)

USER_MAP_FILE = "u_id_mapping.csv"
ITEM_MAP_FILE = "i_id_mapping.csv"
LATTICE_SPLIT_FILES = {"train": "train.json", "valid": "val.json", "test": "test.json"}
LATTICE_USER_MAP = "user2id.json"
LATTICE_ITEM_MAP = "item2id.json"
INTER_COLUMNS = "userID itemID [rating] [timestamp] x_label"
# Folders of a dataset built on its items: an import that replaces prepared/ removes them.
DEPENDENT_FOLDERS = ("features", "models", "metrics", "report", "release")
# The file `export mmrec` writes into every folder it fills (what it wrote, for the next run).
EXPORT_MARKER = "alignrec_export.json"
INT64_MAX = int(np.iinfo(np.int64).max)
_INT64_MAX_DIGITS = str(INT64_MAX)
_SNIFF_BYTES = 64 * 1024


def _check_folder(folder: Path) -> Path:
    if not folder.is_dir():
        msg = f"{folder} is not a folder; pass the dataset folder to import"
        raise UsageError(msg)
    return folder


# --- reading source files ----------------------------------------------------------------------


def _check_text_file(path: Path, expected: str) -> None:
    """Refuse an empty or binary file before a parser sees it.

    Raises:
        DataFormatError: The file is empty or holds NUL bytes (binary, not text).
    """
    if path.stat().st_size == 0:
        msg = f"{path} is empty; expected {expected}"
        raise DataFormatError(msg)
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if b"\x00" in head:
        msg = f"{path} is a binary file (it holds NUL bytes), not text; expected {expected}"
        raise DataFormatError(msg)


def _read_tsv(path: Path, expected: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a tab-separated file with a header row, every cell as a string.

    Returns:
        ``(frame, lines)``: blank lines dropped, ``lines[i]`` the 1-based line number of row i.

    Raises:
        DataFormatError: Empty, binary, not UTF-8, or a row with more fields than the header.
    """
    _check_text_file(path, expected)
    try:
        df = pd.read_csv(
            path,
            sep="\t",
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE,
            encoding="utf-8",
        )
    except UnicodeDecodeError as err:
        msg = f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); expected {expected}"
        raise DataFormatError(msg) from err
    except pd.errors.EmptyDataError as err:
        msg = f"{path} holds no header line; expected {expected}"
        raise DataFormatError(msg) from err
    except pd.errors.ParserError as err:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        found = (
            f"line {m.group(2)} has {m.group(3)} tab-separated fields, the header {m.group(1)}"
            if m
            else str(err).strip()
        )
        msg = f"{path}: {found}; expected {expected}"
        raise DataFormatError(msg) from err
    lines = np.arange(len(df), dtype=np.int64) + 2  # line 1 is the header
    blank = (df == "").all(axis=1).to_numpy() if len(df.columns) else np.zeros(len(df), bool)
    if blank.any():
        df = df[~blank].reset_index(drop=True)
        lines = lines[~blank]
    return df, lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _int_column(
    df: pd.DataFrame,
    column: str,
    lines: np.ndarray,
    path: Path,
    what: str,
    *,
    nullable: bool = False,
    allow_point_zero: bool = False,
) -> np.ndarray:
    """Parse a column of integer strings into int64, refusing anything else by line.

    Args:
        df: The frame of strings (:func:`_read_tsv`).
        column: The column to parse.
        lines: Line number of each row.
        path: The file, for messages.
        what: What the values are (``"user id"``), for messages.
        nullable: Empty cells are allowed (returned as ``pd.NA`` in an ``Int64`` array).
        allow_point_zero: ``123.0`` is read as 123 (timestamps written by pandas as floats).

    Returns:
        int64 values (an ``Int64`` pandas array when ``nullable``).

    Raises:
        DataFormatError: A value is empty (unless ``nullable``), not a number, fractional or
            beyond the 64-bit integer range; the message names the file, line and column.
    """
    s = df[column].astype(str).str.strip()
    empty = (s == "").to_numpy()
    pattern = r"[+-]?\d+(?:\.0*)?" if allow_point_zero else r"[+-]?\d+"
    ok = s.str.fullmatch(pattern).to_numpy(dtype=bool) | (empty & nullable)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        value = s.iloc[i]
        if value == "":
            found = "an empty cell"
        elif _is_number(value):
            found = f"{value!r}, a fractional number"
        else:
            found = f"{value!r}, not a number"
        msg = (
            f"{path}: line {lines[i]}, column {column!r}: expected an integer {what}, found {found}"
        )
        raise DataFormatError(msg)
    if allow_point_zero:
        s = s.str.replace(r"\.0*$", "", regex=True)
    digits = s.str.lstrip("+-").str.lstrip("0")
    n_digits = digits.str.len().to_numpy()
    big = (n_digits > len(_INT64_MAX_DIGITS)) | (
        (n_digits == len(_INT64_MAX_DIGITS)) & (digits > _INT64_MAX_DIGITS).to_numpy(dtype=bool)
    )
    if big.any():
        i = int(np.flatnonzero(big)[0])
        msg = (
            f"{path}: line {lines[i]}, column {column!r}: {what} {s.iloc[i]} is beyond the "
            f"64-bit integer range (at most {INT64_MAX}); renumber the {what}s from 0"
        )
        raise DataFormatError(msg)
    if nullable:
        return pd.array(s.where(~empty, None), dtype="Int64")
    return s.astype(np.int64).to_numpy()


def _float_column(df: pd.DataFrame, column: str, lines: np.ndarray, path: Path) -> np.ndarray:
    """Parse a nullable column of numbers (empty cell = null) into float64 with NaN for nulls.

    Raises:
        DataFormatError: A value is not a finite number; the message names line and column.
    """
    s = df[column].astype(str).str.strip()
    empty = (s == "").to_numpy()
    values = pd.to_numeric(s.where(~empty, None), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~empty & ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        msg = (
            f"{path}: line {lines[i]}, column {column!r}: expected a finite number or an empty "
            f"cell, found {s.iloc[i]!r}"
        )
        raise DataFormatError(msg)
    return values


def _read_json(path: Path, expected: str) -> Any:
    """Read a JSON file, naming it and what it should hold when it is not JSON.

    Raises:
        DataFormatError: Empty, binary, not UTF-8 or not JSON.
    """
    _check_text_file(path, expected)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        msg = f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); expected {expected}"
        raise DataFormatError(msg) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        msg = (
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            f"expected {expected}"
        )
        raise DataFormatError(msg) from err
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        msg = f"{path} is not usable JSON ({err}); expected {expected}"
        raise DataFormatError(msg) from err


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT64_MAX


# --- id maps -----------------------------------------------------------------------------------


def _keys_from_map(
    mapping: dict[str, int] | None,
    used_ids: np.ndarray,
    what: str,
    locate: Callable[[int | None], str],
    map_path: Path | None,
) -> list[str]:
    """Raw keys by id for ids 0..n-1, n = 1 + the largest id used or mapped.

    The ids are range-checked before anything of size n is allocated: ids contiguous from 0
    can be at most (distinct ids used) + (ids mapped) - 1, so a larger id is refused here.

    Args:
        mapping: Raw key -> id (from the id map), or None without a map.
        used_ids: The ids the interactions use.
        what: ``"user"`` or ``"item"``.
        locate: Where the used id at an index comes from (``"<file>, line 5"``; None: the
            file or folder of all of them).
        map_path: The id map file, for messages.

    Raises:
        DataFormatError: Ids are negative, out of range, repeat in the map, or leave gaps.
    """
    used_ids = np.asarray(used_ids, dtype=np.int64)
    if len(used_ids) and int(used_ids.min()) < 0:
        i = int(np.argmin(used_ids))
        msg = f"{locate(i)}: {what} ids must be >= 0, found {int(used_ids[i])}"
        raise DataFormatError(msg)
    uniq = np.unique(used_ids)
    if mapping is None:
        mapped = np.zeros(0, np.int64)
    else:
        for key, idx in mapping.items():
            if not _is_id(idx):
                msg = (
                    f"{map_path}: {what} key {key!r} maps to {idx!r}; expected a non-negative "
                    f"integer id below 2**63"
                )
                raise DataFormatError(msg)
        mapped = np.fromiter(mapping.values(), dtype=np.int64, count=len(mapping))
        if len(np.unique(mapped)) != len(mapped):
            msg = f"{map_path}: the {what} map gives the same id to two keys"
            raise DataFormatError(msg)
    # Range check first: n distinct ids contiguous from 0 are exactly 0..n-1.
    room = len(uniq) + len(mapped)
    top_used = int(uniq[-1]) if len(uniq) else -1
    top_mapped = int(mapped.max()) if len(mapped) else -1
    if max(top_used, top_mapped) >= room:
        where = locate(int(np.argmax(used_ids))) if top_used >= top_mapped else str(map_path)
        found = max(top_used, top_mapped)
        have = f"{len(uniq):,} distinct {what} ids used" + (
            f" and {len(mapped):,} mapped" if mapping is not None else ""
        )
        msg = (
            f"{where}: {what} id {found} is out of range: ids must be contiguous from 0, and "
            f"{have} can only be 0..{room - 1}; renumber the {what} ids as 0..N-1"
        )
        raise DataFormatError(msg)
    n = max(top_used, top_mapped) + 1
    known = np.zeros(n, dtype=bool)
    if mapping is None:
        keys = [str(k) for k in range(n)]
    else:
        keys = [""] * n
        for key, idx in mapping.items():
            keys[idx] = str(key)
        known[mapped] = True
        unmapped = np.setdiff1d(uniq, mapped)
        if len(unmapped):
            msg = (
                f"{map_path}: {len(unmapped)} {what} id(s) used but not in the map, e.g. "
                f"{int(unmapped[0])}"
            )
            raise DataFormatError(msg)
    known[uniq] = True
    if not known.all():
        where = str(map_path) if mapping is not None else locate(None)
        msg = (
            f"{where}: {what} ids must be contiguous from 0; id {int(np.flatnonzero(~known)[0])} "
            f"of 0..{n - 1} is neither used nor mapped"
        )
        raise DataFormatError(msg)
    return keys


def _read_tsv_map(path: Path, key_col: str, id_col: str) -> dict[str, int] | None:
    if not path.is_file():
        return None
    expected = f"tab-separated columns {key_col!r} and {id_col!r} with a header row"
    df, lines = _read_tsv(path, expected)
    if key_col not in df.columns or id_col not in df.columns:
        msg = f"{path}: expected {expected}, found columns {list(df.columns)}"
        raise DataFormatError(msg)
    ids = _int_column(df, id_col, lines, path, "id")
    keys = df[key_col].astype(str).tolist()
    mapping = dict(zip(keys, ids.tolist(), strict=True))
    if len(mapping) != len(df):
        msg = f"{path}: a key appears twice in column {key_col!r}"
        raise DataFormatError(msg)
    return mapping


def _read_json_map(path: Path) -> dict[str, int] | None:
    if not path.is_file():
        return None
    expected = "an id map {raw key: id}"
    data = _read_json(path, expected)
    if not isinstance(data, dict):
        found = _json_type(data)
        msg = f"{path} is not an id map: expected an object {{raw key: id}}, found {found}"
        raise DataFormatError(msg)
    return data


# --- imports -----------------------------------------------------------------------------------


def _check_import_target(paths: DatasetPaths, overwrite: bool) -> list[Path]:
    """Refuse to import over an existing dataset unless ``overwrite``.

    Returns:
        The dependent folders (:data:`DEPENDENT_FOLDERS`) an import with ``overwrite`` removes.

    Raises:
        UsageError: The dataset has ``prepared/`` or a dependent folder, and no ``overwrite``.
    """
    if paths.root.exists() and not paths.root.is_dir():
        msg = f"{paths.root} exists and is not a folder; move it away or choose another --name"
        raise UsageError(msg)
    dependents = [paths.root / d for d in DEPENDENT_FOLDERS if os.path.lexists(paths.root / d)]
    existing = ([paths.prepared] if os.path.lexists(paths.prepared) else []) + dependents
    if existing and not overwrite:
        names = ", ".join(f"{p.name}/" for p in existing)
        removes = ", ".join(f"{p.name}/" for p in dependents)
        msg = (
            f"dataset {paths.name!r} already exists in {paths.root} ({names}); choose another "
            "--name, or pass --overwrite to replace its prepared/"
            + (f" and remove {removes}, built on its old items" if dependents else "")
        )
        raise UsageError(msg)
    return dependents


def _set_aside(folder: Path) -> Path:
    """Rename ``folder`` (or a link) to a hidden ``.<name>.old-<pid>-*`` sibling (see atomic)."""
    aside = folder.parent / f".{folder.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.replace(folder, aside)
    return aside


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _write_import(
    paths: DatasetPaths,
    source: str,
    users: np.ndarray,
    items: np.ndarray,
    ratings: pa.Array,
    timestamps: pa.Array,
    codes: np.ndarray,
    user_keys: list[str],
    item_keys: list[str],
    files: list[str],
    dependents: list[Path],
) -> dict[str, Any]:
    """Build the prepared tables, then swap them in as ``prepared/`` and remove ``dependents``.

    ``prepared/`` is staged as a whole (:func:`atomic_dir`); the dependent folders are set
    aside just before the swap and put back if it fails, so a failure leaves the dataset as it
    was and a success leaves no folder built on the old items.
    """
    inter = interactions_table(users, items, user_keys, item_keys, ratings, timestamps, codes)
    pairs = users.astype(np.int64) * max(len(item_keys), 1) + items
    stats: dict[str, Any] = {
        "dataset": paths.name,
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
    item_table = items_table(item_keys, None)
    user_table = users_table(user_keys, users)
    for d in DEPENDENT_FOLDERS:
        clean_stale(paths.root, d)  # leftovers of an import killed mid-way
    aside: list[tuple[Path, Path]] = []
    try:
        with atomic_dir(paths.prepared) as stage:
            write_parquet(stage / INTERACTIONS_FILE, inter)
            write_parquet(stage / ITEMS_FILE, item_table)
            write_parquet(stage / USERS_FILE, user_table)
            write_json(stage / STATS_FILE, stats)
            for folder in dependents:
                aside.append((folder, _set_aside(folder)))
    except BaseException:
        for folder, old in reversed(aside):
            with contextlib.suppress(OSError):
                os.replace(old, folder)
        raise
    for _, old in aside:
        _remove(old)
    removed = [f"{folder.name}/" for folder, _ in aside]
    if removed:
        logger.warning(
            "replaced %s and removed %s of %s: they were built on the old items",
            paths.prepared,
            ", ".join(removed),
            paths.name,
        )
    logger.info(
        "imported %s from %s: %d users, %d items, %d interactions",
        paths.name,
        source,
        len(user_keys),
        len(item_keys),
        inter.num_rows,
    )
    return {**stats, "removed": removed}


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
    df, lines = _read_tsv(path, expected)
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
    users = _int_column(df, "userID", lines, path, "user id")
    items = _int_column(df, "itemID", lines, path, "item id")
    labels = _int_column(df, "x_label", lines, path, "split label (0, 1 or 2)")
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
        ratings = pa.array(_float_column(df, "rating", lines, path), pa.float64(), from_pandas=True)
    else:
        ratings = pa.nulls(n, pa.float32())
    if "timestamp" in df.columns:
        ts = _int_column(
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
            on its old items (:data:`DEPENDENT_FOLDERS`).

    Returns:
        The statistics written to ``stats.json``, plus ``removed``: the folders removed.

    Raises:
        UsageError: Bad folder or name, or ``name`` exists and no ``overwrite``.
        DataFormatError: The files do not have the MMRec format.
    """
    folder = _check_folder(Path(folder))
    paths = DatasetPaths.of(data_dir, name)
    dependents = _check_import_target(paths, overwrite)
    inter_path = find_inter_file(folder)
    parsed = read_inter(inter_path)
    lines = parsed["lines"]

    def locate(i: int | None) -> str:
        return str(inter_path) if i is None else f"{inter_path}, line {lines[i]}"

    files = [inter_path.name]
    umap = _read_tsv_map(folder / USER_MAP_FILE, "user_id", "userID")
    imap = _read_tsv_map(folder / ITEM_MAP_FILE, "asin", "itemID")
    files += [f for f, m in ((USER_MAP_FILE, umap), (ITEM_MAP_FILE, imap)) if m is not None]
    user_keys = _keys_from_map(umap, parsed["users"], "user", locate, folder / USER_MAP_FILE)
    item_keys = _keys_from_map(imap, parsed["items"], "item", locate, folder / ITEM_MAP_FILE)
    return _write_import(
        paths,
        "mmrec",
        parsed["users"],
        parsed["items"],
        parsed["ratings"],
        parsed["timestamps"],
        parsed["labels"],
        user_keys,
        item_keys,
        files,
        dependents,
    )


def _read_split_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)`` of a LATTICE split file ``{"userID": [itemID, ...]}``.

    Raises:
        DataFormatError: Not JSON, not an object of lists, or ids that are not integers in
            the 64-bit range.
    """
    expected = 'a LATTICE split file {"userID": [itemID, ...]}'
    data = _read_json(path, expected)
    if not isinstance(data, dict):
        msg = f"{path} is not a valid split file: expected {expected}, found {_json_type(data)}"
        raise DataFormatError(msg)
    us, its = [], []
    for user, lst in data.items():
        if not isinstance(lst, list) or not all(_is_id(x) for x in lst):
            if isinstance(lst, list):
                found = repr(next(x for x in lst if not _is_id(x)))[:80]
            else:
                found = _json_type(lst)
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
        if not _is_id(uid):
            msg = f"{path}: user key {user!r} is not an integer id from 0 to 2**63-1"
            raise DataFormatError(msg)
        us.append(np.full(len(lst), uid, dtype=np.int64))
        its.append(np.asarray(lst, dtype=np.int64))
    if not us:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(us), np.concatenate(its)


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
            on its old items (:data:`DEPENDENT_FOLDERS`).

    Returns:
        The statistics written to ``stats.json``, plus ``removed``: the folders removed.

    Raises:
        UsageError: Bad folder or name, a split file missing, or ``name`` exists and no
            ``overwrite``.
        DataFormatError: A file is not ``{userID: [itemID, ...]}`` JSON.
    """
    folder = _check_folder(Path(folder))
    paths = DatasetPaths.of(data_dir, name)
    dependents = _check_import_target(paths, overwrite)
    us, its, codes, where = [], [], [], []
    for split, fname in LATTICE_SPLIT_FILES.items():
        path = folder / fname
        if not path.is_file():
            msg = (
                f"{path} does not exist; a LATTICE folder holds "
                f"{', '.join(LATTICE_SPLIT_FILES.values())}"
            )
            raise UsageError(msg)
        u, i = _read_split_file(path)
        us.append(u)
        its.append(i)
        codes.append(np.full(len(u), SPLIT_CODES[split], dtype=np.int8))
        where.append(len(u))
    users, items, labels = np.concatenate(us), np.concatenate(its), np.concatenate(codes)
    if len(users) == 0:
        msg = f"{folder}: the split files hold no interaction"
        raise DataFormatError(msg)
    ends = np.cumsum(where)
    split_files = list(LATTICE_SPLIT_FILES.values())

    def locate(i: int | None) -> str:
        if i is None:
            return str(folder)
        return str(folder / split_files[int(np.searchsorted(ends, i, side="right"))])

    files = list(split_files)
    umap = _read_json_map(folder / LATTICE_USER_MAP)
    imap = _read_json_map(folder / LATTICE_ITEM_MAP)
    files += [f for f, m in ((LATTICE_USER_MAP, umap), (LATTICE_ITEM_MAP, imap)) if m is not None]
    user_keys = _keys_from_map(umap, users, "user", locate, folder / LATTICE_USER_MAP)
    item_keys = _keys_from_map(imap, items, "item", locate, folder / LATTICE_ITEM_MAP)
    n = len(users)
    return _write_import(
        paths,
        "lattice",
        users,
        items,
        pa.nulls(n, pa.float32()),
        pa.nulls(n, pa.int64()),
        labels,
        user_keys,
        item_keys,
        files,
        dependents,
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


def mmrec_frames(
    interactions: pa.Table, items: pa.Table, users: pa.Table, name: str
) -> dict[str, pd.DataFrame]:
    """The three tables of the MMRec layout: ``{"<name>.inter": frame, id map: frame, ...}``.

    Raises:
        DataFormatError: A raw key cannot be written to a tab-separated id map.
    """
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
    return {
        f"{name}.inter": inter,
        USER_MAP_FILE: pd.DataFrame(
            {"user_id": ukeys, "userID": users.column("user_id").to_numpy()}
        ),
        ITEM_MAP_FILE: pd.DataFrame({"asin": ikeys, "itemID": items.column("item_id").to_numpy()}),
    }


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_NONE, lineterminator="\n")


def write_all(out: Path, writers: dict[str, Callable[[Path], None]]) -> list[Path]:
    """Write several files into ``out`` all or none: every file to a temporary, then renames.

    Args:
        out: The folder (created if needed; removed again if a write fails and it was new).
        writers: File name -> function writing that file to the path it is given.

    Returns:
        The written files.
    """
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            for fname, write in writers.items():
                tmp = stack.enter_context(atomic_path(out / fname, suffix=Path(fname).suffix))
                write(tmp)
        # Leaving the stack renamed every temporary into place (or removed them all on error).
    except BaseException:
        for p in created:  # deepest first: only the folders this call made, only if empty
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    return [out / fname for fname in writers]


def _own_files(out: Path) -> list[str]:
    """The files a previous export listed in its marker (plain names of our kinds only)."""
    marker = out / EXPORT_MARKER
    if not marker.is_file():
        return []
    try:
        listed = json.loads(marker.read_text(encoding="utf-8")).get("files", [])
    except (ValueError, UnicodeDecodeError, AttributeError, OSError):
        logger.warning("%s is not readable JSON; no previous file of it is removed", marker)
        return []
    ours = {USER_MAP_FILE, ITEM_MAP_FILE, *FEATURE_FILES.values()}
    names = []
    for f in listed if isinstance(listed, list) else []:
        try:
            check_name(f, "file")
        except UsageError:
            continue
        if f in ours or f.endswith(".inter"):
            names.append(f)
    return names


def check_export_dir(
    out: Path, *, overwrite: bool = False, protected: Iterable[Path] = (), option: str = "--out"
) -> None:
    """Check that an export may write into ``out`` (see :func:`write_export`); writes nothing.

    Raises:
        UsageError: ``out`` is a file, read-only, would replace a ``protected`` folder, or is a
            non-empty folder without :data:`EXPORT_MARKER` and no ``overwrite``.
    """
    check_output_dir(
        out,
        marker=EXPORT_MARKER,
        what="export folder",
        overwrite=overwrite,
        protected=protected,
        option=option,
        overwrite_means="write into it (files of other names are kept)",
        overwrite_flag="--overwrite" if option.startswith("--") else "overwrite=True",
    )
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        msg = f"{option} {out} is read-only (permission denied); make it writable or choose another"
        raise UsageError(msg)


def write_export(
    out: Path,
    frames: dict[str, pd.DataFrame],
    feature_files: dict[str, FeatureInput],
    *,
    layout: str,
    meta: dict[str, Any],
    overwrite: bool = False,
    protected: Iterable[Path] = (),
    option: str = "--out",
) -> dict[str, Any]:
    """Write an MMRec / AlignRec folder, all or nothing: the one writer of every export.

    The inputs come read and checked; ``out`` is checked (:func:`check_export_dir`; callers
    also check it before reading their inputs, so a refused folder fails fast). A feature file
    of the other modality that no export wrote is refused in the AlignRec layout (its code would
    read it with the new ``image_feat.npy``) and kept with a warning in the MMRec layout. Then
    every file goes to a temporary in ``out`` and is renamed into place (:func:`write_all`),
    files the previous export listed in its marker and this one does not write are removed,
    and the marker :data:`EXPORT_MARKER` lists the new files. Other files are never deleted.

    Args:
        out: Target folder (created if needed).
        frames: ``{"<name>.inter": frame, id map: frame}`` (:func:`mmrec_frames`).
        feature_files: ``{"image_feat.npy": input, ...}``
            (:func:`~alignrec_data.export_features.assign_files`).
        layout: ``mmrec`` or ``alignrec``.
        meta: What the marker says besides ``layout``, ``files`` and ``features`` (the tool,
            the source, the name).
        overwrite: Write into a non-empty ``out`` that is not a previous export.
        protected: Folders ``out`` may neither be nor contain.
        option: The option or argument that named ``out``, for messages.

    Returns:
        ``{"files": [written, in order], "removed": [stale files removed], "features":
        {file: {"source", "modality", "shape"}}}``.

    Raises:
        UsageError: ``out`` may not be written, or holds a foreign ``text_feat.npy`` in the
            AlignRec layout.
    """
    check_export_dir(out, overwrite=overwrite, protected=protected, option=option)
    own = _own_files(out)
    new = [*frames, *feature_files]
    stale = [f for f in own if f not in new and (out / f).is_file()]
    if feature_files:
        for other in FEATURE_FILES.values():
            if other in new or other in own or not (out / other).exists():
                continue
            if layout == "alignrec":
                msg = (
                    f"{out / other} was not written by alignrec-data export, and the AlignRec "
                    "code would read it with the new image_feat.npy; move it away or choose "
                    f"another {option}"
                )
                raise UsageError(msg)
            logger.warning("%s (not written by this tool) is left as it is", out / other)

    writers: dict[str, Callable[[Path], None]] = {
        f: (lambda p, fr=fr: _write_tsv(fr, p)) for f, fr in frames.items()
    }
    for f, inp in feature_files.items():
        writers[f] = lambda p, m=inp.matrix: write_npy_to(p, m)
    write_all(out, writers)
    for f in stale:
        (out / f).unlink(missing_ok=True)
        logger.info("removed %s from %s: written by the previous export, not by this one", f, out)
    described = {
        f: {"source": i.source, "modality": i.modality, "shape": list(i.matrix.shape)}
        for f, i in feature_files.items()
    }
    marker = {**meta, "layout": layout, "files": sorted(new), "features": described}
    write_json(out / EXPORT_MARKER, marker)
    return {"files": new, "removed": stale, "features": described}


def export_mmrec(
    data_dir: str | Path,
    dataset: str,
    out: str | Path,
    *,
    name: str | None = None,
    features: str | Sequence[str] | None = None,
    layout: str = "mmrec",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export a prepared dataset to the MMRec / AlignRec layout, all or nothing.

    Every input (dataset name, prepared tables, feature files: item order, rows, finiteness)
    is read and checked, and ``out`` checked (:func:`check_export_dir`), before the first byte
    is written; then :func:`write_export` writes the folder and its marker. A non-empty ``out``
    without the marker is refused unless ``overwrite``; files the export did not write are
    never deleted (those a previous export listed in its marker and this one does not write
    are).

    Args:
        data_dir: The data directory.
        dataset: The prepared dataset.
        out: Target folder, e.g. ``MMRec/data/baby``.
        name: MMRec dataset name (``<name>.inter``); defaults to the name of ``out``.
        features: Feature specs (see :mod:`alignrec_data.export_features`), e.g.
            ``"effnet-image,minilm-text"``; with ``layout="alignrec"`` the default is
            ``alignrec``.
        layout: ``mmrec`` or ``alignrec``.
        overwrite: Write into a non-empty ``out`` that is not a previous export.

    Returns:
        ``{"dataset", "out", "name", "files", "removed", "users", "items", "interactions",
        "splits", "features": {"layout", "features", "removed"}}``.

    Raises:
        UsageError: Bad name, missing dataset or feature variant, a layout that cannot hold the
            features, or an ``out`` that may not be written.
        DataFormatError: A prepared or feature file that does not fit.
    """
    out = Path(out)
    paths = DatasetPaths.of(data_dir, dataset)
    name = check_name(name or out.name, "MMRec dataset name (--name)")
    specs = check_specs(features, layout)
    protected = protected_folders(data_dir)
    check_export_dir(out, overwrite=overwrite, protected=protected)
    inter, items, users = read_prepared(paths.prepared)
    frames = mmrec_frames(inter, items, users, name)
    inputs = resolve_features(specs, paths.features, items.column("item_key").to_pylist())
    written = write_export(
        out,
        frames,
        assign_files(inputs, layout) if inputs else {},
        layout=layout,
        meta={"tool": "alignrec-data export mmrec", "dataset": dataset, "name": name},
        overwrite=overwrite,
        protected=protected,
    )
    logger.info("exported %s to %s", dataset, out)
    stale = written["removed"]
    return {
        "dataset": dataset,
        "out": str(out),
        "name": name,
        "files": written["files"],
        "removed": stale,
        "users": users.num_rows,
        "items": items.num_rows,
        "interactions": inter.num_rows,
        "splits": split_counts(inter),
        "features": {
            "layout": layout,
            "features": written["features"],
            "removed": [f for f in stale if f in FEATURE_FILES.values()],
        },
    }
