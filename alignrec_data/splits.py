"""Train / valid / test splits, written as the ``split`` column of ``interactions.parquet``.

Three methods (``prepare.split``), all seeded by ``prepare.seed``:

- ``random``: MMRec's per-user rule. A user with n interactions gets
  ``valid = floor(0.2 n) // 2`` and ``test = floor(0.2 n) - valid`` when n >= 10, else
  ``n - 2 / 1 / 1`` (train / valid / test). Which interactions go where is random and seeded:
  one ``numpy.random.default_rng(seed)`` draws one uniform number per interaction, in the
  order the rows are given (for ``prepare``: the order of the kept lines of the raw reviews
  file); each user's interactions are ordered by their numbers (a uniformly random per-user
  permutation, users in user_id order), the first ``n_train`` are train, the next ``n_valid``
  valid, the rest test.
- ``leave-one-out``: per user, interactions ordered by ``(timestamp, tie key)``: the last is
  test, the second last valid, the rest train.
- ``temporal``: all interactions ordered by ``(timestamp, tie key)``; the first
  ``floor(q1 * n)`` are train, up to position ``floor(q2 * n)`` valid, the rest test, for the
  quantiles ``(q1, q2)`` (default 0.8 and 0.9), so the counts are exact even when many
  interactions share the timestamp at a cut-off. An explicit cut-off (Unix seconds) replaces
  its quantile: interactions before it come before the boundary, the rest after it (no ties
  to break). The cut-off timestamps (the timestamp at the boundary position) are reported.

The tie key breaks ties in time at random, reproducibly: one
``numpy.random.default_rng(seed)`` draws one uniform number per interaction in the order of
the interactions table (user_id, timestamp, item_id), so the same interactions and seed give
the same split whatever the order of the input rows, and another seed breaks ties
differently. Interactions with distinct timestamps are never reordered.

Users with fewer than 3 interactions (only without k-core filtering) get, under ``random``
and ``leave-one-out``: n = 1 -> train; n = 2 -> 1 train, 1 test (the later one for
leave-one-out).
"""

from __future__ import annotations

import numpy as np

from alignrec_data.errors import UsageError
from alignrec_data.schema import SPLIT_CODES, SPLITS

SPLIT_METHODS = ("random", "leave-one-out", "temporal")
TRAIN, VALID, TEST = (SPLIT_CODES[s] for s in SPLITS)


def _positions(users: np.ndarray, order: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Rank (0-based) of each row within its user when rows are taken in ``order``."""
    starts = np.cumsum(counts) - counts
    return np.argsort(order) - starts[users]  # argsort: the position of each row in order


def _label(rank: np.ndarray, train_end: np.ndarray, valid_end: np.ndarray) -> np.ndarray:
    """Split codes by rank: below ``train_end`` train, below ``valid_end`` valid, else test."""
    codes = np.full(len(rank), TEST, dtype=np.int8)
    codes[rank < valid_end] = VALID
    codes[rank < train_end] = TRAIN
    return codes


def split_random(users: np.ndarray, n_users: int, seed: int) -> np.ndarray:
    """MMRec's seeded random per-user split (see the module docstring).

    Args:
        users: (n,) user ids of the interactions, in table order.
        n_users: Number of users (ids are < n_users).
        seed: Seed of the generator.

    Returns:
        (n,) int8 split codes (0 train, 1 valid, 2 test).
    """
    users = np.asarray(users, dtype=np.int64)
    rng = np.random.default_rng(seed)
    keys = rng.random(len(users))
    order = np.lexsort((keys, users))
    counts = np.bincount(users, minlength=n_users)
    tot = (counts * 2) // 10  # floor(0.2 n), exact in integers
    n_valid = np.where(counts >= 10, tot // 2, np.where(counts < 3, 0, 1))
    n_test = np.where(counts >= 10, tot - tot // 2, np.clip(counts - 1, 0, 1))
    pos = _positions(users, order, counts)
    return _label(pos, (counts - n_valid - n_test)[users], (counts - n_test)[users])


def tie_keys(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, seed: int) -> np.ndarray:
    """Seeded random keys that break ties in time (see the module docstring).

    Args:
        users: (n,) user ids.
        items: (n,) item ids.
        timestamps: (n,) Unix seconds.
        seed: Seed of the generator.

    Returns:
        (n,) float64 uniform numbers, drawn in (user_id, timestamp, item_id) order.
    """
    canonical = np.lexsort(
        (np.asarray(items), np.asarray(timestamps), np.asarray(users, dtype=np.int64))
    )
    # The j-th number drawn goes to the j-th interaction in canonical order.
    return np.random.default_rng(seed).random(len(canonical))[np.argsort(canonical)]


def split_leave_one_out(
    users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, n_users: int, seed: int
) -> np.ndarray:
    """Per user by (timestamp, tie key): last -> test, second last -> valid, rest train.

    Args:
        users: (n,) user ids.
        items: (n,) item ids.
        timestamps: (n,) Unix seconds.
        n_users: Number of users (ids are < n_users).
        seed: Seed of the tie keys (:func:`tie_keys`).

    Returns:
        (n,) int8 split codes (0 train, 1 valid, 2 test).
    """
    users = np.asarray(users, dtype=np.int64)
    keys = tie_keys(users, items, timestamps, seed)
    order = np.lexsort((keys, timestamps, users))
    counts = np.bincount(users, minlength=n_users)
    n_valid = np.where(counts >= 3, 1, 0)
    n_test = np.where(counts >= 2, 1, 0)
    pos = _positions(users, order, counts)
    return _label(pos, (counts - n_valid - n_test)[users], (counts - n_test)[users])


def split_temporal(timestamps: np.ndarray, valid_start: int, test_start: int) -> np.ndarray:
    """Explicit global cut-offs: ``< valid_start`` train, ``< test_start`` valid, else test."""
    return _label(np.asarray(timestamps, dtype=np.int64), valid_start, test_start)


def split_temporal_ranked(
    timestamps: np.ndarray, keys: np.ndarray, n_before_valid: int, n_before_test: int
) -> np.ndarray:
    """Order all rows by ``(timestamp, keys)``: the first ones train, then valid, then test.

    Args:
        timestamps: (n,) Unix seconds.
        keys: (n,) tie keys (:func:`tie_keys`).
        n_before_valid: Number of train interactions (positions ``< n_before_valid``).
        n_before_test: Number of train plus valid interactions; the rest are test.

    Returns:
        (n,) int8 split codes (0 train, 1 valid, 2 test).
    """
    order = np.lexsort((keys, np.asarray(timestamps, dtype=np.int64)))
    return _label(np.argsort(order), n_before_valid, n_before_test)  # the rank of each row


def assign_splits(
    method: str,
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    n_users: int,
    *,
    seed: int,
    valid_start: int | None = None,
    test_start: int | None = None,
    quantiles: tuple[float, float] = (0.8, 0.9),
) -> tuple[np.ndarray, dict]:
    """Split codes for every interaction by ``method``, and what was used (for ``stats.json``).

    Args:
        method: ``random``, ``leave-one-out`` or ``temporal``.
        users: (n,) user ids.
        items: (n,) item ids.
        timestamps: (n,) Unix seconds.
        n_users: Number of users.
        seed: Seed of the ``random`` split and of the tie keys of the other two.
        valid_start: Temporal cut-off of valid, or None for the quantile.
        test_start: Temporal cut-off of test, or None for the quantile.
        quantiles: Quantiles for cut-offs that are not given.

    Returns:
        ``(codes, info)``: (n,) int8 codes and a dict describing the split.

    Raises:
        UsageError: Unknown method or inconsistent temporal parameters.
    """
    info: dict = {"method": method, "seed": seed}
    if method == "random":
        return split_random(users, n_users, seed), info
    if method == "leave-one-out":
        return split_leave_one_out(users, items, timestamps, n_users, seed), info
    if method == "temporal":
        q0, q1 = quantiles
        if not 0.0 < q0 <= q1 < 1.0:
            msg = (
                "prepare.temporal_quantiles must be two numbers 0 < q1 <= q2 < 1, found "
                f"{list(quantiles)}"
            )
            raise UsageError(msg)
        ts = np.asarray(timestamps, dtype=np.int64)
        ordered = np.sort(ts)

        def cut(explicit: int | None, q: float) -> tuple[int, int]:
            """The cut-off timestamp and the boundary position: explicit, else the quantile's."""
            if explicit is not None:
                return int(explicit), int(np.searchsorted(ordered, int(explicit), side="left"))
            pos = int(np.floor(q * len(ts)))
            return (int(ordered[min(pos, len(ts) - 1)]) if len(ts) else 0), pos

        (v, p_valid), (t, p_test) = cut(valid_start, q0), cut(test_start, q1)
        if v > t:
            msg = (
                f"prepare: temporal valid cut-off {v} is after the test cut-off {t}; give "
                "valid_start <= test_start"
            )
            raise UsageError(msg)
        # An explicit test cut-off wins over a valid quantile that lands in its tie group.
        p_valid = min(p_valid, p_test)
        keys = tie_keys(users, items, ts, seed)
        info.update(valid_start=v, test_start=t, quantiles=[q0, q1])
        return split_temporal_ranked(ts, keys, p_valid, p_test), info
    msg = f"prepare.split must be one of {', '.join(SPLIT_METHODS)}, found {method!r}"
    raise UsageError(msg)
