"""Real data declared in a params file: the H&M sample and MovieLens-100K with plot text.

Each test writes a params file in a temporary folder that declares the dataset from
../shared/data by relative paths, runs `download`, `prepare` (and `images` for H&M) through the
CLI, and checks the outputs against counts computed here independently with pandas.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from alignrec_data.lockfile import LOCK_NAME
from alignrec_data.text import clean_text
from tests.conftest import shared_data
from tests.hostile.conftest import run

pytestmark = pytest.mark.shared_data


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGNREC_MIRROR", raising=False)
    monkeypatch.delenv("ALIGNREC_IMAGE_MIRROR", raising=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _params(folder: Path, declared: dict, prepare: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({"declared": declared, "prepare": prepare}, sort_keys=False))
    return path


def _json(*args: str | Path) -> dict:
    out = run(*args, "--format", "json")
    assert out.code == 0, out.stderr
    return json.loads(out.stdout)


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def test_hm_sample_declared_download_prepare_images(tmp_path: Path) -> None:
    src = shared_data("hm-sample")
    conf = tmp_path / "conf"
    conf.mkdir()
    rel = _rel(src, conf)  # paths relative to the params file's folder
    params = _params(
        conf,
        {
            "hm-sample": {
                "description": "H&M sample with real photos",
                "interactions": {
                    "path": f"{rel}/transactions_sample.parquet",
                    "user": "customer_id",
                    "item": "article_id",
                    "timestamp": "t_dat",
                },
                "items": {
                    "path": f"{rel}/articles_sample.parquet",
                    "item": "article_id",
                    "title": "prod_name",
                    "description": "detail_desc",
                    "categories": ["product_group_name", "product_type_name"],
                    "text": "{prod_name} {product_type_name} {detail_desc}",
                    "image": rel + "/images/{article_id:010d}.jpg",
                },
            }
        },
        {"min_user_interactions": 0, "min_item_interactions": 0},  # 1 to 3 purchases a user
    )
    data = tmp_path / "data"
    common = ["--data-dir", data, "--params", params]

    listed = _json("datasets", "--release", "declared", *common)
    (row,) = listed["datasets"]
    assert (row["id"], row["release"], row["local"]) == ("hm-sample", "declared", "absent")
    rule = row["image_mirror"]
    prefix, _, folder = rule.partition("=")
    assert prefix == "https://declared.invalid/hm-sample/" and folder.endswith("/")
    assert Path(folder).resolve() == (src / "images").resolve()  # the same folder, links or not

    got = _json("download", "hm-sample", *common, "--no-progress")
    assert got["ok"] is True
    lock = json.loads((data / "hm-sample" / "raw" / LOCK_NAME).read_text())["files"]
    for name, source in (
        ("interactions.parquet", src / "transactions_sample.parquet"),
        ("items.parquet", src / "articles_sample.parquet"),
    ):
        assert lock[name]["sha256"] == _sha256(source)
        assert lock[name]["url"] == source.resolve().as_uri()
        assert _sha256(data / "hm-sample" / "raw" / name) == _sha256(source)
    again = _json("download", "hm-sample", *common, "--no-progress")
    assert [f["status"] for f in again["files"]] == ["verified", "verified"]

    stats = _json("prepare", "hm-sample", *common)

    # The same cleaning computed here: earliest (user, item) pair, no k-core.
    tx = pd.read_parquet(src / "transactions_sample.parquet")
    tx["ts"] = (pd.to_datetime(tx["t_dat"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(
        seconds=1
    )
    kept = tx.sort_values("ts", kind="stable").drop_duplicates(["customer_id", "article_id"])
    assert stats["steps"][0]["interactions"] == len(tx) == 5000
    assert stats["interactions"] == len(kept)
    assert stats["users"] == kept["customer_id"].nunique()
    assert stats["items"] == kept["article_id"].nunique()
    assert stats["has_ratings"] is False and stats["has_timestamps"] is True
    assert stats["source"] == "declared"

    prepared = data / "hm-sample" / "prepared"
    inter = pq.read_table(prepared / "interactions.parquet").to_pandas()
    assert inter["rating"].isna().all()
    expect_ts = {
        (c, str(a)): t
        for c, a, t in kept[["customer_id", "article_id", "ts"]].itertuples(index=False)
    }
    got_ts = {
        (u, i): t
        for u, i, t in inter[["user_key", "item_key", "timestamp"]].itertuples(index=False)
    }
    assert got_ts == expect_ts

    items = pq.read_table(prepared / "items.parquet").to_pandas().set_index("item_key")
    articles = pd.read_parquet(src / "articles_sample.parquet").set_index("article_id")
    assert sorted(items.index) == sorted(str(a) for a in kept["article_id"].unique())
    for key, row in items.iterrows():
        art = articles.loc[int(key)]
        parts = [
            clean_text(str(art[c])) if pd.notna(art[c]) else ""
            for c in ("prod_name", "product_type_name", "detail_desc")
        ]
        assert row["text"] == " ".join(" ".join(parts).split())
        assert row["title"] == clean_text(art["prod_name"])
        assert list(row["image_urls"]) == [
            f"https://declared.invalid/hm-sample/{int(key):010d}.jpg"
        ]

    out = run("images", "hm-sample", *common, "--no-progress")  # the declared rule, no --mirror
    assert out.code == 0, out.stderr
    index = pq.read_table(data / "hm-sample" / "images" / "index.parquet").to_pandas()
    photos = {int(p.stem) for p in (src / "images").glob("*.jpg")}
    with_photo = {k for k in items.index if int(k) in photos}
    assert len(photos) == 100 and len(with_photo) == 53
    assert set(index.loc[index["has_image"], "item_key"]) == with_photo
    missing = index.loc[~index["has_image"]]
    assert len(missing) == len(items) - len(with_photo)
    assert set(missing["reason"]) == {"file-not-found"}


def _kcore(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Iterative k-core on (userID, itemID), written here independently of alignrec_data."""
    while True:
        u = frame.groupby("userID")["itemID"].transform("size")
        i = frame.groupby("itemID")["userID"].transform("size")
        ok = (u >= k) & (i >= k)
        if ok.all():
            return frame
        frame = frame[ok]


def test_ml100k_declared_with_plot_text(tmp_path: Path) -> None:
    src = shared_data("ml100k-imdb")
    rel = _rel(src, tmp_path)
    params = _params(
        tmp_path,
        {
            "ml100k-imdb": {
                "interactions": {
                    "path": f"{rel}/ml100k.inter",
                    "format": "tsv",
                    "user": "userID",
                    "item": "itemID",
                    "rating": "rating",
                    "timestamp": "timestamp",
                },
                "items": {
                    "path": f"{rel}/items.csv",
                    "item": "movie id",
                    "item_offset": -1,  # itemID = movie id - 1
                    "title": "movie title",
                    "description": "Summary",
                    "text": "{movie title} {Summary}",
                },
            }
        },
        {"min_user_interactions": 5, "min_item_interactions": 5, "seed": 7},
    )
    data = tmp_path / "data"
    common = ["--data-dir", data, "--params", params]
    got = _json("download", "ml100k-imdb", *common, "--no-progress")
    assert [Path(f["path"]).name for f in got["files"]] == ["interactions.tsv", "items.csv"]
    lock = json.loads((data / "ml100k-imdb" / "raw" / LOCK_NAME).read_text())["files"]
    assert lock["interactions.tsv"]["sha256"] == _sha256(src / "ml100k.inter")
    assert lock["items.csv"]["sha256"] == _sha256(src / "items.csv")

    stats = _json("prepare", "ml100k-imdb", *common)
    inter_src = pd.read_csv(src / "ml100k.inter", sep="\t")
    core = _kcore(inter_src.drop_duplicates(["userID", "itemID"]), 5)
    assert stats["steps"][0]["interactions"] == len(inter_src) == 100_000
    assert (stats["interactions"], stats["users"], stats["items"]) == (
        len(core),
        core["userID"].nunique(),
        core["itemID"].nunique(),
    )
    assert stats["has_ratings"] is True and stats["has_timestamps"] is True
    assert sum(stats["splits"].values()) == len(core)
    prepared = data / "ml100k-imdb" / "prepared"
    inter = pq.read_table(prepared / "interactions.parquet").to_pandas()
    merged = inter.merge(
        core.astype({"userID": str, "itemID": str}),
        left_on=["user_key", "item_key"],
        right_on=["userID", "itemID"],
    )
    assert len(merged) == len(core)
    assert (merged["rating_x"] == merged["rating_y"]).all()
    assert (merged["timestamp_x"] == merged["timestamp_y"]).all()

    items = pq.read_table(prepared / "items.parquet").to_pandas().set_index("item_key")
    movies = pd.read_csv(src / "items.csv")
    movies["key"] = (movies["movie id"] - 1).astype(str)
    movies = movies.set_index("key")
    assert stats["items_without_metadata"] == 0
    no_summary = 0
    for key, row in items.iterrows():
        movie = movies.loc[key]
        summary = movie["Summary"] if pd.notna(movie["Summary"]) else ""
        no_summary += summary == ""
        assert row["text"] == " ".join(
            f"{clean_text(movie['movie title'])} {clean_text(summary)}".split()
        )
        assert list(row["image_urls"]) == []
    assert 0 < no_summary <= 198
    assert items.loc["0", "text"].startswith("Toy Story (1995) A little boy named Andy")

    # Seeded: the same params give byte-identical files.
    before = {p.name: _sha256(p) for p in prepared.glob("*.parquet")}
    _json("prepare", "ml100k-imdb", *common)
    assert {p.name: _sha256(p) for p in prepared.glob("*.parquet")} == before
