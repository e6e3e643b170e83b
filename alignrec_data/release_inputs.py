"""Reading and checking a release's table inputs: the prepared tables and the feature files.

Everything here only reads; :func:`alignrec_data.release.build_release` calls it before the
first byte of the release is written.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.paths import DatasetPaths
from alignrec_data.schema import INTERACTIONS_FILE, ITEMS_FILE, STATS_FILE

log = logging.getLogger(__name__)


def read_table(path: Path, what: str, fix: str) -> pa.Table:
    """Read a parquet input; a missing or unreadable file is an error naming ``what``."""
    if not path.is_file():
        msg = f"{what} {path} does not exist; {fix}"
        raise UsageError(msg)
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        msg = f"{what} {path} is not a readable parquet file ({err}); {fix}"
        raise DataFormatError(msg) from err


def require(table: pa.Table, cols: tuple[str, ...], path: Path) -> None:
    """Refuse a table without the columns ``cols``."""
    missing = [c for c in cols if c not in table.column_names]
    if missing:
        msg = (
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(found {', '.join(table.column_names)}); "
            "re-run `alignrec-data prepare` to rewrite it in the current layout"
        )
        raise DataFormatError(msg)


def read_json_or_none(path: Path) -> Any:
    """A JSON document, or None (with a warning) when it is not readable JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        log.warning("ignore %s: not readable JSON (%s)", path, err)
        return None


@dataclass(frozen=True)
class Prepared:
    """The checked prepared tables of a dataset.

    Attributes:
        items: ``prepared/items.parquet`` sorted by ``item_id`` (0..N-1).
        interactions: ``prepared/interactions.parquet`` (item ids inside 0..N-1).
        interactions_path: Its path (for messages).
        item_keys: Raw item keys, row i = item i.
        stats: ``prepared/stats.json`` when it is a JSON object, else None.
        n_users: Users (max user_id + 1; 0 without interactions).
    """

    items: pa.Table
    interactions: pa.Table
    interactions_path: Path
    item_keys: list[str]
    stats: dict[str, Any] | None
    n_users: int


def read_prepared(paths: DatasetPaths) -> Prepared:
    """Read and check the prepared items and interactions of the dataset ``paths.name``."""
    fix = f"run `alignrec-data prepare {paths.name}` (or `alignrec-data import`) first"
    inter_path = paths.prepared / INTERACTIONS_FILE
    items_path = paths.prepared / ITEMS_FILE
    inter = read_table(inter_path, "prepared interactions", fix)
    items = read_table(items_path, "prepared items", fix)
    require(inter, ("user_id", "item_id", "split"), inter_path)
    require(items, ("item_id", "item_key"), items_path)
    items = items.sort_by("item_id")
    n_items = items.num_rows
    if not np.array_equal(items.column("item_id").to_numpy(), np.arange(n_items)):
        msg = f"{items_path}: item_id must be 0..N-1 (contiguous); re-run prepare"
        raise DataFormatError(msg)
    item_ids = inter.column("item_id").to_numpy()
    if len(item_ids) and (item_ids.min() < 0 or item_ids.max() >= n_items):
        msg = f"{inter_path}: item_id outside 0..{n_items - 1} of {items_path}; re-run prepare"
        raise DataFormatError(msg)
    stats_path = paths.prepared / STATS_FILE
    stats = read_json_or_none(stats_path) if stats_path.is_file() else None
    return Prepared(
        items=items,
        interactions=inter,
        interactions_path=inter_path,
        item_keys=items.column("item_key").to_pylist(),
        stats=stats if isinstance(stats, dict) else None,
        n_users=int(inter.column("user_id").to_numpy().max()) + 1 if inter.num_rows else 0,
    )


def select_variants(features_dir: Path, requested: tuple[str, ...]) -> list[str]:
    """The feature variants to release: ``requested``, or every file in ``features_dir``."""
    # (glob finds nothing in a folder that does not exist)
    found = sorted(p.stem for p in features_dir.glob("*.parquet") if not p.name.startswith("."))
    variants = list(requested) or found
    absent = [v for v in variants if v not in found]
    if absent:
        have = ", ".join(found) or "none"
        msg = (
            f"feature variant(s) {', '.join(absent)} requested by release.features have no file "
            f"in {features_dir} (found: {have}); run `alignrec-data extract` or change "
            "release.features"
        )
        raise UsageError(msg)
    return variants


def read_features(path: Path, variant: str, item_keys: list[str]) -> tuple[pa.Table, int]:
    """Read and check ``features/<variant>.parquet``; return the published table and dim.

    Raises:
        DataFormatError: The embedding is not fixed-size float32, holds nulls or NaN /
            infinite values, or the rows do not match the prepared items (ids, keys).
    """
    table = read_table(path, f"feature file of {variant!r}", "re-run `alignrec-data extract`")
    require(table, ("item_id", "embedding"), path)
    emb = table.column("embedding").combine_chunks()
    _check_embedding(emb, path, variant)
    ids = table.column("item_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(item_keys))):
        msg = (
            f"feature file {path}: expected item_id 0..{len(item_keys) - 1} in order "
            f"({len(item_keys)} items in prepared/items.parquet), found {len(ids)} rows"
        )
        raise DataFormatError(msg)
    keys = table.column("item_key").to_pylist() if "item_key" in table.column_names else item_keys
    if keys != item_keys:
        bad = next(i for i, (a, b) in enumerate(zip(keys, item_keys, strict=True)) if a != b)
        msg = (
            f"feature file {path}: item {bad} has key {keys[bad]!r} but prepared/items.parquet "
            f"says {item_keys[bad]!r}; the features were extracted from another prepare run: "
            "re-run `alignrec-data extract`"
        )
        raise DataFormatError(msg)
    missing = (
        table.column("missing").combine_chunks().cast(pa.bool_())
        if "missing" in table.column_names
        else pa.array(np.zeros(len(ids), dtype=bool))
    )
    out = pa.table(
        {
            "item_id": pa.array(ids.astype(np.int64)),
            "item_key": pa.array(keys, pa.string()),
            "embedding": emb,
            "missing": missing,
        }
    )
    return out, emb.type.list_size


def _check_embedding(emb: pa.Array, path: Path, variant: str) -> None:
    """Refuse an embedding column that is not fixed-size float32, or holds nulls or NaN/inf."""
    if not pa.types.is_fixed_size_list(emb.type) or emb.type.value_type != pa.float32():
        msg = (
            f"feature file {path}: embedding must be a fixed-size list of float32, found "
            f"{emb.type}; re-run `alignrec-data extract` (features.write_features writes it)"
        )
        raise DataFormatError(msg)
    if emb.null_count or emb.values.null_count:
        msg = (
            f"feature file {path} of variant {variant!r}: {emb.null_count + emb.values.null_count} "
            "null embedding value(s); re-run `alignrec-data extract`"
        )
        raise DataFormatError(msg)
    values = emb.flatten().to_numpy(zero_copy_only=False).reshape(-1, emb.type.list_size)
    bad_rows = ~np.isfinite(values).all(axis=1)
    if bad_rows.any():
        n_bad = int(np.count_nonzero(~np.isfinite(values)))
        msg = (
            f"feature file {path} of variant {variant!r}: {n_bad} non-finite (NaN or infinite) "
            f"value(s) in {int(bad_rows.sum())} of {len(values)} items (first: item "
            f"{int(np.argmax(bad_rows))}); nothing was written. Re-run `alignrec-data extract`, "
            "or leave the variant out with --features"
        )
        raise DataFormatError(msg)


def feature_meta(path: Path) -> dict[str, Any]:
    """Provenance a producer stored in the feature file's schema metadata (JSON values)."""
    out: dict[str, Any] = {}
    for k, v in (pq.read_schema(path).metadata or {}).items():
        key = k.decode("utf-8", "replace")
        if key in ("huggingface", "pandas", "ARROW:schema"):
            continue
        text = v.decode("utf-8", "replace")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out
