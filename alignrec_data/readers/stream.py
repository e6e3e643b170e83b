"""The streaming reader of one raw Amazon release, parameterised by what differs per release.

Every release stores one review or one item a line; the releases differ only in the names of the
four review fields, the unit of the timestamp, how a metadata object maps to
:class:`~alignrec_data.readers.base.ItemMeta` and how a metadata line is decoded (JSON, or
Python literals for 2014). A release module builds one :class:`ReleaseReader` from these and
exposes its methods as module functions (:func:`alignrec_data.readers.reader_for` returns the
module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from alignrec_data.readers.base import ItemMeta, parse_review
from alignrec_data.readers.columns import InteractionColumns, read_review_columns
from alignrec_data.readers.lines import (
    DEFAULT_MAX_LINE_BYTES,
    BadLineLog,
    iter_lines,
    parse_json,
    parse_lines,
)


@dataclass(frozen=True)
class ReleaseReader:
    """Reads the reviews and metadata files of one raw release.

    Attributes:
        review_fields: Names of the user, item, rating and timestamp fields of a review.
        timestamp_divisor: Timestamp units per second (1000 for milliseconds).
        meta_record: One decoded metadata object as :class:`ItemMeta` (raises
            :class:`~alignrec_data.readers.base.BadRecord` for an unusable one).
        meta_decode: Parser of one metadata line.
        meta_format: Name of that format in bad-line reasons (``JSON``, ``Python literal``).
        meta_max_line_bytes: Default longest metadata line.
    """

    review_fields: tuple[str, str, str, str]
    timestamp_divisor: int
    meta_record: Callable[[dict], ItemMeta]
    meta_decode: Callable[[bytes], Any] = parse_json
    meta_format: str = "JSON"
    meta_max_line_bytes: int = DEFAULT_MAX_LINE_BYTES

    def read_reviews(
        self, path: str | Path, log: BadLineLog, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> Iterator[tuple[str, str, float, int]]:
        """Stream ``(user_key, item_key, rating, timestamp_seconds)`` from a reviews file.

        (``prepare`` reads through the faster :meth:`read_columns`; both apply the same
        checks.)
        """
        review = partial(parse_review, fields=self.review_fields, ts_divisor=self.timestamp_divisor)
        return (r for _, r in parse_lines(iter_lines(path, log, max_line_bytes), log, review))

    def read_meta(
        self, path: str | Path, log: BadLineLog, max_line_bytes: int | None = None
    ) -> Iterator[ItemMeta]:
        """Stream :class:`ItemMeta` from a metadata file.

        Args:
            path: The metadata file.
            log: Where bad lines are counted.
            max_line_bytes: Longest accepted line; None: :attr:`meta_max_line_bytes`.
        """
        cap = self.meta_max_line_bytes if max_line_bytes is None else max_line_bytes
        lines = iter_lines(path, log, cap)
        records = parse_lines(lines, log, self.meta_record, self.meta_decode, self.meta_format)
        return (r for _, r in records)

    def read_columns(
        self,
        path: str | Path,
        log: BadLineLog,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        progress: Any = None,
    ) -> InteractionColumns:
        """Read a reviews file into compact columns (:func:`read_review_columns`).

        Args:
            path: The reviews file.
            log: Where bad lines are counted.
            max_line_bytes: Longest accepted line.
            progress: Optional tqdm bar, advanced in lines.
        """
        return read_review_columns(
            path, log, max_line_bytes, self.review_fields, self.timestamp_divisor, progress
        )
