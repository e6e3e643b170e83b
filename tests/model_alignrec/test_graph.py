"""The graph module: bipartite A_hat, the sparse operator, chunked top-k, item-item graph."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from alignrec_data.errors import UsageError
from alignrec_model.graph import (
    bipartite_graph,
    build_item_graph,
    csr_transpose,
    knn_topk,
    spmm,
    to_torch_csr,
)


def _dense_topk(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = unit @ unit.T
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, idx, axis=1), idx


def test_chunked_topk_equals_dense_topk():
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((203, 16)).astype(np.float32)  # continuous: no ties
    want_vals, want_idx = _dense_topk(feats.astype(np.float64), 7)
    for chunk in (1, 50, 64, 203, 1000):
        vals, idx = knn_topk(torch.from_numpy(feats), k=7, chunk_size=chunk)
        np.testing.assert_array_equal(idx.numpy(), want_idx)
        np.testing.assert_allclose(vals.numpy(), want_vals, rtol=0, atol=1e-5)


def test_each_row_keeps_k_entries_including_itself():
    rng = np.random.default_rng(4)
    feats = rng.standard_normal((120, 32))
    adj = build_item_graph(feats, k=10, chunk_size=33)
    assert adj.layout == torch.sparse_csr
    assert adj.shape == (120, 120)
    crow, col = adj.crow_indices().numpy(), adj.col_indices().numpy()
    assert np.all(np.diff(crow) == 10)
    for i in range(120):
        row_cols = col[crow[i] : crow[i + 1]]
        assert i in row_cols
        assert len(set(row_cols)) == 10
    # directed: the item-item graph is not symmetrised
    dense = adj.to_dense().numpy()
    assert not np.allclose(dense, dense.T)


def test_normalisation_by_hand_on_five_items():
    # Unit directions (1,0), (.6,.8), (0,1), (-.8,.6), (-1,0), with varied lengths (the graph
    # uses cosines). Cosines: s12=.6 s13=0 s14=-.8 s15=-1 s23=.8 s24=0 s25=-.6 s34=.6 s35=0
    # s45=.8. With k=3 (self + 2), the kept rows are
    #   1: {1, 2 (.6), 3 (0)}      d1 = 1.6
    #   2: {2, 3 (.8), 1 (.6)}     d2 = 2.4
    #   3: {3, 2 (.8), 4 (.6)}     d3 = 2.4
    #   4: {4, 5 (.8), 3 (.6)}     d4 = 2.4
    #   5: {5, 4 (.8), 3 (0)}      d5 = 1.8
    feats = np.array([[2, 0], [0.6, 0.8], [0, 5], [-0.8, 0.6], [-3, 0]], dtype=np.float32)
    d = {1: 1.6, 2: 2.4, 3: 2.4, 4: 2.4, 5: 1.8}
    kept = {
        1: {1: 1.0, 2: 0.6, 3: 0.0},
        2: {2: 1.0, 3: 0.8, 1: 0.6},
        3: {3: 1.0, 2: 0.8, 4: 0.6},
        4: {4: 1.0, 5: 0.8, 3: 0.6},
        5: {5: 1.0, 4: 0.8, 3: 0.0},
    }
    want = np.zeros((5, 5))
    for i, row in kept.items():
        for j, s in row.items():
            want[i - 1, j - 1] = s / np.sqrt(d[i]) / np.sqrt(d[j])
    adj = build_item_graph(feats, k=3, chunk_size=2)
    np.testing.assert_allclose(adj.to_dense().numpy(), want, atol=1e-6)
    # e.g. A[1, 2] = 0.6 / sqrt(1.6 * 2.4) = 0.3061862
    assert adj.to_dense()[0, 1].item() == pytest.approx(0.30618622, abs=1e-6)
    # stored entries per row, the zero-weight neighbours included
    assert adj.col_indices().numel() == 15


def test_zero_feature_row_gets_no_weight():
    feats = np.array([[1.0, 0.0], [0.0, 0.0], [0.7, 0.7], [0.0, 1.0]], dtype=np.float32)
    adj = build_item_graph(feats, k=2).to_dense().numpy()
    assert np.all(np.isfinite(adj))
    np.testing.assert_array_equal(adj[1], 0.0)
    np.testing.assert_array_equal(adj[:, 1], 0.0)


def test_bad_k_is_a_usage_error():
    feats = np.eye(4, dtype=np.float32)
    with pytest.raises(UsageError, match=r"knn_k must be in \[1, N_items=4\], found 5"):
        build_item_graph(feats, k=5)
    with pytest.raises(UsageError, match="2-D"):
        build_item_graph(np.ones(4), k=1)


def test_negative_degree_is_a_usage_error():
    # Item 0 is opposite to the other two; with k=3 its kept row sums to 1 - 1 - 1 = -1.
    feats = np.array([[1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    with pytest.raises(UsageError, match=r"sum to a negative number \(first item id 0"):
        build_item_graph(feats, k=3)


def test_bipartite_graph_is_pyg_gcn_norm_bit_for_bit():
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    pairs = np.array([[0, 0], [0, 2], [1, 2], [2, 1], [2, 2], [2, 3]], dtype=np.int64)
    n_users, n_items = 4, 5  # user 3 and item 4 are isolated
    adj, r_hat = bipartite_graph(pairs, n_users, n_items)
    u, i = torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1]) + n_users
    edge_index, w = gcn_norm(
        torch.stack([torch.cat([u, i]), torch.cat([i, u])]), None, 9, add_self_loops=False
    )
    want = torch.zeros(9, 9)
    want[edge_index[1], edge_index[0]] = w  # LGConv: out[dst] += w * x[src]
    assert torch.equal(adj.to_dense(), want)
    assert torch.equal(r_hat.to_dense(), want[:n_users, n_users:])  # exactly the block
    assert adj.crow_indices().dtype == torch.int32


def test_spmm_gradient_is_the_transpose_product():
    a_sp = sp.random(7, 5, density=0.4, random_state=0, dtype=np.float32, format="csr")
    a = to_torch_csr(a_sp)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = spmm(a, x, csr_transpose(a))  # (7, 3)
    (y * torch.arange(21.0).reshape(7, 3)).sum().backward()
    dense = a.to_dense()
    x2 = x.detach().clone().requires_grad_(True)
    (dense @ x2 * torch.arange(21.0).reshape(7, 3)).sum().backward()
    assert torch.allclose(y, dense @ x.detach(), atol=1e-6)
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)


def test_shrunk_topk_without_self_equals_dense():
    rng = np.random.default_rng(5)
    feats = rng.standard_normal((61, 8)).astype(np.float32)
    norms = np.linalg.norm(feats.astype(np.float64), axis=1)
    sim = feats.astype(np.float64) @ feats.T / (np.outer(norms, norms) + 2.0)
    np.fill_diagonal(sim, -np.inf)
    want_idx = np.argsort(-sim, axis=1, kind="stable")[:, :4]
    vals, idx = knn_topk(feats, k=4, chunk_size=16, shrink=2.0, include_self=False)
    np.testing.assert_array_equal(idx.numpy(), want_idx)
    np.testing.assert_allclose(vals.numpy(), np.take_along_axis(sim, want_idx, 1), atol=1e-6)
    with pytest.raises(UsageError, match=r"knn_k must be in \[1, N_items-1=60\], found 61"):
        knn_topk(feats, k=61, include_self=False)
    with pytest.raises(UsageError, match="shrink >= 0, found 2048 and -1"):
        knn_topk(feats, k=4, shrink=-1)
