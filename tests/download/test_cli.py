"""The `datasets` and `download` commands through click's CliRunner and as a real subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from alignrec_data.cli import cli
from alignrec_data.registry import get_dataset, list_datasets
from tests.conftest import REPO

MINI = REPO / "alignrec_data" / "mini"
MINI_FILES = ("reviews_Mini_5.json.gz", "meta_Mini.json.gz")


def _mini_present() -> bool:
    return all((MINI / n).is_file() for n in MINI_FILES)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("ALIGNREC_MIRROR", raising=False)
    monkeypatch.delenv("ALIGNREC_DATA_DIR", raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def mini_mirror(tmp_path: Path) -> Path:
    """A copy of the packaged amazon-mini files in a temporary folder (a local mirror)."""
    assert _mini_present(), "the packaged amazon-mini files are missing from alignrec_data/mini/"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for n in MINI_FILES:
        shutil.copy(MINI / n, mirror / n)
    return mirror


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_datasets_lists_ids_releases_and_local_state(runner, data_dir):
    res = runner.invoke(cli, ["datasets", "--data-dir", str(data_dir), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = {r["id"]: r for r in doc["datasets"]}
    assert set(rows) == {s.id for s in list_datasets(aliases=True)}
    assert rows["amazon-baby"]["alias_of"] == "amazon2014-baby"
    assert rows["amazon2014-baby"]["aliases"] == ["amazon-baby"]
    assert rows["amazon-baby"]["release"] == "2014"
    assert rows["amazon-baby"]["local"] == "absent"
    assert "McAuley" in rows["amazon-baby"]["citation"]

    raw = data_dir / "amazon-baby" / "raw"
    raw.mkdir(parents=True)
    (raw / "reviews_Baby_5.json.gz").write_bytes(b"x")
    res = runner.invoke(cli, ["datasets", "--data-dir", str(data_dir)])
    assert res.exit_code == 0
    baby = next(line for line in res.stdout.splitlines() if line.startswith("amazon-baby "))
    assert "2014" in baby and "partial" in baby and "alias of amazon2014-baby" in baby
    assert all(s.id in res.stdout for s in list_datasets(aliases=True))
    (raw / "meta_Baby.json.gz").write_bytes(b"x")  # the ratings CSV is optional
    res = runner.invoke(cli, ["datasets", "--data-dir", str(data_dir)])
    baby = next(line for line in res.stdout.splitlines() if line.startswith("amazon-baby "))
    assert "complete" in baby


def test_download_amazon_mini_then_second_run_fetches_nothing(runner, data_dir):
    args = ["download", "amazon-mini", "--data-dir", str(data_dir), "--no-progress"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["fetched", "fetched"]
    raw = data_dir / "amazon-mini" / "raw"
    spec = get_dataset("amazon-mini")
    for f in spec.files:
        assert _sha(raw / f.name) == _sha(MINI / f.name)
        if f.sha256:  # filled in once the generator has run
            assert _sha(raw / f.name) == f.sha256
    lock = json.loads((raw / "alignrec.lock.json").read_text())
    assert lock["files"]["meta_Mini.json.gz"]["url"] == "package:mini/meta_Mini.json.gz"

    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert [ln.startswith("already verified") for ln in lines[:2]] == [True, True]
    assert lines[-1] == "nothing fetched: all 2 files of amazon-mini already verified"


def test_download_from_http_mirror_as_json(runner, data_dir, mini_mirror, tmp_path):
    from tests.download.httpserver import FaultServer

    out = tmp_path / "elsewhere"
    with FaultServer(mini_mirror) as srv:
        res = runner.invoke(
            cli,
            [
                "download",
                "amazon-mini",
                "--mirror",
                srv.url,
                "--out",
                str(out),
                "--workers",
                "1",
                "--format",
                "json",
                "--no-progress",
                "--data-dir",
                str(data_dir),
            ],
        )
        assert res.exit_code == 0, res.output
        assert sorted(r.path for r in srv.requests) == sorted(f"/{n}" for n in MINI_FILES)
    doc = json.loads(res.stdout)
    assert doc["ok"] is True and doc["base_url"] == srv.url
    assert {f["status"] for f in doc["files"]} == {"fetched"}
    assert all(f["url"].startswith(srv.url) for f in doc["files"])
    assert _sha(out / "meta_Mini.json.gz") == _sha(mini_mirror / "meta_Mini.json.gz")
    assert not (data_dir / "amazon-mini").exists()  # --out wins over --data-dir


def test_unknown_dataset_is_usage_error_listing_ids(runner, data_dir):
    res = runner.invoke(cli, ["download", "amazon-nope", "--data-dir", str(data_dir)])
    assert res.exit_code == 2
    assert "unknown dataset id 'amazon-nope'; closest: amazon-mini" in res.stderr
    assert "run `alignrec-data datasets` to list all" in res.stderr
    assert res.stdout == ""


def test_failed_file_exits_nonzero_with_mirror_hint(runner, data_dir, tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    res = runner.invoke(
        cli,
        [
            "download",
            "amazon-mini",
            "--mirror",
            str(empty),
            "--data-dir",
            str(data_dir),
            "--no-progress",
        ],
    )
    assert res.exit_code == 1
    assert [ln.split()[0] for ln in res.stdout.splitlines()] == ["failed", "failed"]
    assert "Error:" in res.stderr and "does not exist" in res.stderr
    assert "Hint:" in res.stderr and "--mirror" in res.stderr


def test_params_section_is_read_and_checked(runner, data_dir, mini_mirror, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("download:\n  workers: 1\n  retries: 0\n  wokers: 3\n")
    res = runner.invoke(
        cli,
        [
            "download",
            "amazon-mini",
            "--mirror",
            str(mini_mirror),
            "--params",
            str(params),
            "--data-dir",
            str(data_dir),
        ],
    )
    assert res.exit_code == 2
    assert "unknown key(s) wokers" in res.stderr

    params.write_text("download:\n  workers: 1\n  retries: 0\n")
    res = runner.invoke(
        cli,
        [
            "download",
            "amazon-mini",
            "--mirror",
            str(mini_mirror),
            "--params",
            str(params),
            "--data-dir",
            str(data_dir),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output


def test_help_has_examples(runner):
    for cmd in ("download", "datasets"):
        res = runner.invoke(cli, [cmd, "--help"])
        assert res.exit_code == 0
        assert "Examples:" in res.stdout and f"alignrec-data {cmd}" in res.stdout
    res = runner.invoke(cli, ["download", "--help"])
    assert "\n    alignrec-data download amazon-mini\n" in res.stdout  # \b keeps the lines


def test_real_subprocess_results_on_stdout_logs_on_stderr(data_dir, mini_mirror):
    env = {**os.environ, "PYTHONPATH": str(REPO), "ALIGNREC_MIRROR": str(mini_mirror)}
    cmd = [
        sys.executable,
        "-m",
        "alignrec_data.cli",
        "download",
        "amazon-mini",
        "--data-dir",
        str(data_dir),
        "--format",
        "json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout is exactly one JSON document
    assert [f["status"] for f in doc["files"]] == ["fetched", "fetched"]
    assert "meta_Mini.json.gz" in proc.stderr  # progress bars and logs on stderr
    assert "INFO alignrec_data.download" in proc.stderr

    bad = subprocess.run(
        cmd[:4] + ["no-such-dataset"], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2
    assert bad.stdout == "" and "Error: unknown dataset id" in bad.stderr
