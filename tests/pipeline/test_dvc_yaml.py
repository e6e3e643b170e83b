"""dvc.yaml against the code it runs: commands exist, code deps are package folders, and each
recommender stage lists exactly the params keys its models read (from the registry)."""

from __future__ import annotations

import re

import yaml

from alignrec_data.cli import cli
from alignrec_model.recommenders import param_keys
from tests.conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _body(stage: dict) -> dict:
    return stage.get("do", stage)


def test_every_stage_runs_an_alignrec_data_command() -> None:
    for name, stage in STAGES.items():
        cmd = " ".join(_body(stage)["cmd"].split())
        m = re.fullmatch(r"alignrec-data (\S+) .*--data-dir data( --params params.yaml)?", cmd)
        assert m, (name, cmd)
        assert m.group(1) in cli.commands, (name, m.group(1))


def test_code_deps_are_package_folders() -> None:
    for name, stage in STAGES.items():
        code = [d for d in _body(stage)["deps"] if not d.startswith("data/")]
        assert code and set(code) <= {"alignrec_data", "alignrec_model"}, (name, code)


def test_recommender_stages_list_exactly_the_keys_their_models_read() -> None:
    expected = {
        "train": param_keys("lightgcn", "mf"),
        "pop": param_keys("pop"),
        "alignrec": param_keys("alignrec"),
        "itemknn": param_keys("itemknn"),
        "freedom": param_keys("freedom"),
        "mask-modality": param_keys("alignrec", "itemknn"),  # evaluate.mask_model trains either
    }
    for name, keys in expected.items():
        listed = [p for p in _body(STAGES[name])["params"] if p.startswith("train")]
        assert listed == keys, name


def test_feature_evaluations_do_not_depend_on_train_params() -> None:
    for name in ("zero-shot", "item-cf"):
        params = STAGES[name]["params"]
        assert all(p.startswith("evaluate.") for p in params if p != "overrides.evaluate"), name
        assert "overrides.evaluate" in params, name
    for name in ("train", "pop"):  # ID-only runs read no feature file
        assert not any("features" in d for d in _body(STAGES[name])["deps"]), name


def test_params_runs_and_evaluations_name_known_models_and_stages() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert set(params["runs"]) == {"ids", "alignrec", "itemknn", "freedom"}
    assert set(params["runs"]["ids"]) <= {"lightgcn", "mf"}
    for run in params["runs"]["freedom"]:  # IMAGE+TEXT or one variant; `+` names the run's files
        assert "," not in run and 1 <= len(run.split("+")) <= 2, run
    assert set(params["evaluations"]) == {"zero_shot", "item_cf", "mask_modality"}


def test_freedom_stage_reads_its_features_and_writes_the_run_files_the_cli_names() -> None:
    from alignrec_model.runs import run_name

    body = _body(STAGES["freedom"])
    assert body["matrix"]["features"] == "${runs.freedom}"
    assert "--model freedom --features ${item.features}" in " ".join(body["cmd"].split())
    assert "data/${item.dataset}/features" in body["deps"]  # one or two files of that folder
    run = run_name("freedom", "${item.features}")
    assert f"data/${{item.dataset}}/models/{run}.pt" in body["outs"]
    assert any(f"metrics/train-{run}.json" in str(o) for o in body["outs"])


def test_every_stage_depends_on_the_overrides_of_the_sections_it_reads() -> None:
    """Settings per dataset (params.yaml `overrides.<section>.<dataset>`): a stage that reads a
    section also reads its overrides; DVC needs each listed key present in params.yaml."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for name, stage in STAGES.items():
        listed = _body(stage).get("params", [])
        sections = {  # `declared` (datasets of one's own) is a table of datasets, not settings
            p.split(".")[0] for p in listed if not p.startswith(("overrides", "declared"))
        }
        if "overrides" in listed:  # the release: every section (the card records them)
            continue
        expected = {f"overrides.{s}" for s in sections}
        assert {p for p in listed if p.startswith("overrides")} == expected, name
        for key in expected:
            assert key.split(".")[1] in params["overrides"], key
