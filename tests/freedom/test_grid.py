"""`--grid` for FREEDOM searches MMRec's FREEDOM.yaml axes, reg_weight x dropout, at a fixed lr."""

from __future__ import annotations

import dataclasses

import pytest

from alignrec_data.errors import UsageError
from alignrec_model.freedom import FreedomConfig
from alignrec_model.grid import cell_key, grid_configs, run_grid
from alignrec_model.train import TrainConfig
from tests.model_train._helpers import cluster_features, clustered_data


def test_default_grid_is_mmrec_freedom_yaml():
    cells = grid_configs(TrainConfig(), "freedom")
    got = [(c.lr, c.freedom.reg_weight, c.freedom.dropout) for c in cells]
    expected = [(1e-3, r, d) for r in (0.0, 1e-5, 1e-4, 1e-3) for d in (0.8, 0.9)]
    assert got == expected


def test_grid_trains_each_cell_and_chooses_by_valid():
    data, clusters = clustered_data(n_users=60, n_items=60, per_user=8)
    feats = (cluster_features(clusters, dim=8), cluster_features(clusters, dim=6, seed=3))
    freedom = FreedomConfig(
        embedding_dim=8, knn_k=4, grid_reg_weight=(0.0, 1e-3), grid_dropout=(0.5,)
    )
    cfg = TrainConfig(epochs=2, batch_size=128, eval_batch_size=64, lr=0.01, freedom=freedom)
    result = run_grid(data, cfg, "freedom", feats, "a+b", progress=False)
    assert [(c["reg_weight"], c["dropout"], c["lr"]) for c in result.cells] == [
        (0.0, 0.5, 0.01),
        (1e-3, 0.5, 0.01),
    ]
    best = max(result.cells, key=lambda c: c["valid"]["recall@20"])
    out = result.to_json()
    assert out["chosen"] == {k: best[k] for k in ("lr", "reg_weight", "dropout")}
    assert cell_key(out["chosen"]) == (0.01, best["reg_weight"], 0.5)
    assert out["features"] == "a+b"


def test_an_empty_freedom_grid_is_refused():
    data, clusters = clustered_data(n_users=20, n_items=60, per_user=6)
    cfg = TrainConfig(freedom=dataclasses.replace(FreedomConfig(), grid_dropout=()))
    with pytest.raises(UsageError, match="freedom.grid_reg_weight, freedom.grid_dropout"):
        run_grid(data, cfg, "freedom", (cluster_features(clusters),), "a")
