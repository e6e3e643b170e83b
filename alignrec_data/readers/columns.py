"""Reviews straight into compact columns: the hot path of ``prepare``.

Reviews are collected into :class:`InteractionColumns`: user and item keys are interned to int32
codes as they stream past, so memory grows with the number of reviews (about 20 bytes each plus
one string per distinct user and item), not with the file size. Blocks of lines are parsed by
Arrow's C++ JSON reader; what Arrow rejects is re-read line by line with the checks of
:func:`alignrec_data.readers.base.parse_review`, so both paths count the same bad lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from alignrec_data.readers.base import MAX_ABS_NUMBER, parse_review
from alignrec_data.readers.lines import (
    BadLineLog,
    iter_line_blocks,
    iter_lines,
    parse_lines,
)

BLOCK_BYTES = 16 << 20  # lines parsed together by Arrow's JSON reader


class InteractionColumns:
    """Reviews as compact columns: keys dictionary-encoded per block, unified at the end.

    Each block keeps its user and item keys as Arrow dictionary arrays (int32 indices plus the
    distinct keys of the block); :meth:`arrays` unifies the dictionaries in C++ so that every
    key gets one int32 code, in order of first appearance.

    ``has_ratings`` / ``has_timestamps``: the source has that column (a declared table may
    not: its ratings are then NaN and its timestamps 0, written as nulls).
    """

    def __init__(self, has_ratings: bool = True, has_timestamps: bool = True) -> None:
        self.has_ratings, self.has_timestamps = has_ratings, has_timestamps
        self._blocks: list[tuple[Any, Any, np.ndarray, np.ndarray]] = []
        self._done: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

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
            r = np.concatenate([np.zeros(0, np.float32), *(b[2] for b in self._blocks)])
            t = np.concatenate([np.zeros(0, np.int64), *(b[3] for b in self._blocks)])
            self._done = (u, i, r, t)
        return self._done


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

    Lines are read with the bounded reads of :mod:`alignrec_data.readers.lines` and gathered
    into blocks of about ``block_bytes``; each block is parsed by Arrow's C++ JSON reader with
    an explicit schema of the four fields (all other fields ignored) and its keys interned per
    distinct value, not per line. A block that Arrow rejects (a malformed line, a field of the
    wrong type) is re-read line by line in Python so that exactly the bad lines are counted and
    reported; rows with a missing, empty or out-of-range field are reported the same way.

    Args:
        path: The reviews file.
        log: Where bad lines are counted.
        max_line_bytes: See :func:`~alignrec_data.readers.lines.iter_lines`.
        fields: Names of the user, item, rating and timestamp fields.
        ts_divisor: Timestamp units per second (1000 for milliseconds).
        progress: Optional tqdm bar, advanced once per block (in lines).
        block_bytes: Bytes of lines parsed together.

    Returns:
        The columns.
    """
    parser = _Parser(InteractionColumns(), log, fields, ts_divisor)
    if log.strict:  # line by line, so that the first bad line is the one reported
        parser.lines(iter_lines(path, log, max_line_bytes))
        return parser.cols
    for first, block in iter_line_blocks(path, log, max_line_bytes, block_bytes):
        n_rows = parser.block(first, block)
        if progress is not None:
            progress.update(n_rows)
    return parser.cols


@dataclass(frozen=True)
class _Parser:
    """Parses review lines into ``cols``, counting the bad ones in ``log``."""

    cols: InteractionColumns
    log: BadLineLog
    fields: tuple[str, str, str, str]
    ts_divisor: int

    def block(self, first: int, block: bytes) -> int:
        """Parse one block of lines into ``cols``; returns the number of lines in it."""
        types = (pa.string(), pa.string(), pa.float64(), pa.int64())
        schema = pa.schema(list(zip(self.fields, types, strict=True)))
        n_lines = block.count(b"\n")
        try:
            table = pj.read_json(
                pa.BufferReader(block),
                read_options=pj.ReadOptions(use_threads=True, block_size=1 << 20),
                parse_options=pj.ParseOptions(
                    explicit_schema=schema, unexpected_field_behavior="ignore"
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            table = None
        if table is None or table.num_rows != n_lines:  # also: blank lines (Arrow skips them)
            self.lines(enumerate(block.split(b"\n"), start=first))
            return n_lines
        users, items, rating, ts = (table.column(f).combine_chunks() for f in self.fields)
        ok = pc.and_(
            pc.and_(pc.greater(pc.utf8_length(users), 0), pc.greater(pc.utf8_length(items), 0)),
            pc.and_(
                pc.less(pc.abs(rating), float(MAX_ABS_NUMBER)), pc.less(pc.abs(ts), MAX_ABS_NUMBER)
            ),
        ).fill_null(False)
        ok_np = ok.to_numpy(zero_copy_only=False)
        if not ok_np.all():
            lines = block.split(b"\n")
            bad_lines = [(first + k, lines[k]) for k in np.flatnonzero(~ok_np).tolist()]
            self.lines(bad_lines, expect_bad=True)
            users, items, rating, ts = (a.filter(ok) for a in (users, items, rating, ts))
        self.cols.add_block(
            users,
            items,
            rating.to_numpy(zero_copy_only=False).astype(np.float32),
            ts.to_numpy(zero_copy_only=False) // self.ts_divisor,
        )
        return n_lines

    def lines(self, lines: Iterable[tuple[int, bytes]], expect_bad: bool = False) -> None:
        """Parse numbered lines one by one (the exact path for blocks Arrow rejects)."""
        review = partial(parse_review, fields=self.fields, ts_divisor=self.ts_divisor)
        records = []
        for n, record in parse_lines(lines, self.log, review):
            if expect_bad:  # Arrow saw a problem the Python checks do not: trust the stricter one
                self.log.add(n, "invalid record (field of an unexpected type or size)")
            else:
                records.append(record)
        if records:
            u, i, r, t = zip(*records, strict=True)
            self.cols.add_block(
                pa.array(u, pa.string()),
                pa.array(i, pa.string()),
                np.asarray(r, np.float32),
                np.asarray(t, np.int64),
            )
