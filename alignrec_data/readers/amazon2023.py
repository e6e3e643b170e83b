"""Amazon Reviews'23 (Hou et al.): reviews and metadata as JSONL, item key ``parent_asin``.

- Reviews ``<Cat>.jsonl(.gz)``: ``user_id``, ``parent_asin`` (the item key; ``asin`` is the
  variant), ``rating``, ``timestamp`` in milliseconds (converted to seconds, floored).
- Metadata ``meta_<Cat>.jsonl(.gz)``: ``parent_asin``, ``title``, ``store`` (the brand; else
  ``details.Brand``), ``main_category`` + ``categories``, ``description`` (list),
  ``images`` (list of ``{thumb, large, hi_res, variant}``, the ``MAIN`` variant first).
"""

from __future__ import annotations

from alignrec_data.readers.base import ItemMeta, as_str, as_str_list, get_key, url_candidates
from alignrec_data.readers.lines import ReleaseReader

# User, item, rating and timestamp fields of a review line, and timestamp units per second.
REVIEW_FIELDS = ("user_id", "parent_asin", "rating", "timestamp")
TIMESTAMP_DIVISOR = 1000


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
    listed = obj.get("images")
    images = [im for im in listed if isinstance(im, dict)] if isinstance(listed, list) else []
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


READER = ReleaseReader(REVIEW_FIELDS, TIMESTAMP_DIVISOR, meta_record)
read_reviews, read_meta = READER.read_reviews, READER.read_meta
