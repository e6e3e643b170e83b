"""Bounded line reading of untrusted raw files, and the accounting of their bad lines.

Every reader reads its file as a stream of lines, each read with a bounded ``readline``
(:func:`iter_lines`) or in blocks of whole lines (:func:`iter_line_blocks`): a line longer than
``max_line_bytes`` is never held in memory whole; it is skipped and counted as bad. A line that
does not parse, or lacks a required field, is counted in a :class:`BadLineLog`, which keeps the
first few (file name, line number, reason) and, in strict mode, raises
:class:`~alignrec_data.errors.DataFormatError` at the first one.

:class:`ReleaseReader` streams one raw Amazon release this way. The releases differ only in the
names of the four review fields, the unit of the timestamp, how a metadata object maps to
:class:`~alignrec_data.readers.base.ItemMeta` and how a metadata line is decoded (JSON, or
Python literals for 2014); each release module builds one reader from these.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from alignrec_data.errors import DataFormatError
from alignrec_data.readers.base import BadRecord, ItemMeta, parse_review

# parse_json: one JSON line (raises ValueError or RecursionError on bad input). orjson comes
# with dvc (a dependency) and parses 2-3x faster; json is the fallback.
try:
    from orjson import loads as parse_json
except ImportError:  # pragma: no cover - exercised only without orjson
    from json import loads as parse_json

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_LINE_BYTES = 10 * 1024 * 1024
DRAIN_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class BadLine:
    """One reported bad line (of the file its :class:`BadLineLog` names).

    Attributes:
        line: 1-based line number.
        reason: What was wrong.
    """

    line: int
    reason: str


@dataclass
class BadLineLog:
    """Counts the bad lines of one file and keeps the first ``max_examples`` of them.

    Attributes:
        file: File name used in reports (no folder, so they are the same on every machine).
        strict: Raise at the first bad line instead of counting it.
        max_examples: How many bad lines to keep (and log as warnings).
        count: Bad lines seen so far.
        lines: Lines read so far (set by :func:`iter_lines`).
        examples: The first bad lines.
    """

    file: str
    strict: bool = False
    max_examples: int = 5
    count: int = 0
    lines: int = 0
    examples: list[BadLine] = field(default_factory=list)

    def add(self, line: int, reason: str) -> None:
        """Record a bad line.

        Raises:
            DataFormatError: In strict mode, always.
        """
        self.count += 1
        if self.strict:
            msg = (
                f"{self.file} line {line}: {reason}; fix or remove the line, or run without "
                "--strict to skip and count bad lines"
            )
            raise DataFormatError(msg)
        if len(self.examples) < self.max_examples:
            self.examples.append(BadLine(line, reason))
            logger.warning("%s line %d skipped: %s", self.file, line, reason)

    def as_dict(self) -> dict[str, Any]:
        """The log as plain data for ``stats.json``."""
        return {
            "file": self.file,
            "lines": self.lines,
            "bad_lines": self.count,
            "examples": [{"line": b.line, "reason": b.reason} for b in self.examples],
        }


def open_raw(path: str | Path) -> IO[bytes]:
    """Open a raw file for binary reading, gunzipping when it starts with the gzip magic bytes."""
    path = Path(path)
    with path.open("rb") as f:
        magic = f.read(2)
    if magic == _GZIP_MAGIC:
        # BufferedReader gives a C readline over the decompressor (GzipFile's is Python).
        return io.BufferedReader(gzip.GzipFile(path, "rb"), buffer_size=1 << 20)  # type: ignore[arg-type]
    return path.open("rb", buffering=1 << 20)


@contextmanager
def _gzip_errors(path: str | Path, lines_read: Callable[[], int]) -> Iterator[None]:
    """Turn a truncated or corrupt gzip stream into an error naming the file and the line."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        msg = (
            f"{Path(path).name}: corrupt or truncated gzip stream after line {lines_read()} "
            f"({err}); download the file again (`alignrec-data download`)"
        )
        raise DataFormatError(msg) from err


def iter_lines(
    path: str | Path, log: BadLineLog, max_line_bytes: int
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, line)`` for the non-blank lines of a (gzipped) text file.

    Never holds more than ``max_line_bytes + 1`` bytes of one line: a longer line is counted
    in ``log`` as bad and skipped.

    Args:
        path: The file.
        log: Where bad lines are counted; ``log.lines`` is updated.
        max_line_bytes: Longest accepted line in bytes, without its newline.

    Raises:
        DataFormatError: The file is a truncated or corrupt gzip stream.
    """
    n = 0
    try:
        with _gzip_errors(path, lambda: n), open_raw(path) as f:
            readline = f.readline
            limit = max_line_bytes + 1
            while line := readline(limit):
                n += 1
                if len(line) == limit and not line.endswith(b"\n"):
                    skipped = len(line)
                    while chunk := readline(DRAIN_CHUNK):
                        skipped += len(chunk)
                        if chunk.endswith(b"\n"):
                            break
                    log.add(
                        n,
                        f"line longer than max_line_bytes={max_line_bytes} ({skipped} bytes "
                        "or more), skipped",
                    )
                    continue
                if not line.isspace():
                    yield n, line
    finally:
        log.lines = n


def iter_line_blocks(
    path: str | Path, log: BadLineLog, max_line_bytes: int, block_bytes: int
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(first_line_number, block)``: runs of whole lines, read in ``block_bytes`` pieces.

    The block-wise twin of :func:`iter_lines` (no Python work per line): every line of a
    block ends with a newline and is at most ``max_line_bytes`` long. An over-long line is
    counted in ``log`` and replaced by an empty line (so line numbers stay exact), and is never
    held whole: at most ``max_line_bytes + block_bytes`` bytes are in memory.

    Raises:
        DataFormatError: The file is a truncated or corrupt gzip stream.
    """
    cap = max_line_bytes
    done = 0  # lines fully consumed before ``carry``
    carry = b""
    draining = False
    try:
        with _gzip_errors(path, lambda: done), open_raw(path) as f:
            while True:
                chunk = f.read(block_bytes)
                if not chunk:
                    if carry and not draining:
                        yield done + 1, carry + b"\n"
                        done += 1
                    break
                if draining:
                    k = chunk.find(b"\n")
                    if k < 0:
                        continue
                    chunk, draining = chunk[k + 1 :], False
                buf = carry + chunk if carry else chunk
                cut = buf.rfind(b"\n")
                if cut < 0:
                    carry = buf
                else:
                    block, carry = buf[: cut + 1], buf[cut + 1 :]
                    n_lines = block.count(b"\n")
                    if len(block) > cap + 1:
                        block = _blank_long_lines(block, done, cap, log)
                    yield done + 1, block
                    done += n_lines
                if len(carry) > cap:
                    done += 1
                    log.add(
                        done,
                        f"line longer than max_line_bytes={cap} (more than {cap} bytes), skipped",
                    )
                    carry, draining = b"", True
    finally:
        log.lines = done


def _blank_long_lines(block: bytes, done: int, cap: int, log: BadLineLog) -> bytes:
    """Replace the lines of ``block`` longer than ``cap`` by empty lines, counting each."""
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    lengths = np.diff(ends, prepend=-1) - 1
    long = np.flatnonzero(lengths > cap)
    if len(long) == 0:
        return block
    lines = block.split(b"\n")
    for k in long.tolist():
        log.add(
            done + k + 1,
            f"line longer than max_line_bytes={cap} ({int(lengths[k])} bytes), skipped",
        )
        lines[k] = b""
    return b"\n".join(lines)


def parse_lines(
    lines: Iterable[tuple[int, bytes]],
    log: BadLineLog,
    record: Callable[[dict], T],
    decode: Callable[[bytes], Any] = parse_json,
    what: str = "JSON",
) -> Iterator[tuple[int, T]]:
    """Yield ``(line_number, record(object))`` for each numbered line that holds a usable record.

    Blank lines are skipped; a line that does not decode, decodes to something other than a
    mapping, or that ``record`` rejects (:class:`~alignrec_data.readers.base.BadRecord`) is
    counted in ``log``.

    Args:
        lines: ``(line_number, line)`` pairs (:func:`iter_lines`).
        log: Where bad lines are counted.
        record: Turns a decoded object into a record.
        decode: Line parser; any exception it raises marks the line as bad.
        what: Name of the format for messages (``JSON``, ``Python literal``).
    """
    for n, line in lines:
        if not line or line.isspace():
            continue
        try:
            obj = decode(line)
        except (ValueError, SyntaxError, RecursionError, MemoryError, TypeError) as err:
            log.add(n, f"not valid {what}: {short_error(err)}")
            continue
        if not isinstance(obj, dict):
            log.add(n, f"expected an object, found {type(obj).__name__}")
            continue
        try:
            value = record(obj)
        except BadRecord as err:
            log.add(n, str(err))
            continue
        yield n, value


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def short_error(err: BaseException, limit: int = 120) -> str:
    """``Type: message`` of an exception, cut to ``limit`` characters for bad-line reports."""
    # Without the memory address of a repr (``<ast.Call object at 0x7f...>``): the same input
    # gives the same report, so stats.json is reproducible.
    text = _ADDRESS.sub("", f"{type(err).__name__}: {err}")
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

        (``prepare`` reads through the faster
        :func:`~alignrec_data.readers.columns.read_review_columns`; both apply the same checks.)
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
