"""User and item ids of an import: contiguous from 0, and the raw key of each from an id map.

The ids are range-checked before anything is allocated by id: ids contiguous from 0 can be at
most (distinct ids used) + (ids mapped) - 1, so a forged id such as 9000000000000 is an error,
not 24 GB of memory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from alignrec_data.errors import DataFormatError
from alignrec_data.interop.tables import is_id

# Where the used id at an index comes from ("<file>, line 5"; None: the file or folder of all).
Locate = Callable[[int | None], str]


def _mapped_ids(mapping: dict[str, int], what: str, map_path: Path | None) -> np.ndarray:
    """The ids of an id map, each checked to be an id and given to one key only."""
    for key, idx in mapping.items():
        if not is_id(idx):
            msg = (
                f"{map_path}: {what} key {key!r} maps to {idx!r}; expected a non-negative "
                f"integer id below 2**63"
            )
            raise DataFormatError(msg)
    mapped = np.fromiter(mapping.values(), dtype=np.int64, count=len(mapping))
    if len(np.unique(mapped)) != len(mapped):
        msg = f"{map_path}: the {what} map gives the same id to two keys"
        raise DataFormatError(msg)
    return mapped


def keys_from_map(
    mapping: dict[str, int] | None,
    used_ids: np.ndarray,
    what: str,
    locate: Locate,
    map_path: Path | None,
) -> list[str]:
    """Raw keys by id for ids 0..n-1, n = 1 + the largest id used or mapped.

    Args:
        mapping: Raw key -> id (from the id map), or None without a map.
        used_ids: The ids the interactions use.
        what: ``"user"`` or ``"item"``.
        locate: Where the used id at an index comes from.
        map_path: The id map file, for messages.

    Raises:
        DataFormatError: Ids are negative, out of range, repeat in the map, or leave gaps.
    """
    used_ids = np.asarray(used_ids, dtype=np.int64)
    if len(used_ids) and int(used_ids.min()) < 0:
        i = int(np.argmin(used_ids))
        msg = f"{locate(i)}: {what} ids must be >= 0, found {int(used_ids[i])}"
        raise DataFormatError(msg)
    uniq = np.unique(used_ids)
    mapped = np.zeros(0, np.int64) if mapping is None else _mapped_ids(mapping, what, map_path)
    # n distinct ids contiguous from 0 are exactly 0..n-1: refuse any beyond that before
    # allocating by id.
    room = len(uniq) + len(mapped)
    top_used = int(uniq[-1]) if len(uniq) else -1
    top_mapped = int(mapped.max()) if len(mapped) else -1
    n = max(top_used, top_mapped) + 1
    if n > room:
        where = locate(int(np.argmax(used_ids))) if top_used >= top_mapped else str(map_path)
        have = f"{len(uniq):,} distinct {what} ids used" + (
            f" and {len(mapped):,} mapped" if mapping is not None else ""
        )
        msg = (
            f"{where}: {what} id {n - 1} is out of range: ids must be contiguous from 0, and "
            f"{have} can only be 0..{room - 1}; renumber the {what} ids as 0..N-1"
        )
        raise DataFormatError(msg)
    known = np.zeros(n, dtype=bool)
    known[uniq] = True
    known[mapped] = True
    if mapping is None:
        keys = [str(k) for k in range(n)]
    else:
        keys = [""] * n
        for key, idx in mapping.items():
            keys[idx] = str(key)
        unmapped = np.setdiff1d(uniq, mapped)
        if len(unmapped):
            msg = (
                f"{map_path}: {len(unmapped)} {what} id(s) used but not in the map, e.g. "
                f"{int(unmapped[0])}"
            )
            raise DataFormatError(msg)
    if not known.all():
        where = str(map_path) if mapping is not None else locate(None)
        msg = (
            f"{where}: {what} ids must be contiguous from 0; id {int(np.flatnonzero(~known)[0])} "
            f"of 0..{n - 1} is neither used nor mapped"
        )
        raise DataFormatError(msg)
    return keys
