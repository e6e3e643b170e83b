"""Amazon 2018 (Ni et al.): reviews and metadata as JSON lines.

- Reviews ``<Cat>_5.json.gz``: ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``
  (seconds). The files hold duplicate records; cleaning keeps the earliest (user, item) pair.
- Metadata ``meta_<Cat>.json.gz``: ``asin``, ``title``, ``brand``, ``category`` (one path,
  may hold HTML), ``description`` (list), ``imageURLHighRes`` and ``imageURL`` (lists).
  Duplicate records of one asin occur; ``prepare`` merges them
  (:func:`alignrec_data.prepare.merge_metadata`). Real titles are often a tag cut off
  (``<span class="a-size-medium a-color-secondary"``); the cleaning empties them
  (:mod:`alignrec_data.text`).
"""

from __future__ import annotations

from itertools import zip_longest

from alignrec_data.readers.base import ItemMeta, as_str, as_str_list, get_key, url_candidates
from alignrec_data.readers.lines import ReleaseReader

# User, item, rating and timestamp fields of a review line, and timestamp units per second.
REVIEW_FIELDS = ("reviewerID", "asin", "overall", "unixReviewTime")
TIMESTAMP_DIVISOR = 1


def meta_record(obj: dict) -> ItemMeta:
    """One 2018 metadata object as :class:`ItemMeta`."""
    groups = zip_longest(as_str_list(obj.get("imageURLHighRes")), as_str_list(obj.get("imageURL")))
    return ItemMeta(
        key=get_key(obj, "asin"),
        title=as_str(obj.get("title")),
        brand=as_str(obj.get("brand")),
        categories=as_str_list(obj.get("category")),
        description=as_str(obj.get("description")),
        image_urls=url_candidates(groups),
    )


READER = ReleaseReader(REVIEW_FIELDS, TIMESTAMP_DIVISOR, meta_record)
read_reviews, read_meta = READER.read_reviews, READER.read_meta
