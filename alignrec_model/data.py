"""Interactions for stage 2: the train matrix R, held-out items and the normalised graphs.

Everything the recommenders, the trainer and the evaluator need is built once from
``<data-dir>/<dataset>/prepared/interactions.parquet`` (or from plain arrays) into an
:class:`InteractionData`:

- ``train``: R, the binary (N_users x N_items) matrix of the TRAIN split only, scipy CSR.
- ``valid`` / ``test``: the held-out items of each user, same shape, scipy CSR.
- ``train_pairs``: the (M, 2) int64 array of train (user, item) pairs, sorted by user then item.
- :meth:`InteractionData.normalized_adjacency`: A_hat = D^-1/2 A D^-1/2 of the bipartite graph
  A = [[0, R], [R^T, 0]] without self loops, exactly PyG ``LGConv``'s ``gcn_norm``, and
  :meth:`InteractionData.normalized_user_item`: R_hat = D_u^-1/2 R D_i^-1/2, its user-item block;
  both torch sparse CSR tensors built once by :func:`alignrec_model.graph.bipartite_graph`.

N_users and N_items count ids over all splits (the AlignRec / MMRec convention), so an item
that appears only in valid or test still has a row in every embedding table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.schema import INTERACTIONS_FILE, SPLITS
from alignrec_model.graph import bipartite_graph

__all__ = ["InteractionData", "from_arrays", "load_interactions"]


def _binary_csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A binary float32 CSR matrix with ones at (users, items); duplicates count once."""
    m = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=shape, dtype=np.float32
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


@dataclass
class InteractionData:
    """The interaction data of one dataset, as stage 2 uses it.

    Attributes:
        n_users: Number of users (ids over all splits).
        n_items: Number of items (ids over all splits).
        train: (n_users, n_items) binary scipy CSR of train interactions (R).
        valid: (n_users, n_items) binary scipy CSR of validation interactions.
        test: (n_users, n_items) binary scipy CSR of test interactions.
        train_pairs: (M, 2) int64 array of train (user, item), sorted by user then item.
    """

    n_users: int
    n_items: int
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    train_pairs: np.ndarray

    def split(self, name: str) -> sp.csr_matrix:
        """The matrix of one split: ``"train"``, ``"valid"`` or ``"test"``."""
        if name not in SPLITS:
            msg = f"unknown split {name!r}; expected one of {', '.join(SPLITS)}"
            raise UsageError(msg)
        return getattr(self, name)

    @cached_property
    def _graphs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_hat, R_hat), built together on first use."""
        return bipartite_graph(self.train_pairs, self.n_users, self.n_items)

    def normalized_adjacency(self) -> torch.Tensor:
        """A_hat = D^-1/2 A D^-1/2 with A = [[0, R], [R^T, 0]] (:func:`graph.bipartite_graph`).

        Users are nodes 0..U-1 and items nodes U..U+I-1; no self loops, isolated nodes get
        degree^-1/2 = 0 (PyG ``gcn_norm(..., add_self_loops=False)``, what ``LGConv`` applies).

        Returns:
            (U+I, U+I) torch sparse CSR float32 tensor, symmetric.
        """
        return self._graphs[0]

    def normalized_user_item(self) -> torch.Tensor:
        """R_hat = D_u^-1/2 R D_i^-1/2, the user-item block of :meth:`normalized_adjacency`.

        Returns:
            (n_users, n_items) torch sparse CSR float32 tensor.
        """
        return self._graphs[1]

    def summary(self) -> dict[str, int]:
        """Counts for logs and metrics files."""
        return {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_train": int(self.train.nnz),
            "n_valid": int(self.valid.nnz),
            "n_test": int(self.test.nnz),
        }


def from_arrays(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    splits: np.ndarray,
    n_users: int | None = None,
    n_items: int | None = None,
) -> InteractionData:
    """Build :class:`InteractionData` from parallel arrays of interactions.

    Args:
        user_ids: (N,) int user ids, 0-based.
        item_ids: (N,) int item ids, 0-based.
        splits: (N,) split of each interaction: strings ``train``/``valid``/``test`` or MMRec's
            x_label codes 0/1/2.
        n_users: Number of users; default max user id + 1 (over all splits).
        n_items: Number of items; default max item id + 1 (over all splits).

    Returns:
        The interaction data; duplicate (user, item) pairs within a split count once.

    Raises:
        DataFormatError: Arrays of different lengths, negative ids, ids beyond ``n_users`` /
            ``n_items``, unknown split values or an empty train split.
    """
    users = np.asarray(user_ids, dtype=np.int64)
    items = np.asarray(item_ids, dtype=np.int64)
    split_arr = np.asarray(splits)
    if not (len(users) == len(items) == len(split_arr)):
        msg = (
            f"interaction arrays differ in length: {len(users)} users, {len(items)} items, "
            f"{len(split_arr)} splits"
        )
        raise DataFormatError(msg)
    if split_arr.dtype.kind in "iu":
        codes = split_arr.astype(np.int64)
    else:
        split_arr = split_arr.astype(str)
        codes = np.full(len(split_arr), -1, dtype=np.int64)
        for code, name in enumerate(SPLITS):
            codes[split_arr == name] = code
    bad = ~np.isin(codes, [0, 1, 2])
    if bad.any():
        msg = (
            f"unknown split value {split_arr[bad][0]!r}; expected train/valid/test "
            "(or MMRec codes 0/1/2)"
        )
        raise DataFormatError(msg)
    if len(users) and (users.min() < 0 or items.min() < 0):
        msg = "user and item ids must be non-negative integers"
        raise DataFormatError(msg)
    n_u, n_i = _id_count(users, n_users, "user"), _id_count(items, n_items, "item")
    mats = [_binary_csr(users[codes == c], items[codes == c], (n_u, n_i)) for c in range(3)]
    train = mats[0]
    if train.nnz == 0:
        msg = "the train split is empty: nothing to train or rank against"
        raise DataFormatError(msg)
    coo = train.tocoo()  # by user, then item: _binary_csr sorts the columns of each row
    pairs = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
    return InteractionData(n_u, n_i, train, mats[1], mats[2], pairs)


def _id_count(ids: np.ndarray, given: int | None, name: str) -> int:
    """Number of users or items: ``given`` (checked to cover ``ids``), else max id + 1."""
    found = int(ids.max() + 1) if len(ids) else 0
    if given is None:
        return found
    if given < found:
        msg = f"n_{name}s={given} but the interactions hold {name} id {found - 1}"
        raise DataFormatError(msg)
    return int(given)


def load_interactions(prepared_dir: str | Path) -> InteractionData:
    """Load ``interactions.parquet`` of a prepared dataset.

    Args:
        prepared_dir: ``<data-dir>/<dataset>/prepared``.

    Returns:
        The interaction data. N_items is the larger of (max item id + 1) and the number of rows
        of ``items.parquet`` when that file exists (items without interactions keep their row).

    Raises:
        UsageError: The file does not exist (run ``alignrec-data prepare`` first).
        DataFormatError: Missing columns or bad values.
    """
    import pyarrow.parquet as pq

    prepared_dir = Path(prepared_dir)
    path = prepared_dir / INTERACTIONS_FILE
    if not path.is_file():
        msg = f"{path} does not exist"
        raise UsageError(msg, hint=f"run `alignrec-data prepare {prepared_dir.parent.name}` first")
    table = pq.read_table(path)
    missing = {"user_id", "item_id", "split"} - set(table.column_names)
    if missing:
        msg = f"{path}: missing column(s) {', '.join(sorted(missing))} (found {table.column_names})"
        raise DataFormatError(msg)
    n_items = None
    items_path = prepared_dir / "items.parquet"
    if items_path.is_file():
        n_rows = pq.read_metadata(items_path).num_rows
        max_item = int(np.max(table.column("item_id").to_numpy())) + 1 if table.num_rows else 0
        n_items = max(n_rows, max_item)
    return from_arrays(
        table.column("user_id").to_numpy(),
        table.column("item_id").to_numpy(),
        np.asarray(table.column("split").to_pylist(), dtype=object).astype(str),
        n_items=n_items,
    )
