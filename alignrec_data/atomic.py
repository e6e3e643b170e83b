"""Atomic writes: write to a temporary file in the target folder, then rename into place.

A crash or Ctrl-C never leaves a half-written output under its final name.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@functools.cache
def _umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it to ``target`` on success.

    On an exception the temporary file is removed and ``target`` is left untouched.

    Args:
        target: The final file name.
        suffix: Suffix for the temporary name (some writers need the extension).

    Yields:
        The temporary path to write to.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file as 0600; give it the mode a plain open() would have.
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(target: str | Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON to ``target``."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_parquet(target: str | Path, table: Any, **kwargs: Any) -> None:
    """Atomically write a pyarrow Table to ``target`` (deterministic bytes for equal tables)."""
    import pyarrow.parquet as pq

    with atomic_path(target, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, **kwargs)
