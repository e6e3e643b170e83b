"""Model sources: a pinned Hub id read from the local cache only, or a one-line error."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from alignrec_data.cli import cli
from alignrec_data.errors import UsageError
from alignrec_data.feature_info import feature_info
from alignrec_data.features import read_features
from alignrec_model.extractors import resolve_model, weights_sha256
from tests.encoder._data import synthetic_dataset
from tests.feature_zoo._models import tiny_bert

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cli_extract(data: Path, params: Path):
    res = CliRunner().invoke(
        cli, ["extract", "synth", "--data-dir", str(data), "--params", str(params)]
    )
    return res


def test_hub_id_not_in_the_cache_is_one_line_exit_2(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    synthetic_dataset(tmp_path / "data", n=4)
    entry = {"name": "bert", "kind": "hf-text", "model": "tiny-org/bert", "revision": "v1.0"}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"extract": {"variants": [entry]}}))
    res = cli_extract(tmp_path / "data", params)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip() and not ln.startswith("INFO ")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in res.output
    assert "tiny-org/bert at revision v1.0" in lines[0]
    assert "huggingface-cli download tiny-org/bert --revision v1.0" in lines[0]
    assert str(tmp_path / "hf" / "hub") in lines[0]
    assert not (tmp_path / "data/synth/features").exists()


def test_hub_id_without_revision_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs a pinned revision"):
        resolve_model("tiny-org/bert", "", "bert")
    with pytest.raises(UsageError, match=r"model folder \./nowhere/bert does not exist"):
        resolve_model("./nowhere/bert", "", "bert")


def test_a_cached_hub_id_is_read_offline_and_recorded(tmp_path: Path, monkeypatch) -> None:
    # The cache layout huggingface_hub writes: snapshots/<commit>/ and refs/<revision>.
    repo = tmp_path / "hf" / "hub" / "models--tiny-org--bert"
    tiny_bert(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "v1.0").write_text(COMMIT)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    synthetic_dataset(tmp_path / "data", n=6)
    entry = {"name": "bert", "kind": "hf-text", "model": "tiny-org/bert", "revision": "v1.0"}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"extract": {"variants": [entry], "num_threads": 1}}))
    res = cli_extract(tmp_path / "data", params)
    assert res.exit_code == 0, res.output
    path = tmp_path / "data/synth/features/bert.parquet"
    info = feature_info(path)
    assert info.model["id"] == "tiny-org/bert" and info.model["revision"] == COMMIT
    # The same folder given as a path gives the same rows.
    local = tmp_path / "local-bert"
    shutil.copytree(repo / "snapshots" / COMMIT, local)
    params.write_text(
        yaml.safe_dump(
            {"extract": {"variants": [{**entry, "model": str(local)}], "num_threads": 1}}
        )
    )
    before = read_features(path)[1]
    assert cli_extract(tmp_path / "data", params).exit_code == 0
    np.testing.assert_array_equal(read_features(path)[1], before)
    assert feature_info(path).model == {"path": str(local), "sha256": info.model["sha256"]}


def test_weights_sha256_combines_the_weight_files(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.safetensors").write_bytes(b"bbb")
    (folder / "sub" / "a.bin").write_bytes(b"aaa")
    (folder / "config.json").write_text("{}")  # not a weights file
    digest = {n: hashlib.sha256(d).hexdigest() for n, d in (("a", b"aaa"), ("b", b"bbb"))}
    lines = f"{digest['b']}  b.safetensors\n{digest['a']}  sub/a.bin\n"
    assert weights_sha256(folder) == hashlib.sha256(lines.encode()).hexdigest()
    assert weights_sha256(folder / "b.safetensors") == digest["b"]
