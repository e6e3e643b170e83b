"""Amazon 2014 (McAuley et al.): reviews as JSON lines, metadata as Python dict literals.

- Reviews ``reviews_<Cat>_5.json.gz``: ``reviewerID``, ``asin``, ``overall`` (float),
  ``unixReviewTime`` (int seconds).
- Metadata ``meta_<Cat>.json.gz``: one Python dict literal a line, single-quoted, parsed with
  :func:`ast.literal_eval` (never ``eval``): ``asin``, ``title``, ``brand``,
  ``categories`` (a list of category paths), ``description`` (string), ``imUrl``.
"""

from __future__ import annotations

import ast
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

# ast.literal_eval builds a syntax tree many times the size of its input: cap its lines lower.
DEFAULT_MAX_LITERAL_LINE_BYTES = 1024 * 1024


def parse_literal(line: bytes) -> object:
    """Parse one Python literal line with :func:`ast.literal_eval` (no code is ever run)."""
    return ast.literal_eval(line.decode("utf-8"))


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
    """One 2014 metadata dict as :class:`ItemMeta`."""
    paths = obj.get("categories")
    categories: list[str] = []
    if isinstance(paths, list):
        for p in paths:
            for c in as_str_list(p):
                if c not in categories:
                    categories.append(c)
    return ItemMeta(
        key=get_key(obj, "asin"),
        title=as_str(obj.get("title")),
        brand=as_str(obj.get("brand")),
        categories=categories,
        description=as_str(obj.get("description")),
        image_urls=url_candidates([(obj.get("imUrl"),)]),
    )


def read_meta(
    path: str | Path,
    log: BadLineLog,
    max_line_bytes: int = DEFAULT_MAX_LITERAL_LINE_BYTES,
) -> Iterator[ItemMeta]:
    """Stream :class:`ItemMeta` from a 2014 metadata file (Python literals)."""
    for n, obj in iter_objects(path, log, max_line_bytes, parse_literal, "Python literal"):
        try:
            yield meta_record(obj)
        except BadRecord as err:
            log.add(n, str(err))
