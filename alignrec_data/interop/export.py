"""Export of a prepared dataset (or a release) to the MMRec / AlignRec folder layout.

:func:`export_mmrec` writes the ``.inter`` file and both id maps (:func:`mmrec_frames`) and,
with ``features``, the feature files of :mod:`alignrec_data.export_features`, plus the marker
:data:`EXPORT_MARKER`, all written by :func:`write_export`, the one writer of this layout
(``to_mmrec`` of a release uses it too). Unknown ratings and timestamps are written as empty
cells, so export then import gives identical tables.

An export writes only its own files into ``out``, all or none (every file goes to a temporary
first), and never deletes a file it did not write.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from alignrec_data.atomic import atomic_path, write_json
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.export_features import (
    FEATURE_FILES,
    FeatureInput,
    assign_files,
    check_specs,
    resolve_features,
    write_npy_to,
)
from alignrec_data.interop.mmrec_import import ITEM_MAP_FILE, USER_MAP_FILE
from alignrec_data.interop.tables import read_json
from alignrec_data.outputs import check_output_dir, protected_folders
from alignrec_data.paths import DatasetPaths, check_name
from alignrec_data.prepare import read_prepared, split_counts
from alignrec_data.schema import SPLIT_CODES

logger = logging.getLogger(__name__)

# The file `export mmrec` writes into every folder it fills (what it wrote, for the next run).
EXPORT_MARKER = "alignrec_export.json"
# How the tables of the MMRec layout are written (pandas.DataFrame.to_csv options).
_TSV = {"sep": "\t", "index": False, "quoting": csv.QUOTE_NONE, "lineterminator": "\n"}


def _tsv_keys(keys: list[str], what: str) -> list[str]:
    """``keys``, each checked to be writable to a tab-separated id map."""
    for k in keys:
        if any(c in k for c in "\t\n\r") or k == "":
            msg = (
                f"{what} key {k!r} is empty or holds a tab or newline; it cannot be written to "
                "the tab-separated MMRec id map"
            )
            raise DataFormatError(msg)
    return keys


def mmrec_frames(
    interactions: pa.Table, items: pa.Table, users: pa.Table, name: str
) -> dict[str, pd.DataFrame]:
    """The three tables of the MMRec layout: ``{"<name>.inter": frame, id map: frame, ...}``.

    Raises:
        DataFormatError: A raw key cannot be written to a tab-separated id map.
    """
    inter = pd.DataFrame(
        {
            "userID": interactions.column("user_id").to_numpy(),
            "itemID": interactions.column("item_id").to_numpy(),
            "rating": interactions.column("rating").to_pandas(),
            "timestamp": interactions.column("timestamp").to_pandas().astype("Int64"),
            "x_label": pd.Series(interactions.column("split").to_pylist())
            .map(SPLIT_CODES)
            .astype(np.int64),
        }
    )
    ukeys = _tsv_keys(users.column("user_key").to_pylist(), "user")
    ikeys = _tsv_keys(items.column("item_key").to_pylist(), "item")
    return {
        f"{name}.inter": inter,
        USER_MAP_FILE: pd.DataFrame(
            {"user_id": ukeys, "userID": users.column("user_id").to_numpy()}
        ),
        ITEM_MAP_FILE: pd.DataFrame({"asin": ikeys, "itemID": items.column("item_id").to_numpy()}),
    }


def write_all(out: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write several files into ``out`` all or none: every file to a temporary, then renames.

    Args:
        out: The folder (created if needed; removed again if a write fails and it was new).
        writers: File name -> function writing that file to the path it is given.
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


def read_marker(folder: Path) -> Any:
    """The JSON of the :data:`EXPORT_MARKER` of ``folder``, or None when it is not readable."""
    try:
        return read_json(folder / EXPORT_MARKER, "the marker of an export")
    except (DataFormatError, OSError):
        return None


def _own_files(out: Path) -> list[str]:
    """The files a previous export listed in its marker (plain names of our kinds only)."""
    marker = out / EXPORT_MARKER
    if not marker.is_file():
        return []
    doc = read_marker(out)
    if not isinstance(doc, dict):
        logger.warning("%s is not readable JSON; no previous file of it is removed", marker)
        return []
    listed = doc.get("files", [])
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
    for other in FEATURE_FILES.values() if feature_files else ():
        if other in new or other in own or not (out / other).exists():
            continue  # ours, or absent: a foreign feature file is refused or kept with a warning
        if layout == "alignrec":
            msg = (
                f"{out / other} was not written by alignrec-data export, and the AlignRec "
                "code would read it with the new image_feat.npy; move it away or choose "
                f"another {option}"
            )
            raise UsageError(msg)
        logger.warning("%s (not written by this tool) is left as it is", out / other)

    writers = {f: partial(fr.to_csv, **_TSV) for f, fr in frames.items()}
    writers |= {f: partial(write_npy_to, matrix=i.matrix) for f, i in feature_files.items()}
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
    specs = check_specs(features, layout, paths.features)
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
    return {
        "dataset": dataset,
        "out": str(out),
        "name": name,
        "files": written["files"],
        "removed": written["removed"],
        "users": users.num_rows,
        "items": items.num_rows,
        "interactions": inter.num_rows,
        "splits": split_counts(inter),
        "features": {
            "layout": layout,
            "features": written["features"],
            "removed": [f for f in written["removed"] if f in FEATURE_FILES.values()],
        },
    }
