"""Baselines in the shared harness: popularity on real Baby, MF / LightGCN learn, ItemKNN maths."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from alignrec_model.baselines import ItemKNNCBF, LightGCN, Popularity
from alignrec_model.data import from_arrays, load_interactions
from alignrec_model.evaluate import evaluate_model
from alignrec_model.train import TrainConfig, build_model, fit
from tests.conftest import shared_data
from tests.model_train._helpers import clustered_data


@pytest.mark.shared_data
def test_popularity_on_real_baby_matches_the_published_number(tmp_path):
    from alignrec_data.interop import import_lattice

    import_lattice(shared_data("amazon-baby"), "amazon-baby", tmp_path)
    data = load_interactions(tmp_path / "amazon-baby" / "prepared")
    assert (data.n_users, data.n_items, data.train.nnz) == (19445, 7050, 119674)
    metrics = evaluate_model(Popularity(data), data)
    # ../shared/data/README.md: most-popular items, test Recall@20 on this split = 0.0523
    assert round(metrics["test"]["recall@20"], 4) == 0.0523


@pytest.fixture(scope="module")
def clusters():
    return clustered_data(n_users=240, n_items=120, n_clusters=6, per_user=12)


@pytest.mark.parametrize("model", ["mf", "lightgcn"])
def test_trained_models_beat_popularity(clusters, model):
    data, _ = clusters
    pop = evaluate_model(Popularity(data), data)["test"]["recall@20"]
    cfg = TrainConfig(
        lr=2e-2, epochs=12, patience=3, batch_size=512, embedding_dim=16, eval_batch_size=256
    )
    result = fit(build_model(model, data, cfg), data, cfg, name=model, progress=False)
    # users only like their cluster's 20 items: a learned model ranks them far above popularity
    assert result.test["recall@20"] > pop + 0.25, (result.test["recall@20"], pop)


def test_lightgcn_propagation_is_the_layer_mean_of_a_hat_powers(clusters):
    data, _ = clusters
    model = LightGCN(data, 4, 2, 0.0, 0)
    x0 = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach()
    a = torch.from_numpy(data.normalized_adjacency().to_dense().numpy())
    want = (x0 + a @ x0 + a @ (a @ x0)) / 3
    users, items = model.propagate()
    assert torch.allclose(torch.cat([users, items]), want, atol=1e-5)


def test_lightgcn_gradients_match_dense_autograd(clusters):
    data, _ = clusters
    model = LightGCN(data, 4, 2, 0.0, 0)
    users, items = model.propagate()
    (users.sum() * 2 + items.pow(2).sum()).backward()
    g_sparse = model.user_embedding.weight.grad.clone()
    x0 = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach()
    x0.requires_grad_(True)
    a = data.normalized_adjacency().to_dense()
    h = (x0 + a @ x0 + a @ (a @ x0)) / 3
    (h[: data.n_users].sum() * 2 + h[data.n_users :].pow(2).sum()).backward()
    assert torch.allclose(g_sparse, x0.grad[: data.n_users], atol=1e-5)


def test_itemknn_shrunk_cosine_top_k_by_hand():
    f = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [2, 0]], dtype=np.float32)
    data = from_arrays([0, 0], [0, 4], ["train", "test"], n_items=5)
    model = ItemKNNCBF(data, f, k=2, shrink=1.0)
    knn = model.knn.toarray()
    n = np.linalg.norm(f, axis=1)
    s = (f @ f.T) / (np.outer(n, n) + 1.0)
    # item 0: neighbours 4 (2/(2+1)) and 1 (1/(1.414+1)); itself excluded
    assert np.flatnonzero(knn[0]).tolist() == [1, 4]
    assert knn[0, 4] == pytest.approx(s[0, 4]) and knn[0, 1] == pytest.approx(s[0, 1])
    assert knn[2, 1] == pytest.approx(1 / (np.sqrt(2) + 1))
    assert np.count_nonzero(knn, axis=1).max() <= 2
    # score = R_u S_knn: a user who had item 0 gets s[0, 4] on item 4
    assert model.scores(torch.tensor([0]))[0].numpy() == pytest.approx(knn[0])


def test_itemknn_with_informative_features_beats_popularity(clusters):
    from tests.model_train._helpers import cluster_features

    data, item_cluster = clusters
    feats = cluster_features(item_cluster)
    cfg = dataclasses.replace(TrainConfig(), eval_batch_size=64)
    knn = fit(build_model("itemknn", data, cfg, feats), data, cfg, progress=False)
    pop = evaluate_model(Popularity(data), data)
    assert knn.epochs == 0 and knn.best_epoch == 0
    assert knn.test["recall@20"] > pop["test"]["recall@20"] + 0.25
