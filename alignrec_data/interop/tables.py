"""Reading the source files of an import cell by cell: tab-separated tables and JSON.

Every reader refuses an empty, binary or non-UTF-8 file before a parser sees it, and every
error names the file, the line and column where there are any, what was expected and what was
found. Integers are range-checked as text, so a forged id beyond 64 bits is an error rather
than an overflow.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alignrec_data.errors import DataFormatError

INT64_MAX = int(np.iinfo(np.int64).max)
_DIGITS = 40  # wider than INT64_MAX: longer digit strings start with 1-9, above its padding
_INT64_MAX_DIGITS = str(INT64_MAX).zfill(_DIGITS)
_SNIFF_BYTES = 64 * 1024


def check_text_file(path: Path, expected: str) -> None:
    """Refuse an empty or binary file before a parser sees it.

    Raises:
        DataFormatError: The file is empty or holds NUL bytes (binary, not text).
    """
    if path.stat().st_size == 0:
        msg = f"{path} is empty; expected {expected}"
        raise DataFormatError(msg)
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if b"\x00" in head:
        msg = f"{path} is a binary file (it holds NUL bytes), not text; expected {expected}"
        raise DataFormatError(msg)


def _not_utf8(path: Path, err: UnicodeDecodeError, expected: str) -> DataFormatError:
    msg = f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); expected {expected}"
    return DataFormatError(msg)


def read_tsv(path: Path, expected: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a tab-separated file with a header row, every cell as a string.

    Returns:
        ``(frame, lines)``: blank lines dropped, ``lines[i]`` the 1-based line number of row i.

    Raises:
        DataFormatError: Empty, binary, not UTF-8, or a row with more fields than the header.
    """
    check_text_file(path, expected)
    try:
        df = pd.read_csv(
            path,
            sep="\t",
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE,
            encoding="utf-8",
        )
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err, expected) from err
    except pd.errors.EmptyDataError as err:
        msg = f"{path} holds no header line; expected {expected}"
        raise DataFormatError(msg) from err
    except pd.errors.ParserError as err:
        found = str(err).strip()
        if m := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", found):
            found = f"line {m[2]} has {m[3]} tab-separated fields, the header {m[1]}"
        msg = f"{path}: {found}; expected {expected}"
        raise DataFormatError(msg) from err
    lines = np.arange(len(df), dtype=np.int64) + 2  # line 1 is the header
    blank = (df == "").all(axis=1).to_numpy() if len(df.columns) else np.zeros(len(df), bool)
    return df[~blank].reset_index(drop=True), lines[~blank]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def int_column(
    df: pd.DataFrame,
    column: str,
    lines: np.ndarray,
    path: Path,
    what: str,
    *,
    nullable: bool = False,
    allow_point_zero: bool = False,
) -> np.ndarray:
    """Parse a column of integer strings into int64, refusing anything else by line.

    Args:
        df: The frame of strings (:func:`read_tsv`).
        column: The column to parse.
        lines: Line number of each row.
        path: The file, for messages.
        what: What the values are (``"user id"``), for messages.
        nullable: Empty cells are allowed (returned as ``pd.NA`` in an ``Int64`` array).
        allow_point_zero: ``123.0`` is read as 123 (timestamps written by pandas as floats).

    Returns:
        int64 values (an ``Int64`` pandas array when ``nullable``).

    Raises:
        DataFormatError: A value is empty (unless ``nullable``), not a number, fractional or
            beyond the 64-bit integer range; the message names the file, line and column.
    """
    s = df[column].astype(str).str.strip()
    empty = (s == "").to_numpy()
    pattern = r"[+-]?\d+(?:\.0*)?" if allow_point_zero else r"[+-]?\d+"
    ok = s.str.fullmatch(pattern).to_numpy(dtype=bool) | (empty & nullable)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        value = s.iloc[i]
        kind = "a fractional number" if _is_number(value) else "not a number"
        found = f"{value!r}, {kind}" if value else "an empty cell"
        msg = (
            f"{path}: line {lines[i]}, column {column!r}: expected an integer {what}, found {found}"
        )
        raise DataFormatError(msg)
    if allow_point_zero:
        s = s.str.replace(r"\.0*$", "", regex=True)
    # Beyond the int64 range? Compared as text (no overflow): the digits without sign and
    # leading zeros, zero-padded to one width, compare as the numbers do.
    digits = s.str.lstrip("+-").str.lstrip("0").str.zfill(_DIGITS)
    big = (digits > _INT64_MAX_DIGITS).to_numpy(dtype=bool)
    if big.any():
        i = int(np.flatnonzero(big)[0])
        msg = (
            f"{path}: line {lines[i]}, column {column!r}: {what} {s.iloc[i]} is beyond the "
            f"64-bit integer range (at most {INT64_MAX}); renumber the {what}s from 0"
        )
        raise DataFormatError(msg)
    if nullable:
        return pd.array(s.where(~empty, None), dtype="Int64")
    return s.astype(np.int64).to_numpy()


def float_column(df: pd.DataFrame, column: str, lines: np.ndarray, path: Path) -> np.ndarray:
    """Parse a nullable column of numbers (empty cell = null) into float64 with NaN for nulls.

    Raises:
        DataFormatError: A value is not a finite number; the message names line and column.
    """
    s = df[column].astype(str).str.strip()
    empty = (s == "").to_numpy()
    values = pd.to_numeric(s.where(~empty, None), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~empty & ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        msg = (
            f"{path}: line {lines[i]}, column {column!r}: expected a finite number or an empty "
            f"cell, found {s.iloc[i]!r}"
        )
        raise DataFormatError(msg)
    return values


def read_json(path: Path, expected: str) -> Any:
    """Read a JSON file, naming it and what it should hold when it is not JSON.

    Raises:
        DataFormatError: Empty, binary, not UTF-8 or not JSON.
    """
    check_text_file(path, expected)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err, expected) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        msg = (
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            f"expected {expected}"
        )
        raise DataFormatError(msg) from err
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        msg = f"{path} is not usable JSON ({err}); expected {expected}"
        raise DataFormatError(msg) from err


def json_type(value: Any) -> str:
    """How a JSON value is named in messages (``an object``, ``a list``, ``null`` ...)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")


def is_id(value: Any) -> bool:
    """Whether a JSON value is an integer id from 0 to 2**63-1 (a boolean is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT64_MAX


def read_tsv_map(path: Path, key_col: str, id_col: str) -> dict[str, int] | None:
    """A tab-separated id map ``key_col<TAB>id_col`` as ``{raw key: id}`` (None: no file).

    Raises:
        DataFormatError: Not such a table, an id that is not an integer, or a key twice.
    """
    if not path.is_file():
        return None
    expected = f"tab-separated columns {key_col!r} and {id_col!r} with a header row"
    df, lines = read_tsv(path, expected)
    if key_col not in df.columns or id_col not in df.columns:
        msg = f"{path}: expected {expected}, found columns {list(df.columns)}"
        raise DataFormatError(msg)
    ids = int_column(df, id_col, lines, path, "id")
    mapping = dict(zip(df[key_col].astype(str).tolist(), ids.tolist(), strict=True))
    if len(mapping) != len(df):
        msg = f"{path}: a key appears twice in column {key_col!r}"
        raise DataFormatError(msg)
    return mapping


def read_json_map(path: Path) -> dict[str, int] | None:
    """A JSON id map ``{raw key: id}`` (None: no file); the ids are checked by the caller.

    Raises:
        DataFormatError: Not JSON, or not an object.
    """
    if not path.is_file():
        return None
    data = read_json(path, "an id map {raw key: id}")
    if not isinstance(data, dict):
        msg = (
            f"{path} is not an id map: expected an object {{raw key: id}}, found {json_type(data)}"
        )
        raise DataFormatError(msg)
    return data
