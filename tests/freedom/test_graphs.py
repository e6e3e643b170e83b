"""FREEDOM's graphs on hand-computed cases: the frozen item-item kNN graph of each modality,
their mix, and the degree-sensitive pruning of the user-item graph (weights, count, seed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignrec_data.errors import UsageError
from alignrec_model.data import from_arrays
from alignrec_model.freedom import Freedom, FreedomConfig
from alignrec_model.graph import (
    combine_graphs,
    degree_edge_weights,
    knn_binary_graph,
    sample_edges,
)

# Image: items 0,1 point right, 2,3 point up. Text: items 0,3 share a direction, 1,2 another.
IMAGE = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
TEXT = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 0.9], [0.9, 0.1]], dtype=np.float32)
# k = 2: each item keeps itself and its nearest other item; each weight is 2^-1/2 * 2^-1/2.
S_IMAGE = np.array([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]])
S_TEXT = np.array([[0.5, 0, 0, 0.5], [0, 0.5, 0.5, 0], [0, 0.5, 0.5, 0], [0.5, 0, 0, 0.5]])


def test_knn_graph_keeps_self_and_nearest_with_weight_one_over_k():
    got = knn_binary_graph(IMAGE, k=2).toarray()
    np.testing.assert_allclose(got, S_IMAGE)
    got3 = knn_binary_graph(IMAGE, k=3).toarray()
    assert (np.count_nonzero(got3, axis=1) == 3).all()
    np.testing.assert_allclose(got3[got3 > 0], 1 / 3, rtol=1e-6)  # d_i = d_j = k


def test_modalities_mix_with_the_image_weight_and_edges_in_both_add_up():
    mixed = combine_graphs([knn_binary_graph(IMAGE, 2), knn_binary_graph(TEXT, 2)], [0.1, 0.9])
    expected = 0.1 * S_IMAGE + 0.9 * S_TEXT  # the diagonal is in both: 0.05 + 0.45
    np.testing.assert_allclose(mixed.to_dense().numpy(), expected, rtol=1e-6)
    assert mixed.to_dense()[0, 0].item() == pytest.approx(0.5)
    with pytest.raises(UsageError, match="one weight per graph, found 1 and 2"):
        combine_graphs([knn_binary_graph(IMAGE, 2)], [0.5, 0.5])


def _tiny_data():
    # 3 users, 4 items; user 0: items 0, 1; user 1: items 1, 2; user 2: items 1, 3 (train).
    users = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2])
    items = np.array([0, 1, 1, 2, 1, 3, 2, 3, 0])
    splits = np.array(["train"] * 6 + ["valid", "test", "test"])
    return from_arrays(users, items, splits, n_users=3, n_items=4)


def test_the_model_builds_the_mixed_graph_or_the_one_modality_graph():
    data = _tiny_data()
    cfg = FreedomConfig(knn_k=2, embedding_dim=4)
    both = Freedom(data, (IMAGE, TEXT), cfg, seed=1)
    np.testing.assert_allclose(both.item_adj.to_dense(), 0.1 * S_IMAGE + 0.9 * S_TEXT, rtol=1e-6)
    text_only = Freedom(data, (TEXT,), cfg, seed=1)
    np.testing.assert_allclose(text_only.item_adj.to_dense(), S_TEXT, rtol=1e-6)
    assert [tuple(f.shape) for f in both.features] == [(4, 2), (4, 2)]
    with pytest.raises(UsageError, match="one or two feature matrices"):
        Freedom(data, (IMAGE, TEXT, TEXT), cfg)
    with pytest.raises(UsageError, match=r"expected shape \(4, d\).*found \(3, 2\)"):
        Freedom(data, (IMAGE[:3],), cfg)


def test_edge_weights_are_one_over_sqrt_of_the_degrees():
    pairs = np.array([[0, 0], [0, 1], [1, 1], [2, 1]])  # d_u = 2, 1, 1; d_i = 1, 3
    got = degree_edge_weights(pairs, n_users=3, n_items=2).numpy()
    expected = [1 / np.sqrt(2 * 1), 1 / np.sqrt(2 * 3), 1 / np.sqrt(1 * 3), 1 / np.sqrt(1 * 3)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_edges_are_drawn_in_proportion_to_their_weights_and_seeded():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    g = torch.Generator().manual_seed(0)
    first = np.array([sample_edges(w, 1, g)[0] for _ in range(20_000)])
    freq = np.bincount(first, minlength=4) / len(first)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    kept = sample_edges(w, 3, torch.Generator().manual_seed(5))
    assert len(kept) == len(set(kept.tolist())) == 3  # without replacement
    assert kept.tolist() == sample_edges(w, 3, torch.Generator().manual_seed(5)).tolist()
    with pytest.raises(UsageError, match=r"edges to keep must be in \[0, 4\], found 5"):
        sample_edges(w, 5, g)


def test_pruned_graph_keeps_floor_share_of_edges_normalised_by_kept_degrees():
    data = _tiny_data()  # 6 train edges
    model = Freedom(data, (IMAGE,), FreedomConfig(knn_k=2, embedding_dim=4, dropout=0.5), seed=3)
    model.start_epoch()
    a = model.masked_adj.to_dense()  # (3 + 4, 3 + 4)
    block = a[:3, 3:]  # (U, I) kept user-item edges
    assert int((block > 0).sum()) == int(6 * (1 - 0.5)) == 3
    torch.testing.assert_close(a, a.T)  # both directions
    kept = block > 0
    d_u, d_i = kept.sum(1).float(), kept.sum(0).float()  # degrees in the kept graph
    expected = kept.float() / torch.sqrt(d_u[:, None] * d_i[None, :]).clamp(min=1)
    torch.testing.assert_close(block, expected)
    pairs = {tuple(p) for p in data.train_pairs.tolist()}
    assert {(int(u), int(i)) for u, i in kept.nonzero().tolist()} <= pairs
    # Same seed, same draws; the evaluation graph is the full one.
    twin = Freedom(data, (IMAGE,), FreedomConfig(knn_k=2, embedding_dim=4, dropout=0.5), seed=3)
    twin.start_epoch()
    torch.testing.assert_close(twin.masked_adj.to_dense(), a)
    none = Freedom(data, (IMAGE,), FreedomConfig(knn_k=2, embedding_dim=4, dropout=0.0), seed=3)
    none.start_epoch()
    torch.testing.assert_close(none.masked_adj.to_dense(), data.normalized_adjacency().to_dense())


def test_config_ranges_name_the_key():
    with pytest.raises(UsageError, match="train.freedom.dropout"):
        FreedomConfig(dropout=1.0)
    with pytest.raises(UsageError, match="train.freedom.mm_image_weight"):
        FreedomConfig(mm_image_weight=1.5)
