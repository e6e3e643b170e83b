r"""Full-ranking evaluation, identical to MMRec's so that numbers compare with published ones.

For every user with at least one item in the evaluated split and at least one train item, all
items are scored, the user's TRAIN items are excluded (score -inf; valid items are not excluded
when testing, as in MMRec), and the top :math:`K_{max}` items are compared with the split's
items of the user. With :math:`n_u` held-out items, :math:`hit_u(r)` = 1 when the item at rank
r (1-based) is held out, and :math:`h_u(K) = \sum_{r \le K} hit_u(r)`:

.. math::
    \mathrm{Recall@K} &= h_u(K) / n_u \quad (\text{not } \min(n_u, K)) \\
    \mathrm{Precision@K} &= h_u(K) / K \\
    \mathrm{NDCG@K} &= \frac{\sum_{r \le K} hit_u(r) / \log_2(r + 1)}
                          {\sum_{r \le \min(n_u, K)} 1 / \log_2(r + 1)} \\
    \mathrm{MAP@K} &= \frac{1}{\min(n_u, K)} \sum_{r \le K} hit_u(r) \, h_u(r) / r

each averaged over the evaluated users (MMRec's ``recall_``, ``ndcg_``, ``precision_``,
``map_`` in ``src/evaluator/metrics.py``). Users are scored in batches so memory stays bounded
(``batch_size`` x N_items floats at a time); the top-k of one batch serves every split.

A scoring function must return a new tensor or a view: the evaluator writes -inf into the train
positions of what it gets, in place when it is not a view (saving a copy of B x N_items floats).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from alignrec_data.errors import UsageError
from alignrec_model.base import Recommender
from alignrec_model.data import InteractionData

logger = logging.getLogger(__name__)

#: Cut-offs reported by default (MMRec's ``topk``).
TOPKS: tuple[int, ...] = (5, 10, 20, 50)
#: Metric names, as they appear in the keys ``"<metric>@<K>"``.
METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "map")
#: Default number of users scored at once.
EVAL_BATCH_SIZE = 1024

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def per_user_metrics(
    hits: np.ndarray, n_pos: np.ndarray, topks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Each user's value of every metric: ``{"<metric>@<K>": (U,) float64}``."""
    hits = hits.astype(np.float64)
    k_max = hits.shape[1]
    n_pos = np.asarray(n_pos, dtype=np.float64).reshape(-1, 1)  # (U, 1)
    ranks = np.arange(1, k_max + 1, dtype=np.float64)  # (K_max,) 1-based
    cum_hits = np.cumsum(hits, axis=1)  # (U, K_max) h_u(r)
    discount = 1.0 / np.log2(ranks + 1.0)  # (K_max,)
    dcg = np.cumsum(hits * discount, axis=1)  # (U, K_max)
    ideal = np.cumsum(discount)  # (K_max,) IDCG for n >= r
    idcg_len = np.minimum(n_pos, ranks)  # (U, K_max) min(n_u, r)
    idcg = ideal[idcg_len.astype(np.int64) - 1]  # (U, K_max)
    ap_sum = np.cumsum(hits * cum_hits / ranks, axis=1)  # (U, K_max) sum of precision at hits
    out: dict[str, np.ndarray] = {}
    for k in topks:
        c = k - 1
        out[f"recall@{k}"] = cum_hits[:, c] / n_pos[:, 0]
        out[f"ndcg@{k}"] = dcg[:, c] / idcg[:, c]
        out[f"precision@{k}"] = cum_hits[:, c] / k
        out[f"map@{k}"] = ap_sum[:, c] / idcg_len[:, c]
    return out


def evaluated_users(data: InteractionData, split: str) -> np.ndarray:
    """Users evaluated on ``split``: at least one held-out item and at least one train item."""
    held = np.diff(data.split(split).indptr) > 0
    has_train = np.diff(data.train.indptr) > 0
    return np.flatnonzero(held & has_train)


def _entries(m: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(local_row, item)`` int64 arrays of the nonzeros in the rows ``users`` of ``m``."""
    sub = m[users]
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr))
    return rows, sub.indices.astype(np.int64)


def _masked_topk(score_fn: ScoreFn, data: InteractionData, users: np.ndarray, k: int) -> np.ndarray:
    """Top-k items of each user with the user's train items excluded (score -inf)."""
    scores = score_fn(torch.from_numpy(users))
    if tuple(scores.shape) != (len(users), data.n_items):
        msg = (
            f"scores for {len(users)} users have shape {tuple(scores.shape)}, "
            f"expected ({len(users)}, {data.n_items})"
        )
        raise UsageError(msg)
    scores = scores.detach().to(torch.float32)  # (B, I)
    if scores._base is not None or not scores.is_contiguous():
        scores = scores.clone()  # a view of the model's state (e.g. an expand): never modify it
    rows, cols = (torch.from_numpy(a).to(scores.device) for a in _entries(data.train, users))
    scores[rows, cols] = -torch.inf
    return torch.topk(scores, k, dim=1).indices.cpu().numpy()


def recommend(
    score_fn: ScoreFn,
    data: InteractionData,
    users: np.ndarray | Sequence[int],
    k: int = 20,
    batch_size: int = EVAL_BATCH_SIZE,
) -> np.ndarray:
    """The top-k items of each user, train items excluded, as the evaluator ranks them.

    Args:
        score_fn: Maps (B,) user ids to (B, N_items) scores.
        data: The interactions.
        users: User ids.
        k: Items per user (at most N_items minus the user's train items are meaningful).
        batch_size: Users scored at once.

    Returns:
        (len(users), k) int64 item ids, best first.
    """
    users = np.asarray(users, dtype=np.int64)
    out = [
        _masked_topk(score_fn, data, users[s : s + batch_size], k)
        for s in range(0, len(users), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def evaluate_scores(
    score_fn: ScoreFn,
    data: InteractionData,
    splits: Sequence[str] = ("valid", "test"),
    topks: Sequence[int] = TOPKS,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, dict[str, float]]:
    """Full-ranking metrics of a scoring function on one or more held-out splits.

    Args:
        score_fn: Maps (B,) user ids to (B, N_items) scores (higher is better).
        data: The interactions (train items are excluded from every ranking).
        splits: Held-out splits to evaluate (``"valid"``, ``"test"``).
        topks: Cut-offs K.
        batch_size: Users scored at once; memory is about ``batch_size * N_items * 4`` bytes.

    Returns:
        ``{split: {"recall@K": ..., "ndcg@K": ..., "precision@K": ..., "map@K": ...}}``.

    Raises:
        UsageError: Bad ``topks`` or ``batch_size``, or scores of the wrong shape.
    """
    topks = tuple(sorted({int(k) for k in topks}))
    if not topks or topks[0] < 1:
        msg = f"topks must be positive integers, found {topks}"
        raise UsageError(msg)
    if batch_size < 1:
        msg = f"evaluation batch size must be >= 1, found {batch_size}"
        raise UsageError(msg)
    k_max = topks[-1]
    if k_max > data.n_items:
        msg = f"largest cut-off K={topks[-1]} exceeds the number of items ({data.n_items})"
        raise UsageError(msg)
    per_split = {s: evaluated_users(data, s) for s in splits}
    users = np.unique(np.concatenate([per_split[s] for s in splits]))
    # per-user values, averaged once at the end: results do not depend on the batch size
    values: dict[str, dict[str, list[np.ndarray]]] = {
        s: {f"{m}@{k}": [] for m in METRICS for k in topks} for s in splits
    }
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        top = _masked_topk(score_fn, data, batch, k_max)  # (B, K_max) item ids
        for s in splits:
            held = data.split(s)
            keep = np.isin(batch, per_split[s], assume_unique=True)
            if not keep.any():
                continue
            rows, items = _entries(held, batch[keep])
            keys = rows * data.n_items + items  # sorted: row-major CSR order
            local = np.arange(int(keep.sum()), dtype=np.int64)[:, None] * data.n_items
            hits = np.isin(local + top[keep], keys)  # (B_s, K_max)
            n_pos = np.diff(held[batch[keep]].indptr)
            for key, v in per_user_metrics(hits, n_pos, topks).items():
                values[s][key].append(v)
    out: dict[str, dict[str, float]] = {}
    for s in splits:
        n = len(per_split[s])
        if n == 0:
            logger.warning("no user has both a train and a %s item: %s metrics are 0", s, s)
        out[s] = {k: (float(np.concatenate(v).mean()) if n else 0.0) for k, v in values[s].items()}
    return out


@torch.no_grad()
def evaluate_model(
    model: Recommender,
    data: InteractionData,
    splits: Sequence[str] = ("valid", "test"),
    topks: Sequence[int] = TOPKS,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, dict[str, float]]:
    """Evaluate a :class:`~alignrec_model.base.Recommender` (eval mode, ``prepare_eval`` once).

    Args:
        model: The recommender.
        data: The interactions.
        splits: Held-out splits to evaluate.
        topks: Cut-offs K.
        batch_size: Users scored at once.

    Returns:
        ``{split: {"<metric>@<K>": value}}``, see :func:`evaluate_scores`.
    """
    was_training = model.training
    model.eval()
    try:
        model.prepare_eval()
        return evaluate_scores(model.scores, data, splits, topks, batch_size)
    finally:
        model.train(was_training)
