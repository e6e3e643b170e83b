"""Tables of a declared dataset (CSV, TSV, parquet, JSON lines) read through a column mapping.

The counterpart of the release readers for :mod:`alignrec_data.declared`: the interactions
file becomes :class:`~alignrec_data.readers.columns.InteractionColumns` (the same columns the
Amazon reviews become), the items file :class:`DeclaredMeta` records (an
:class:`~alignrec_data.readers.base.ItemMeta` plus the text of the declared template). A row
without a usable user or item key, rating or timestamp is a bad row: counted in the
:class:`~alignrec_data.readers.lines.BadLineLog` (row numbers count data rows from 1), or an
error in strict mode.

Keys are strings: integer columns as their digits, integral floats (an integer column with
gaps, as CSV readers make it) without ``.0``, text stripped. Timestamps: numbers are Unix
seconds; strings and date columns are parsed as dates (UTC unless they carry an offset).
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.readers.base import MAX_ABS_NUMBER, ItemMeta
from alignrec_data.readers.columns import InteractionColumns
from alignrec_data.readers.lines import BadLineLog
from alignrec_data.text import clean_text, template_fields

if TYPE_CHECKING:
    from alignrec_data.declared import Declared


@dataclass(frozen=True)
class DeclaredMeta(ItemMeta):
    """An item of a declared items file.

    Attributes:
        text: The declared text template filled with the item's cleaned values ('' without
            a template).
    """

    text: str = ""


def _columns(path: Path, fmt: str) -> list[str]:
    """The column names of a table file, reading as little as the format allows."""
    if fmt == "parquet":
        return list(pq.read_schema(path).names)
    return [str(c) for c in _read(path, fmt, None, (), nrows=0).columns]


def _read(
    path: Path,
    fmt: str,
    columns: Sequence[str] | None,
    as_text: Sequence[str],
    nrows: int | None = None,
) -> pd.DataFrame:
    """Read ``columns`` (None: all) of a table; ``as_text`` columns of CSV/TSV stay strings.

    ``nrows`` limits the rows of a CSV/TSV table (the other formats are read whole).
    """
    if fmt == "parquet":
        return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        usecols = list(columns) if columns else None
        return pd.read_csv(
            path, sep=sep, usecols=usecols, dtype=dict.fromkeys(as_text, str), nrows=nrows
        )
    frame = pd.read_json(path, lines=True, dtype=False)
    return frame[list(columns)] if columns else frame


def read_table(
    path: Path, fmt: str, wanted: dict[str, str], where: str, as_text: Sequence[str] = ()
) -> pd.DataFrame:
    """Read the mapped columns of a table file.

    Args:
        path: The raw file.
        fmt: ``csv``, ``tsv``, ``parquet`` or ``jsonl``.
        wanted: ``{params key: column}`` of every column used (for the message).
        where: The declaration's params key (``<params>:declared.<id>.items``).
        as_text: Columns read as text from CSV/TSV (keys: leading zeros kept).

    Raises:
        UsageError: A mapped column is not in the file (names key, column, file, columns).
        DataFormatError: The file cannot be parsed as ``fmt``.
    """
    try:
        have = _columns(path, fmt)
        missing = [(k, c) for k, c in wanted.items() if c not in have]
        if missing:
            key, col = missing[0]
            shown = ", ".join(have[:40]) + (", ..." if len(have) > 40 else "")
            msg = f"{where}.{key}: column {col!r} is not in {path.name} ({fmt}; columns: {shown})"
            raise UsageError(msg, hint=f"fix {where}.{key} (column names are case-sensitive)")
        columns = list(dict.fromkeys(wanted.values()))
        return _read(path, fmt, columns, [c for c in as_text if c in columns])
    except (ValueError, OSError, pa.ArrowException, UnicodeDecodeError) as err:
        first = " ".join(str(err).split())[:200]
        msg = f"{path} is not a readable {fmt} table ({first}); fix {where}.format or the file"
        raise DataFormatError(msg) from err


def keys(values: pd.Series, offset: int = 0) -> list[str | None]:
    """Key strings of a column, None where a key is missing (or not an integer with ``offset``).

    Args:
        values: The key column.
        offset: Added to integer keys.
    """
    return [_key(v, offset) for v in values.tolist()]


def _missing(v: Any) -> bool:
    """True for a missing cell (None, NaN, pd.NA, NaT)."""
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _key(v: Any, offset: int) -> str | None:
    if _missing(v) or isinstance(v, bool) or (isinstance(v, float) and not math.isfinite(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if offset:
        try:
            n = v if isinstance(v, int) else int(str(v).strip())
        except ValueError:
            return None
        return str(n + offset)
    text = str(v).strip()
    return text or None


def seconds(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds of a time column, and a mask of the rows where it is usable.

    Numbers are seconds; strings and date types are parsed as dates (UTC when naive).
    """
    if pd.api.types.is_bool_dtype(values):
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    if pd.api.types.is_numeric_dtype(values):
        num = values.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(num) & (np.abs(num) < MAX_ABS_NUMBER)  # int64-safe, as reviews
        out = np.zeros(len(num), np.int64)
        out[ok] = np.floor(num[ok]).astype(np.int64)
        return out, ok
    if not pd.api.types.is_datetime64_any_dtype(values):
        text = values.astype("string")
        as_num = pd.to_numeric(text, errors="coerce")
        if as_num.notna().all() and len(text):  # digits in a text column: seconds
            return seconds(as_num)
        values = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    elif values.dt.tz is None:
        values = values.dt.tz_localize("UTC")
    # The dates as whole seconds (NaN where not a date), checked as numbers are.
    return seconds((values - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1))


def read_interactions(d: Declared, path: Path, log: BadLineLog) -> InteractionColumns:
    """The declared interactions file as columns (with ``has_ratings`` and ``has_timestamps``).

    Without a rating column the ratings are NaN (null in the prepared table); without a
    timestamp column the timestamps are 0 (null), so duplicate pairs keep their first row.

    Raises:
        UsageError: A mapped column is missing.
        DataFormatError: Unreadable file; a bad row in strict mode; no usable row at all.
    """
    decl, where = d.decl.interactions, d.key("reviews")
    wanted = {
        k: getattr(decl, k) for k in ("user", "item", "rating", "timestamp") if getattr(decl, k)
    }
    frame = read_table(path, d.formats["reviews"], wanted, where, as_text=(decl.user, decl.item))
    n = log.lines = len(frame)
    user_keys, item_keys = keys(frame[decl.user]), keys(frame[decl.item])
    why: dict[int, str] = {}  # bad row -> the first reason it is bad
    for column, what, found in ((decl.user, "user", user_keys), (decl.item, "item", item_keys)):
        for k in np.flatnonzero([key is None for key in found]).tolist():
            why.setdefault(k, f"column {column!r} ({what}) is empty")
    ratings = np.full(n, np.nan, np.float32)
    if decl.rating:
        values = frame[decl.rating]
        r = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        for k in np.flatnonzero(~np.isfinite(r)).tolist():
            why.setdefault(
                k, f"column {decl.rating!r} (rating) is not a number: {values.iloc[k]!r}"
            )
        ratings = r.astype(np.float32)  # the rows kept are finite
    stamps = np.zeros(n, np.int64)
    if decl.timestamp:
        values = frame[decl.timestamp]
        stamps, good = seconds(values)
        for k in np.flatnonzero(~good).tolist():
            why.setdefault(
                k, f"column {decl.timestamp!r} (timestamp) is not a time: {values.iloc[k]!r}"
            )
    for k in sorted(why):
        log.add(k + 1, why[k])
    keep = [k for k in range(n) if k not in why]
    if not keep:
        ex = log.examples
        first = f"; first bad row {ex[0].line}: {ex[0].reason}" if ex else ""
        msg = f"interactions file {path} holds no usable row ({n:,} rows, {log.count:,} bad{first})"
        raise DataFormatError(msg, hint=f"check {where}")
    cols = InteractionColumns(bool(decl.rating), bool(decl.timestamp))
    cols.add_block(
        pa.array([user_keys[k] for k in keep], pa.string()),
        pa.array([item_keys[k] for k in keep], pa.string()),
        ratings[keep],
        stamps[keep],
    )
    return cols


def _text(value: Any) -> str:
    """A cell as text ('' for missing; integral floats without ``.0``)."""
    if isinstance(value, list | tuple | np.ndarray):
        return " ".join(_text(v) for v in value)
    if _missing(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def fill(template: str, row: dict[str, Any], clean: bool) -> str | None:
    """Fill a template with a row's values; None when a value is missing or does not fit.

    Args:
        template: Checked by :func:`alignrec_data.declared.check_declaration`.
        row: Column values of one item.
        clean: Clean each value as item text (:func:`~alignrec_data.text.clean_text`) and
            normalise the whitespace of the result; a missing value is then ''.
    """
    parts = []
    for literal, name, spec, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name is None:
            continue
        value = row.get(name)
        if clean:
            parts.append(clean_text(_text(value)))
            continue
        if _text(value) == "":
            return None
        if isinstance(value, np.generic):  # a plain Python value for the format spec
            value = value.item()
        if isinstance(value, float) and value.is_integer() and spec and spec[-1:] in "dxXob":
            value = int(value)
        try:
            parts.append(format(value, spec or ""))
        except (ValueError, TypeError):
            return None
    text = "".join(parts)
    return " ".join(text.split()) if clean else text


def read_items(
    d: Declared, path: Path, log: BadLineLog, image_url: Any, wanted: set[str]
) -> Iterator[DeclaredMeta]:
    """The declared items file as :class:`DeclaredMeta` records, in file order.

    Args:
        d: The declaration (its :class:`~alignrec_data.declared.ItemsDecl` maps the columns).
        path: The raw items file.
        log: Counts rows without an item key.
        image_url: Maps an image template value to the URL written to items.parquet (or None).
        wanted: Keys to yield (the items that survived the k-core).

    Raises:
        UsageError: A mapped or template column is missing.
        DataFormatError: Unreadable file; a bad row in strict mode.
    """
    decl = d.decl.items
    mapped = {
        k: getattr(decl, k) for k in ("item", "title", "brand", "description") if getattr(decl, k)
    }
    for k, col in enumerate(decl.categories):
        mapped[f"categories[{k}]"] = col
    for what in ("text", "image"):
        for col, *_ in template_fields(getattr(decl, what) or "", what, ""):
            mapped.setdefault(f"{what} {{{col}}}", col)
    as_text = (decl.item,) if not decl.item_offset else ()
    frame = read_table(path, d.formats["meta"], mapped, d.key("meta"), as_text=as_text)
    log.lines = len(frame)
    item_keys = keys(frame[decl.item], decl.item_offset)
    records = frame.to_dict("records")
    for n, (key, row) in enumerate(zip(item_keys, records, strict=True), start=1):
        if key is None:
            log.add(n, f"column {decl.item!r} (item) is empty or not an integer")
            continue
        if key not in wanted:
            continue
        value = fill(decl.image, row, clean=False) if decl.image is not None else None
        url = image_url(value) if value is not None else None
        yield DeclaredMeta(
            key=key,
            # the frame holds only the mapped columns: an unmapped field is ''
            **{k: _text(row.get(getattr(decl, k))) for k in ("title", "brand", "description")},
            categories=[_text(row.get(c)) for c in decl.categories],
            image_urls=[url] if url is not None else [],
            text=(fill(decl.text, row, clean=True) or "") if decl.text is not None else "",
        )
