"""Extraction: the three MMEnc variants from a tiny pretrained checkpoint, missing images,
determinism, the CLI, and refusing foreign checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from alignrec_data.cli import cli
from alignrec_data.config import load_section
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.features import read_features
from alignrec_model.extract import ExtractConfig, extract
from alignrec_model.pretrain import CHECKPOINT_FILE, PretrainConfig, load_checkpoint, pretrain
from tests.encoder._data import synthetic_dataset, tiny_params

MM = ["alignrec", "mmenc-image", "mmenc-text"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("extract")
    paths, cats = synthetic_dataset(root / "data", n=16)
    params = tiny_params(root / "params.yaml", MM, grad_accum=2)
    pretrain(root / "data", "synth", load_section(params, "pretrain", PretrainConfig))
    return root / "data", params, cats


def test_three_mmenc_variants_and_missing_images(trained) -> None:
    data, params, _ = trained
    metrics = extract(data, "synth", load_section(params, "extract", ExtractConfig))
    feats = {v: read_features(data / "synth/features" / f"{v}.parquet") for v in MM}
    keys, joint, missing = feats["alignrec"]
    no_image = np.array([i % 5 == 4 for i in range(16)])
    assert joint.shape == (16, 32) and list(keys[:2]) == ["ITEM00000", "ITEM00001"]
    assert np.array_equal(missing, no_image) and np.array_equal(feats["mmenc-image"][2], no_image)
    assert not feats["mmenc-text"][2].any()
    text = feats["mmenc-text"][1]
    image = feats["mmenc-image"][1]
    # Without an image the AlignRec feature is the text-only output; with one it is not.
    np.testing.assert_allclose(joint[no_image], text[no_image], atol=1e-6)
    assert np.abs(joint[~no_image] - text[~no_image]).max() > 1e-3
    assert not image[no_image].any() and (np.abs(image[~no_image]).sum(1) > 0).all()
    assert metrics["variants"]["alignrec"] == {"dim": 32, "missing": 3}
    # Joint features of single items equal those computed in a batch (batch_size 5 vs 1).
    model_ckpt = load_checkpoint(data / "synth/models" / CHECKPOINT_FILE)
    assert model_ckpt["encoder_config"]["hidden"] == 32


def test_extraction_is_deterministic(trained) -> None:
    data, params, _ = trained
    cfg = load_section(params, "extract", ExtractConfig)
    extract(data, "synth", cfg)
    first = {v: (data / "synth/features" / f"{v}.parquet").read_bytes() for v in MM}
    extract(data, "synth", cfg)
    assert all(
        (data / "synth/features" / f"{v}.parquet").read_bytes() == b for v, b in first.items()
    )


def test_cli_extract_json_and_missing_checkpoint(trained, tmp_path: Path) -> None:
    data, params, _ = trained
    runner = CliRunner()
    res = runner.invoke(
        cli,
        ["extract", "synth", "--data-dir", str(data), "--params", str(params), "--format", "json"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["items"] == 16 and set(out["variants"]) == set(MM)
    synthetic_dataset(tmp_path / "d", n=8)
    res = runner.invoke(
        cli, ["extract", "synth", "--data-dir", str(tmp_path / "d"), "--params", str(params)]
    )
    assert res.exit_code == 2
    assert "mmenc.pt does not exist" in res.output and "alignrec-data pretrain" in res.output
    res = runner.invoke(cli, ["pretrain", "--help"])
    assert res.exit_code == 0 and "torchrun --nproc_per_node" in res.output


def test_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mmenc.pt"
    torch.save({"format": "something-else", "encoder": {}}, path)
    with pytest.raises(DataFormatError, match="not an alignrec-mmenc/1 checkpoint"):
        load_checkpoint(path)
    torch.save({"format": "alignrec-mmenc/1", "hook": print}, path)
    with pytest.raises(DataFormatError, match="weights-only"):
        load_checkpoint(path)
    with pytest.raises(UsageError, match="unknown"):
        extract(tmp_path, "x", ExtractConfig(variants=("alignrec", "clip")))
