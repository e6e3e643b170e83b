"""``prepare`` end to end on the embedded amazon-mini raw files, through the CLI."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from alignrec_data.cli import cli
from alignrec_data.errors import ChecksumError
from alignrec_data.prepare import PrepareConfig, prepare_dataset
from alignrec_data.registry import get_dataset
from scripts.amazon_mini import MINI_DIR, REVIEWS_FILE, generate_amazon_mini
from tests.mini.test_mini import five_core

FILES = ("interactions.parquet", "items.parquet", "users.parquet", "stats.json")


@pytest.fixture(scope="module")
def mini_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """amazon-mini's raw files, fetched by `download` from the package (or generated)."""
    raw = tmp_path_factory.mktemp("mini") / "raw"
    if (MINI_DIR / REVIEWS_FILE).is_file():
        from alignrec_data.download import download_dataset, raise_for_failures

        raise_for_failures(download_dataset("amazon-mini", raw, progress=False))
    else:  # the package copy is not built yet in this checkout: generate the same files
        generate_amazon_mini(raw, seed=0)
    return raw


def _run(data_dir: Path, raw: Path, params: Path, *args: str) -> dict:
    target = data_dir / "amazon-mini" / "raw"
    if not target.exists():
        shutil.copytree(raw, target)
    res = CliRunner().invoke(
        cli,
        [
            "prepare",
            "amazon-mini",
            "--data-dir",
            str(data_dir),
            "--params",
            str(params),
            "--format",
            "json",
            *args,
        ],
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _hashes(folder: Path) -> dict[str, str]:
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in FILES}


def _params(tmp_path: Path, name: str, **prepare: object) -> Path:
    p = tmp_path / name
    p.write_text("prepare:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in prepare.items()))
    return p


def test_prepare_amazon_mini_end_to_end(tmp_path: Path, mini_raw: Path) -> None:
    params = _params(tmp_path, "p.yaml", seed=11)
    stats = _run(tmp_path / "a", mini_raw, params)
    # Independent count: plain json + an independent k-core (tests/mini).
    first: dict[tuple[str, str], int] = {}
    with gzip.open(mini_raw / REVIEWS_FILE, "rt") as f:
        rows = [json.loads(line) for line in f]
    for r in rows:
        key = (r["reviewerID"], r["asin"])
        first[key] = min(first.get(key, r["unixReviewTime"]), r["unixReviewTime"])
    core = five_core(set(first), 5)
    assert stats["steps"][0]["interactions"] == len(rows)
    assert stats["steps"][1]["interactions"] == len(first)
    assert stats["interactions"] == len(core)
    assert stats["users"] == len({u for u, _ in core}) and stats["items"] == len(
        {i for _, i in core}
    )
    assert stats["bad_lines"]["reviews"]["bad_lines"] == 0
    prepared = tmp_path / "a" / "amazon-mini" / "prepared"
    inter = pq.read_table(prepared / "interactions.parquet").to_pandas()
    assert set(zip(inter.user_key, inter.item_key, strict=True)) == set(core)
    assert (
        inter.timestamp
        == [first[(u, i)] for u, i in zip(inter.user_key, inter.item_key, strict=True)]
    ).all()
    # Every user's split sizes follow the MMRec rule.
    for n, g in inter.groupby("user_id").split:
        tot = (2 * len(g)) // 10
        want = (len(g) - 2, 1, 1) if len(g) < 10 else (len(g) - tot, tot // 2, tot - tot // 2)
        assert tuple((g == s).sum() for s in ("train", "valid", "test")) == want, n
    items = pq.read_table(prepared / "items.parquet").to_pandas()
    assert items.item_id.tolist() == list(range(stats["items"]))
    assert items.item_key.tolist() == sorted(items.item_key)
    assert not items.text.str.contains("<|&amp;", regex=True).any()
    assert (items.text.str.len() > 20).all()
    assert 0 < stats["missing_image_url_rate"] < 0.2
    users = pq.read_table(prepared / "users.parquet").to_pandas()
    assert users.n_interactions.sum() == stats["interactions"] and users.n_interactions.min() >= 5

    # Same params: byte-identical files. Another seed: same rows, other split.
    again = tmp_path / "b"
    _run(again, mini_raw, params)
    assert _hashes(prepared) == _hashes(again / "amazon-mini" / "prepared")
    other = _run(tmp_path / "c", mini_raw, _params(tmp_path, "q.yaml", seed=12))
    assert other["splits"] == stats["splits"]
    inter_c = pq.read_table(
        tmp_path / "c" / "amazon-mini" / "prepared" / "interactions.parquet"
    ).to_pandas()
    assert inter_c.drop(columns="split").equals(inter.drop(columns="split"))
    assert not inter_c.split.equals(inter.split)


def test_prepare_leave_one_out_and_temporal(tmp_path: Path, mini_raw: Path) -> None:
    loo = _run(tmp_path / "l", mini_raw, _params(tmp_path, "l.yaml", split="leave-one-out"))
    assert loo["splits"]["test"] == loo["users"] == loo["splits"]["valid"]
    assert loo["split"] == {"method": "leave-one-out", "seed": 2024}
    inter = pq.read_table(
        tmp_path / "l" / "amazon-mini" / "prepared" / "interactions.parquet"
    ).to_pandas()
    latest = inter.groupby("user_id").timestamp.transform("max")
    assert (inter[inter.split == "test"].timestamp == latest[inter.split == "test"]).all()
    assert (inter[inter.split == "train"].timestamp <= latest[inter.split == "train"]).all()
    tmp = _run(tmp_path / "t", mini_raw, _params(tmp_path, "t.yaml", split="temporal"))
    inter = pq.read_table(
        tmp_path / "t" / "amazon-mini" / "prepared" / "interactions.parquet"
    ).to_pandas()
    v, t = tmp["split"]["valid_start"], tmp["split"]["test_start"]
    assert (
        inter[inter.split == "train"].timestamp.max()
        <= v
        <= inter[inter.split == "valid"].timestamp.min()
    )
    assert inter[inter.split == "test"].timestamp.min() >= t
    n = tmp["interactions"]
    assert tmp["splits"] == {
        "train": n * 8 // 10,
        "valid": n * 9 // 10 - n * 8 // 10,
        "test": n - n * 9 // 10,
    }


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["prepare", *args])


def test_prepare_rejects_a_raw_file_changed_after_download(tmp_path: Path, mini_raw: Path) -> None:
    data = tmp_path / "d"
    raw = data / "amazon-mini" / "raw"
    shutil.copytree(mini_raw, raw)  # downloaded files with their lock file
    reviews = raw / REVIEWS_FILE
    # Change the content but keep a valid gzip stream: drop the last review line.
    lines = gzip.decompress(reviews.read_bytes()).splitlines(keepends=True)
    reviews.write_bytes(gzip.compress(b"".join(lines[:-1]), mtime=0))
    found = hashlib.sha256(reviews.read_bytes()).hexdigest()
    expected = get_dataset("amazon-mini").file("reviews").sha256
    assert found != expected

    res = _invoke("amazon-mini", "--data-dir", str(data))
    assert res.exit_code == 1, res.output
    assert f"{reviews} changed: expected sha256 {expected}" in res.output
    assert f"found {found}" in res.output
    assert "run `alignrec-data download amazon-mini` to fetch it again" in res.output
    assert "--no-verify" in res.output
    assert not (data / "amazon-mini" / "prepared").exists()
    assert [p.name for p in (data / "amazon-mini").iterdir()] == ["raw"]  # no temporary folder

    # The library raises the same error.
    with pytest.raises(ChecksumError, match=rf"{REVIEWS_FILE} changed: expected sha256 {expected}"):
        prepare_dataset("amazon-mini", data, PrepareConfig())

    # --no-verify prepares the changed file as it is, and says so in stats.json.
    res = _invoke("amazon-mini", "--data-dir", str(data), "--no-verify", "--format", "json")
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert stats["steps"][0]["interactions"] == len(lines) - 1
    assert stats["raw_files"]["reviews"]["sha256"] is None

    # The fix the message names: download again (the changed file is moved aside).
    from alignrec_data.download import download_dataset, raise_for_failures

    raise_for_failures(download_dataset("amazon-mini", raw, progress=False))
    assert (raw / f"{REVIEWS_FILE}.corrupt-{found[:8]}").is_file()
    res = _invoke("amazon-mini", "--data-dir", str(data), "--format", "json")
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert stats["steps"][0]["interactions"] == len(lines)
    assert stats["raw_files"]["reviews"] == {
        "file": REVIEWS_FILE,
        "bytes": (mini_raw / REVIEWS_FILE).stat().st_size,
        "sha256": expected,
        "trust": "registry",
    }


def test_prepare_rejects_raw_files_never_recorded(tmp_path: Path) -> None:
    # Files copied in by hand for a registry id without known hashes, no lock entry.
    spec = get_dataset("amazon-baby")
    raw = tmp_path / "amazon-baby" / "raw"
    raw.mkdir(parents=True)
    fixtures = Path(__file__).resolve().parents[1] / "data" / "prepare"
    for role, name in (("reviews", "reviews_2014.json"), ("meta", "meta_2014.json")):
        data = gzip.compress((fixtures / name).read_bytes(), mtime=0)
        (raw / spec.file(role).filename).write_bytes(data)
    res = _invoke("amazon-baby", "--data-dir", str(tmp_path))
    assert res.exit_code == 1
    assert "reviews_Baby_5.json.gz has no recorded sha256" in res.output
    assert "run `alignrec-data download amazon-baby` to record it" in res.output
    assert not (tmp_path / "amazon-baby" / "prepared").exists()
    config = PrepareConfig(min_user_interactions=1, min_item_interactions=1)
    stats = prepare_dataset("amazon-baby", tmp_path, config, verify=False)
    assert stats["interactions"] == 4


def test_prepare_errors_name_the_fix(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["prepare", "amazon-mini", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "reviews_Mini_5.json.gz of amazon-mini does not exist" in res.output
    assert "alignrec-data download amazon-mini" in res.output
    res = runner.invoke(cli, ["prepare", "no-such-set", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "unknown dataset id 'no-such-set'" in res.output
    bad = _params(tmp_path, "bad.yaml", text_template="{title} {price}")
    res = runner.invoke(
        cli, ["prepare", "amazon-mini", "--data-dir", str(tmp_path), "--params", str(bad)]
    )
    assert res.exit_code == 2 and "field {price} is not allowed" in res.output
