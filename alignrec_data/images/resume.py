"""What a rerun of the images stage keeps and what it fetches again.

Kept: every stored image (found in the shards' catalog), and every permanent failure
(``http-404``, ``not-an-image``...) whose candidate URLs, acceptance settings and mirrors are
unchanged. Fetched: new items, items that failed with a transient reason (time-out, 429, 5xx,
connection error, ``host-down``: their host was not asked, ``skipped``: ``--skip-images``;
:func:`~alignrec_data.images.fetch.is_transient`), or every missing item with
``retry_missing``. Shards made with other encoding settings are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from alignrec_data.errors import UsageError
from alignrec_data.images import store
from alignrec_data.images.config import ACCEPT_KEYS, ENCODE_KEYS
from alignrec_data.images.fetch import is_transient
from alignrec_data.images.urls import Candidate, MirrorRules, image_candidates

# The index fields of a stored image that its shard records.
SHARD_FIELDS = ("url", "http_status", "sha256", "width", "height", "shard")


@dataclass(frozen=True)
class Item:
    """An item and its image candidates (after the mirror rewrite)."""

    item_id: int
    item_key: str
    candidates: tuple[Candidate, ...]


def empty_row(item: Item) -> dict[str, Any]:
    """The index row of ``item`` before any fetch: no image, no reason yet."""
    row = dict.fromkeys(store.INDEX_SCHEMA.names)  # every column None, in the index's order
    row.update(item_id=item.item_id, item_key=item.item_key, has_image=False, attempts=[])
    row["candidates"] = [c.source for c in item.candidates]
    return row


def _read_previous(
    images_dir: Path, index_settings: dict[str, Any], dataset: str
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], bool]:
    """What earlier runs left in ``images_dir``.

    ``index_settings`` are the settings the index records (those of the shards and the
    mirror rules).

    Returns:
        The stored images' shard records by item key, the old index rows by item key, and
        whether the acceptance settings and mirrors are unchanged (old failures hold).
    """
    catalog, by_shard = store.read_shard_catalog(images_dir)
    want_encode = {k: index_settings[k] for k in ENCODE_KEYS}
    for name, got in sorted(by_shard.items()):
        got_encode = {k: (got or {}).get(k) for k in ENCODE_KEYS}
        if got_encode != want_encode:
            msg = (
                f"{images_dir / name} holds images made with {got_encode}, but the params "
                f"say {want_encode}; images made with different settings cannot be mixed"
            )
            hint = f"rerun with `alignrec-data images {dataset} --force` to rebuild them"
            raise UsageError(msg, hint=hint)

    def same(recorded: dict[str, Any] | None) -> bool:
        keys = (*ACCEPT_KEYS, "mirrors")
        return recorded is not None and all(recorded.get(k) == index_settings[k] for k in keys)

    index_path = images_dir / store.INDEX_FILE
    has_index = index_path.is_file()
    rows = pq.read_table(index_path).to_pylist() if has_index else []
    index = {r["item_key"]: r for r in rows}
    accept_same = same(store.read_settings(index_path)) if has_index else True
    # Index parts of a distributed run that did not finish are newer than the index.
    parts = [rows for recorded, rows in store.read_index_parts(images_dir) if same(recorded)]
    for rows in parts:
        index.update((r["item_key"], r) for r in rows)
    return catalog, index, accept_same and (has_index or bool(parts))


def _is_permanent(old: dict[str, Any] | None, item: Item) -> bool:
    """True when ``old``, the item's earlier index row, is a failure a rerun keeps.

    Kept: a failure with the same candidate URLs and no transient reason (a later run may
    cure those: also host-down and skipped items).
    """
    return (
        old is not None
        and not old["has_image"]
        and list(old["candidates"]) == [c.source for c in item.candidates]
        and not is_transient(old["reason"])
        and not any(is_transient(a) for a in old["attempts"])
    )


@dataclass
class Plan:
    """The rows kept from earlier runs (and how many of each kind) and the items to fetch."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    todo: list[Item] = field(default_factory=list)
    stored: int = 0  # stored images kept
    failed: int = 0  # permanent failures kept without a new request


def plan(
    items: list[tuple[int, str, list[str]]],
    rules: MirrorRules,
    images_dir: Path,
    index_settings: dict[str, Any],
    dataset: str,
    *,
    force: bool,
    retry_missing: bool,
) -> Plan:
    """Sort ``items`` (id, key, image URLs) into rows kept and items to fetch.

    What earlier runs left in ``images_dir`` is read unless ``force``; ``index_settings`` are
    the settings the index records (those of the shards and the mirror rules).

    Raises:
        UsageError: Shards made with other encoding settings.
    """
    previous = ({}, {}, False) if force else _read_previous(images_dir, index_settings, dataset)
    catalog, index, accept_same = previous
    out = Plan()
    for item_id, item_key, urls in items:
        item = Item(item_id, item_key, tuple(rules.resolve(u) for u in image_candidates(urls)))
        row = empty_row(item)
        old = index.get(item_key)
        if item_key in catalog:
            kept = old if old is not None and old["has_image"] else {"attempts": []}
            row.update({k: catalog[item_key][k] for k in SHARD_FIELDS})
            row.update(
                has_image=True, fetched_url=kept.get("fetched_url"), attempts=list(kept["attempts"])
            )
            out.stored += 1
        elif accept_same and not retry_missing and _is_permanent(old, item):
            row.update({k: old[k] for k in ("reason", "url", "http_status")})
            row.update(fetched_url=old.get("fetched_url"), attempts=list(old["attempts"]))
            out.failed += 1
        elif not item.candidates:
            row["reason"] = "no-url"
        else:
            out.todo.append(item)
            continue
        out.rows.append(row)
    return out
