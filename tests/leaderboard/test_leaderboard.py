"""`alignrec-data leaderboard`: cell numbers, cache, resume after kill -9, table, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from alignrec_data.cli import cli
from alignrec_model.leaderboard import aggregate, build_leaderboard
from alignrec_model.leaderboard_cells import Cell, LeaderboardConfig
from alignrec_model.recommenders import MODELS
from tests.leaderboard.conftest import TRAIN, run_cli, write_variant


def invoke(*args: str) -> dict:
    """``alignrec-data ARGS --format json`` in this process; its JSON result."""
    result = CliRunner().invoke(cli, ["-q", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _board(root: Path) -> dict:
    return json.loads((root / "toy" / "leaderboard" / "leaderboard.json").read_text())


def _row(doc: dict, protocol: str, variant: str) -> dict:
    return next(r for r in doc["rows"] if r["protocol"] == protocol and r["variant"] == variant)


def _cell(root: Path, name: str) -> dict:
    return json.loads((root / "toy" / "leaderboard" / "cells" / name).read_text())


def test_cells_equal_what_train_and_evaluate_give(toy) -> None:
    data_dir, params = toy
    common = ["--data-dir", str(data_dir), "--params", str(params)]
    protocols = "zero-shot,item-cf,itemknn,alignrec,lightgcn,pop"
    board = invoke(
        "leaderboard", "toy", "--features", "clu-text", "--protocols", protocols, *common
    )
    assert board["n_cells"] == 6 and board["computed"] == 6
    for protocol in ("zero-shot", "item-cf"):
        ev = invoke("evaluate", "toy", "--features", "clu-text", "--protocol", protocol, *common)
        cell = _cell(data_dir, f"{protocol}__clu-text__det.json")
        assert cell["test"] == ev["test"] and cell["valid"] == ev["valid"]
        assert (
            _row(board, protocol, "clu-text")["test"]["recall@20"]["mean"]
            == ev["test"]["recall@20"]
        )
    for model, extra, name in (
        ("lightgcn", ["--seed", "7"], "lightgcn__ids__s7.json"),
        ("alignrec", ["--seed", "7", "--features", "clu-text"], "alignrec__clu-text__s7.json"),
        ("itemknn", ["--features", "clu-text"], "itemknn__clu-text__det.json"),
        ("pop", [], "pop__ids__det.json"),
    ):
        tr = invoke("train", "toy", "--model", model, *extra, *common)
        cell = _cell(data_dir, name)
        assert cell["test"] == tr["test"], model
        assert cell["valid"] == tr["valid"] and cell["best_epoch"] == tr["best_epoch"], model


def test_rerun_is_cached_and_a_changed_input_recomputes_only_its_cells(toy) -> None:
    data_dir, params = toy
    train, evaluate, board = _configs(params)
    board = LeaderboardConfig(seeds=(7,), protocols=("zero-shot", "item-cf", "lightgcn"))
    first = build_leaderboard(data_dir, "toy", train, evaluate, board, progress=False)
    assert (first["n_cells"], first["computed"]) == (5, 5)  # 2 variants x 2 + lightgcn
    again = build_leaderboard(data_dir, "toy", train, evaluate, board, progress=False)
    assert again["computed"] == 0 and again["rows"] == first["rows"]
    # New text features: only the two cells of clu-text run again.
    rng = np.random.default_rng(5)
    write_variant(data_dir, "clu-text", "text", rng.standard_normal((60, 16)).astype(np.float32))
    changed = build_leaderboard(data_dir, "toy", train, evaluate, board, progress=False)
    assert changed["computed"] == 2
    assert _row(changed, "zero-shot", "clu-image") == _row(first, "zero-shot", "clu-image")
    assert _row(changed, "zero-shot", "clu-text") != _row(first, "zero-shot", "clu-text")
    # Another item-cf neighbourhood: only the item-cf cells.
    evaluate = type(evaluate)(knn_k=3)
    assert (
        build_leaderboard(data_dir, "toy", train, evaluate, board, progress=False)["computed"] == 2
    )
    forced = build_leaderboard(data_dir, "toy", train, evaluate, board, force=True, progress=False)
    assert forced["computed"] == 5


def _configs(params: Path | None):
    from alignrec_data.config import load_section, load_settings
    from alignrec_model.feature_eval import EvaluateConfig
    from alignrec_model.train import TrainConfig

    return (
        load_settings(params, "train", TrainConfig, "toy"),
        load_settings(params, "evaluate", EvaluateConfig, "toy"),
        load_section(params, "leaderboard", LeaderboardConfig),
    )


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_table(toy, tmp_path: Path) -> None:
    data_dir, params = toy
    params.write_text(yaml.safe_dump({"train": {**TRAIN, "epochs": 6}}))
    twin = tmp_path / "twin"
    shutil.copytree(data_dir, twin)
    args = ["leaderboard", "toy", "--protocols", "lightgcn", "--seeds", "1,2,3,4,5,6",
            "--params", str(params)]  # fmt: skip
    run_cli(*args, "--data-dir", str(twin))  # uninterrupted
    cells = data_dir / "toy" / "leaderboard" / "cells"
    cmd = [sys.executable, "-m", "alignrec_data.cli", "-q", *args, "--data-dir", str(data_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(cells.glob("*.json")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in cells.glob("*.json"))
    assert 1 <= len(done) < 6, done  # killed mid-run
    assert not (data_dir / "toy" / "leaderboard" / "leaderboard.json").exists()
    kept = {name: (cells / name).stat().st_mtime_ns for name in done}
    out = json.loads(run_cli(*args, "--data-dir", str(data_dir), "--format", "json").stdout)
    assert out["computed"] == 6 - len(done)
    assert _board(data_dir)["rows"] == _board(twin)["rows"]  # identical numbers
    for name, mtime in kept.items():  # the cells of the killed run were kept, not recomputed
        assert (cells / name).stat().st_mtime_ns == mtime
        ours, theirs = _cell(data_dir, name), _cell(twin, name)
        assert ours.pop("seconds") > 0 and theirs.pop("seconds") > 0
        assert ours == theirs


def test_table_is_sorted_by_test_recall_and_marks_the_line_to_beat(toy) -> None:
    data_dir, params = toy
    train, evaluate, _ = _configs(params)
    protocols = ("zero-shot", "item-cf", "lightgcn", "pop")
    board = LeaderboardConfig(seeds=(7, 8), protocols=protocols)
    doc = build_leaderboard(data_dir, "toy", train, evaluate, board, progress=False)
    means = [r["test"]["recall@20"]["mean"] for r in doc["rows"]]
    assert means == sorted(means, reverse=True)
    assert [r["rank"] for r in doc["rows"]] == list(range(1, len(means) + 1))
    line = _row(doc, "lightgcn", "ids")
    assert line["n_seeds"] == 2 and line["seeds"] == [7, 8]
    seeds = [_cell(data_dir, f"lightgcn__ids__s{s}.json")["test"]["recall@20"] for s in (7, 8)]
    assert line["test"]["recall@20"]["mean"] == pytest.approx(statistics.mean(seeds))
    assert line["test"]["recall@20"]["std"] == pytest.approx(statistics.stdev(seeds))
    assert (line["test"]["recall@20"]["min"], line["test"]["recall@20"]["max"]) == (
        min(seeds),
        max(seeds),
    )
    assert _row(doc, "zero-shot", "clu-image")["n_seeds"] == 1  # deterministic: one run
    assert set(line["test"]) >= {"recall@5", "recall@50", "ndcg@10", "precision@20", "map@50"}
    md = (data_dir / "toy" / "leaderboard" / "leaderboard.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| #")]
    assert [ln.split(" | ")[1].strip("*") for ln in table] == [r["protocol"] for r in doc["rows"]]
    bold = [ln for ln in table if ln.startswith("| **")]
    assert len(bold) == 1 and "lightgcn" in bold[0] and "line to beat" in bold[0]
    assert "1 (deterministic)" in md and "floor (most popular)" in md
    png = data_dir / "toy" / "leaderboard" / "leaderboard.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((data_dir / "toy" / "metrics" / "leaderboard.json").read_text()) == _board(
        data_dir
    )


def test_aggregate_ties_and_use_for() -> None:
    variants = {v: _info(v, m) for v, m in (("a-image", "image"), ("b-text", "text"))}
    res = {"valid": {"recall@20": 0.1, "ndcg@20": 0.1}, "best_epoch": 1}
    results = [
        (Cell("zero-shot", ("a-image",)), {**res, "test": {"recall@20": 0.2, "ndcg@20": 0.1}}),
        (Cell("zero-shot", ("b-text",)), {**res, "test": {"recall@20": 0.2, "ndcg@20": 0.3}}),
        (Cell("lightgcn", (), 1), {**res, "test": {"recall@20": 0.1, "ndcg@20": 0.1}}),
        (Cell("lightgcn", (), 2), {**res, "test": {"recall@20": 0.3, "ndcg@20": 0.1}}),
    ]
    rows = aggregate(results, variants)
    assert [(r["protocol"], r["variant"]) for r in rows] == [
        ("zero-shot", "b-text"),  # same R@20 as a-image: NDCG@20 breaks the tie
        ("zero-shot", "a-image"),
        ("lightgcn", "ids"),
    ]
    assert (
        "best text features" in rows[0]["use_for"] and "best image features" in rows[1]["use_for"]
    )
    assert rows[2]["use_for"] == ["line to beat (ids only)"]


def _info(variant: str, modality: str):
    from alignrec_data.feature_info import FeatureInfo

    return FeatureInfo(variant, modality)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--features", "nope-image"],
            "unknown feature variant(s) nope-image for toy; found: clu-image, clu-text",
        ),
        (["--protocols", "zero-shot,bogus"], "leaderboard.protocols"),
        (["--seeds", "1,x"], "expected integers separated by commas"),
    ],
)
def test_bad_variant_protocol_or_seed_is_one_error_line_exit_2(toy, args, message) -> None:
    data_dir, params = toy
    result = CliRunner().invoke(
        cli, ["leaderboard", "toy", "--data-dir", str(data_dir), "--params", str(params), *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_settings_log_names_the_options_and_no_bar_off_a_terminal(toy) -> None:
    data_dir, params = toy
    args = ["leaderboard", "toy", "--data-dir", str(data_dir), "--params", str(params)]
    result = CliRunner().invoke(cli, [*args, "--protocols", "pop", "--seeds", "3"])
    assert result.exit_code == 0, result.output
    log = result.stderr
    assert "protocols=['pop'] [command line; not ['zero-shot', 'lightgcn', 'pop'] in" in log
    assert f"seeds=[3] [command line; not [7] in {params}:leaderboard]" in log
    assert "cell/s" not in log and "100%" not in log  # CliRunner's stderr is no terminal


def test_freedom_cells_follow_the_registry_and_pairs(toy) -> None:
    data_dir, params = toy
    train, evaluate, _ = _configs(params)
    board = LeaderboardConfig(
        seeds=(7,), protocols=("freedom",), pairs=(("clu-image", "clu-text"),)
    )
    doc = build_leaderboard(data_dir, "toy", train, evaluate, board, progress=False)
    if "freedom" not in MODELS:
        assert doc["rows"] == [] and any("freedom" in n for n in doc["notes"])
        return
    assert sorted(r["variant"] for r in doc["rows"]) == [
        "clu-image",
        "clu-image+clu-text",
        "clu-text",
    ]
    pair = _row(doc, "freedom", "clu-image+clu-text")
    assert pair["modality"] == "image+text"
    tr = invoke("train", "toy", "--model", "freedom", "--features", "clu-image,clu-text",
                "--seed", "7", "--data-dir", str(data_dir), "--params", str(params))  # fmt: skip
    assert pair["test"]["recall@20"]["mean"] == tr["test"]["recall@20"]


def test_report_and_card_show_the_leaderboard(toy) -> None:
    from alignrec_data.card import CardContext, _which_features
    from alignrec_model.report import build_report

    data_dir, params = toy
    train, evaluate, _ = _configs(params)
    board = LeaderboardConfig(seeds=(7,), protocols=("zero-shot", "pop"))
    doc = build_leaderboard(data_dir, "toy", train, evaluate, board, progress=False)
    root = data_dir / "toy"
    page = build_report(root, root / "report").read_text()
    assert "## Feature leaderboard" in page and doc["markdown"] in page
    assert (root / "report" / "figures" / "leaderboard.png").is_file()
    ctx = CardContext(
        "toy", None, [], 120, 60, None, {}, {"leaderboard": doc}, None, {}, "", {}, {}, None
    )
    section = _which_features(ctx)
    assert section.startswith("\n## Which features to use") and doc["markdown"] in section
    ctx.metrics = {}
    assert _which_features(ctx) == ""


def test_release_card_has_which_features_to_use(tmp_path: Path) -> None:
    from alignrec_data.release import ReleaseConfig, build_release
    from tests.release.fixtures import make_dataset

    data_dir = tmp_path / "data"
    make_dataset(data_dir)
    train, evaluate, _ = _configs(None)
    train = dataclasses.replace(train, topks=(5, 10, 20), epochs=3)  # 40 items: no K=50
    evaluate = dataclasses.replace(evaluate, topks=(5, 10, 20))
    board = LeaderboardConfig(seeds=(1,), protocols=("zero-shot", "lightgcn", "pop"))
    doc = build_leaderboard(data_dir, "amazon-mini", train, evaluate, board, progress=False)
    out = tmp_path / "release"
    build_release(data_dir, "amazon-mini", out, ReleaseConfig(repo_id="me/mini"))
    card = (out / "README.md").read_text(encoding="utf-8")
    section = card.split("## Which features to use", 1)[1].split("\n## ", 1)[0]
    assert doc["markdown"] in section
    assert "line to beat (ids only)" in section


def test_mask_modality_cell_equals_evaluate(toy) -> None:
    data_dir, params = toy
    common = ["--data-dir", str(data_dir), "--params", str(params)]
    board = invoke(
        "leaderboard", "toy", "--features", "clu-text", "--protocols", "mask-modality",
        "--seeds", "999", *common,
    )  # fmt: skip
    ev = invoke(
        "evaluate",
        "toy",
        "--features",
        "clu-text",
        "--protocol",
        "mask-modality",
        "--modality",
        "text",
        *common,
    )  # fmt: skip  (train.seed is 999: the same run)
    cell = _cell(data_dir, "mask-modality-text__clu-text__s999.json")
    assert cell["test"] == ev["test"] and cell["drop"] == ev["drop"]
    row = board["rows"][0]
    assert (row["protocol"], row["masked"], row["modality"]) == ("mask-modality", "text", "text")
    assert row["drop"]["recall@20"]["mean"] == ev["drop"]["test"]["recall@20"]
