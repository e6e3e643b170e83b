"""The training harness: sampling, lr schedule, early stopping, seeds, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from alignrec_data.errors import UsageError
from alignrec_model.base import Recommender
from alignrec_model.baselines import MFBPR, LightGCN
from alignrec_model.data import from_arrays
from alignrec_model.evaluate import evaluate_model
from alignrec_model.train import (
    NegativeSampler,
    TrainConfig,
    TrainingError,
    build_model,
    fit,
    load_checkpoint,
    lr_factor,
    save_checkpoint,
)
from tests.model_train._helpers import clustered_data

FAST = TrainConfig(batch_size=256, eval_batch_size=64, lr=1e-2, patience=3)


def test_negative_sampler_never_returns_a_train_item():
    # dense users: each has 18 of 20 items in train, so most uniform draws must be redrawn
    users = np.repeat(np.arange(50), 18)
    items = np.concatenate([np.random.default_rng(u).permutation(20)[:18] for u in range(50)])
    data = from_arrays(users, items, ["train"] * len(users), n_items=20)
    sampler = NegativeSampler(data, np.random.default_rng(0))
    query = np.repeat(np.arange(50), 400)
    neg = sampler.sample(query)
    train = data.train.toarray().astype(bool)
    assert not train[query, neg].any()
    # every non-train item is reachable: both negatives of each user show up
    assert (np.bincount(query * 20 + neg, minlength=1000).reshape(50, 20) > 0).sum() == 100


def test_negative_sampler_rejects_a_user_with_every_item():
    data = from_arrays([0, 0, 1], [0, 1, 0], ["train"] * 3, n_items=2)
    with pytest.raises(UsageError, match="user 0 has interacted with all 2 items"):
        NegativeSampler(data, np.random.default_rng(0))


def test_lr_decays_per_epoch():
    data, _ = clustered_data(n_users=60, n_items=60, per_user=8)
    cfg = dataclasses.replace(FAST, epochs=4, patience=10, lr=2e-3, lr_decay_epochs=2.0)
    result = fit(MFBPR(data, 8, 1e-4, 0), data, cfg, progress=False)
    lrs = [h["lr"] for h in result.history]
    assert lrs == pytest.approx([2e-3 * 0.96 ** (e / 2.0) for e in range(4)])
    assert lrs == [2e-3 * lr_factor(e, cfg) for e in range(4)]  # the scheduler's own formula
    # the default schedule: lr * 0.96 ** (epoch / 50)
    assert lr_factor(0, TrainConfig()) == 1.0
    assert lr_factor(50, TrainConfig()) == pytest.approx(0.96)
    assert lr_factor(25, TrainConfig()) == pytest.approx(0.96**0.5)


def test_the_scheduler_calls_lr_factor(monkeypatch):
    import alignrec_model.train as train_mod

    monkeypatch.setattr(train_mod, "lr_factor", lambda epoch, config: 1.0 / (epoch + 1))
    data, _ = clustered_data(n_users=60, n_items=60, per_user=8)
    cfg = dataclasses.replace(FAST, epochs=3, patience=10, lr=2e-3)
    result = fit(MFBPR(data, 8, 1e-4, 0), data, cfg, progress=False)
    assert [h["lr"] for h in result.history] == pytest.approx([2e-3, 1e-3, 2e-3 / 3])


class Scripted(Recommender):
    """A trainable stand-in whose ranking quality per epoch is scripted.

    At evaluation number e, valid items rank first when ``e in valid_good`` and test items rank
    first when ``e in test_good``; otherwise items are ranked by a fixed random order.
    """

    def __init__(self, data, valid_good, test_good):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.data = data
        self.valid_good, self.test_good = set(valid_good), set(test_good)
        self.evaluations = -1
        self.base = torch.from_numpy(
            np.random.default_rng(0).random((data.n_users, data.n_items)).astype(np.float32)
        )

    def loss(self, users, pos, neg):
        loss = (self.w - 1.0).pow(2).sum()
        return loss, {"fake": float(loss)}

    def prepare_eval(self):
        self.evaluations += 1
        s = self.base.clone()
        if self.evaluations in self.valid_good:
            s += torch.from_numpy(self.data.valid.toarray()) * 10
        if self.evaluations in self.test_good:
            s += torch.from_numpy(self.data.test.toarray()) * 10
        self.current = s

    def scores(self, users):
        return self.current[users]


def test_early_stopping_keeps_the_best_valid_epoch_and_its_test_metrics():
    data, _ = clustered_data(n_users=40, n_items=60, per_user=8)
    model = Scripted(data, valid_good={2}, test_good={4})  # test peaks later: must not matter
    cfg = dataclasses.replace(FAST, epochs=50, patience=2)
    result = fit(model, data, cfg, progress=False)
    assert result.best_epoch == 2
    # MMRec's rule: stop once more than `patience` evaluations did not improve (epochs 3, 4, 5)
    assert result.epochs == 6 and len(result.history) == 6
    assert result.valid["recall@20"] == 1.0
    by_epoch = {h["epoch"]: h for h in result.history}
    assert result.test["recall@20"] == by_epoch[2]["test_recall@20"]
    assert by_epoch[4]["test_recall@20"] == 1.0 > result.test["recall@20"]


def test_same_seed_same_run_other_seed_other_run():
    data, _ = clustered_data(n_users=60, n_items=60, per_user=8)
    cfg = dataclasses.replace(FAST, epochs=2, patience=5)

    def run(seed):
        c = dataclasses.replace(cfg, seed=seed)
        model = build_model("lightgcn", data, dataclasses.replace(c, embedding_dim=8))
        return fit(model, data, c, progress=False)

    a, b, c = run(5), run(5), run(6)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert a.valid == b.valid and a.test == b.test
    for k in a.best_state:
        assert torch.equal(a.best_state[k], b.best_state[k])
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]


def test_non_finite_loss_stops_with_an_error():
    data, _ = clustered_data(n_users=20, n_items=60, per_user=6)
    model = MFBPR(data, 4, 1e-4, 0)
    with torch.no_grad():
        model.user_embedding.weight[0] = float("nan")
    with pytest.raises(TrainingError, match="the loss is nan .* lower train.lr"):
        fit(model, data, dataclasses.replace(FAST, epochs=1), progress=False)


def test_checkpoint_roundtrip_restores_the_best_epoch(tmp_path):
    data, _ = clustered_data(n_users=60, n_items=60, per_user=8)
    cfg = dataclasses.replace(FAST, epochs=3, embedding_dim=8)
    model = LightGCN(data, 8, 2, 1e-4, 0)
    result = fit(model, data, cfg, name="lightgcn", progress=False)
    path = tmp_path / "models" / "lightgcn.pt"
    save_checkpoint(path, result, data)
    ckpt = load_checkpoint(path)  # weights_only=True inside
    assert ckpt["best_epoch"] == result.best_epoch and ckpt["config"]["embedding_dim"] == 8
    fresh = LightGCN(data, 8, 2, 1e-4, 123)
    fresh.load_state_dict(ckpt["state_dict"])
    again = evaluate_model(fresh, data, ("valid", "test"), cfg.topks, 64)
    assert again["valid"] == pytest.approx(result.valid)
    assert again["test"] == pytest.approx(result.test)


def test_config_rejects_bad_values():
    with pytest.raises(UsageError, match="train.valid_metric = 'recall@25'"):
        TrainConfig(valid_metric="recall@25")
    with pytest.raises(UsageError, match="train.batch_size = 0 is out of range"):
        TrainConfig(batch_size=0)
    data, _ = clustered_data(n_users=20, n_items=60, per_user=6)
    with pytest.raises(UsageError, match="unknown model 'bpr'"):
        build_model("bpr", data, TrainConfig())
    with pytest.raises(UsageError, match="needs item features"):
        build_model("itemknn", data, TrainConfig())
