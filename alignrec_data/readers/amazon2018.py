"""Amazon 2018 (Ni et al.): reviews and metadata as JSON lines.

- Reviews ``<Cat>_5.json.gz``: ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``
  (seconds). The files hold duplicate records; cleaning keeps the earliest (user, item) pair.
- Metadata ``meta_<Cat>.json.gz``: ``asin``, ``title``, ``brand``, ``category`` (one path,
  may hold HTML), ``description`` (list), ``imageURLHighRes`` and ``imageURL`` (lists).
  Duplicate records of one asin occur; the first is kept.
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
REVIEW_FIELDS = ("reviewerID", "asin", "overall", "unixReviewTime")
TIMESTAMP_DIVISOR = 1


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
    """One 2018 metadata object as :class:`ItemMeta`."""
    hi = as_str_list(obj.get("imageURLHighRes"))
    lo = as_str_list(obj.get("imageURL"))
    groups = [
        (hi[k] if k < len(hi) else None, lo[k] if k < len(lo) else None)
        for k in range(max(len(hi), len(lo)))
    ]
    return ItemMeta(
        key=get_key(obj, "asin"),
        title=as_str(obj.get("title")),
        brand=as_str(obj.get("brand")),
        categories=as_str_list(obj.get("category")),
        description=as_str(obj.get("description")),
        image_urls=url_candidates(groups),
    )


def read_meta(
    path: str | Path, log: BadLineLog, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[ItemMeta]:
    """Stream :class:`ItemMeta` from a 2018 metadata file."""
    for n, obj in iter_objects(path, log, max_line_bytes):
        try:
            yield meta_record(obj)
        except BadRecord as err:
            log.add(n, str(err))
