"""The AlignRec model: forward against a dense re-implementation, gradients, switches, groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from alignrec_data.errors import UsageError
from alignrec_model.alignrec import AlignRec, AlignRecConfig
from alignrec_model.data import from_arrays
from alignrec_model.graph import build_item_graph
from tests.model_alignrec.test_losses import _info_nce_numpy

N_USERS, N_ITEMS, D_F = 7, 6, 5


def _tiny(seed: int = 0):
    rng = np.random.default_rng(seed)
    pairs = {(u, i) for u in range(N_USERS) for i in rng.choice(N_ITEMS, 3, replace=False)}
    users, items = np.array(sorted(pairs)).T
    data = from_arrays(users, items, np.zeros(len(users), dtype=np.int64), N_USERS, N_ITEMS)
    feats = rng.standard_normal((N_ITEMS, D_F)).astype(np.float32)
    return data, feats


def _dense_forward(model: AlignRec, data, feats: np.ndarray, k: int):
    """Z of all users and items from the spec's formulas, in float64 numpy."""
    f64 = np.float64
    eu = model.user_embedding.weight.detach().numpy().astype(f64)
    ei = model.item_embedding.weight.detach().numpy().astype(f64)
    ftrain = model.features.detach().numpy().astype(f64)
    w_p, b_p = (
        model.mm_proj.weight.detach().numpy().astype(f64),
        model.mm_proj.bias.detach().numpy(),
    )
    w_g, b_g = (
        model.gate[0].weight.detach().numpy().astype(f64),
        model.gate[0].bias.detach().numpy(),
    )
    # user-item graph
    r = data.train.toarray().astype(f64)
    a = np.block([[np.zeros((N_USERS, N_USERS)), r], [r.T, np.zeros((N_ITEMS, N_ITEMS))]])
    deg = a.sum(1)
    dinv = np.where(deg > 0, deg**-0.5, 0.0)
    a_hat = dinv[:, None] * a * dinv[None, :]
    r_hat = a_hat[:N_USERS, N_USERS:]
    # item-item graph from the raw features
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    s = unit @ unit.T
    keep = np.zeros_like(s)
    for i in range(N_ITEMS):
        top = np.argsort(-s[i])[:k]
        keep[i, top] = s[i, top]
    d = keep.sum(1)
    a_mm = keep / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    # forward
    m = ftrain @ w_p.T + b_p
    hmm_i = ei * (1 / (1 + np.exp(-(m @ w_g.T + b_g))))
    x0 = np.concatenate([eu, ei])
    x1 = a_hat @ x0
    x2 = a_hat @ x1
    h_id = (x0 + x1 + x2) / 3
    hmm_i = a_mm @ hmm_i
    hmm_u = r_hat @ hmm_i
    z = h_id + np.concatenate([hmm_u, hmm_i])
    return z[:N_USERS], z[N_USERS:], h_id, hmm_u, hmm_i


def test_forward_equals_dense_reimplementation():
    data, feats = _tiny()
    cfg = AlignRecConfig(embedding_dim=8, knn_k=3)
    model = AlignRec(data, feats, cfg, seed=5)
    # move the trainable features away from F: the gate must use them, the graph must not
    with torch.no_grad():
        model.features.add_(0.3 * torch.randn_like(model.features))
    zu, zi, h_id, hmm_u, hmm_i = _dense_forward(model, data, feats, k=3)
    out = model()
    np.testing.assert_allclose(out.z_users.detach().numpy(), zu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.z_items.detach().numpy(), zi, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.id_users.detach().numpy(), h_id[:N_USERS], atol=1e-6)
    np.testing.assert_allclose(out.mm_users.detach().numpy(), hmm_u, atol=1e-6)
    np.testing.assert_allclose(out.mm_items.detach().numpy(), hmm_i, atol=1e-6)
    model.eval()
    model.prepare_eval()
    users = torch.tensor([0, 3, 6])
    np.testing.assert_allclose(
        model.scores(users).numpy(), zu[[0, 3, 6]] @ zi.T, rtol=1e-5, atol=1e-6
    )


def test_loss_parts_sum_and_match_the_formulas():
    data, feats = _tiny(1)
    cfg = AlignRecConfig(embedding_dim=8, knn_k=3, cl_weight=0.5, sim_weight=0.3)
    model = AlignRec(data, feats, cfg, seed=1)
    users, pos, neg = (
        torch.tensor([0, 1, 2, 2]),
        torch.tensor([1, 2, 3, 3]),
        torch.tensor([0, 5, 4, 1]),
    )
    loss, parts = model.loss(users, pos, neg)
    assert set(parts) == {"bpr", "uia", "l2", "cca_item", "cca_user", "sim"}
    assert loss.item() == pytest.approx(sum(parts.values()), rel=1e-5)
    zu, zi, h_id, hmm_u, hmm_i = _dense_forward(model, data, feats, k=3)
    u, p, n = zu[users], zi[pos], zi[neg]
    bpr = -np.mean(np.log(1 / (1 + np.exp(-((u * p).sum(1) - (u * n).sum(1))))))
    cos = (u * p).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(p, axis=1)
    l2 = 1e-4 * 0.5 * ((u**2).sum() + (p**2).sum() + (n**2).sum()) / 4
    unit = feats[pos] / np.linalg.norm(feats[pos], axis=1, keepdims=True)
    h = hmm_i[pos]
    sim = 0.3 * np.sqrt(((h @ h.T - unit @ unit.T) ** 2).sum()) / 4
    assert parts["bpr"] == pytest.approx(bpr, rel=1e-5)
    assert parts["uia"] == pytest.approx(0.1 * (1 - cos.mean()), rel=1e-5)
    assert parts["l2"] == pytest.approx(l2, rel=1e-5)
    assert parts["sim"] == pytest.approx(sim, rel=1e-4)
    h_id_items = h_id[N_USERS:]
    assert parts["cca_item"] == pytest.approx(
        0.5 * _info_nce_numpy(h, h_id_items[pos], 0.2), rel=1e-4
    )
    assert parts["cca_user"] == pytest.approx(
        0.5 * _info_nce_numpy(hmm_u[users], h_id[:N_USERS][users], 0.2), rel=1e-4
    )
    # cl_weight = 0 and sim_weight = 0 switch those terms off
    off = AlignRec(data, feats, AlignRecConfig(embedding_dim=8, knn_k=3, cl_weight=0, sim_weight=0))
    _, parts_off = off.loss(users, pos, neg)
    assert parts_off["cca_item"] == parts_off["cca_user"] == parts_off["sim"] == 0.0


def _grad_names(model: AlignRec) -> set[str]:
    users, pos, neg = (
        torch.tensor([0, 1, 4, 6]),
        torch.tensor([1, 2, 3, 0]),
        torch.tensor([5, 4, 0, 2]),
    )
    loss, _ = model.loss(users, pos, neg)
    loss.backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_gradient_reaches_every_parameter():
    data, feats = _tiny(2)
    model = AlignRec(data, feats, AlignRecConfig(embedding_dim=8, knn_k=3), seed=0)
    got = _grad_names(model)
    want = {
        "user_embedding.weight",
        "item_embedding.weight",
        "features",
        "mm_proj.weight",
        "mm_proj.bias",
        "gate.0.weight",
        "gate.0.bias",
    }
    assert want <= got


def test_freeze_features_switch():
    data, feats = _tiny(2)
    model = AlignRec(data, feats, AlignRecConfig(embedding_dim=8, knn_k=3, freeze_features=True))
    assert not model.features.requires_grad
    got = _grad_names(model)
    assert "features" not in got and "mm_proj.weight" in got
    groups = model.param_groups(1e-3)
    assert len(groups) == 1
    assert all(p is not model.features for p in groups[0]["params"])


def test_duplicate_mask_switch_only_matters_with_duplicates():
    data, feats = _tiny(3)

    def cca(mask: bool, pos: list[int]) -> float:
        cfg = AlignRecConfig(embedding_dim=8, knn_k=3, cl_weight=1.0, mask_duplicate_negatives=mask)
        model = AlignRec(data, feats, cfg, seed=4)
        _, parts = model.loss(
            torch.tensor([0, 1, 2, 3]), torch.tensor(pos), torch.tensor([5, 5, 5, 5])
        )
        return parts["cca_item"]

    assert cca(True, [0, 1, 2, 3]) == pytest.approx(cca(False, [0, 1, 2, 3]), rel=1e-6)
    assert cca(True, [0, 1, 0, 3]) < cca(False, [0, 1, 0, 3]) - 1e-3


class StandInEncoder(nn.Module):
    """Stands in for MMEnc's top layers: a trainable map over cached lower-layer item states."""

    def __init__(self, states: torch.Tensor, d_f: int) -> None:
        super().__init__()
        self.register_buffer("states", states)
        self.top = nn.Linear(states.shape[1], d_f)
        self.calls: list[int] = []

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(item_ids.numel()))
        return torch.tanh(self.top(self.states[item_ids]))


def test_joint_finetuning_with_a_feature_fn():
    data, feats = _tiny(4)
    torch.manual_seed(0)
    enc = StandInEncoder(torch.randn(N_ITEMS, 9), D_F)
    cfg = AlignRecConfig(embedding_dim=8, knn_k=3, finetune_encoder_layers=2, encoder_lr=3e-5)
    model = AlignRec(data, feats, cfg, seed=0, feature_fn=enc)
    # the item-item graph comes from the initial features, not from the encoder
    want = build_item_graph(feats, k=3).to_dense()
    torch.testing.assert_close(model.item_adj.to_dense(), want)
    assert model.features is None
    groups = model.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, 3e-5]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in enc.parameters()}
    assert not {id(p) for p in groups[0]["params"]} & {id(p) for p in groups[1]["params"]}
    assert model.param_groups(1e-3, encoder_lr=1e-4)[1]["lr"] == 1e-4
    # a step recomputes only the batch's items and trains the encoder
    opt = torch.optim.Adam(groups)
    before = enc.top.weight.detach().clone()
    loss, _ = model.loss(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([3, 2]))
    loss.backward()
    assert enc.calls == [3]  # unique of {1, 2, 3, 2}
    assert enc.top.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(enc.top.weight, before)
    # prepare_eval refreshes every item's features with the updated encoder
    model.eval()
    model.prepare_eval()
    with torch.no_grad():
        torch.testing.assert_close(model.feature_cache, enc(torch.arange(N_ITEMS)))


def test_usage_errors():
    data, feats = _tiny()
    with pytest.raises(UsageError, match=r"expected shape \(6, d_f\).*found \(5, 5\)"):
        AlignRec(data, feats[:5], AlignRecConfig(knn_k=3))
    with pytest.raises(UsageError, match="finetune_encoder_layers = 2 needs an encoder"):
        AlignRec(data, feats, AlignRecConfig(knn_k=3, finetune_encoder_layers=2))
    with pytest.raises(UsageError, match=r"train.alignrec.temperature = 0.0 is out of range"):
        AlignRecConfig(temperature=0.0)
    bad = feats.copy()
    bad[0, 0] = np.nan
    with pytest.raises(UsageError, match="NaN or inf"):
        AlignRec(data, bad, AlignRecConfig(knn_k=3))


def test_same_seed_same_parameters():
    data, feats = _tiny()
    a = AlignRec(data, feats, AlignRecConfig(embedding_dim=8, knn_k=3), seed=11)
    b = AlignRec(data, feats, AlignRecConfig(embedding_dim=8, knn_k=3), seed=11)
    c = AlignRec(data, feats, AlignRecConfig(embedding_dim=8, knn_k=3), seed=12)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.user_embedding.weight, c.user_embedding.weight)


def test_state_dict_round_trip_restores_scores(tmp_path):
    data, feats = _tiny(5)
    cfg = AlignRecConfig(embedding_dim=8, knn_k=3)
    a = AlignRec(data, feats, cfg, seed=1)
    opt = torch.optim.Adam(a.param_groups(1e-2))
    for _ in range(3):
        loss, _ = a.loss(torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]), torch.tensor([4, 5, 0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(a.state_dict(), tmp_path / "ckpt.pt")
    b = AlignRec(data, feats, cfg, seed=2)
    b.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    a.eval()
    b.eval()
    a.prepare_eval()
    b.prepare_eval()
    users = torch.arange(N_USERS)
    torch.testing.assert_close(a.scores(users), b.scores(users))
    assert not torch.allclose(b.features, torch.from_numpy(feats))  # the trained table is saved
