"""Amazon Reviews'23 (Hou et al.): reviews and metadata as JSONL, item key ``parent_asin``.

- Reviews ``<Cat>.jsonl(.gz)``: ``user_id``, ``parent_asin`` (the item key; ``asin`` is the
  variant), ``rating``, ``timestamp`` in milliseconds (converted to seconds, floored).
- Metadata ``meta_<Cat>.jsonl(.gz)``: ``parent_asin``, ``title``, ``store`` (the brand; else
  ``details.Brand``), ``main_category`` + ``categories``, ``description`` (list),
  ``images`` (list of ``{thumb, large, hi_res, variant}``, the ``MAIN`` variant first).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from alignrec_data.readers.base import (
    DEFAULT_MAX_LINE_BYTES,
    BadLineLog,
    BadRecord,
    ItemMeta,
    as_str,
    as_str_list,
    get_key,
    iter_objects,
    parse_review,
    url_candidates,
)

# User, item, rating and timestamp fields of a review line, and timestamp units per second.
REVIEW_FIELDS = ("user_id", "parent_asin", "rating", "timestamp")
TIMESTAMP_DIVISOR = 1000


def read_reviews(
    path: str | Path, log: BadLineLog, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[str, str, float, int]]:
    """Stream ``(user_key, item_key, rating, timestamp_seconds)`` from a reviews file.

    (``prepare`` reads through the faster :func:`~alignrec_data.readers.base.read_review_columns`
    with :data:`REVIEW_FIELDS`; both apply the same checks.)
    """
    for n, obj in iter_objects(path, log, max_line_bytes):
        try:
            yield parse_review(obj, REVIEW_FIELDS, TIMESTAMP_DIVISOR)
        except BadRecord as err:
            log.add(n, str(err))


def meta_record(obj: dict) -> ItemMeta:
    """One 2023 metadata object as :class:`ItemMeta`."""
    brand = as_str(obj.get("store"))
    details = obj.get("details")
    if not brand and isinstance(details, dict):
        brand = as_str(details.get("Brand"))
    categories = as_str_list(obj.get("categories"))
    main = as_str(obj.get("main_category"))
    if main and main not in categories:
        categories.insert(0, main)
    images = (
        [im for im in obj.get("images") or [] if isinstance(im, dict)]
        if isinstance(obj.get("images"), list)
        else []
    )
    images.sort(key=lambda im: im.get("variant") != "MAIN")  # stable: MAIN first
    groups = [(im.get("hi_res"), im.get("large"), im.get("thumb")) for im in images]
    return ItemMeta(
        key=get_key(obj, "parent_asin"),
        title=as_str(obj.get("title")),
        brand=brand,
        categories=categories,
        description=as_str(obj.get("description")),
        image_urls=url_candidates(groups),
    )


def read_meta(
    path: str | Path, log: BadLineLog, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[ItemMeta]:
    """Stream :class:`ItemMeta` from a 2023 metadata file."""
    for n, obj in iter_objects(path, log, max_line_bytes):
        try:
            yield meta_record(obj)
        except BadRecord as err:
            log.add(n, str(err))
