"""Streaming readers of the three Amazon raw releases (one module each) and their shared base."""

from __future__ import annotations

from types import ModuleType

from alignrec_data.errors import UsageError
from alignrec_data.readers import amazon2014, amazon2018, amazon2023
from alignrec_data.readers.base import (
    BadLine,
    BadLineLog,
    InteractionColumns,
    ItemMeta,
    iter_lines,
    open_raw,
    url_candidates,
)

READERS: dict[str, ModuleType] = {"2014": amazon2014, "2018": amazon2018, "2023": amazon2023}

__all__ = [
    "READERS",
    "BadLine",
    "BadLineLog",
    "InteractionColumns",
    "ItemMeta",
    "iter_lines",
    "open_raw",
    "reader_for",
    "url_candidates",
]


def reader_for(release: str) -> ModuleType:
    """The reader module of a raw release (``"2014"``, ``"2018"`` or ``"2023"``).

    Raises:
        UsageError: No reader for that release.
    """
    try:
        return READERS[release]
    except KeyError:
        msg = f"no reader for raw release {release!r}; known releases: {', '.join(READERS)}"
        raise UsageError(msg) from None
