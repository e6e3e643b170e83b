"""A few hundred steps on synthetic data whose item features carry the item's category."""

from __future__ import annotations

import numpy as np
import torch

from alignrec_model.alignrec import AlignRec, AlignRecConfig
from alignrec_model.data import from_arrays

N_CAT, ITEMS_PER_CAT, N_USERS, N_TRAIN, N_TEST = 4, 12, 80, 6, 2


def _synthetic(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_items = N_CAT * ITEMS_PER_CAT
    item_cat = np.arange(n_items) // ITEMS_PER_CAT
    rows = []
    for u in range(N_USERS):
        own = rng.permutation(np.flatnonzero(item_cat == u % N_CAT))[: N_TRAIN + N_TEST]
        rows += [(u, i, "train") for i in own[:N_TRAIN]] + [(u, i, "test") for i in own[N_TRAIN:]]
    users, items, splits = (np.array(c) for c in zip(*rows, strict=True))
    data = from_arrays(users, items, splits, N_USERS, n_items)
    feats = 3.0 * np.eye(N_CAT)[item_cat] + rng.standard_normal((n_items, N_CAT))
    feats = np.concatenate([feats, rng.standard_normal((n_items, 12))], axis=1).astype(np.float32)
    return data, feats


def _recall_at(model: AlignRec, data, k: int) -> float:
    model.eval()
    with torch.no_grad():
        model.prepare_eval()
        scores = model.scores(torch.arange(N_USERS)).numpy()
    scores[data.train.toarray() > 0] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :k]
    test = data.test.toarray()
    hits = np.take_along_axis(test, top, axis=1).sum(1)
    return float(np.mean(hits / test.sum(1)))


def test_training_reduces_loss_and_ranks_held_out_items():
    data, feats = _synthetic()
    cfg = AlignRecConfig(embedding_dim=16, knn_k=5, cl_weight=0.01, sim_weight=0.1)
    model = AlignRec(data, feats, cfg, seed=999)
    opt = torch.optim.Adam(model.param_groups(lr=1e-2))
    rng = np.random.default_rng(1)
    pairs = data.train_pairs
    train = data.train.toarray() > 0
    losses = []
    model.train()
    for _ in range(300):
        idx = rng.integers(0, len(pairs), 128)
        users, pos = pairs[idx, 0], pairs[idx, 1]
        neg = rng.integers(0, data.n_items, len(idx))
        clash = train[users, neg]
        while clash.any():  # resample negatives that are train items of the user
            neg[clash] = rng.integers(0, data.n_items, int(clash.sum()))
            clash = train[users, neg]
        loss, parts = model.loss(*(torch.from_numpy(x) for x in (users, pos, neg)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        assert np.isfinite(loss.item()), parts
    assert np.mean(losses[-20:]) < 0.6 * np.mean(losses[:20])
    k = 10
    n_candidates = data.n_items - N_TRAIN
    random_recall = k / n_candidates  # expected Recall@10 of a random ranking: 0.24
    recall = _recall_at(model, data, k)
    assert recall > 3 * random_recall, (recall, random_recall)
