"""Amazon 2014 (McAuley et al.): reviews as JSON lines, metadata as Python dict literals.

- Reviews ``reviews_<Cat>_5.json.gz``: ``reviewerID``, ``asin``, ``overall`` (float),
  ``unixReviewTime`` (int seconds).
- Metadata ``meta_<Cat>.json.gz``: one Python dict literal a line, single-quoted, parsed with
  :func:`ast.literal_eval` (never ``eval``): ``asin``, ``title``, ``brand``,
  ``categories`` (a list of category paths), ``description`` (string), ``imUrl``.
"""

from __future__ import annotations

import ast

from alignrec_data.readers.base import ItemMeta, as_str, as_str_list, get_key, url_candidates
from alignrec_data.readers.lines import ReleaseReader

# User, item, rating and timestamp fields of a review line, and timestamp units per second.
REVIEW_FIELDS = ("reviewerID", "asin", "overall", "unixReviewTime")
TIMESTAMP_DIVISOR = 1

# ast.literal_eval builds a syntax tree many times the size of its input: cap its lines lower.
DEFAULT_MAX_LITERAL_LINE_BYTES = 1024 * 1024


def parse_literal(line: bytes) -> object:
    """Parse one Python literal line with :func:`ast.literal_eval` (no code is ever run)."""
    return ast.literal_eval(line.decode("utf-8"))


def meta_record(obj: dict) -> ItemMeta:
    """One 2014 metadata dict as :class:`ItemMeta`."""
    paths = obj.get("categories")
    paths = paths if isinstance(paths, list) else []
    categories = list(dict.fromkeys(c for p in paths for c in as_str_list(p)))  # paths merged
    return ItemMeta(
        key=get_key(obj, "asin"),
        title=as_str(obj.get("title")),
        brand=as_str(obj.get("brand")),
        categories=categories,
        description=as_str(obj.get("description")),
        image_urls=url_candidates([(obj.get("imUrl"),)]),
    )


READER = ReleaseReader(
    REVIEW_FIELDS,
    TIMESTAMP_DIVISOR,
    meta_record,
    meta_decode=parse_literal,
    meta_format="Python literal",
    meta_max_line_bytes=DEFAULT_MAX_LITERAL_LINE_BYTES,
)
read_reviews, read_meta = READER.read_reviews, READER.read_meta
