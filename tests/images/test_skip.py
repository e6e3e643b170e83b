"""``alignrec-data images --skip-images``: an images output without images that the later
stages (pretrain, extract) accept, and a rerun without the flag that fetches the skipped items."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from alignrec_data.cli import cli
from alignrec_data.features import read_features
from alignrec_data.images import load_image_index
from alignrec_data.paths import DatasetPaths
from tests.encoder._data import synthetic_dataset, tiny_params
from tests.images.helpers import jpeg_bytes, write_items
from tests.images.server import ImageServer, Reply

MM = ["alignrec", "mmenc-image", "mmenc-text"]


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGNREC_IMAGE_MIRROR", raising=False)
    monkeypatch.delenv("ALIGNREC_MIRROR", raising=False)


def invoke(*args: str | Path) -> dict:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout) if "json" in args else {"text": res.stdout}


def test_skip_images_then_pretrain_and_extract(tmp_path: Path) -> None:
    data = tmp_path / "data"
    paths, _ = synthetic_dataset(data, n=16)  # 13 items with an image URL, 3 without
    params = tiny_params(tmp_path / "params.yaml", MM)
    common = ["--data-dir", data, "--params", params]

    # --force: drop what the fixture stored, so the output holds no image at all.
    out = invoke("images", "synth", "--skip-images", "--force", *common, "--format", "json")
    assert out["skipped"] == 13 and out["fetched"] == 0 and out["requests"] == 0
    assert out["stats"]["reasons"] == {"no-url": 3, "skipped": 13}
    assert out["stats"]["n_with_image"] == 0 and out["stats"]["hosts"] == {}
    index = load_image_index(paths.images)
    assert len(index) == 16 and not index["has_image"].any()
    assert sorted(p.name for p in paths.images.iterdir()) == ["index.parquet", "stats.json"]

    invoke("pretrain", "synth", *common)
    metrics = invoke("extract", "synth", *common, "--format", "json")
    assert metrics["items"] == 16 and metrics["items_with_image"] == 0
    assert metrics["variants"]["mmenc-image"]["missing"] == 16
    _, feats, missing = read_features(data / "synth/features/alignrec.parquet")
    assert feats.shape[0] == 16 and missing.all() and np.isfinite(feats).all()


def test_skipped_items_are_fetched_by_the_next_run(data_dir: Path) -> None:
    paths = DatasetPaths.of(data_dir, "toy")
    common = ["--data-dir", data_dir]
    with ImageServer() as srv:
        a = srv.route("/a.jpg", Reply(body=jpeg_bytes((60, 60))))
        b = srv.route("/b.jpg", Reply(body=jpeg_bytes((50, 70))))
        write_items(paths.prepared, [[a]])
        invoke("images", "toy", *common)  # a is stored
        write_items(paths.prepared, [[a], [b]])
        srv.clear_log()
        res = invoke("images", "toy", "--skip-images", *common)
        assert srv.hits() == []
        assert "--skip-images: 1 items not fetched (reason skipped)" in res["text"]
        index = load_image_index(paths.images)
        assert index["has_image"].tolist() == [True, False]  # what was stored is kept
        assert index["reason"].tolist()[1] == "skipped"

        out = invoke("images", "toy", *common, "--format", "json")
        assert [h.path for h in srv.hits()] == ["/b.jpg"]
        assert out["fetched"] == 1 and out["stats"]["n_with_image"] == 2
