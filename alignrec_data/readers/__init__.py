"""Streaming readers of the three Amazon raw releases (one module each) and what they share.

- :mod:`~alignrec_data.readers.lines`: bounded line reading, the bad-line log, and
  :class:`ReleaseReader`, the one streaming reader that each release module (``amazon2014``,
  ``amazon2018``, ``amazon2023``) parameterises.
- :mod:`~alignrec_data.readers.base`: the records read and the field checks.
- :mod:`~alignrec_data.readers.columns`: reviews into compact columns (Arrow fast path).
"""

from __future__ import annotations

from types import ModuleType

from alignrec_data.errors import UsageError
from alignrec_data.readers import amazon2014, amazon2018, amazon2023
from alignrec_data.readers.base import ItemMeta, url_candidates
from alignrec_data.readers.columns import InteractionColumns
from alignrec_data.readers.lines import BadLineLog, iter_lines

READERS: dict[str, ModuleType] = {"2014": amazon2014, "2018": amazon2018, "2023": amazon2023}

__all__ = [
    "READERS",
    "BadLineLog",
    "InteractionColumns",
    "ItemMeta",
    "iter_lines",
    "reader_for",
    "url_candidates",
]


def reader_for(release: str) -> ModuleType:
    """The reader module of a raw release (``"2014"``, ``"2018"`` or ``"2023"``).

    The module has ``REVIEW_FIELDS``, ``TIMESTAMP_DIVISOR``, ``read_reviews``, ``read_meta``
    and ``meta_record`` (its :class:`ReleaseReader` is ``READER``).

    Raises:
        UsageError: No reader for that release.
    """
    try:
        return READERS[release]
    except KeyError:
        msg = f"no reader for raw release {release!r}; known releases: {', '.join(READERS)}"
        raise UsageError(msg) from None
