"""FREEDOM's embeddings and loss on a tiny case computed by hand with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignrec_model.freedom import Freedom, FreedomConfig
from tests.freedom.test_graphs import IMAGE, S_IMAGE, S_TEXT, TEXT, _tiny_data

E_U = np.array([[0.1, 0.2], [-0.3, 0.4], [0.5, -0.1]], dtype=np.float32)  # (U, d)
E_I = np.array([[0.2, 0.1], [0.3, -0.2], [-0.1, 0.4], [0.6, 0.2]], dtype=np.float32)  # (I, d)
W = np.array([[0.5, -1.0], [1.5, 0.25]], dtype=np.float32)  # (d, d_f) projection of IMAGE
B = np.array([0.1, -0.2], dtype=np.float32)
W_T = np.array([[-0.5, 1.0], [0.75, 0.5]], dtype=np.float32)  # projection of TEXT
B_T = np.array([0.0, 0.3], dtype=np.float32)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.log1p(np.exp(-x))


def _bpr(zu, zp, zn) -> float:
    return float(-_log_sigmoid((zu * zp).sum(1) - (zu * zn).sum(1)).mean())


def _model(features, s_expected, reg_weight):
    cfg = FreedomConfig(
        embedding_dim=2, n_ui_layers=1, n_mm_layers=1, knn_k=2, dropout=0.0, reg_weight=reg_weight
    )
    model = Freedom(_tiny_data(), features, cfg, seed=0)
    np.testing.assert_allclose(model.item_adj.to_dense(), s_expected, rtol=1e-6)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.from_numpy(E_U))
        model.item_embedding.weight.copy_(torch.from_numpy(E_I))
        for proj, (w, b) in zip(model.projections, [(W, B), (W_T, B_T)], strict=False):
            proj.weight.copy_(torch.from_numpy(w))
            proj.bias.copy_(torch.from_numpy(b))
    return model


def _expected_embeddings(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Train edges: user 0 -> items 0, 1; user 1 -> 1, 2; user 2 -> 1, 3.
    r = np.zeros((3, 4))
    r[[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 1, 3]] = 1
    d_u, d_i = r.sum(1), r.sum(0)  # 2, 2, 2 and 1, 3, 1, 1
    r_hat = r / np.sqrt(d_u[:, None] * d_i[None, :])
    h_u = (E_U + r_hat @ E_I) / 2  # LightGCN, one layer: mean of X0 and A_hat X0
    h_i = (E_I + r_hat.T @ E_U) / 2
    return h_u, h_i + s @ E_I  # Z_i = H_i + S E_i


@pytest.mark.parametrize("two", [False, True], ids=["text-only", "image+text"])
def test_loss_is_bpr_plus_weighted_modality_bpr(two):
    users, pos, neg = np.array([0, 1, 2]), np.array([0, 2, 3]), np.array([3, 0, 2])
    s = 0.1 * S_IMAGE + 0.9 * S_TEXT if two else S_IMAGE
    model = _model((IMAGE, TEXT) if two else (IMAGE,), s, reg_weight=0.5)
    model.start_epoch()
    loss, parts = model.loss(*(torch.from_numpy(a) for a in (users, pos, neg)))

    z_u, z_i = _expected_embeddings(s)
    zu = z_u[users]
    bpr = _bpr(zu, z_i[pos], z_i[neg])
    p_img = IMAGE @ W.T + B  # (I, d) projected features
    modal = _bpr(zu, p_img[pos], p_img[neg])
    if two:
        p_txt = TEXT @ W_T.T + B_T
        modal += _bpr(zu, p_txt[pos], p_txt[neg])
    assert parts["bpr"] == pytest.approx(bpr, rel=1e-5)
    assert parts["modal_bpr"] == pytest.approx(0.5 * modal, rel=1e-5)
    assert loss.item() == pytest.approx(bpr + 0.5 * modal, rel=1e-5)

    loss.backward()  # the features are trained (MMRec: from_pretrained(freeze=False))
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in model.features)


def test_evaluation_scores_use_the_full_graph():
    model = _model((IMAGE,), S_IMAGE, reg_weight=0.0)
    model.eval()
    model.prepare_eval()
    z_u, z_i = _expected_embeddings(S_IMAGE)
    got = model.scores(torch.tensor([0, 2])).detach().numpy()
    np.testing.assert_allclose(got, z_u[[0, 2]] @ z_i.T, rtol=1e-5, atol=1e-7)
