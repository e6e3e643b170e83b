"""Writing an import: the parsed source tables become ``<data-dir>/<name>/prepared/``.

Both importers (:mod:`~alignrec_data.interop.mmrec_import`,
:mod:`~alignrec_data.interop.lattice_import`) run through :func:`run_import`: the folder and
the target are checked, the source is read and checked in full, and only then is anything
written. An import over a dataset that already has ``prepared/`` needs ``overwrite=True`` and
then removes the folders that were built on the old items (:data:`DEPENDENT_FOLDERS`).

Item features the source brings (the ``*.npy`` files of an MMRec folder,
:class:`ImportedFeature`) are written as ``features/<variant>.parquet`` in the same
all-or-nothing step: ``features/`` is staged in a hidden sibling (``.features.tmp-<pid>-*``)
while ``prepared/`` is staged, and both are swapped in together, or neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from alignrec_data.atomic import _umask, atomic_dir, clean_stale, write_json, write_parquet
from alignrec_data.errors import UsageError
from alignrec_data.features import write_features
from alignrec_data.paths import DatasetPaths
from alignrec_data.prepare import interactions_table, items_table, split_counts, users_table
from alignrec_data.schema import INTERACTIONS_FILE, ITEMS_FILE, STATS_FILE, USERS_FILE

logger = logging.getLogger(__name__)

# Folders of a dataset built on its items: an import that replaces prepared/ removes them.
DEPENDENT_FOLDERS = ("features", "models", "metrics", "report", "release")


@dataclass(frozen=True)
class ImportedFeature:
    """An item feature matrix of the source, read and checked in full.

    Attributes:
        variant: The feature variant it becomes (``features/<variant>.parquet``).
        file: The source file name (e.g. ``image_feat.npy``).
        matrix: (N_items, d) float32, row i = item i.
        sha256: sha256 of the source file.
        dtype: The dtype the source file stored (before conversion to float32).
    """

    variant: str
    file: str
    matrix: np.ndarray
    sha256: str
    dtype: str

    def metadata(self, source: str) -> dict[str, Any]:
        """What the feature file records about where it came from."""
        return {
            "alignrec.import": {
                "tool": f"alignrec-data import {source}",
                "layout": source,
                "file": self.file,
                "sha256": self.sha256,
                "dtype": self.dtype,
                "shape": list(self.matrix.shape),
            }
        }


@dataclass(frozen=True)
class ImportedTables:
    """A source read and checked in full, ready to be written as ``prepared/``.

    Attributes:
        source: The layout it came from (``mmrec`` or ``lattice``).
        users: int64 user id of each interaction.
        items: int64 item id of each interaction.
        ratings: float ratings (nulls where unknown).
        timestamps: int64 timestamps (nulls where unknown).
        codes: int8 split code of each interaction.
        user_keys: Raw key of each user id.
        item_keys: Raw key of each item id.
        files: The source files read.
        features: Item feature matrices of the source (written to ``features/``).
    """

    source: str
    users: np.ndarray
    items: np.ndarray
    ratings: pa.Array
    timestamps: pa.Array
    codes: np.ndarray
    user_keys: list[str]
    item_keys: list[str]
    files: list[str]
    features: list[ImportedFeature] = field(default_factory=list)


def check_import_target(paths: DatasetPaths, overwrite: bool) -> list[Path]:
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


def run_import(
    folder: str | Path,
    name: str,
    data_dir: str | Path,
    overwrite: bool,
    read: Callable[[Path], ImportedTables],
) -> dict[str, Any]:
    """Check the folder and the target, read the source with ``read``, then write it.

    Returns:
        The statistics written to ``stats.json``, plus ``removed``: the folders removed.
    """
    source = Path(folder)
    if not source.is_dir():
        msg = f"{source} is not a folder; pass the dataset folder to import"
        raise UsageError(msg)
    paths = DatasetPaths.of(data_dir, name)
    dependents = check_import_target(paths, overwrite)
    return write_import(paths, read(source), dependents)


def _stats(paths: DatasetPaths, t: ImportedTables, inter: pa.Table) -> dict[str, Any]:
    pairs = t.users.astype(np.int64) * max(len(t.item_keys), 1) + t.items
    return {
        "dataset": paths.name,
        "source": t.source,
        "source_files": t.files,
        "users": len(t.user_keys),
        "items": len(t.item_keys),
        "interactions": inter.num_rows,
        "splits": split_counts(inter),
        "duplicate_pairs": int(len(pairs) - len(np.unique(pairs))),
        "has_ratings": t.ratings.null_count < len(t.ratings),
        "has_timestamps": t.timestamps.null_count < len(t.timestamps),
        "missing_image_url_rate": 1.0 if t.item_keys else 0.0,
        "features": {
            f.variant: {"file": f.file, "dim": int(f.matrix.shape[1]), "sha256": f.sha256}
            for f in t.features
        },
    }


def _stage_features(paths: DatasetPaths, t: ImportedTables) -> Path:
    """Write the imported features into a hidden staging sibling of ``features/``."""
    prefix = f".{paths.features.name}.tmp-{os.getpid()}-"
    stage = Path(tempfile.mkdtemp(prefix=prefix, dir=paths.root))
    try:
        os.chmod(stage, 0o777 & ~_umask())  # the mode a plain mkdir gives, not mkdtemp's 0700
        for f in t.features:
            write_features(
                stage / f"{f.variant}.parquet", t.item_keys, f.matrix, metadata=f.metadata(t.source)
            )
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def write_import(paths: DatasetPaths, t: ImportedTables, dependents: list[Path]) -> dict[str, Any]:
    """Build the prepared tables, then swap them in as ``prepared/`` and remove ``dependents``.

    ``prepared/`` is staged as a whole (:func:`atomic_dir`), and so is ``features/`` when the
    source brings features; the dependent folders are set aside just before the swap and put
    back if it fails, so a failure leaves the dataset as it was and a success leaves no folder
    built on the old items.
    """
    inter = interactions_table(
        t.users, t.items, t.user_keys, t.item_keys, t.ratings, t.timestamps, t.codes
    )
    stats = _stats(paths, t, inter)
    for d in DEPENDENT_FOLDERS:
        clean_stale(paths.root, d)  # leftovers of an import killed mid-way
    aside: list[tuple[Path, Path]] = []
    features_stage: Path | None = None  # then features/ itself once it is placed
    try:
        with atomic_dir(paths.prepared) as stage:
            write_parquet(stage / INTERACTIONS_FILE, inter)
            write_parquet(stage / ITEMS_FILE, items_table(t.item_keys, None))
            write_parquet(stage / USERS_FILE, users_table(t.user_keys, t.users))
            write_json(stage / STATS_FILE, stats)
            if t.features:
                features_stage = _stage_features(paths, t)
            for folder in dependents:  # renamed (even a link) to a hidden sibling, see atomic
                old = folder.parent / f".{folder.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
                os.replace(folder, old)
                aside.append((folder, old))
            if features_stage is not None:
                # features/ was set aside above (a dependent) or never existed.
                os.replace(features_stage, paths.features)
                features_stage = paths.features
    except BaseException:
        if features_stage is not None:
            shutil.rmtree(features_stage, ignore_errors=True)
        for folder, old in reversed(aside):
            with contextlib.suppress(OSError):
                os.replace(old, folder)
        raise
    for _, old in aside:
        if old.is_symlink() or not old.is_dir():
            old.unlink(missing_ok=True)
        else:
            shutil.rmtree(old, ignore_errors=True)
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
        t.source,
        len(t.user_keys),
        len(t.item_keys),
        inter.num_rows,
    )
    for f in t.features:
        logger.info(
            "imported %s as feature variant %s (%d x %d)", f.file, f.variant, *f.matrix.shape
        )
    return {**stats, "removed": removed}
