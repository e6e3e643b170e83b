"""Settings per dataset: defaults < packaged per-dataset < params section < overrides < CLI.

``alignrec_data.config.load_settings`` (every command that takes a DATASET) and what the
pipeline and the results make of it: DVC stages depend on ``overrides.<section>``, train's and
evaluate's metrics JSON record the settings used, amazon-mini keeps its short CPU runs and any
other dataset trains at the spec's settings.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from alignrec_data import config as config_module
from alignrec_data.cli import cli
from alignrec_data.config import load_settings, packaged_settings
from alignrec_data.errors import UsageError
from tests.conftest import REPO


@dataclass(frozen=True)
class Inner:
    k: int = 10
    w: float = 0.1


@dataclass(frozen=True)
class Section:
    lr: float = 1e-3
    epochs: int = 1000
    patience: int = 30
    ks: tuple[int, ...] = (5, 10)
    inner: Inner = field(default_factory=Inner)


PACKAGED = {"train": {"mini": {"lr": 0.005, "epochs": 60}}}


@pytest.fixture
def packaged(monkeypatch):
    """Packaged per-dataset defaults of the toy section (the real file is checked below)."""
    monkeypatch.setattr(config_module, "packaged_settings", lambda: PACKAGED)


def _params(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_resolution_order_each_layer_over_the_one_before(tmp_path, packaged):
    # defaults only: a dataset without packaged entry and no params file
    assert load_settings(None, "train", Section, "real") == Section()
    # packaged per-dataset defaults over the dataclass defaults
    assert load_settings(None, "train", Section, "mini") == Section(lr=0.005, epochs=60)
    # the params section over the packaged defaults, for every dataset
    p = _params(tmp_path, {"train": {"epochs": 7, "ks": [1, 2]}})
    assert load_settings(p, "train", Section, "mini") == Section(lr=0.005, epochs=7, ks=(1, 2))
    assert load_settings(p, "train", Section, "real") == Section(epochs=7, ks=(1, 2))
    # the dataset's override over the section
    p = _params(
        tmp_path,
        {"train": {"epochs": 7, "lr": 0.002}, "overrides": {"train": {"mini": {"epochs": 3}}}},
    )
    assert load_settings(p, "train", Section, "mini") == Section(lr=0.002, epochs=3)
    # the command line over everything; None means "not given"
    got = load_settings(p, "train", Section, "mini", given={"epochs": 2, "lr": None})
    assert got == Section(lr=0.002, epochs=2)


def test_an_override_does_not_leak_to_another_dataset_or_section(tmp_path, packaged):
    p = _params(
        tmp_path,
        {
            "train": {"lr": 0.002},
            "overrides": {"train": {"a": {"lr": 0.01, "inner": {"k": 3}}}, "evaluate": {}},
        },
    )
    assert load_settings(p, "train", Section, "a") == Section(lr=0.01, inner=Inner(k=3))
    assert load_settings(p, "train", Section, "b") == Section(lr=0.002)
    assert load_settings(p, "evaluate", Section, "a") == Section()  # only overrides.train.a
    # an id declared later (not in `datasets`, no folder) is fine
    p = _params(tmp_path, {"overrides": {"train": {"not-yet-declared": {"lr": 0.3}}}})
    assert load_settings(p, "train", Section, "b") == Section()


def test_nested_sections_merge_key_by_key(tmp_path, packaged):
    p = _params(
        tmp_path,
        {"train": {"inner": {"k": 4}}, "overrides": {"train": {"a": {"inner": {"w": 0.5}}}}},
    )
    assert load_settings(p, "train", Section, "a").inner == Inner(k=4, w=0.5)


@pytest.mark.parametrize(
    ("doc", "pattern"),
    [
        (
            {"overrides": {"train": {"a": {"lrr": 0.1}}}},
            r"params.yaml:overrides.train.a: unknown key\(s\) lrr; known keys are",
        ),
        (  # another dataset's typo is an error now, not when that dataset runs
            {"overrides": {"train": {"other": {"inner": {"kk": 1}}}}},
            r"params.yaml:overrides.train.other.inner: unknown key\(s\) kk",
        ),
        (
            {"overrides": {"train": {"a": {"epochs": "many"}}}},
            r"params.yaml:overrides.train.a.epochs: expected int, found 'many'",
        ),
        (
            {"overrides": {"trian": {"a": {"lr": 0.1}}}},
            r"params.yaml:overrides: unknown section\(s\) trian; .*overrides.<section>.<dataset>",
        ),
        (
            {"overrides": {"train": ["a"]}},
            r"params.yaml:overrides.train: expected a mapping of dataset ids",
        ),
        (
            {"overrides": {"train": {"a": [1]}}},
            r"params.yaml:overrides.train.a: expected a mapping, found list",
        ),
        ({"train": {"learning_rate": 0.1}}, r"params.yaml:train: unknown key\(s\) learning_rate"),
    ],
    ids=[
        "unknown-key",
        "other-dataset",
        "wrong-type",
        "unknown-section",
        "list",
        "not-mapping",
        "section",
    ],
)
def test_bad_overrides_are_rejected_naming_the_place(tmp_path, packaged, doc, pattern):
    p = _params(tmp_path, doc)
    with pytest.raises(UsageError, match=pattern):
        load_settings(p, "train", Section, "a")


def test_a_range_error_names_the_override_that_applied(tmp_path):
    from alignrec_model.train import TrainConfig

    p = _params(tmp_path, {"overrides": {"train": {"baby": {"lr": -1.0}}}})
    with pytest.raises(
        UsageError, match=r"overrides.train.baby\): train.lr = -1.0 is out of range"
    ):
        load_settings(p, "train", TrainConfig, "baby")
    assert load_settings(p, "train", TrainConfig, "mini").lr == 1e-3  # not applied elsewhere


def test_the_log_says_which_settings_apply_and_where_they_come_from(tmp_path, packaged, caplog):
    p = _params(tmp_path, {"train": {"lr": 0.002}, "overrides": {"train": {"mini": {"epochs": 3}}}})
    with caplog.at_level(logging.INFO, logger="alignrec_data.config"):
        load_settings(p, "train", Section, "mini", given={"patience": 5})
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("train settings for mini: ")
    assert f"epochs=3 [{p}:overrides.train.mini; not 60 in packaged" in line
    assert f"lr=0.002 [{p}:train; not 0.005 in packaged" in line
    assert "patience=5 [command line]" in line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alignrec_data.config"):
        load_settings(None, "train", Section, "real")
    assert caplog.records[0].getMessage() == (
        "train settings for real: lr=0.001, epochs=1000, patience=30; every key at its default"
    )


# --- the repository's settings --------------------------------------------------------------


def test_packaged_settings_are_valid_and_only_shorten_amazon_mini():
    from alignrec_model.train import TrainConfig

    table = packaged_settings()
    assert set(table) <= set(config_module.SETTINGS_SECTIONS)
    assert table == {"train": {"amazon-mini": {"lr": 0.005, "epochs": 60, "patience": 10}}}
    mini = load_settings(None, "train", TrainConfig, "amazon-mini")
    assert (mini.lr, mini.epochs, mini.patience) == (0.005, 60, 10)


def test_repository_params_give_real_data_the_spec_and_amazon_mini_its_short_runs():
    from alignrec_model.train import TrainConfig

    params = REPO / "params.yaml"
    spec = TrainConfig()  # the dataclass defaults are the spec / MMRec rules
    assert (spec.lr, spec.epochs, spec.patience) == (1e-3, 1000, 30)
    assert spec.grid_lr == (5e-3, 3e-3, 1e-3, 7e-4, 5e-4, 3e-4, 1e-4)
    for real in ("amazon-baby", "amazon2018-gift-cards", "my-own-data"):
        cfg = load_settings(params, "train", TrainConfig, real)
        assert (cfg.lr, cfg.epochs, cfg.patience) == (1e-3, 1000, 30), real
        assert cfg.grid_lr == spec.grid_lr and cfg.grid_cl == spec.grid_cl
    mini = load_settings(params, "train", TrainConfig, "amazon-mini")
    assert (mini.lr, mini.epochs, mini.patience) == (0.005, 60, 10)
    # params.yaml restates the packaged amazon-mini entry: without a params file it is the same
    doc = yaml.safe_load(params.read_text(encoding="utf-8"))
    assert doc["overrides"]["train"]["amazon-mini"] == packaged_settings()["train"]["amazon-mini"]
    # DVC needs every key a stage lists: each section's overrides is present ({} = none)
    assert set(doc["overrides"]) == set(config_module.SETTINGS_SECTIONS)


# --- what the commands record ----------------------------------------------------------------


@pytest.fixture
def toy(data_dir, tmp_path):
    from tests.model_train._helpers import (
        cluster_features,
        clustered,
        write_prepared,
        write_variant,
    )

    users, items, splits, item_cluster = clustered(n_users=120, n_items=60, per_user=8)
    for ds in ("toy", "other"):
        write_prepared(data_dir, ds, users, items, splits)
    write_variant(data_dir, "toy", "minilm-text", cluster_features(item_cluster))
    params = _params(
        tmp_path,
        {
            "train": {"epochs": 3, "lr": 0.01, "batch_size": 256, "eval_batch_size": 64},
            "evaluate": {"batch_size": 64, "mask_model": "itemknn"},
            "overrides": {
                "train": {"toy": {"lr": 0.02, "epochs": 4, "embedding_dim": 8}},
                "evaluate": {"toy": {"knn_k": 5}},
            },
        },
    )
    return data_dir, params


def _run(*args: str) -> dict:
    res = CliRunner().invoke(cli, [*args, "--format", "json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_train_records_the_settings_used_and_the_command_line_wins(toy):
    data_dir, params = toy
    common = ("--data-dir", str(data_dir), "--params", str(params))
    out = _run("train", "toy", "--model", "mf", "--epochs", "2", *common)
    written = json.loads((data_dir / "toy/metrics/train-mf.json").read_text())
    assert written["settings"] == out["settings"]
    s = out["settings"]
    assert (s["lr"], s["epochs"], s["embedding_dim"]) == (0.02, 2, 8)  # override, then --epochs
    assert s["alignrec"]["embedding_dim"] == 64 and s["batch_size"] == 256
    assert out["epochs"] == 2 and out["lr"] == 0.02
    other = _run("train", "other", "--model", "mf", *common)["settings"]
    assert (other["lr"], other["epochs"], other["embedding_dim"]) == (0.01, 3, 64)


def test_evaluate_records_the_settings_used(toy):
    data_dir, params = toy
    common = ("--data-dir", str(data_dir), "--params", str(params))
    out = _run("evaluate", "toy", "--features", "minilm-text", "--protocol", "item-cf", *common)
    assert out["settings"]["evaluate"]["knn_k"] == 5 and "train" not in out["settings"]
    out = _run(
        "evaluate", "toy", "--features", "minilm-text", "--protocol", "mask-modality",
        "--modality", "text", *common,
    )  # fmt: skip
    s = out["settings"]
    assert s["evaluate"]["mask_modality"] == "text" and s["evaluate"]["mask_model"] == "itemknn"
    assert (s["train"]["lr"], s["train"]["epochs"]) == (0.02, 4)
    written = json.loads((data_dir / "toy/metrics/eval-mask-modality-minilm-text.json").read_text())
    assert written["settings"] == s


def test_the_card_shows_the_settings_of_each_run():
    from alignrec_data.card_metrics import evaluation_section
    from alignrec_data.config import to_dict
    from alignrec_model.train import TrainConfig

    test = {"recall@20": 0.07, "ndcg@20": 0.03}
    runs = {
        "train-lightgcn": {"model": "lightgcn", "features": None, "best_epoch": 9,
                           "test": test, "settings": to_dict(TrainConfig())},
        "train-alignrec-minilm-text": {"model": "alignrec", "features": "minilm-text",
                                       "best_epoch": 3, "test": test,
                                       "settings": to_dict(TrainConfig(lr=0.005, epochs=60))},
        "train-pop": {"model": "pop", "features": None, "best_epoch": 0, "test": test},
    }  # fmt: skip
    text = evaluation_section(runs)
    assert "Settings each run used" in text
    header = (
        "| model | features | lr | max epochs | patience | batch_size | seed | valid_metric "
        "| alignrec.cl_weight | alignrec.sim_weight |"
    )
    assert header in text
    assert "| lightgcn | `—` | 0.001 | 1000 | 30 | 2048 | 999 | recall@20 | — | — |" in text
    assert (
        "| alignrec | `minilm-text` | 0.005 | 60 | 30 | 2048 | 999 | recall@20 | 0.01 | 0.1 |"
        in text
    )
    assert "<details><summary>All train settings per run</summary>" in text
    assert '"grid_lr": [0.005, 0.003' in text
    assert "| pop |" not in text.split("Settings each run used")[1]  # an old file: no settings


# --- DVC: a stage depends on overrides.<its section> ------------------------------------------


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_dvc_reruns_the_stages_of_the_changed_overrides_section(tmp_path):
    """``-S overrides.train.x.lr=`` reruns the train stages (of every dataset: DVC cannot depend
    on ``overrides.train.x`` alone, since a dataset without an entry would be a missing key),
    never the download stages; ``+`` adds an entry that is not in the file yet."""
    dvc = [sys.executable, "-m", "dvc"]  # a required dependency: run it, never skip
    repo = tmp_path / "r"
    repo.mkdir()
    _git(repo, "init", "-q")
    subprocess.run([*dvc, "init", "-q"], cwd=repo, check=True)
    (repo / "params.yaml").write_text(
        "datasets: [x, y]\ndownload: {a: 1}\ntrain: {lr: 0.001}\n"
        "overrides:\n  download: {}\n  train:\n    x: {lr: 0.005}\n"
    )
    (repo / "dvc.yaml").write_text(
        "stages:\n"
        "  download:\n    foreach: ${datasets}\n    do:\n"
        "      cmd: echo ${item} > dl-${item}.txt\n"
        "      params: [download, overrides.download]\n      outs: ['dl-${item}.txt']\n"
        "  train:\n    foreach: ${datasets}\n    do:\n"
        "      cmd: cat params.yaml > tr-${item}.txt\n"
        "      params: [train.lr, overrides.train]\n      outs: ['tr-${item}.txt']\n"
    )

    def exp(*sets: str) -> str:
        args = [a for s in sets for a in ("-S", s)]
        proc = subprocess.run([*dvc, "exp", "run", *args], cwd=repo, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    subprocess.run([*dvc, "repro", "-q"], cwd=repo, check=True)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "init")
    out = exp("overrides.train.x.lr=0.003")
    assert "Running stage 'train@x'" in out and "Running stage 'train@y'" in out
    assert "Running stage 'download@" not in out
    out = exp("+overrides.train.y.lr=0.002")  # a new entry needs Hydra's `+`
    assert "Running stage 'train@y'" in out and "Running stage 'download@" not in out
    out = exp("+overrides.download.x.a=2")
    assert "Running stage 'download@x'" in out and "Running stage 'train@" not in out
    # Why every overrides.<section> key stays in params.yaml: DVC refuses a missing one.
    (repo / "params.yaml").write_text("datasets: [x, y]\ndownload: {a: 1}\ntrain: {lr: 0.001}\n")
    proc = subprocess.run([*dvc, "repro"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode != 0 and "are missing from 'params.yaml'" in proc.stdout + proc.stderr
