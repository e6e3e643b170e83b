"""Negative sampling of the training loop: one uniform negative per (user, positive) pair.

MMRec's rule: a negative is drawn uniformly from all items and redrawn while it is one of the
user's TRAIN items (valid and test items may be drawn, as in MMRec).
"""

from __future__ import annotations

import numpy as np

from alignrec_data.errors import UsageError
from alignrec_model.data import InteractionData


class NegativeSampler:
    """Uniform negatives that are never one of the user's train items.

    Each draw is uniform over all items; draws that hit a train item of their user are redrawn
    (vectorised rejection sampling, as MMRec's per-user loop).

    Args:
        data: The interactions (uses ``train_pairs`` and ``n_items``).
        rng: The generator (seeded by the caller).

    Raises:
        UsageError: A user has interacted with every item (no negative exists).
    """

    def __init__(self, data: InteractionData, rng: np.random.Generator) -> None:
        self.n_items = data.n_items
        self.rng = rng
        # train_pairs is sorted by (user, item), so the keys are sorted.
        self.keys = data.train_pairs[:, 0] * data.n_items + data.train_pairs[:, 1]  # (M,)
        full = np.flatnonzero(np.diff(data.train.indptr) >= data.n_items)
        if len(full):
            msg = f"user {full[0]} has interacted with all {data.n_items} items: no negative"
            raise UsageError(msg)

    def is_train(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(N,) bool: ``items[k]`` is a train item of ``users[k]``."""
        q = users.astype(np.int64) * self.n_items + items
        pos = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return self.keys[pos] == q

    def sample(self, users: np.ndarray) -> np.ndarray:
        """One negative item per entry of ``users``: (N,) int64."""
        neg = self.rng.integers(0, self.n_items, size=len(users), dtype=np.int64)
        bad = np.flatnonzero(self.is_train(users, neg))
        while len(bad):
            neg[bad] = self.rng.integers(0, self.n_items, size=len(bad), dtype=np.int64)
            bad = bad[self.is_train(users[bad], neg[bad])]
        return neg
