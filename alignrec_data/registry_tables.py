"""The category table: one row per file of every Amazon category, grouped into registry entries.

``registry_data/amazon_categories.json`` (listed under ``tables`` in ``datasets.json``) has the
columns :data:`TABLE_COLUMNS`: release, category, role, name, size, sha256, base URL. The rows
of one (release, category) form one dataset whose id is :func:`dataset_id` and whose
description is the release's template; :mod:`alignrec_data.registry` checks and builds each
entry like one written out in full.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from alignrec_data.errors import UsageError

TABLE_COLUMNS = ("release", "category", "role", "name", "size", "sha256", "base_url")


def dataset_id(release: str, category: str) -> str:
    """The generated id of an Amazon category: ``amazon<release>-<category, lower case, _ as ->``.

    >>> dataset_id("2018", "Gift_Cards")
    'amazon2018-gift-cards'
    """
    return f"amazon{release}-{category.lower().replace('_', '-')}"


def table_entries(
    doc: dict[str, Any], releases: dict[str, Any], where: str
) -> Iterator[tuple[dict[str, Any], str]]:
    """The registry entries (in the ``datasets`` JSON shape) of a category table.

    Rows of one (release, category) form one dataset, in table order; they must share one
    base URL.

    Raises:
        UsageError: Wrong columns, a malformed row, or two base URLs for one category.
    """
    columns = tuple(doc.get("columns", ()))
    if columns != TABLE_COLUMNS:
        msg = f"{where}: columns must be {list(TABLE_COLUMNS)}, found {list(columns)}"
        raise UsageError(msg)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for n, row in enumerate(doc.get("rows", []), start=1):
        if not isinstance(row, list) or len(row) != len(TABLE_COLUMNS):
            msg = f"{where} row {n}: expected {len(TABLE_COLUMNS)} values, found {row!r}"
            raise UsageError(msg)
        rec = dict(zip(TABLE_COLUMNS, row, strict=True))
        release, category = rec["release"], rec["category"]
        if not isinstance(release, str) or not isinstance(category, str):
            msg = f"{where} row {n}: release and category must be strings, found {row!r}"
            raise UsageError(msg)
        key = (release, category)
        if key not in groups:
            template = releases.get(release, {}).get("description", "Amazon {release} {title}.")
            groups[key] = {
                "id": dataset_id(release, category),
                "release": release,
                "category": category,
                # the category as words: Gift_Cards -> Gift Cards
                "description": template.format(title=category.replace("_", " "), release=release),
                "base_url": rec["base_url"],
                "files": [],
                "_row": n,
            }
        entry = groups[key]
        if rec["base_url"] != entry["base_url"]:
            msg = (
                f"{where} row {n}: {release} {category} has two base URLs "
                f"({entry['base_url']!r} in row {entry['_row']}, {rec['base_url']!r} here)"
            )
            raise UsageError(msg)
        entry["files"].append({k: rec[k] for k in ("role", "name", "size", "sha256")})
    for entry in groups.values():
        row = entry.pop("_row")
        yield entry, f"{where} row {row} ({entry['release']} {entry['category']})"
