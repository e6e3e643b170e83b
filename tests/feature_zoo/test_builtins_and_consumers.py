"""Built-ins re-expressed as kinds, rows of a subset of items, and the consumers of metadata.

Uses the embedded amazon-mini dataset (download / prepare / images take about 2 s) and the
real offline all-MiniLM-L6-v2; the H&M photos of ../shared/data when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from alignrec_data.card_provenance import VARIANT_DESCRIPTIONS, variant_description
from alignrec_data.cli import cli
from alignrec_data.config import load_section
from alignrec_data.errors import UsageError
from alignrec_data.export_features import variant_modality
from alignrec_data.features import read_features
from alignrec_data.paths import DatasetPaths
from alignrec_data.release_inputs import feature_meta
from alignrec_model.extract import ExtractConfig, extract
from alignrec_model.extractors import build_encoder, encode_entry, parse_entry, weights_sha256
from alignrec_model.feature_eval import mask_modality_features
from alignrec_model.hybrid import minilm_path
from tests.conftest import shared_data
from tests.encoder._data import hm_dataset
from tests.feature_zoo._models import tiny_clip


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> DatasetPaths:
    data = tmp_path_factory.mktemp("mini") / "data"
    for stage in ("download", "prepare", "images"):
        res = CliRunner().invoke(cli, [stage, "amazon-mini", "--data-dir", str(data)])
        assert res.exit_code == 0, res.output
    return DatasetPaths.of(data, "amazon-mini")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_clip(tmp_path_factory.mktemp("clip") / "clip")


def run(paths: DatasetPaths, tmp: Path, entries: list) -> dict:
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump({"extract": {"variants": entries, "num_threads": 1}}))
    return extract(
        paths.root.parent, paths.root.name, load_section(params, "extract", ExtractConfig)
    )


@pytest.mark.slow
def test_minilm_as_sentence_transformers_and_hf_text_entries(mini, tmp_path: Path) -> None:
    folder = str(minilm_path())
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "extract": {
                    "variants": [
                        "minilm-text",
                        {"name": "st-minilm", "kind": "sentence-transformers", "model": folder},
                        {"name": "hf", "kind": "hf-text", "model": folder, "normalize": True},
                    ]
                }
            }
        )
    )
    builtin, st, hf = load_section(params, "extract", ExtractConfig).entries()
    items = pd.read_parquet(mini.prepared / "items.parquet").iloc[::5]  # 112 real texts
    want = encode_entry(builtin, mini, items)["minilm-text"]
    got = encode_entry(st, mini, items)["st-minilm"]
    assert want[0].shape == (112, 384)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # Masked mean + L2 over transformers' BERT forward = sentence-transformers' MiniLM.
    np.testing.assert_allclose(encode_entry(hf, mini, items)["hf"][0], want[0], atol=1e-5)
    meta = build_encoder(builtin, mini).metadata("text", 384)["alignrec.feature"]
    assert (meta["kind"], meta["modality"], meta["pooling"]) == (
        "sentence-transformers",
        "text",
        "model",
    )
    assert meta["model"]["sha256"] == weights_sha256(minilm_path())


def test_rows_of_a_subset_equal_the_file_rows(mini, clip, tmp_path: Path) -> None:
    metrics = run(mini, tmp_path, [{"name": "clip", "kind": "hf-clip", "model": str(clip)}])
    assert metrics["items_with_image"] == 482 and metrics["variants"]["clip"]["missing"] == 78
    items = pd.read_parquet(mini.prepared / "items.parquet")
    part = items.iloc[[5, 100, 7, 300, 559]]  # any subset, any order (one worker's shard)
    entry = parse_entry({"name": "clip", "kind": "hf-clip", "model": str(clip), "batch_size": 2})
    rows = encode_entry(entry, mini, part)
    assert set(rows) == {"clip", "clip-image", "clip-text"}
    for variant, (matrix, missing) in rows.items():
        _, full, full_missing = read_features(mini.features / f"{variant}.parquet")
        np.testing.assert_allclose(matrix, full[part["item_id"]], atol=1e-5)
        np.testing.assert_array_equal(missing, full_missing[part["item_id"]])


def test_consumers_read_the_metadata(mini, clip, tmp_path: Path) -> None:
    run(mini, tmp_path, [{"name": "zoo", "kind": "hf-clip", "model": str(clip)}])
    feats = mini.features
    assert [variant_modality(v, feats) for v in ("zoo", "zoo-image", "zoo-text")] == [
        "fused",
        "image",
        "text",
    ]
    masked, ids = mask_modality_features("zoo", "image", feats, fraction=0.5, seed=3)
    _, text_only, _ = read_features(feats / "zoo-text.parquet")
    np.testing.assert_array_equal(masked[ids], text_only[ids])
    with pytest.raises(UsageError, match="computed from the image only"):
        mask_modality_features("zoo-image", "text", feats)
    desc = variant_description("zoo", feature_meta(feats / "zoo.parquet"))
    assert "Joint image+text feature (16-d) of the dual-tower (CLIP-style) model" in desc
    assert "L2-normalised sum" in desc and "without image `zoo-text`" in desc
    # Built-ins keep their texts; a built-in name written by another kind is described anew.
    assert variant_description("alignrec", None) == VARIANT_DESCRIPTIONS["alignrec"]
    other = {"alignrec.feature": {"kind": "hf-text", "modality": "text", "dim": 8}}
    assert variant_description("minilm-text", other).startswith("Text feature (8-d)")


@pytest.mark.shared_data
def test_real_hm_photos_through_the_clip_towers(clip, tmp_path: Path) -> None:
    paths, rows = hm_dataset(tmp_path / "data", shared_data("hm-sample"), extra_without_image=5)
    metrics = run(paths, tmp_path, [{"name": "clip", "kind": "hf-clip", "model": str(clip)}])
    assert metrics["items_with_image"] == 100
    _, img, missing = read_features(paths.features / "clip-image.parquet")
    assert missing.sum() == 5 and not img[missing].any()
    # Different real photos give different vectors (no constant output).
    assert len(np.unique(img[~missing].round(5), axis=0)) == 100
