"""The evaluator against a plain-loop reference of MMRec's metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alignrec_data.errors import UsageError
from alignrec_model.data import from_arrays
from alignrec_model.evaluate import evaluate_scores, recommend
from tests.model_train._helpers import clustered

TOPKS = (5, 10, 20, 50)


def reference_metrics(scores: np.ndarray, data, split: str, topks=TOPKS) -> dict[str, float]:
    """MMRec's metrics written as a loop over users, from their definitions.

    Deliberately independent of :mod:`alignrec_model.evaluate` (issue 14 item 7 keeps it): an
    oracle from the formulas, with sets and sorted lists instead of the library's vectorised
    cumulative sums, so a shared mistake cannot pass unnoticed. Do not replace it with a call to
    the library.
    """
    held = data.split(split)
    totals = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg", "precision", "map") for k in topks}
    n_users = 0
    for u in range(data.n_users):
        truth = set(held[u].indices.tolist())
        train = set(data.train[u].indices.tolist())
        if not truth or not train:
            continue
        n_users += 1
        candidates = [i for i in range(data.n_items) if i not in train]
        ranking = sorted(candidates, key=lambda i: -scores[u, i])
        n = len(truth)
        for k in topks:
            top = ranking[:k]
            hits = [1 if i in truth else 0 for i in top]
            h = sum(hits)
            dcg = sum(hit / math.log2(r + 2) for r, hit in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(n, k)))
            ap = sum(sum(hits[: r + 1]) / (r + 1) for r, hit in enumerate(hits) if hit)
            totals[f"recall@{k}"] += h / n
            totals[f"ndcg@{k}"] += dcg / idcg
            totals[f"precision@{k}"] += h / k
            totals[f"map@{k}"] += ap / min(n, k)
    return {k: v / n_users for k, v in totals.items()}


@pytest.fixture(scope="module")
def random_case():
    users, items, splits, _ = clustered(n_users=60, n_items=70, per_user=10, seed=3)
    # give a few users several test items and one user no train item (must be dropped)
    extra_u = np.array([0, 0, 0, 1, 1, 59, 59])
    extra_i = np.array([70, 71, 72, 73, 74, 75, 76])
    users = np.concatenate([users, extra_u, [60, 60]])
    items = np.concatenate([items, extra_i, [1, 2]])
    splits = np.concatenate([splits, ["test"] * len(extra_u), ["test", "valid"]])
    data = from_arrays(users, items, splits, n_items=80)  # items 70..79: held-out extras only
    scores = np.random.default_rng(7).standard_normal((data.n_users, data.n_items))
    return data, scores.astype(np.float32)


def score_fn_of(scores: np.ndarray):
    return lambda users: torch.from_numpy(scores[users.numpy()])


def test_metrics_equal_plain_loop_reference(random_case):
    data, scores = random_case
    got = evaluate_scores(score_fn_of(scores), data, ("valid", "test"), TOPKS, batch_size=4096)
    for split in ("valid", "test"):
        want = reference_metrics(scores, data, split)
        assert set(got[split]) == set(want)
        for key, value in want.items():
            assert got[split][key] == pytest.approx(value, abs=1e-12), (split, key)


def test_user_without_train_items_is_dropped(random_case):
    data, scores = random_case
    assert data.train[60].nnz == 0 and data.test[60].nnz == 1
    # user 60 would have a perfect score if it were counted: give its test item the top score
    boosted = scores.copy()
    boosted[60, 1] = 1e9
    a = evaluate_scores(score_fn_of(scores), data, ("test",))
    b = evaluate_scores(score_fn_of(boosted), data, ("test",))
    assert a == b


def test_batch_size_does_not_change_results(random_case):
    data, scores = random_case
    fn = score_fn_of(scores)
    full = evaluate_scores(fn, data, ("valid", "test"), TOPKS, batch_size=4096)
    for bs in (1, 7, 32):
        assert evaluate_scores(fn, data, ("valid", "test"), TOPKS, batch_size=bs) == full


def test_train_items_are_never_recommended(random_case):
    data, scores = random_case
    rigged = scores.copy()
    rigged[data.train.nonzero()] = 1e6  # a model that loves what the user already has
    users = np.arange(data.n_users)
    top = recommend(score_fn_of(rigged), data, users, k=20, batch_size=9)
    for u in users:
        assert not set(top[u].tolist()) & set(data.train[u].indices.tolist())
    # and the metrics equal those of the same scores without the rigging
    a = evaluate_scores(score_fn_of(rigged), data)
    b = evaluate_scores(score_fn_of(scores), data)
    assert a == b


def test_perfect_scores_give_recall_one_at_large_k():
    # A hand-worked example: the expected values are computed by hand, not by the library.
    users = [0, 0, 0, 0, 1, 1, 1]
    items = [0, 1, 2, 3, 2, 4, 5]
    splits = ["train", "train", "test", "test", "train", "test", "valid"]
    data = from_arrays(users, items, splits, n_items=60)
    scores = np.zeros((2, 60), dtype=np.float32)
    scores[0, [2, 3]] = 1.0
    scores[1, 4] = 1.0
    scores[1, 5] = 0.5
    got = evaluate_scores(score_fn_of(scores), data, ("valid", "test"))
    assert got["test"]["recall@5"] == 1.0 and got["test"]["ndcg@5"] == pytest.approx(1.0)
    assert got["test"]["precision@5"] == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert got["test"]["map@5"] == pytest.approx(1.0)
    # user 1's valid item is ranked 2nd: ndcg = (1/log2(3)) / 1, map = (1/2) / 1
    assert got["valid"]["ndcg@5"] == pytest.approx(1 / math.log2(3))
    assert got["valid"]["map@5"] == pytest.approx(0.5)
    assert got["valid"]["recall@5"] == 1.0


def test_bad_arguments_are_rejected(random_case):
    data, scores = random_case
    with pytest.raises(UsageError, match="exceeds the number of items"):
        evaluate_scores(score_fn_of(scores), data, topks=(10, 500))
    with pytest.raises(UsageError, match="batch size must be >= 1"):
        evaluate_scores(score_fn_of(scores), data, batch_size=0)
    with pytest.raises(UsageError, match="expected \\(2, 80\\)"):
        evaluate_scores(lambda u: torch.zeros(len(u), 3), data, batch_size=2)
