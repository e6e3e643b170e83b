"""`alignrec-data train --model freedom` end to end on amazon-mini: its real images and texts
through download, prepare, images and extract (EfficientNet-Lite0 and MiniLM features), then
FREEDOM on two variants and on one, against the popularity floor; and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from alignrec_data.cli import cli

DS = "amazon-mini"
EPOCHS = 8


def _run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """amazon-mini prepared with effnet-image and minilm-text features (about 90 s)."""
    root = tmp_path_factory.mktemp("freedom")
    data, params = root / "data", root / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "extract": {"variants": ["effnet-image", "minilm-text"], "num_threads": 1},
                "train": {"num_threads": 1},
            }
        )
    )
    common = ["--data-dir", data, "--params", params]
    for command in ("download", "prepare", "images", "extract"):
        extra = ["--no-progress"] if command == "download" else []
        res = _run(command, DS, *common, *extra)
        assert res.exit_code == 0, (command, res.output)
    return data, params


def _train(mini, *args: str) -> dict:
    data, params = mini
    res = _run("train", DS, *args, "--data-dir", data, "--params", params, "--format", "json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.slow
def test_freedom_on_image_and_text_and_on_text_alone_beats_popularity(mini):
    data, _ = mini
    metrics = data / DS / "metrics"
    pop = _train(mini, "--model", "pop")
    for features, run, widths in (
        ("effnet-image,minilm-text", "freedom-effnet-image+minilm-text", [1280, 384]),
        ("minilm-text", "freedom-minilm-text", [384]),
    ):
        out = _train(mini, "--model", "freedom", "--features", features, "--epochs", EPOCHS)
        written = json.loads((metrics / f"train-{run}.json").read_text())
        assert written == out
        assert out["model"] == "freedom" and out["features"] == run.removeprefix("freedom-")
        assert out["epochs"] == EPOCHS and 0 <= out["best_epoch"] < EPOCHS
        assert out["settings"]["freedom"]["dropout"] == 0.8  # MMRec's FREEDOM.yaml default
        assert out["settings"]["freedom"]["knn_k"] == 10
        assert out["test"]["recall@20"] > pop["test"]["recall@20"] + 0.05, (run, pop["test"])
        assert out["test"]["ndcg@20"] > pop["test"]["ndcg@20"]
        history = json.loads((metrics / f"history-{run}.json").read_text())
        assert [h["epoch"] for h in history] == list(range(EPOCHS))
        assert all(h["loss_modal_bpr"] > 0 and h["loss_bpr"] > 0 for h in history)
        state = torch.load(data / DS / "models" / f"{run}.pt", weights_only=True)
        assert state["features"] == out["features"] and state["n_items"] == 560
        tables = sorted(k for k in state["state_dict"] if k.startswith("features."))
        shapes = [tuple(state["state_dict"][k].shape) for k in tables]
        assert shapes == [(560, w) for w in widths]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "features", "message"),
    [
        ("freedom", "effnet-image,minilm-text,effnet-image", "expected one or two distinct"),
        ("freedom", "minilm-text,minilm-text", "expected one or two distinct"),
        (
            "freedom",
            "effnet-image,nope",
            "nope.parquet does not exist; run `alignrec-data",
        ),
        ("freedom", "effnet-image,../x", "feature variant '../x' is not a valid name"),
        ("alignrec", "effnet-image,minilm-text", "reads one feature variant, found the list"),
    ],
)
def test_bad_features_end_in_one_error_line_and_exit_2(mini, model, features, message):
    data, params = mini
    res = CliRunner().invoke(
        cli,
        ["train", DS, "--model", model, "--features", features]
        + ["--data-dir", str(data), "--params", str(params)],
    )
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], res.output
