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


def check_shard_settings(
    by_shard: dict[str, Any], wanted: dict[str, Any], images_dir: Path, dataset: str
) -> None:
    """Refuse shards whose encoding settings differ from ``wanted`` (they cannot be mixed)."""
    want_encode = {k: wanted[k] for k in ENCODE_KEYS}
    for name, got in sorted(by_shard.items()):
        got_encode = {k: (got or {}).get(k) for k in ENCODE_KEYS}
        if got_encode != want_encode:
            msg = (
                f"{images_dir / name} holds images made with {got_encode}, but the params say "
                f"{want_encode}; images made with different settings cannot be mixed"
            )
            raise UsageError(
                msg, hint=f"rerun with `alignrec-data images {dataset} --force` to rebuild them"
            )


@dataclass
class Previous:
    """What earlier runs left.

    Attributes:
        catalog: The stored images' shard records, by item key.
        index: The old index rows, by item key.
        accept_same: The acceptance settings and mirrors are unchanged (old failures hold).
    """

    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    index: dict[str, dict[str, Any]] = field(default_factory=dict)
    accept_same: bool = False

    @classmethod
    def read(
        cls, images_dir: Path, index_settings: dict[str, Any], dataset: str, force: bool
    ) -> Previous:
        """Read the shards and index in ``images_dir`` (nothing with ``force``).

        ``index_settings`` are the settings the index records (those of the shards and the
        mirror rules).
        """
        if force:
            return cls()
        catalog, by_shard = store.read_shard_catalog(images_dir)
        check_shard_settings(by_shard, index_settings, images_dir, dataset)

        def same(recorded: dict[str, Any] | None) -> bool:
            keys = (*ACCEPT_KEYS, "mirrors")
            return recorded is not None and all(recorded.get(k) == index_settings[k] for k in keys)

        index_path = images_dir / store.INDEX_FILE
        has_index = index_path.is_file()
        index = {r["item_key"]: r for r in store.read_index_rows(images_dir)}
        accept_same = same(store.read_settings(index_path)) if has_index else True
        # Index parts of a distributed run that did not finish are newer than the index.
        parts = [rows for recorded, rows in store.read_index_parts(images_dir) if same(recorded)]
        for rows in parts:
            index.update((r["item_key"], r) for r in rows)
        return cls(catalog, index, accept_same and (has_index or bool(parts)))

    def keeps_failure(self, item: Item, retry_missing: bool) -> dict[str, Any] | None:
        """The old index row of ``item`` when its permanent failure is kept, else None."""
        prev = self.index.get(item.item_key)
        if prev is None or prev["has_image"] or retry_missing or not self.accept_same:
            return None
        if list(prev["candidates"]) != [c.source for c in item.candidates]:
            return None
        if is_transient(prev["reason"]) or any(is_transient(a) for a in prev["attempts"]):
            return None  # a later run may cure it (also host-down and skipped items)
        return prev


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
    prev: Previous,
    retry_missing: bool,
) -> Plan:
    """Sort ``items`` (id, key, image URLs) into rows kept and items to fetch."""
    out = Plan()
    for item_id, item_key, urls in items:
        item = Item(item_id, item_key, tuple(rules.resolve(u) for u in image_candidates(urls)))
        row = empty_row(item)
        if item_key in prev.catalog:
            old = prev.index.get(item_key)
            kept = old if old is not None and old["has_image"] else {"attempts": []}
            stored = prev.catalog[item_key]
            row.update({k: stored[k] for k in SHARD_FIELDS})
            row.update(
                has_image=True, fetched_url=kept.get("fetched_url"), attempts=list(kept["attempts"])
            )
            out.stored += 1
        elif (failed := prev.keeps_failure(item, retry_missing)) is not None:
            row.update({k: failed[k] for k in ("reason", "url", "http_status")})
            row.update(fetched_url=failed.get("fetched_url"), attempts=list(failed["attempts"]))
            out.failed += 1
        elif not item.candidates:
            row["reason"] = "no-url"
        else:
            out.todo.append(item)
            continue
        out.rows.append(row)
    return out
