"""The prepared folder: its tables built from the cleaned interactions, written atomically, read.

The tables and their schemas are those of :mod:`alignrec_data.schema`; ``prepare`` (raw files),
``import`` (MMRec, LATTICE) and the release source all build them here, so a prepared folder
is the same whatever made it.

Here too are the steps ``prepare`` runs the same way for every source: the Amazon releases
(:mod:`alignrec_data.prepare`) and the datasets declared in ``params.yaml``
(:mod:`alignrec_data.declared_prepare`). After a reader has read the interactions into columns
(step 1), :func:`clean_interactions` runs steps 2-4 (``dedupe``, ``k_core``, ids); the reader
then builds the items table (step 5, :func:`alignrec_data.prepare.items_step`) and
:func:`finish` runs step 6 (the seeded ``split``), builds ``users.parquet`` and ``stats.json``
and writes the prepared folder (:func:`write_prepared`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.atomic import atomic_dir, write_json, write_parquet
from alignrec_data.clean import dedupe_earliest, k_core, remap_by_key
from alignrec_data.config import to_dict
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.links import check_links
from alignrec_data.paths import DatasetPaths
from alignrec_data.readers import BadLineLog, InteractionColumns, ItemMeta
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
from alignrec_data.splits import assign_splits
from alignrec_data.text import (
    DEFAULT_TEMPLATE,
    TITLE_FALLBACK,
    assemble_text,
    clean_list,
    clean_text,
    fallback_title,
)

if TYPE_CHECKING:
    from alignrec_data.prepare import PrepareConfig


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
    users = np.asarray(user_ids, dtype=np.int64)
    items = np.asarray(item_ids, dtype=np.int64)
    table = pa.table(
        {
            "user_id": users,
            "item_id": items,
            "user_key": pa.array(user_keys, pa.string()).take(users),
            "item_key": pa.array(item_keys, pa.string()).take(items),
            "rating": ratings.cast(pa.float32()),
            "timestamp": timestamps.cast(pa.int64()),
            "split": pa.array(list(SPLITS), pa.string()).take(np.asarray(split_codes)),
        },
        schema=INTERACTIONS_SCHEMA,
    )
    ts_sort = timestamps.fill_null(np.iinfo(np.int64).min).to_numpy()  # nulls first
    return table.take(np.lexsort((items, ts_sort, users)))


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
    return build_items(item_keys, metas or {}, template, category_separator)[0]


def build_items(
    item_keys: list[str],
    metas: dict[str, ItemMeta],
    template: str = DEFAULT_TEMPLATE,
    category_separator: str = " ",
) -> tuple[pa.Table, dict[str, int]]:
    """``items.parquet`` from the merged metadata, with fallback titles.

    The fields are cleaned and the text assembled from them; an item whose cleaned title is
    empty (a title that was only markup, or none) gets the title of
    :func:`~alignrec_data.text.fallback_title` in its ``title`` column. The ``text`` column
    keeps the template filled with the cleaned (empty) title, so the fallback's words are not
    in it twice.

    Returns:
        ``(items, title_sources)``: the table, and per source of the shown title (``title``,
        then those of :data:`~alignrec_data.text.TITLE_FALLBACK`, then ``none``) its count
        of items; items without metadata count as ``none``.
    """
    empty = ItemMeta("", "", "", [], "", [])
    sources = dict.fromkeys(("title", *TITLE_FALLBACK, "none"), 0)
    rows = []
    for n, key in enumerate(item_keys):
        m = metas.get(key, empty)
        fields = {
            "title": clean_text(m.title),
            "brand": clean_text(m.brand),
            "categories": clean_list(m.categories),
            "description": clean_text(m.description),
        }
        text = assemble_text(template, **fields, category_separator=category_separator, clean=False)
        title, source = fallback_title(**fields)
        sources[source] += 1
        urls = list(m.image_urls)
        extra = {"title": title, "text": text, "image_urls": urls, "has_image": bool(urls)}
        rows.append({"item_id": n, "item_key": key, **fields, **extra})
    return pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA), sources


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


@dataclass
class Cleaned:
    """The interactions after steps 1-4, numbered by the sorted raw keys.

    Attributes:
        user_ids: User id of each kept interaction.
        item_ids: Item id of each kept interaction.
        user_keys: Raw user key of each user id.
        item_keys: Raw item key of each item id.
        ratings: Rating of each kept interaction.
        timestamps: Timestamp of each kept interaction.
        steps: The ``read``, ``dedupe`` and ``k_core`` counts of ``stats.json``.
        has_ratings: The source has ratings (else the column is null).
        has_timestamps: The source has timestamps (else the column is null).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_keys: list[str]
    item_keys: list[str]
    ratings: np.ndarray
    timestamps: np.ndarray
    steps: list[dict[str, Any]]
    has_ratings: bool
    has_timestamps: bool


def _step(name: str, users: np.ndarray, items: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "step": name,
        "interactions": len(users),
        "users": int(np.count_nonzero(np.bincount(users))),
        "items": int(np.count_nonzero(np.bincount(items))),
        **extra,
    }


def clean_interactions(cols: InteractionColumns, config: PrepareConfig, dataset_id: str) -> Cleaned:
    """Steps 2-4: dedupe (earliest pair), k-core, then ids in the sorted order of the keys.

    Raises:
        DataFormatError: Nothing is left after the k-core filter.
    """
    u, i, r, t = cols.arrays()
    steps = [_step("read", u, i)]
    keep = dedupe_earliest(u, i, t)
    u, i, r, t = u[keep], i[keep], r[keep], t[keep]
    steps.append(_step("dedupe", u, i))
    keep, rounds = k_core(u, i, config.min_user_interactions, config.min_item_interactions)
    u, i, r, t = u[keep], i[keep], r[keep], t[keep]
    steps.append(_step("k_core", u, i, rounds=rounds))
    if len(u) == 0:
        msg = (
            f"{dataset_id}: no interaction is left after the {config.min_user_interactions}/"
            f"{config.min_item_interactions}-core filter ({steps[0]['interactions']} read); "
            "lower prepare.min_user_interactions / min_item_interactions"
        )
        raise DataFormatError(msg)
    user_ids, user_keys = remap_by_key(u, cols.user_keys)
    item_ids, item_keys = remap_by_key(i, cols.item_keys)
    has = (cols.has_ratings, cols.has_timestamps)
    return Cleaned(user_ids, item_ids, user_keys, item_keys, r, t, steps, *has)


def finish(
    paths: DatasetPaths,
    head: dict[str, Any],
    config: PrepareConfig,
    kept: Cleaned,
    items: tuple[pa.Table, dict[str, Any]],
    bad_lines: dict[str, BadLineLog],
    log: logging.Logger,
) -> dict[str, Any]:
    """Step 6 and the write: split, ``users.parquet``, ``stats.json``, the prepared folder.

    Args:
        paths: The dataset's folders.
        head: The first keys of ``stats.json``: ``dataset``, ``release``, ``source`` (and
            what the source adds), ``raw_files``.
        config: The ``prepare`` params.
        kept: Steps 1-4.
        items: Step 5: ``items.parquet`` and its statistics (:func:`prepare.items_step`).
        bad_lines: The bad lines of the ``reviews`` (interactions) and ``meta`` (items) files.
        log: The stage's logger (the summary line is logged as the stage).

    Returns:
        The statistics also written to ``stats.json``.
    """
    codes, split_info = assign_splits(
        config.split,
        kept.user_ids,
        kept.item_ids,
        kept.timestamps,
        len(kept.user_keys),
        seed=config.seed,
        valid_start=config.temporal_valid_start,
        test_start=config.temporal_test_start,
        quantiles=config.temporal_quantiles,
    )
    n = len(kept.user_ids)  # a column the source does not have is null
    inter = interactions_table(
        kept.user_ids,
        kept.item_ids,
        kept.user_keys,
        kept.item_keys,
        pa.array(kept.ratings, pa.float32()) if kept.has_ratings else pa.nulls(n, pa.float32()),
        pa.array(kept.timestamps, pa.int64()) if kept.has_timestamps else pa.nulls(n, pa.int64()),
        codes,
    )
    users = users_table(kept.user_keys, kept.user_ids)
    table, item_stats = items
    n_items = len(kept.item_keys)
    has_image = table.column("has_image").to_numpy(zero_copy_only=False)
    stats: dict[str, Any] = {
        **head,
        "params": to_dict(config),
        "steps": kept.steps,
        "users": len(kept.user_keys),
        "items": n_items,
        "interactions": inter.num_rows,
        "splits": split_counts(inter),
        "split": split_info,
        "bad_lines": {role: log.as_dict() for role, log in bad_lines.items()},
        **item_stats,
        "missing_image_url_rate": float(1.0 - has_image.mean()) if n_items else 0.0,
        "has_ratings": kept.has_ratings,
        "has_timestamps": kept.has_timestamps,
    }
    write_prepared(paths.prepared, inter, table, users, stats)
    log.info(
        "prepared %s: %d users, %d items, %d interactions -> %s",
        head["dataset"],
        len(kept.user_keys),
        n_items,
        inter.num_rows,
        paths.prepared,
    )
    return stats
