"""The prepared folder: its tables built from the cleaned interactions, written atomically, read.

The tables and their schemas are those of :mod:`alignrec_data.schema`; ``prepare`` (raw files),
``import`` (MMRec, LATTICE) and the release source all build them here, so a prepared folder
is the same whatever made it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.atomic import atomic_dir, write_json, write_parquet
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.links import check_links
from alignrec_data.readers import ItemMeta
from alignrec_data.schema import (
    INTERACTIONS_FILE,
    INTERACTIONS_SCHEMA,
    ITEMS_FILE,
    ITEMS_SCHEMA,
    SPLITS,
    STATS_FILE,
    USERS_FILE,
    USERS_SCHEMA,
)
from alignrec_data.text import DEFAULT_TEMPLATE, assemble_text, clean_list, clean_text


def interactions_table(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    user_keys: list[str],
    item_keys: list[str],
    ratings: pa.Array,
    timestamps: pa.Array,
    split_codes: np.ndarray,
) -> pa.Table:
    """Build ``interactions.parquet``, sorted by (user_id, timestamp, item_id); nulls sort first.

    Args:
        user_ids: (n,) contiguous user ids.
        item_ids: (n,) contiguous item ids.
        user_keys: Raw key of each user id.
        item_keys: Raw key of each item id.
        ratings: (n,) float32 ratings (nulls allowed).
        timestamps: (n,) int64 Unix seconds (nulls allowed).
        split_codes: (n,) 0/1/2 codes of :data:`alignrec_data.schema.SPLITS`.
    """
    user_ids = np.asarray(user_ids, dtype=np.int64)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    ts_sort = timestamps.fill_null(np.iinfo(np.int64).min).to_numpy()
    order = np.lexsort((item_ids, ts_sort, user_ids))
    take = pa.array(order)
    u, i = user_ids[order], item_ids[order]
    return pa.table(
        {
            "user_id": pa.array(u),
            "item_id": pa.array(i),
            "user_key": pa.array(user_keys, pa.string()).take(pa.array(u)),
            "item_key": pa.array(item_keys, pa.string()).take(pa.array(i)),
            "rating": ratings.cast(pa.float32()).take(take),
            "timestamp": timestamps.cast(pa.int64()).take(take),
            "split": pa.array(list(SPLITS), pa.string()).take(
                pa.array(np.asarray(split_codes)[order])
            ),
        },
        schema=INTERACTIONS_SCHEMA,
    )


def users_table(user_keys: list[str], user_ids: np.ndarray) -> pa.Table:
    """Build ``users.parquet`` (``n_interactions`` counts every split)."""
    counts = np.bincount(np.asarray(user_ids, dtype=np.int64), minlength=len(user_keys))
    return pa.table(
        {
            "user_id": pa.array(np.arange(len(user_keys), dtype=np.int64)),
            "user_key": pa.array(user_keys, pa.string()),
            "n_interactions": pa.array(counts.astype(np.int64)),
        },
        schema=USERS_SCHEMA,
    )


def items_table(
    item_keys: list[str],
    metas: dict[str, ItemMeta] | None,
    template: str = DEFAULT_TEMPLATE,
    category_separator: str = " ",
) -> pa.Table:
    """Build ``items.parquet``: cleaned text fields, assembled text, image URL candidates.

    Args:
        item_keys: Raw key of each item id.
        metas: Metadata by raw key (items without an entry get empty fields), or None.
        template: Item text template.
        category_separator: Joins the categories in the template.
    """
    empty = ItemMeta("", "", "", [], "", [])
    rows = []
    for n, key in enumerate(item_keys):
        m = (metas or {}).get(key, empty)
        fields = {
            "title": clean_text(m.title),
            "brand": clean_text(m.brand),
            "categories": clean_list(m.categories),
            "description": clean_text(m.description),
        }
        text = assemble_text(template, **fields, category_separator=category_separator, clean=False)
        urls = list(m.image_urls)
        extra = {"text": text, "image_urls": urls, "has_image": bool(urls)}
        rows.append({"item_id": n, "item_key": key, **fields, **extra})
    return pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA)


def replace_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """``table`` with the column ``name`` replaced by ``values`` (same field)."""
    k = table.schema.get_field_index(name)
    return table.set_column(k, table.schema.field(k), values)


def split_counts(table: pa.Table) -> dict[str, int]:
    """Interactions per split of an interactions table."""
    s = table.column("split").to_numpy(zero_copy_only=False)
    return {name: int((s == name).sum()) for name in SPLITS}


def write_prepared(
    folder: str | Path,
    interactions: pa.Table,
    items: pa.Table,
    users: pa.Table,
    stats: dict[str, Any],
) -> Path:
    """Write the four prepared files into a staging folder, then swap it in as ``folder``.

    The staging folder is ``.prepared.tmp-<pid>-*`` next to ``folder``
    (:func:`alignrec_data.atomic.atomic_dir`): it gets the mode a plain ``mkdir`` gives, and
    the leftovers of a run killed mid-write are removed by the next write.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    check_links([folder], "prepared folder")
    with atomic_dir(folder) as tmp:
        write_parquet(tmp / INTERACTIONS_FILE, interactions)
        write_parquet(tmp / ITEMS_FILE, items)
        write_parquet(tmp / USERS_FILE, users)
        write_json(tmp / STATS_FILE, stats)
    return folder


def read_prepared(folder: str | Path) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Read ``(interactions, items, users)`` of a prepared folder.

    Raises:
        UsageError: The folder or a file is missing.
        DataFormatError: A file does not have the schema of :mod:`alignrec_data.schema`.
    """
    folder = Path(folder)
    out = []
    for name, schema in (
        (INTERACTIONS_FILE, INTERACTIONS_SCHEMA),
        (ITEMS_FILE, ITEMS_SCHEMA),
        (USERS_FILE, USERS_SCHEMA),
    ):
        path = folder / name
        if not path.is_file():
            msg = f"prepared file {path} does not exist"
            cmd = f"`alignrec-data prepare {folder.parent.name}` (or `alignrec-data import`)"
            raise UsageError(msg, hint=f"run {cmd} first")
        table = pq.read_table(path)
        if not table.schema.equals(schema, check_metadata=False):
            msg = f"{path} has schema {table.schema}, expected {schema}; prepare the dataset again"
            raise DataFormatError(msg)
        out.append(table)
    return out[0], out[1], out[2]
