"""Import of an MMRec dataset folder.

The folder holds ``<name>.inter``: tab-separated with header ``userID itemID [rating]
[timestamp] x_label``, and optionally ``u_id_mapping.csv`` (``user_id<TAB>userID``) and
``i_id_mapping.csv`` (``asin<TAB>itemID``). Without id maps a raw key is the id as a string.

Every ``*.npy`` file of the folder is an item feature matrix (MMRec's ``image_feat.npy`` and
``text_feat.npy``: N_items x d, row i = itemID i) and becomes a feature variant
(:func:`npy_variant`: ``mmrec-image``, ``mmrec-text``, else ``mmrec-<stem>``). Each is checked
before anything is written (:func:`read_npy_features`): the header against the file size, a
2-D integer or float matrix, one row per item of the import, no pickle (never unpickled), only
finite values. A file that fails is refused with its name; nothing is imported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.export_features import load_npy, npy_header
from alignrec_data.integrity import sha256_file
from alignrec_data.interop.ids import keys_from_map
from alignrec_data.interop.prepared import ImportedFeature, ImportedTables, run_import
from alignrec_data.interop.tables import float_column, int_column, read_tsv, read_tsv_map
from alignrec_data.paths import check_name
from alignrec_data.schema import SPLIT_CODES

logger = logging.getLogger(__name__)

USER_MAP_FILE = "u_id_mapping.csv"
ITEM_MAP_FILE = "i_id_mapping.csv"
INTER_COLUMNS = "userID itemID [rating] [timestamp] x_label"
# MMRec's feature files and the variants they become; another <stem>.npy: mmrec-<stem>.
NPY_VARIANTS = {"image_feat.npy": "mmrec-image", "text_feat.npy": "mmrec-text"}
NPY_VARIANT_PREFIX = "mmrec-"


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


def read_inter(
    path: str | Path,
) -> tuple[np.ndarray, np.ndarray, pa.Array, pa.Array, np.ndarray, np.ndarray]:
    """Read and check an MMRec ``.inter`` file.

    Returns:
        ``(users, items, ratings, timestamps, codes, lines)``: int64 arrays, a float pyarrow
        array and an int64 pyarrow array (nulls for empty cells or a missing column), int8
        split codes, and the line number of each row.

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
    if "rating" in df.columns:
        ratings = pa.array(float_column(df, "rating", lines, path), pa.float64(), from_pandas=True)
    else:
        ratings = pa.nulls(len(df), pa.float32())
    if "timestamp" in df.columns:
        ts = int_column(
            df, "timestamp", lines, path, "timestamp", nullable=True, allow_point_zero=True
        )
        timestamps = pa.array(ts, pa.int64(), from_pandas=True)
    else:
        timestamps = pa.nulls(len(df), pa.int64())
    return users, items, ratings, timestamps, labels.astype(np.int8), lines


def npy_variant(path: Path) -> str:
    """The feature variant a ``.npy`` file of an MMRec folder becomes.

    Raises:
        DataFormatError: ``mmrec-<stem>`` is not a valid variant name (the file is named).
    """
    variant = NPY_VARIANTS.get(path.name, NPY_VARIANT_PREFIX + path.stem)
    try:
        return check_name(variant, "feature variant")
    except UsageError as err:
        msg = (
            f"{path}: its name gives the feature variant {variant!r}, which is not a valid "
            "name (letters, digits, '.', '_', '+', '-'); rename the file or move it out of "
            "the folder"
        )
        raise DataFormatError(msg) from err


def _rows_error(path: Path, rows: int, n_items: int) -> DataFormatError:
    return DataFormatError(
        f"{path}: {rows} rows, but the dataset has {n_items} items (row i must be itemID i); "
        "every *.npy of an MMRec folder is read as an item feature matrix: fix it or move it "
        "out of the folder"
    )


def read_npy_features(folder: Path, n_items: int) -> list[ImportedFeature]:
    """Read and check every ``*.npy`` of an MMRec folder as an item feature matrix.

    Every header is checked (:func:`~alignrec_data.export_features.npy_header`: size, 2-D
    numeric, no pickle; one row per item) before any matrix is loaded
    (:func:`~alignrec_data.export_features.load_npy`: ``allow_pickle=False``, finite,
    converted to float32).

    Args:
        folder: The MMRec folder.
        n_items: The number of items of the import (row i = itemID i).

    Returns:
        One :class:`~alignrec_data.interop.prepared.ImportedFeature` per file, sorted by name.

    Raises:
        DataFormatError: A file that is not such a matrix, or two files giving one variant
            (each message names the file).
    """
    variants: dict[str, Path] = {}
    for path in sorted(folder.glob("*.npy")):
        if path.name.startswith(".") or not path.is_file():
            continue
        variant = npy_variant(path)
        if variant in variants:
            msg = (
                f"{path} and {variants[variant].name} would both become the feature variant "
                f"{variant!r}; rename or move one of them"
            )
            raise DataFormatError(msg)
        variants[variant] = path
        rows = npy_header(path)[0][0]
        if rows != n_items:
            raise _rows_error(path, rows, n_items)
    out = []
    for variant, path in variants.items():
        sha, dtype = sha256_file(path), str(npy_header(path)[1])
        matrix = load_npy(path)
        if matrix.shape[0] != n_items:  # the file changed since its header was read
            raise _rows_error(path, matrix.shape[0], n_items)
        out.append(ImportedFeature(variant, path.name, matrix, sha, dtype))
    return out


def _read_mmrec(folder: Path) -> ImportedTables:
    """Read and check the ``.inter`` file, the id maps and the ``*.npy`` of an MMRec folder.

    A warning says when our own export marker says ``image_feat.npy`` holds the fused
    AlignRec feature (it is imported as ``mmrec-image``).
    """
    from alignrec_data.interop.export import EXPORT_MARKER, read_marker

    inter_path = find_inter_file(folder)
    users, items, ratings, timestamps, codes, lines = read_inter(inter_path)

    def locate(i: int | None) -> str:
        return str(inter_path) if i is None else f"{inter_path}, line {lines[i]}"

    umap = read_tsv_map(folder / USER_MAP_FILE, "user_id", "userID")
    imap = read_tsv_map(folder / ITEM_MAP_FILE, "asin", "itemID")
    user_keys = keys_from_map(umap, users, "user", locate, folder / USER_MAP_FILE)
    item_keys = keys_from_map(imap, items, "item", locate, folder / ITEM_MAP_FILE)
    maps = [name for name, m in ((USER_MAP_FILE, umap), (ITEM_MAP_FILE, imap)) if m is not None]
    features = read_npy_features(folder, len(item_keys))
    marker = folder / EXPORT_MARKER  # ours may say image_feat.npy holds the fused feature
    if marker.is_file() and any(f.variant == "mmrec-image" for f in features):
        doc = read_marker(folder)
        if isinstance(doc, dict) and doc.get("layout") == "alignrec":
            logger.warning(
                "%s says this folder has the AlignRec layout: its image_feat.npy holds the fused "
                "image+text feature, imported as mmrec-image (read as an image feature)",
                marker,
            )
    files = [inter_path.name, *maps, *(f.file for f in features)]
    return ImportedTables(
        "mmrec", users, items, ratings, timestamps, codes, user_keys, item_keys, files, features
    )


def import_mmrec(
    folder: str | Path, name: str, data_dir: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Import an MMRec dataset folder into ``<data_dir>/<name>/prepared/`` and ``features/``.

    Every file is read and checked before anything is written. Each ``*.npy`` of the folder
    becomes ``features/<variant>.parquet`` (:func:`read_npy_features`), in the same
    all-or-nothing step as ``prepared/``.

    Args:
        folder: The MMRec folder (``<name>.inter``, optional id maps and ``*.npy`` features).
        name: The dataset name to create.
        data_dir: The data directory.
        overwrite: Replace an existing ``prepared/`` of ``name`` and remove the folders built
            on its old items (:data:`~alignrec_data.interop.prepared.DEPENDENT_FOLDERS`).

    Returns:
        The statistics written to ``stats.json`` (``features``: variant -> ``{"file", "dim",
        "sha256"}``), plus ``removed``: the folders removed.

    Raises:
        UsageError: Bad folder or name, or ``name`` exists and no ``overwrite``.
        DataFormatError: The files do not have the MMRec format, or a ``*.npy`` is not an
            item feature matrix of the import.
    """
    return run_import(folder, name, data_dir, overwrite, _read_mmrec)
