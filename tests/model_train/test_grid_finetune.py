"""The grid with joint encoder fine-tuning: every cell starts from the stage-1 encoder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from alignrec_data.config import load_section
from alignrec_model.extract import ExtractConfig, extract
from alignrec_model.grid import grid_dataset
from alignrec_model.pretrain import PretrainConfig, pretrain
from alignrec_model.train import TrainConfig, train_dataset
from tests.encoder._data import synthetic_dataset, tiny_params
from tests.model_train._helpers import write_prepared

N_ITEMS = 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grid-finetune")
    synthetic_dataset(root / "data", n=N_ITEMS)
    params = tiny_params(root / "params.yaml", ["alignrec"])
    pretrain(root / "data", "synth", load_section(params, "pretrain", PretrainConfig))
    extract(root / "data", "synth", load_section(params, "extract", ExtractConfig))
    rng = np.random.default_rng(0)
    users, items, splits = [], [], []
    for u in range(24):  # 4 items of one category (item % 4): 2 train, 1 valid, 1 test
        for k, i in enumerate(rng.permutation(np.arange(u % 4, N_ITEMS, 4))):
            users.append(u)
            items.append(int(i))
            splits.append("train" if k < 2 else ("valid" if k == 2 else "test"))
    write_prepared(root / "data", "synth", users, items, splits)
    return root / "data"


def test_each_cell_equals_a_single_run_with_its_settings(dataset: Path) -> None:
    base = TrainConfig(
        epochs=2, batch_size=32, device="cpu", num_threads=1, topks=(5, 10),
        valid_metric="recall@10", grid_lr=(0.01, 0.003), grid_cl=(0.01,), grid_sim=(0.1, 0.3),
    )  # fmt: skip
    config = dataclasses.replace(
        base,
        alignrec=dataclasses.replace(
            base.alignrec, embedding_dim=8, knn_k=3, finetune_encoder_layers=1, encoder_lr=1e-3
        ),
    )
    grid = grid_dataset(dataset, "synth", config, "alignrec", "alignrec")
    assert [(c["lr"], c["sim_weight"]) for c in grid.cells] == [
        (0.01, 0.1), (0.01, 0.3), (0.003, 0.1), (0.003, 0.3)
    ]  # fmt: skip
    for cell in grid.cells[1:]:  # the first cell gets a fresh encoder top either way
        single = dataclasses.replace(
            config,
            lr=cell["lr"],
            alignrec=dataclasses.replace(config.alignrec, sim_weight=cell["sim_weight"]),
        )
        result = train_dataset(dataset, "synth", single, "alignrec", "alignrec", write=False)
        assert (cell["valid"], cell["test"]) == (result.valid, result.test), cell
