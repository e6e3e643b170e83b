"""A few hundred steps on synthetic data whose item features carry the item's category."""

from __future__ import annotations

import numpy as np
import torch

from alignrec_model.alignrec import AlignRec, AlignRecConfig
from alignrec_model.data import from_arrays
from alignrec_model.evaluate import evaluate_model
from alignrec_model.sampling import NegativeSampler

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


def test_training_reduces_loss_and_ranks_held_out_items():
    data, feats = _synthetic()
    cfg = AlignRecConfig(embedding_dim=16, knn_k=5, cl_weight=0.01, sim_weight=0.1)
    model = AlignRec(data, feats, cfg, seed=999)
    opt = torch.optim.Adam(model.param_groups(lr=1e-2))
    rng = np.random.default_rng(1)
    sampler = NegativeSampler(data, rng)  # the training loop's sampler, on the same generator
    pairs = data.train_pairs
    losses = []
    model.train()
    for _ in range(300):
        idx = rng.integers(0, len(pairs), 128)
        users, pos = pairs[idx, 0], pairs[idx, 1]
        neg = sampler.sample(users)
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
    recall = evaluate_model(model, data, ("test",), topks=(k,))["test"][f"recall@{k}"]
    assert recall > 3 * random_recall, (recall, random_recall)
