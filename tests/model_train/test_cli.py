"""`alignrec-data train` / `evaluate` end to end on a small prepared dataset (real files)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml
from click.testing import CliRunner

from alignrec_data.cli import cli
from alignrec_model.grid import grid_configs
from alignrec_model.train import TrainConfig
from tests.model_train._helpers import cluster_features, clustered, write_prepared, write_variant


@pytest.fixture
def prepared(data_dir, tmp_path):
    users, items, splits, item_cluster = clustered(n_users=120, n_items=60, per_user=8)
    write_prepared(data_dir, "toy", users, items, splits)
    write_variant(data_dir, "toy", "minilm-text", cluster_features(item_cluster))
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "train": {
                    "epochs": 3,
                    "batch_size": 256,
                    "lr": 0.01,
                    "eval_batch_size": 64,
                    "embedding_dim": 8,
                    "grid_lr": [0.01, 0.001],
                    "alignrec": {"embedding_dim": 8, "knn_k": 5},
                },
                "evaluate": {"batch_size": 64, "mask_model": "itemknn"},
            }
        )
    )
    return data_dir, params


def run(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


@pytest.mark.parametrize("model", ["pop", "mf"])
def test_train_json_is_printed_and_written(prepared, model):
    data_dir, params = prepared
    res = run(
        "train",
        "toy",
        "--model",
        model,
        "--data-dir",
        str(data_dir),
        "--params",
        str(params),
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["model"] == model and obj["features"] is None
    assert obj["epochs"] == (0 if model == "pop" else 3)
    assert 0 <= obj["best_epoch"] < max(obj["epochs"], 1)
    for split in ("valid", "test"):
        for key in ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@5", "map@50"):
            assert 0.0 <= obj[split][key] <= 1.0
    metrics = data_dir / "toy" / "metrics"
    assert json.loads((metrics / f"train-{model}.json").read_text()) == obj
    history = json.loads((metrics / f"history-{model}.json").read_text())
    assert len(history) == max(obj["epochs"], 1)
    assert {"epoch", "valid_recall@20", "test_recall@20"} <= set(history[0])
    ckpt = torch.load(data_dir / "toy" / "models" / f"{model}.pt", weights_only=True)
    assert ckpt["model"] == model and ckpt["best_epoch"] == obj["best_epoch"]


def test_train_alignrec_with_features(prepared):
    data_dir, params = prepared
    res = run(
        "train",
        "toy",
        "--model",
        "alignrec",
        "--features",
        "minilm-text",
        "--epochs",
        "2",
        "--data-dir",
        str(data_dir),
        "--params",
        str(params),
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["model"] == "alignrec" and obj["features"] == "minilm-text" and obj["epochs"] == 2
    assert (data_dir / "toy" / "models" / "alignrec-minilm-text.pt").is_file()
    history = json.loads((data_dir / "toy/metrics/history-alignrec-minilm-text.json").read_text())
    assert {"loss_bpr", "loss_cca_item", "loss_sim"} <= set(history[0])


def test_train_grid_chooses_by_valid(prepared):
    data_dir, params = prepared
    res = run(
        "train",
        "toy",
        "--model",
        "mf",
        "--grid",
        "--data-dir",
        str(data_dir),
        "--params",
        str(params),
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    grid = json.loads((data_dir / "toy/metrics/grid-mf.json").read_text())
    cells = grid["grid"]
    assert [c["lr"] for c in cells] == [0.01, 0.001]
    best = max(cells, key=lambda c: c["valid"]["recall@20"])
    assert grid["chosen"]["lr"] == best["lr"] == json.loads(res.stdout)["lr"]
    assert len(grid_configs(TrainConfig(), "alignrec")) == 7 * 5 * 5


def test_interrupted_grid_resumes_with_only_the_missing_cells(prepared, monkeypatch):
    """A grid killed after its first cell trains only the others when run again, and ends
    with the same files as an uninterrupted grid."""
    import alignrec_model.grid as grid_mod
    from alignrec_data.atomic import write_json
    from alignrec_data.config import load_section

    data_dir, params = prepared
    config = load_section(params, "train", TrainConfig)
    config = dataclasses.replace(config, grid_lr=(0.01, 0.001, 0.003))
    real_fit = grid_mod.fit
    calls = []

    def crashing_fit(*args, **kwargs):  # stands in for a kill during the second cell
        calls.append(args[2].lr)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(grid_mod, "fit", crashing_fit)
    with pytest.raises(KeyboardInterrupt):
        grid_mod.grid_dataset(data_dir, "toy", config, "mf")
    partial = data_dir / "toy/metrics/grid-mf.partial.json"
    assert [c["lr"] for c in json.loads(partial.read_text())["cells"]] == [0.01]
    assert (data_dir / "toy/models/mf.grid-best.pt").is_file()
    assert not (data_dir / "toy/models/mf.pt").exists()

    calls.clear()
    monkeypatch.setattr(grid_mod, "fit", lambda *a, **k: calls.append(a[2].lr) or real_fit(*a, **k))
    resumed = grid_mod.grid_dataset(data_dir, "toy", config, "mf")
    assert calls == [0.001, 0.003]  # the finished cell is not trained again
    assert not partial.exists() and not (data_dir / "toy/models/mf.grid-best.pt").exists()
    grid = json.loads((data_dir / "toy/metrics/grid-mf.json").read_text())

    monkeypatch.setattr(grid_mod, "fit", real_fit)
    fresh = grid_mod.grid_dataset(data_dir, "toy", config, "mf")  # uninterrupted, from scratch
    assert [c["lr"] for c in grid["grid"]] == [0.01, 0.001, 0.003]
    assert resumed.cells == fresh.cells
    assert resumed.best.config.lr == fresh.best.config.lr == grid["chosen"]["lr"]
    assert all(torch.equal(v, fresh.best.best_state[k]) for k, v in resumed.best.best_state.items())

    # Progress written with other settings is not reused.
    write_json(partial, {"fingerprint": "other", "cells": grid["grid"], "best": None})
    calls.clear()
    monkeypatch.setattr(grid_mod, "fit", lambda *a, **k: calls.append(a[2].lr) or real_fit(*a, **k))
    grid_mod.grid_dataset(data_dir, "toy", config, "mf")
    assert calls == [0.01, 0.001, 0.003]


@pytest.mark.parametrize("protocol", ["zero-shot", "item-cf", "mask-modality"])
def test_evaluate_json_is_printed_and_written(prepared, protocol):
    data_dir, params = prepared
    res = run(
        "evaluate",
        "toy",
        "--features",
        "minilm-text",
        "--protocol",
        protocol,
        "--modality",
        "text",
        "--data-dir",
        str(data_dir),
        "--params",
        str(params),
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["protocol"] == protocol and obj["features"] == "minilm-text"
    assert obj["test"]["recall@20"] > 0.1  # informative cluster features
    path = data_dir / "toy" / "metrics" / f"eval-{protocol}-minilm-text.json"
    assert json.loads(path.read_text()) == obj
    if protocol == "mask-modality":
        assert obj["drop"]["test"]["recall@20"] > 0 and obj["n_masked"] == 30


def test_text_output_and_errors(prepared):
    data_dir, params = prepared
    res = run(
        "train", "toy", "--model", "pop", "--data-dir", str(data_dir), "--params", str(params)
    )
    assert res.exit_code == 0 and "trained pop on toy: best epoch 0 of 0" in res.stdout
    assert "recall@20=" in res.stdout
    res = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "toy",
            "--features",
            "nope",
            "--protocol",
            "zero-shot",
            "--data-dir",
            str(data_dir),
        ],
    )
    assert res.exit_code == 2
    assert "feature file" in res.output and "nope.parquet does not exist" in res.output
    res = CliRunner().invoke(
        cli, ["train", "missing", "--model", "pop", "--data-dir", str(data_dir)]
    )
    assert res.exit_code == 2 and "alignrec-data prepare missing" in res.output
    res = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "toy",
            "--features",
            "minilm-text",
            "--protocol",
            "mask-modality",
            "--modality",
            "image",
            "--data-dir",
            str(data_dir),
            "--params",
            str(params),
        ],
    )
    assert res.exit_code == 2 and "masking its image changes nothing" in res.output


def test_pipeline_commands_write_their_declared_outputs(prepared):
    # The commands dvc.yaml runs (itemknn@ and item-cf@ stages), nothing else written.
    data_dir, params = prepared
    common = ["toy", "--data-dir", str(data_dir), "--params", str(params)]
    res = CliRunner().invoke(
        cli, ["train", *common, "--model", "itemknn", "--features", "minilm-text"]
    )
    assert res.exit_code == 0, res.output
    args = ["evaluate", *common, "--features", "minilm-text", "--protocol", "item-cf"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    out = data_dir / "toy"
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert produced == [
        "features/minilm-text.parquet",
        "metrics/eval-item-cf-minilm-text.json",
        "metrics/history-itemknn-minilm-text.json",
        "metrics/train-itemknn-minilm-text.json",
        "models/itemknn-minilm-text.pt",
        "prepared/interactions.parquet",
    ]
    # itemknn trained by the harness == the item-cf evaluation of the same features
    trained = json.loads((out / "metrics/train-itemknn-minilm-text.json").read_text())
    evaluated = json.loads((out / "metrics/eval-item-cf-minilm-text.json").read_text())
    assert trained["test"] == evaluated["test"]


def test_repository_params_sections_load():
    from pathlib import Path

    from alignrec_data.config import load_section
    from alignrec_model.feature_eval import EvaluateConfig

    params = Path(__file__).resolve().parents[2] / "params.yaml"
    train = load_section(params, "train", TrainConfig)  # unknown keys would raise
    load_section(params, "evaluate", EvaluateConfig)
    assert train.valid_metric == "recall@20" and train.alignrec.embedding_dim > 0
