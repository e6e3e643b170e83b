"""Atomic writes: write to a temporary file in the target folder, then rename into place.

A crash or Ctrl-C never leaves a half-written output under its final name. Every temporary
this package makes is named ``.<target>.tmp-<pid>-<random>`` (a folder being replaced is set
aside as ``.<target>.old-<pid>-<random>``), so the next write of the same target removes the
leftovers of a process that is no longer alive (``kill -9``, power loss) and never touches a
temporary of a run still going on, nor any file the tool did not name so.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignrec_data.errors import UsageError


@functools.cache
def _umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_TEMP_RE = re.compile(r"\.(?:tmp|old)-(\d+)-")
# Names earlier versions gave their temporaries (no pid): tempfile's 8 random characters in
# ``.<name>.XXXXXXXX.tmp`` / ``.<name>.XXXXXXXX.parquet.tmp`` / ``.<name>.XXXXXXXX.pt.tmp``
# (files) and ``.<name>.tmp-XXXXXXXX`` (release staging). No live process of this version
# makes them, so they are leftovers of a killed run.
_LEGACY_RE = re.compile(r"\.(?:[a-z0-9_]{8}(?:\.[a-z]+)?\.tmp|tmp-[a-z0-9_]{8})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks the process exists (this one included)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        pass  # someone else's process, or not a pid we can judge: keep it
    return True


def clean_stale(folder: str | Path, name: str) -> list[Path]:
    """Remove the temporaries of ``folder/name`` left by processes that are no longer alive.

    Only entries named ``.<name>.tmp-<pid>-*`` or ``.<name>.old-<pid>-*`` (what
    :func:`atomic_path` and :func:`atomic_dir` create) are considered.

    Args:
        folder: The folder holding the target.
        name: The target's file or folder name.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    prefix = f".{name}."
    for entry in folder.iterdir():
        if not entry.name.startswith(prefix):
            continue
        rest = entry.name[len(prefix) - 1 :]
        m = _TEMP_RE.match(rest)
        stale = not _pid_alive(int(m.group(1))) if m else _LEGACY_RE.fullmatch(rest)
        if not stale:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _temp_prefix(target: Path, kind: str = "tmp") -> str:
    return f".{target.name}.{kind}-{os.getpid()}-"


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
    clean_stale(target.parent, target.name)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=suffix, dir=target.parent)
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


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder next to ``target``; swap it in as ``target`` on success.

    The staging folder gets the mode a plain ``mkdir`` would give (not ``mkdtemp``'s 0700).
    An existing ``target`` folder is renamed aside, replaced, then removed; on an exception the
    staging folder is removed and ``target`` is left untouched. Callers decide beforehand
    whether ``target`` may be replaced (:func:`alignrec_data.outputs.check_output_dir`).

    Args:
        target: The final folder.

    Yields:
        The staging folder to fill.

    Raises:
        UsageError: ``target`` exists and is not a folder.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        msg = f"{target} exists and is not a folder; remove it or choose another output folder"
        raise UsageError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target.parent, target.name)
    staging = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(target, "old"), dir=target.parent))
            os.replace(target, old)  # an empty folder is replaced by rename(2)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
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
