"""Small synthetic datasets for the stage-2 tests (built in memory, no files unless asked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from alignrec_data.atomic import write_parquet
from alignrec_data.features import write_features
from alignrec_data.schema import INTERACTIONS_SCHEMA, SPLITS
from alignrec_model.data import InteractionData, from_arrays


def clustered(
    n_users: int = 240,
    n_items: int = 120,
    n_clusters: int = 6,
    per_user: int = 12,
    noise: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Users interact mostly inside their cluster's items; per-user 80/10/10 split.

    Returns:
        ``(users, items, splits, item_cluster)``; splits are the strings train/valid/test.
    """
    rng = np.random.default_rng(seed)
    item_cluster = np.arange(n_items) % n_clusters
    us, its, sps = [], [], []
    for u in range(n_users):
        c = u % n_clusters
        own = rng.choice(np.flatnonzero(item_cluster == c), per_user, replace=False)
        other = rng.choice(np.flatnonzero(item_cluster != c), noise, replace=False)
        items = rng.permutation(np.concatenate([own, other]))
        n = len(items)
        n_eval = max(1, n // 10)
        split = ["valid"] * n_eval + ["test"] * n_eval + ["train"] * (n - 2 * n_eval)
        us += [u] * n
        its += list(items)
        sps += split
    return np.array(us), np.array(its), np.array(sps), item_cluster


def clustered_data(**kwargs) -> tuple[InteractionData, np.ndarray]:
    """:func:`clustered` as InteractionData plus the item clusters."""
    users, items, splits, item_cluster = clustered(**kwargs)
    return from_arrays(users, items, splits, n_items=len(item_cluster)), item_cluster


def cluster_features(item_cluster: np.ndarray, dim: int = 16, noise: float = 0.3, seed: int = 1):
    """Features whose direction encodes each item's cluster (informative features)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((item_cluster.max() + 1, dim))
    f = centers[item_cluster] + noise * rng.standard_normal((len(item_cluster), dim))
    return f.astype(np.float32)


def write_prepared(data_dir: Path, dataset: str, users, items, splits) -> Path:
    """Write ``<data_dir>/<dataset>/prepared/interactions.parquet`` in the prepared schema."""
    n = len(users)
    table = pa.table(
        {
            "user_id": pa.array(np.asarray(users, dtype=np.int64)),
            "item_id": pa.array(np.asarray(items, dtype=np.int64)),
            "user_key": pa.array([f"u{u}" for u in users], pa.string()),
            "item_key": pa.array([f"i{i}" for i in items], pa.string()),
            "rating": pa.array(np.full(n, 5.0, dtype=np.float32)),
            "timestamp": pa.array(np.arange(n, dtype=np.int64)),
            "split": pa.array([str(s) for s in splits], pa.string()),
        },
        schema=INTERACTIONS_SCHEMA,
    )
    assert set(map(str, splits)) <= set(SPLITS)
    path = data_dir / dataset / "prepared" / "interactions.parquet"
    write_parquet(path, table)
    return path


def write_variant(data_dir: Path, dataset: str, variant: str, matrix: np.ndarray) -> Path:
    """Write ``features/<variant>.parquet`` for item ids 0..N-1."""
    path = data_dir / dataset / "features" / f"{variant}.parquet"
    write_features(path, [f"i{i}" for i in range(len(matrix))], matrix)
    return path
