"""The steps ``prepare`` runs the same way for every source: clean, number, split, write.

Both readers feed them: the Amazon releases (:mod:`alignrec_data.prepare`) and the datasets
declared in ``params.yaml`` (:mod:`alignrec_data.declared_prepare`). After a reader has read
the interactions into columns (step 1), :func:`clean_interactions` runs steps 2-4 (``dedupe``,
``k_core``, ids); the reader then builds the items table (step 5, :func:`prepare.items_step`) and
:func:`finish` runs step 6 (the seeded ``split``), builds ``users.parquet`` and ``stats.json``
and writes the prepared folder (:func:`alignrec_data.prepared.write_prepared`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from alignrec_data.clean import dedupe_earliest, k_core, remap_by_key
from alignrec_data.config import to_dict
from alignrec_data.errors import DataFormatError
from alignrec_data.paths import DatasetPaths
from alignrec_data.prepared import interactions_table, split_counts, users_table, write_prepared
from alignrec_data.readers import BadLineLog, InteractionColumns
from alignrec_data.splits import assign_splits

if TYPE_CHECKING:
    from alignrec_data.prepare import PrepareConfig


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
        bad_lines: The bad lines of the interactions (reviews) file.
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
    bad_lines: BadLineLog
    has_ratings: bool
    has_timestamps: bool


def _step(name: str, users: np.ndarray, items: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "step": name,
        "interactions": len(users),
        "users": int(np.count_nonzero(np.bincount(users))) if len(users) else 0,
        "items": int(np.count_nonzero(np.bincount(items))) if len(items) else 0,
        **extra,
    }


def clean_interactions(
    cols: InteractionColumns, config: PrepareConfig, dataset_id: str, bad_lines: BadLineLog
) -> Cleaned:
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
    return Cleaned(user_ids, item_ids, user_keys, item_keys, r, t, steps, bad_lines, *has)


def finish(
    paths: DatasetPaths,
    head: dict[str, Any],
    config: PrepareConfig,
    kept: Cleaned,
    items: tuple[pa.Table, dict[str, Any]],
    meta_bad_lines: BadLineLog,
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
        meta_bad_lines: The bad lines of the metadata (items) file.
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
        "bad_lines": {"reviews": kept.bad_lines.as_dict(), "meta": meta_bad_lines.as_dict()},
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
