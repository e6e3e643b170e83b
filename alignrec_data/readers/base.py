"""The records the release readers produce, and the field checks they share.

A raw line decodes to an object; the helpers here turn its fields into a review
(:func:`parse_review`) or an item's metadata (:class:`ItemMeta`), raising :class:`BadRecord`
for a missing or mistyped field so that the line is counted as bad. Nothing here reads a file:
that is :mod:`alignrec_data.readers.lines`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from alignrec_data.text import strip_markup

MAX_ABS_NUMBER = 2**62  # ratings and timestamps beyond this are bad records (int64-safe)
MAX_IMAGE_URLS = 8
# Amazon image size modifiers: "._SX300_.jpg", "._SS40_.jpg", "._SX38_SY50_CR,0,0,38,50_.jpg".
_SPACE = re.compile(r"\s")
_SIZE_MODIFIER = re.compile(r"\._[A-Za-z0-9_,]+_(\.[A-Za-z]{3,4})$")


class BadRecord(ValueError):
    """A parsed line that is not a usable record (missing or mistyped field)."""


@dataclass(frozen=True)
class ItemMeta:
    """The metadata of one item as read from a raw file (text not yet cleaned).

    Attributes:
        key: The raw item key (asin / parent_asin).
        title: Title.
        brand: Brand (2023: ``store``).
        categories: Category path, most general first.
        description: Description (lists joined with spaces).
        image_urls: Candidate image URLs in the order to try.
    """

    key: str
    title: str
    brand: str
    categories: list[str]
    description: str
    image_urls: list[str]


def get_key(obj: dict, name: str) -> str:
    """A required non-empty string field (a user or item key)."""
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        found = "missing" if value is None else repr(value)[:40]
        msg = f"field {name!r} must be a non-empty string, found {found}"
        raise BadRecord(msg)
    return value


def get_number(obj: dict, name: str) -> float:
    """A required finite number (a rating or a timestamp)."""
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        found = "missing" if value is None else repr(value)[:40]
        msg = f"field {name!r} must be a number, found {found}"
        raise BadRecord(msg)
    if not -MAX_ABS_NUMBER < value < MAX_ABS_NUMBER:  # also False for NaN; no float overflow
        msg = f"field {name!r} must be a finite number below 2**62 in size, found {str(value)[:40]}"
        raise BadRecord(msg)
    return value


def parse_review(
    obj: Any, fields: tuple[str, str, str, str], ts_divisor: int
) -> tuple[str, str, float, int]:
    """Validate one review object: ``(user_key, item_key, rating, timestamp_seconds)``.

    Args:
        obj: The decoded line.
        fields: Names of the user, item, rating and timestamp fields.
        ts_divisor: Timestamp units per second (1000 for milliseconds).

    Raises:
        BadRecord: Not an object, or a field is missing or of the wrong type.
    """
    if not isinstance(obj, dict):
        msg = f"expected an object, found {type(obj).__name__}"
        raise BadRecord(msg)
    user_f, item_f, rating_f, ts_f = fields
    ts = get_number(obj, ts_f)
    return (
        get_key(obj, user_f),
        get_key(obj, item_f),
        float(get_number(obj, rating_f)),
        int(ts) // ts_divisor,
    )


def as_str(value: Any) -> str:
    """A free-text field as a string ('' for missing or non-text values; lists joined).

    List elements are joined with spaces after their markup is removed one by one
    (:func:`~alignrec_data.text.strip_markup`; entities stay for the cleaning to decode), so
    an element cut inside a tag (``'<a href="/help" target="_blank">Learn'`` then
    ``'<span class="a-size'``) cannot swallow the elements after it.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(strip_markup(v) for v in value if isinstance(v, str))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def as_str_list(value: Any) -> list[str]:
    """A list-of-strings field (non-strings dropped; a lone string becomes a 1-list)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def strip_size_modifier(url: str) -> str:
    """``.../I/41x._SX300_.jpg`` -> ``.../I/41x.jpg`` (the full-size image)."""
    return _SIZE_MODIFIER.sub(r"\1", url)


def url_candidates(groups: Iterable[tuple[Any, ...]]) -> list[str]:
    """Candidate image URLs in the order to try, at most :data:`MAX_IMAGE_URLS`.

    Args:
        groups: One tuple per image (main image first) of its URLs from best to worst,
            e.g. ``(hi_res, large, thumb)``; after each URL that carries a size modifier
            its unmodified form is tried next.

    Returns:
        Unique http(s) URLs; anything else (``file:``, ``javascript:``, non-strings) is dropped.
    """
    out: dict[str, None] = {}  # an ordered set
    for group in groups:
        for url in group:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                continue
            url = url.strip()
            for cand in (url, strip_size_modifier(url)):
                if not _SPACE.search(cand):
                    out[cand] = None
            if len(out) >= MAX_IMAGE_URLS:
                return list(out)[:MAX_IMAGE_URLS]
    return list(out)
