"""Cleaning of interaction columns: duplicate removal, iterative k-core, id remapping.

All functions work on parallel numpy arrays of integer codes (one row per interaction) and
return index arrays or masks, so they never copy strings and run in O(n log n).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def dedupe_earliest(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Rows to keep so that each (user, item) pair appears once: its earliest interaction.

    Ties in time keep the row that comes first in the input (the file order).

    Args:
        users: (n,) user codes.
        items: (n,) item codes.
        timestamps: (n,) timestamps.

    Returns:
        Sorted (k,) int64 indices of the kept rows.
    """
    order = np.lexsort((timestamps, items, users))  # stable: equal keys keep file order
    u, i = users[order], items[order]
    first = np.ones(len(users), dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    return np.sort(order[first]).astype(np.int64)


def k_core(
    users: np.ndarray, items: np.ndarray, min_user: int, min_item: int
) -> tuple[np.ndarray, int]:
    """Iterative k-core: drop users with < ``min_user`` and items with < ``min_item`` interactions.

    Repeats until no row is dropped (removing an item can push a user under the threshold and
    back). A threshold of 0 or 1 disables that side.

    Args:
        users: (n,) non-negative user codes.
        items: (n,) non-negative item codes.
        min_user: Minimum interactions per kept user.
        min_item: Minimum interactions per kept item.

    Returns:
        ``(keep, rounds)``: sorted int64 indices of the kept rows, and the number of filtering
        rounds run (1 when the input already was a k-core, i.e. a fixed point).
    """
    idx = np.arange(len(users), dtype=np.int64)
    u, i = np.asarray(users), np.asarray(items)
    for rounds in itertools.count(1):
        ok = (np.bincount(u)[u] >= min_user) & (np.bincount(i)[i] >= min_item)
        if ok.all():
            return idx, rounds
        idx, u, i = idx[ok], u[ok], i[ok]


def remap_by_key(codes: np.ndarray, keys: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Map the codes in use to contiguous ids 0..m-1 in the sorted order of their raw keys.

    Sorting by key makes the ids independent of the order of lines in the raw file.

    Args:
        codes: (n,) codes into ``keys``.
        keys: Raw key of each code.

    Returns:
        ``(ids, id_keys)``: (n,) int64 new ids and the raw key of each new id.
    """
    used, inverse = np.unique(codes, return_inverse=True)
    used_keys = [keys[c] for c in used.tolist()]
    order = sorted(range(len(used_keys)), key=used_keys.__getitem__)
    # argsort of the permutation ``order`` inverts it: the new id of each used code.
    return np.argsort(order)[inverse], [used_keys[k] for k in order]
