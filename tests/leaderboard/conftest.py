"""A small prepared dataset with an image and a text feature variant (real parquet files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from alignrec_data.feature_info import feature_metadata
from alignrec_data.features import write_features
from tests.model_train._helpers import cluster_features, clustered, write_prepared

TRAIN = {
    "epochs": 3,
    "batch_size": 256,
    "lr": 0.01,
    "eval_batch_size": 64,
    "embedding_dim": 8,
    "alignrec": {"embedding_dim": 8, "knn_k": 5},
}


def write_variant(data_dir: Path, variant: str, modality: str, matrix: np.ndarray) -> Path:
    """``toy/features/<variant>.parquet`` with its modality in the schema metadata."""
    path = data_dir / "toy" / "features" / f"{variant}.parquet"
    meta = feature_metadata(variant, modality, "test", matrix.shape[1])
    write_features(path, [f"i{i}" for i in range(len(matrix))], matrix, metadata=meta)
    return path


@pytest.fixture
def toy(data_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """``(data_dir, params)``: dataset ``toy`` with ``clu-image`` and ``clu-text``."""
    users, items, splits, item_cluster = clustered(n_users=120, n_items=60, per_user=8)
    write_prepared(data_dir, "toy", users, items, splits)
    write_variant(data_dir, "clu-image", "image", cluster_features(item_cluster, seed=1))
    write_variant(data_dir, "clu-text", "text", cluster_features(item_cluster, noise=1.0, seed=2))
    params = tmp_path / "params.yaml"
    board = {"seeds": [7], "protocols": ["zero-shot", "lightgcn", "pop"]}
    params.write_text(yaml.safe_dump({"train": TRAIN, "leaderboard": board}))
    return data_dir, params


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``alignrec-data ARGS`` in a fresh interpreter (what a user runs)."""
    cmd = [sys.executable, "-m", "alignrec_data.cli", "-q", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done
