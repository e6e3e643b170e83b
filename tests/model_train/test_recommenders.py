"""The recommender registry: everything that lists models derives from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_model.recommenders import (
    FEATURE_MODELS,
    MODELS,
    RECOMMENDERS,
    build_model,
    get_spec,
    models_table,
)
from alignrec_model.train import TrainConfig
from tests.model_train._helpers import cluster_features, clustered_data

REPO = Path(__file__).resolve().parents[2]
#: Keys of the train section read by the loop, the grid and the run, not by one model.
LOOP_KEYS = {
    "features", "seed", "epochs", "batch_size", "lr", "lr_decay", "lr_decay_epochs", "patience",
    "valid_metric", "topks", "eval_batch_size", "grid_lr", "grid_cl", "grid_sim", "device",
    "num_threads",
}  # fmt: skip


def test_names_and_feature_models_come_from_the_table():
    assert MODELS == ("alignrec", "freedom", "lightgcn", "mf", "itemknn", "pop")
    assert FEATURE_MODELS == ("alignrec", "itemknn")
    assert all(spec.name == name for name, spec in RECOMMENDERS.items())


def test_every_model_key_of_the_train_section_belongs_to_a_registered_model():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    claimed = {k for spec in RECOMMENDERS.values() for k in spec.keys}
    assert claimed <= fields
    assert fields - LOOP_KEYS == claimed


@pytest.mark.parametrize("name", MODELS)
def test_build_model_builds_each_registered_model(name):
    from alignrec_model.base import Recommender

    data, clusters = clustered_data(n_users=30, n_items=60, per_user=6)
    cfg = TrainConfig(embedding_dim=4)
    feats = cluster_features(clusters, dim=8) if get_spec(name).uses_features else None
    if get_spec(name).multi_features:  # FREEDOM: (image, text)
        feats = (feats, cluster_features(clusters, dim=5, seed=2))
    assert isinstance(build_model(name, data, cfg, feats), Recommender)


def test_unknown_model_and_bad_features_are_refused():
    data, _ = clustered_data(n_users=20, n_items=60, per_user=6)
    with pytest.raises(UsageError, match=r"unknown model 'bpr'; expected one of alignrec, "):
        get_spec("bpr")
    with pytest.raises(UsageError, match="model 'alignrec' needs item features"):
        build_model("alignrec", data, TrainConfig())
    with pytest.raises(DataFormatError, match="features have 5 rows but the dataset has 60"):
        build_model("itemknn", data, TrainConfig(), np.ones((5, 4), dtype=np.float32))


def test_cli_choices_are_the_registry():
    from alignrec_data.cli import evaluate, train

    def choices(command, option):
        (param,) = [p for p in command.params if p.name == option]
        return tuple(param.type.choices)

    assert choices(train.command, "model") == MODELS
    assert choices(evaluate.command, "model") == FEATURE_MODELS


def test_docs_hold_the_generated_models_table():
    docs = (REPO / "docs" / "recommender.md").read_text()
    assert "\n".join(models_table()) in docs
