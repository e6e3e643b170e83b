"""Every loss module against numbers computed by hand (numpy) from the formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignrec_model.losses import (
    BPRLoss,
    EmbeddingL2,
    InfoNCE,
    SimilarityPreservationLoss,
    UIACosineLoss,
)


def _t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def test_bpr_by_hand():
    # margins 2 - 1 = 1 and -1 - 0.5 = -1.5
    want = -(np.log(1 / (1 + np.exp(-1.0))) + np.log(1 / (1 + np.exp(1.5)))) / 2
    got = BPRLoss()(_t([2.0, -1.0]), _t([1.0, 0.5]))
    assert got.item() == pytest.approx(want, rel=1e-6)  # = 0.5 * (0.31326 + 1.70141)


def test_uia_cosine_by_hand():
    u = _t([[1.0, 0.0], [0.0, 2.0]])
    p = _t([[1.0, 1.0], [0.0, -1.0]])
    want = 1 - (1 / np.sqrt(2) + (-1.0)) / 2  # cosines 0.7071 and -1
    assert UIACosineLoss()(u, p).item() == pytest.approx(want, rel=1e-6)


def test_l2_as_the_code_by_hand():
    u, p, n = (
        _t([[1.0, 2.0], [0.0, 1.0]]),
        _t([[3.0, 0.0], [1.0, 1.0]]),
        _t([[0.0, 0.0], [2.0, 0.0]]),
    )
    squares = (1 + 4 + 0 + 1) + (9 + 0 + 1 + 1) + (0 + 0 + 4 + 0)  # = 21
    assert EmbeddingL2()(u, p, n).item() == pytest.approx(0.5 * squares / 2)
    assert EmbeddingL2(divisor=2048)(u, p, n).item() == pytest.approx(0.5 * squares / 2048)
    with pytest.raises(ValueError, match="positive int or None, found 0"):
        EmbeddingL2(divisor=0)


def _info_nce_numpy(a, b, tau, ids=None):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    total = 0.0
    for k in range(len(a)):
        num = np.exp(a[k] @ b[k] / tau)
        den = 0.0
        for j in range(len(a)):
            if ids is not None and j != k and ids[j] == ids[k]:
                continue
            den += np.exp(a[k] @ b[j] / tau)
        total += -np.log(num / den)
    return total / len(a)


def test_info_nce_by_hand():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    want = _info_nce_numpy(a, b, 0.2)
    got = InfoNCE(0.2)(_t(a), _t(b))
    assert got.item() == pytest.approx(want, rel=1e-5)
    # one direction only: swapping the views changes the value
    assert InfoNCE(0.2)(_t(b), _t(a)).item() != pytest.approx(want, rel=1e-3)
    # a tiny 2x2 case written out: a = b = I, tau = 0.5 -> -log(e^2 / (e^2 + e^0))
    eye = _t([[1.0, 0.0], [0.0, 1.0]])
    assert InfoNCE(0.5)(eye, eye).item() == pytest.approx(-np.log(np.e**2 / (np.e**2 + 1)))


def test_duplicate_mask_changes_info_nce_only_with_duplicates():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((4, 3))
    ids = np.array([7, 2, 7, 5])  # rows 0 and 2 are the same id: same vectors in both views
    a = base[[0, 1, 0, 3]] + 0.1 * rng.standard_normal((4, 3))
    b = base[[0, 1, 0, 3]]
    kept = InfoNCE(0.2)(_t(a), _t(b), torch.from_numpy(ids)).item()
    masked = InfoNCE(0.2, mask_duplicates=True)(_t(a), _t(b), torch.from_numpy(ids)).item()
    assert kept == pytest.approx(_info_nce_numpy(a, b, 0.2), rel=1e-5)
    assert masked == pytest.approx(_info_nce_numpy(a, b, 0.2, ids), rel=1e-5)
    assert masked < kept - 0.1  # the duplicate was a strong "negative"
    unique = np.array([7, 2, 8, 5])
    same = InfoNCE(0.2, mask_duplicates=True)(_t(a), _t(b), torch.from_numpy(unique)).item()
    assert same == pytest.approx(kept, rel=1e-6)
    with pytest.raises(ValueError, match="needs the batch ids"):
        InfoNCE(0.2, mask_duplicates=True)(_t(a), _t(b))


@pytest.mark.parametrize("method", ["direct", "gram", "auto"])
def test_similarity_preservation_by_hand(method):
    rng = np.random.default_rng(2)
    h = rng.standard_normal((6, 4)) * 0.3
    f = rng.standard_normal((6, 5)) * 3.0
    f[2] = 0.0  # a zero feature vector: cosine 0 with every item
    unit = np.divide(
        f, np.linalg.norm(f, axis=1, keepdims=True), where=f != 0, out=np.zeros_like(f)
    )
    cos = unit @ unit.T
    want = np.sqrt(((h @ h.T - cos) ** 2).sum()) / 6  # Frobenius norm, not squared, over B
    ht = _t(h).requires_grad_()
    ft = _t(f).requires_grad_()
    got = SimilarityPreservationLoss(method)(ht, ft)
    assert got.item() == pytest.approx(want, rel=1e-5)
    got.backward()
    assert ft.grad is None  # stop-gradient on the target
    # gradient of ||M||_F / B with M = HH^T - C:  2 M H / (||M||_F B)
    m = h @ h.T - cos
    want_grad = 2 * m @ h / (np.sqrt((m**2).sum()) * 6)
    np.testing.assert_allclose(ht.grad.numpy(), want_grad, rtol=1e-4, atol=1e-6)
