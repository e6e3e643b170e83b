"""Loaders: numpy / torch with the id order guaranteed, cached loads, broken releases named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import alignrec_data
from alignrec_data import loaders
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.release import ReleaseConfig, build_release
from tests.release.fixtures import make_dataset


@pytest.fixture(scope="module")
def rel(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("data")
    b = make_dataset(
        data_dir, variants={"alignrec": 16, "effnet-image": 20, "minilm-text": 12}, extras=False
    )
    out = tmp_path_factory.mktemp("rel") / "release"
    build_release(data_dir, "amazon-mini", out, ReleaseConfig(shard_size_mb=0.002))
    return b, out


def test_load_features_numpy_and_torch(rel, tmp_path: Path) -> None:
    import torch

    b, out = rel
    x = alignrec_data.load_features(out, "alignrec", cache_dir=tmp_path)
    assert x.dtype == np.float32 and x.shape == (40, 16)
    np.testing.assert_array_equal(x, b.features["alignrec"])
    t, keys = alignrec_data.load_features(
        out, "effnet-image", return_type="torch", with_keys=True, cache_dir=tmp_path
    )
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), b.features["effnet-image"])
    assert keys == b.item_keys


def test_keys_follow_the_rows_when_shards_are_listed_out_of_id_order(rel, tmp_path: Path) -> None:
    import json

    from alignrec_data.release_layout import MANIFEST_NAME

    b, original = rel
    out = tmp_path / "release"
    shutil.copytree(original, out)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    train = manifest["configs"]["features-effnet-image"]["splits"]["train"]
    assert len(train["shards"]) > 1
    train["shards"].reverse()  # a release written by another tool: the last ids come first
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    x, keys = loaders.load_features(out, "effnet-image", with_keys=True, cache_dir=tmp_path)
    np.testing.assert_array_equal(x, b.features["effnet-image"])
    assert keys == b.item_keys


def test_cached_load_is_memory_mapped_and_skips_parquet(
    rel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    b, out = rel
    first = loaders.load_features(out, "minilm-text", cache_dir=tmp_path)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 1

    def no_parquet(*args, **kwargs):
        raise AssertionError("a cached load must not read the parquet shards")

    monkeypatch.setattr(loaders, "_read_feature_matrix", no_parquet)
    second = loaders.load_features(out, "minilm-text", cache_dir=tmp_path, return_type="torch")
    np.testing.assert_array_equal(second.numpy(), first)
    second[0, 0] = 123.0  # copy-on-write: writable, and the cache file is not changed
    again = loaders.load_features(out, "minilm-text", cache_dir=tmp_path)
    assert again[0, 0] == b.features["minilm-text"][0, 0]
    assert isinstance(second, torch.Tensor)


def test_unknown_variant_or_config_lists_what_exists(rel, tmp_path: Path) -> None:
    _, out = rel
    with pytest.raises(
        UsageError,
        match=r"no feature variant 'clip'.*feature variants: alignrec, effnet-image, minilm-text",
    ):
        loaders.load_features(out, "clip", cache_dir=tmp_path)
    with pytest.raises(
        UsageError, match=r"interactions have no split 'dev'; splits: train, validation, test"
    ):
        loaders.load_interactions(out, "dev")
    with pytest.raises(UsageError, match="is not a release folder"):
        loaders.load_features(tmp_path, "alignrec")
    with pytest.raises(UsageError, match="neither an existing folder nor a Hub repo id"):
        loaders.load_features(str(tmp_path / "nope"), "alignrec")
    with pytest.raises(UsageError, match="return_type 'jax' is not one of numpy, torch"):
        loaders.load_features(out, "alignrec", return_type="jax")


def test_missing_or_corrupt_shard_is_named(rel, tmp_path: Path) -> None:
    _, out = rel
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    shard = sorted((broken / "features-alignrec").glob("*.parquet"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=rf"shard features-alignrec/{shard.name} is corrupt"):
        loaders.load_features(broken, "alignrec", cache_dir=tmp_path / "c")
    shard.unlink()
    with pytest.raises(DataFormatError, match=rf"shard features-alignrec/{shard.name} is missing"):
        loaders.load_features(broken, "alignrec", cache_dir=tmp_path / "c")
    # Without the manifest nothing can be verified: every loader refuses the folder.
    (broken / "alignrec_release.json").unlink()
    no_manifest = r"has no alignrec_release.json .* rebuild it with `alignrec-data release"
    with pytest.raises(DataFormatError, match=no_manifest):
        loaders.load_features(broken, "effnet-image", cache_dir=tmp_path / "c")
    with pytest.raises(DataFormatError, match=no_manifest):
        loaders.load_interactions(broken, "train")
    with pytest.raises(DataFormatError, match=no_manifest):
        loaders.load_items(broken)
    with pytest.raises(DataFormatError, match=no_manifest):
        loaders.open_release(broken)
    # A manifest that is not one is named, not a KeyError.
    (broken / "alignrec_release.json").write_text('{"configs": {"items": {"splits": 3}}}')
    with pytest.raises(DataFormatError, match=r"config 'items' has no `splits` mapping"):
        loaders.load_items(broken)
    (broken / "alignrec_release.json").write_bytes(b"\xff\x00 not json")
    with pytest.raises(DataFormatError, match=r"alignrec_release.json is not readable JSON"):
        loaders.load_items(broken)


def test_load_interactions_and_items(rel) -> None:
    import torch

    b, out = rel
    split = np.asarray(b.interactions.column("split").to_pylist())
    train = loaders.load_interactions(out, "train")
    assert set(train) == {"user_id", "item_id", "rating", "timestamp"}
    np.testing.assert_array_equal(
        train["item_id"], b.interactions.column("item_id").to_numpy()[split == "train"]
    )
    assert train["rating"].dtype == np.float32
    valid = loaders.load_interactions(out, "valid", return_type="torch")
    assert (
        isinstance(valid["user_id"], torch.Tensor)
        and len(valid["user_id"]) == (split == "valid").sum()
    )
    both = loaders.load_interactions(out)
    assert np.bincount(both["x_label"]).tolist() == [
        (split == s).sum() for s in ("train", "valid", "test")
    ]
    df = loaders.load_interactions(out, "test", return_type="pandas")
    assert isinstance(df, pd.DataFrame) and set(df["user_key"]) <= set(b.user_keys)
    items = loaders.load_items(out)
    assert (
        items["item_id"].tolist() == list(range(40)) and items["item_key"].tolist() == b.item_keys
    )
