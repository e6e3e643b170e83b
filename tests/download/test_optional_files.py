"""download fetches what prepare reads, --all-files the rest; a missing optional file is fine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from alignrec_data.cli import cli
from alignrec_data.download import download_dataset, raise_for_failures, verify_dataset
from alignrec_data.errors import DownloadError
from alignrec_data.lockfile import LOCK_NAME
from tests.download.conftest import FAST, gz_bytes

RATINGS = b"u1,i1,5.0,1400000000\nu2,i1,3.0,1400000001\n"


def _toy(make_spec, *, with_ratings: bool = True):
    reviews, meta = gz_bytes(200, 1), gz_bytes(150, 2)
    return make_spec(
        {
            "reviews": ("reviews_Toy_5.json.gz", reviews),
            "meta": ("meta_Toy.json.gz", meta),
            "ratings": ("ratings_Toy.csv", RATINGS),
        },
        hashes=with_ratings,
    )


def test_default_fetches_only_what_prepare_reads(make_spec, server, raw_dir):
    spec = _toy(make_spec)
    results = download_dataset(spec, raw_dir, config=FAST, progress=False)
    assert [(r.role, r.status) for r in results] == [("reviews", "fetched"), ("meta", "fetched")]
    assert server.requests_for("/ratings_Toy.csv") == []
    assert not (raw_dir / "ratings_Toy.csv").exists()
    assert set(json.loads((raw_dir / LOCK_NAME).read_text())["files"]) == {
        "reviews_Toy_5.json.gz",
        "meta_Toy.json.gz",
    }
    assert [r.role for r in verify_dataset(spec, raw_dir)] == ["reviews", "meta"]
    with pytest.raises(DownloadError, match=r"ratings_Toy\.csv is missing"):
        verify_dataset(spec, raw_dir, all_files=True)

    more = download_dataset(spec, raw_dir, config=FAST, progress=False, all_files=True)
    assert [r.status for r in more] == ["verified", "verified", "fetched"]
    assert (raw_dir / "ratings_Toy.csv").read_bytes() == RATINGS
    assert len(verify_dataset(spec, raw_dir, all_files=True)) == 3


def test_404_on_an_optional_file_is_reported_not_an_error(make_spec, server, server_root, raw_dir):
    spec = _toy(make_spec, with_ratings=False)
    (server_root / "ratings_Toy.csv").unlink()
    results = download_dataset(spec, raw_dir, config=FAST, progress=False, all_files=True)
    assert [r.status for r in results] == ["fetched", "fetched", "missing"]
    missing = results[2]
    assert "HTTP 404" in (missing.error or "") and missing.exception is None
    assert [r.status for r in server.requests_for("/ratings_Toy.csv")] == [404]  # no retries
    raise_for_failures(results)  # nothing to raise
    assert not (raw_dir / "ratings_Toy.csv").exists()
    assert "ratings_Toy.csv" not in json.loads((raw_dir / LOCK_NAME).read_text())["files"]
    assert sorted(p.name for p in raw_dir.iterdir() if p.name.startswith(".")) == []


def test_404_on_a_required_file_is_still_an_error(make_spec, server, server_root, raw_dir):
    spec = _toy(make_spec)
    (server_root / "meta_Toy.json.gz").unlink()
    results = download_dataset(spec, raw_dir, config=FAST, progress=False, all_files=True)
    assert [r.status for r in results] == ["fetched", "failed", "fetched"]
    with pytest.raises(DownloadError, match=r"meta_Toy\.json\.gz failed: HTTP 404"):
        raise_for_failures(results)


def test_other_errors_on_an_optional_file_stay_errors(make_spec, server, raw_dir):
    spec = _toy(make_spec, with_ratings=True)
    bad = spec.files[2].__class__("ratings", "ratings_Toy.csv", len(RATINGS), "0" * 64)
    spec = spec.__class__(**{**spec.__dict__, "files": (*spec.files[:2], bad)})
    results = download_dataset(spec, raw_dir, config=FAST, progress=False, all_files=True)
    assert results[2].status == "failed" and "checksum mismatch" in (results[2].error or "")


def _serve_beauty(server_root: Path) -> None:
    (server_root / "reviews_Beauty_5.json.gz").write_bytes(gz_bytes(50, 3))
    (server_root / "meta_Beauty.json.gz").write_bytes(gz_bytes(40, 4))


def test_cli_default_then_all_files_with_the_ratings_csv_absent(server, server_root, tmp_path):
    _serve_beauty(server_root)
    runner = CliRunner()
    out = tmp_path / "raw"
    base = ["download", "amazon2014-beauty", "--mirror", server.url, "--out", str(out)]
    res = runner.invoke(cli, [*base, "--no-progress"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("fetched           reviews_Beauty_5.json.gz")
    assert lines[1].startswith("fetched           meta_Beauty.json.gz")
    assert lines[2] == (
        "not fetched (optional, prepare does not read them): ratings_Beauty.csv; --all-files"
    )
    assert server.requests_for("/ratings_Beauty.csv") == []

    res = runner.invoke(cli, [*base, "--all-files", "--no-progress", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] is True and doc["all_files"] is True and doc["not_fetched"] == []
    assert [f["status"] for f in doc["files"]] == ["verified", "verified", "missing"]
    res = runner.invoke(cli, [*base, "--all-files", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "\nmissing           ratings_Beauty.csv  optional, not found at http" in res.stdout


def test_cli_alias_downloads_into_its_own_folder(server, server_root, tmp_path):
    (server_root / "reviews_Baby_5.json.gz").write_bytes(gz_bytes(30, 5))
    (server_root / "meta_Baby.json.gz").write_bytes(gz_bytes(20, 6))
    data = tmp_path / "data"
    args = ["download", "amazon-baby", "--mirror", server.url, "--data-dir", str(data)]
    res = CliRunner().invoke(cli, [*args, "--no-progress", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["dataset"] == "amazon-baby" and doc["alias_of"] == "amazon2014-baby"
    assert sorted(p.name for p in (data / "amazon-baby" / "raw").iterdir()) == [
        LOCK_NAME,
        "meta_Baby.json.gz",
        "reviews_Baby_5.json.gz",
    ]
