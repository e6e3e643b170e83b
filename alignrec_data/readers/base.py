"""What every raw-file reader shares: bounded line reading, bad-line accounting, id interning.

Raw files are untrusted. Every reader reads its file as a stream of lines, each read with a
bounded ``readline`` (:func:`iter_lines`): a line longer than ``max_line_bytes`` is never held
in memory; its first ``max_line_bytes + 1`` bytes are read, the rest is skipped in 1 MiB pieces
and the line is counted as bad. A line that does not parse, or lacks a required field, is
counted in a :class:`BadLineLog`, which keeps the first few (file name, line number, reason)
and, in strict mode, raises :class:`~alignrec_data.errors.DataFormatError` at the first one.

Reviews are collected into compact columns (:class:`InteractionColumns`): user and item keys
are interned to int32 codes as they stream past, so memory grows with the number of reviews
(about 20 bytes each plus one string per distinct user and item), not with the file size.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from alignrec_data.errors import DataFormatError

try:  # orjson comes with dvc (a dependency) and parses 2-3x faster; json is the fallback.
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover - exercised only without orjson
    from json import loads as _json_loads

logger = logging.getLogger(__name__)

DEFAULT_MAX_LINE_BYTES = 10 * 1024 * 1024
DRAIN_CHUNK = 1 << 20
BLOCK_BYTES = 16 << 20  # lines parsed together by Arrow's JSON reader
MAX_ABS_NUMBER = 2**62  # ratings and timestamps beyond this are bad records (int64-safe)
MAX_IMAGE_URLS = 8
_GZIP_MAGIC = b"\x1f\x8b"
# Amazon image size modifiers: "._SX300_.jpg", "._SS40_.jpg", "._SX38_SY50_CR,0,0,38,50_.jpg".
_SPACE = re.compile(r"\s")
_SIZE_MODIFIER = re.compile(r"\._[A-Za-z0-9_,]+_(\.[A-Za-z]{3,4})$")


class BadRecord(ValueError):
    """A parsed line that is not a usable record (missing or mistyped field)."""


@dataclass(frozen=True)
class BadLine:
    """One reported bad line.

    Attributes:
        file: File name (no folder, so reports are the same on every machine).
        line: 1-based line number.
        reason: What was wrong.
    """

    file: str
    line: int
    reason: str


@dataclass
class BadLineLog:
    """Counts the bad lines of one file and keeps the first ``max_examples`` of them.

    Attributes:
        file: File name used in reports.
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
            self.examples.append(BadLine(self.file, line, reason))
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
        with open_raw(path) as f:
            readline = f.readline
            limit = max_line_bytes + 1
            while True:
                line = readline(limit)
                if not line:
                    break
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
                if line.isspace():
                    continue
                yield n, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        msg = (
            f"{Path(path).name}: corrupt or truncated gzip stream after line {n} ({err}); "
            "download the file again (`alignrec-data download`)"
        )
        raise DataFormatError(msg) from err
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
        with open_raw(path) as f:
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
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        msg = (
            f"{Path(path).name}: corrupt or truncated gzip stream after line {done} ({err}); "
            "download the file again (`alignrec-data download`)"
        )
        raise DataFormatError(msg) from err
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


def parse_json(line: bytes) -> Any:
    """Parse one JSON line (raises ValueError or RecursionError on bad input)."""
    return _json_loads(line)


def iter_objects(
    path: str | Path,
    log: BadLineLog,
    max_line_bytes: int,
    decode: Callable[[bytes], Any] = parse_json,
    what: str = "JSON",
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each line that decodes to a mapping.

    Args:
        path: The file.
        log: Where bad lines are counted.
        max_line_bytes: See :func:`iter_lines`.
        decode: Line parser; any exception it raises marks the line as bad.
        what: Name of the format for messages (``JSON``, ``Python literal``).
    """
    for n, line in iter_lines(path, log, max_line_bytes):
        try:
            obj = decode(line)
        except (ValueError, SyntaxError, RecursionError, MemoryError, TypeError) as err:
            log.add(n, f"not valid {what}: {_short(err)}")
            continue
        if not isinstance(obj, dict):
            log.add(n, f"expected an object, found {type(obj).__name__}")
            continue
        yield n, obj


def _short(err: BaseException, limit: int = 120) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- field helpers shared by the release readers ---------------------------------------------


def get_key(obj: dict, name: str) -> str:
    """A required non-empty string field (a user or item key)."""
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        found = "missing" if value is None else repr(value)[:40]
        raise BadRecord(f"field {name!r} must be a non-empty string, found {found}")
    return value


def get_number(obj: dict, name: str) -> float:
    """A required finite number (a rating or a timestamp)."""
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        found = "missing" if value is None else repr(value)[:40]
        raise BadRecord(f"field {name!r} must be a number, found {found}")
    if not -MAX_ABS_NUMBER < value < MAX_ABS_NUMBER:  # also False for NaN; no float overflow
        raise BadRecord(
            f"field {name!r} must be a finite number below 2**62 in size, found {str(value)[:40]}"
        )
    return value


def as_str(value: Any) -> str:
    """A free-text field as a string ('' for missing or non-text values; lists joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(v for v in value if isinstance(v, str))
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
    out: list[str] = []
    seen: set[str] = set()
    for group in groups:
        for url in group:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                continue
            url = url.strip()
            for cand in (url, strip_size_modifier(url)):
                if cand not in seen and not _SPACE.search(cand):
                    seen.add(cand)
                    out.append(cand)
            if len(out) >= MAX_IMAGE_URLS:
                return out[:MAX_IMAGE_URLS]
    return out


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


class InteractionColumns:
    """Reviews as compact columns: keys dictionary-encoded per block, unified at the end.

    Each block keeps its user and item keys as Arrow dictionary arrays (int32 indices plus the
    distinct keys of the block); :meth:`arrays` unifies the dictionaries in C++ so that every
    key gets one int32 code, in order of first appearance.
    """

    def __init__(self) -> None:
        self._blocks: list[tuple[Any, Any, np.ndarray, np.ndarray]] = []
        self._done: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._user_keys: list[str] = []
        self._item_keys: list[str] = []

    def extend(self, records: Iterable[tuple[str, str, float, int]]) -> None:
        """Append ``(user_key, item_key, rating, timestamp_seconds)`` records."""
        import pyarrow as pa

        rows = list(records)
        if rows:
            u, i, r, t = zip(*rows, strict=True)
            self.add_block(
                pa.array(u, pa.string()),
                pa.array(i, pa.string()),
                np.asarray(r, np.float32),
                np.asarray(t, np.int64),
            )

    def add_block(self, users: Any, items: Any, r: np.ndarray, t: np.ndarray) -> None:
        """Append a block: Arrow string arrays of user and item keys, ratings, timestamps."""
        self._done = None
        self._blocks.append(
            (
                users.dictionary_encode(),
                items.dictionary_encode(),
                r.astype(np.float32, copy=False),
                t.astype(np.int64, copy=False),
            )
        )

    def __len__(self) -> int:
        return sum(len(b[2]) for b in self._blocks)

    @property
    def user_keys(self) -> list[str]:
        """Raw key of each user code."""
        self.arrays()
        return self._user_keys

    @property
    def item_keys(self) -> list[str]:
        """Raw key of each item code."""
        self.arrays()
        return self._item_keys

    @staticmethod
    def _unify(chunks: list[Any]) -> tuple[np.ndarray, list[str]]:
        import pyarrow as pa

        if not chunks:
            return np.zeros(0, np.int32), []
        unified = pa.chunked_array(chunks).unify_dictionaries()
        codes = np.concatenate(
            [c.indices.to_numpy(zero_copy_only=False) for c in unified.chunks]
        ).astype(np.int32)
        return codes, unified.chunk(0).dictionary.to_pylist()

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(user_codes int32, item_codes int32, ratings float32, timestamps int64)``."""
        if self._done is None:
            u, self._user_keys = self._unify([b[0] for b in self._blocks])
            i, self._item_keys = self._unify([b[1] for b in self._blocks])
            r = (
                np.concatenate([b[2] for b in self._blocks])
                if self._blocks
                else np.zeros(0, np.float32)
            )
            t = (
                np.concatenate([b[3] for b in self._blocks])
                if self._blocks
                else np.zeros(0, np.int64)
            )
            self._done = (u, i, r, t)
        return self._done


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
        raise BadRecord(f"expected an object, found {type(obj).__name__}")
    user_f, item_f, rating_f, ts_f = fields
    ts = get_number(obj, ts_f)
    return (
        get_key(obj, user_f),
        get_key(obj, item_f),
        float(get_number(obj, rating_f)),
        int(ts) // ts_divisor,
    )


def read_review_columns(
    path: str | Path,
    log: BadLineLog,
    max_line_bytes: int,
    fields: tuple[str, str, str, str],
    ts_divisor: int = 1,
    progress: Any = None,
    block_bytes: int = BLOCK_BYTES,
) -> InteractionColumns:
    """Stream a JSON-lines reviews file straight into :class:`InteractionColumns`.

    The hot path of ``prepare``. Lines are read one by one with the bounded ``readline`` of
    :func:`iter_lines` and gathered into blocks of about ``block_bytes``; each block is parsed
    by Arrow's C++ JSON reader with an explicit schema of the four fields (all other fields
    ignored) and its keys interned per distinct value, not per line. A block that Arrow
    rejects (a malformed line, a field of the wrong type) is re-read line by line in Python
    so that exactly the bad lines are counted and reported; rows with a missing, empty or
    out-of-range field are reported the same way.

    Args:
        path: The reviews file.
        log: Where bad lines are counted.
        max_line_bytes: See :func:`iter_lines`.
        fields: Names of the user, item, rating and timestamp fields.
        ts_divisor: Timestamp units per second (1000 for milliseconds).
        progress: Optional tqdm bar, advanced once per block (in lines).
        block_bytes: Bytes of lines parsed together.

    Returns:
        The columns.
    """
    cols = InteractionColumns()
    if log.strict:  # line by line, so that the first bad line is the one reported
        for n, line in iter_lines(path, log, max_line_bytes):
            _python_lines(cols, [line], [n], log, fields, ts_divisor)
        return cols
    for first, block in iter_line_blocks(path, log, max_line_bytes, block_bytes):
        n_rows = _parse_block(cols, first, block, log, fields, ts_divisor)
        if progress is not None:
            progress.update(n_rows)
    return cols


def _arrow_schema(fields: tuple[str, str, str, str]) -> Any:
    import pyarrow as pa

    user_f, item_f, rating_f, ts_f = fields
    return pa.schema(
        [(user_f, pa.string()), (item_f, pa.string()), (rating_f, pa.float64()), (ts_f, pa.int64())]
    )


def _parse_block(
    cols: InteractionColumns,
    first: int,
    block: bytes,
    log: BadLineLog,
    fields: tuple[str, str, str, str],
    ts_divisor: int,
) -> int:
    """Parse one block of lines into ``cols``; returns the number of lines in it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    n_lines = block.count(b"\n")
    try:
        table = pj.read_json(
            pa.BufferReader(block),
            read_options=pj.ReadOptions(use_threads=True, block_size=1 << 20),
            parse_options=pj.ParseOptions(
                explicit_schema=_arrow_schema(fields), unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        table = None
    if table is None or table.num_rows != n_lines:  # also: blank lines (Arrow skips them)
        lines = block.split(b"\n")[:n_lines]
        _python_lines(cols, lines, range(first, first + n_lines), log, fields, ts_divisor)
        return n_lines
    user_f, item_f, rating_f, ts_f = fields
    users = table.column(user_f).combine_chunks()
    items = table.column(item_f).combine_chunks()
    rating = table.column(rating_f).combine_chunks()
    ts = table.column(ts_f).combine_chunks()
    ok = pc.and_(
        pc.and_(pc.greater(pc.utf8_length(users), 0), pc.greater(pc.utf8_length(items), 0)),
        pc.and_(
            pc.less(pc.abs(rating), float(MAX_ABS_NUMBER)), pc.less(pc.abs(ts), MAX_ABS_NUMBER)
        ),
    ).fill_null(False)
    ok_np = ok.to_numpy(zero_copy_only=False)
    if not ok_np.all():
        bad = np.flatnonzero(~ok_np)
        lines = block.split(b"\n")
        for k in bad.tolist():
            _python_lines(cols, [lines[k]], [first + k], log, fields, ts_divisor, expect_bad=True)
        users, items, rating, ts = (a.filter(ok) for a in (users, items, rating, ts))
    cols.add_block(
        users,
        items,
        rating.to_numpy(zero_copy_only=False).astype(np.float32),
        ts.to_numpy(zero_copy_only=False) // ts_divisor,
    )
    return n_lines


def _python_lines(
    cols: InteractionColumns,
    lines: list[bytes],
    nums: Iterable[int],
    log: BadLineLog,
    fields: tuple[str, str, str, str],
    ts_divisor: int,
    expect_bad: bool = False,
) -> None:
    """Parse lines one by one (the exact path for blocks Arrow rejects)."""
    records = []
    for n, line in zip(nums, lines, strict=True):
        if not line or line.isspace():
            continue
        try:
            obj = _json_loads(line)
        except (ValueError, RecursionError, MemoryError) as err:
            log.add(n, f"not valid JSON: {_short(err)}")
            continue
        try:
            records.append(parse_review(obj, fields, ts_divisor))
        except BadRecord as err:
            log.add(n, str(err))
            continue
        if expect_bad:  # Arrow saw a problem the Python checks do not: trust the stricter one
            records.pop()
            log.add(n, "invalid record (field of an unexpected type or size)")
    cols.extend(records)
