"""The real Amazon 2018 Magazine_Subscriptions files: `download --mirror`, then `prepare`.

../shared/data/amazon2018-magazine holds the two files flat; the official layout keeps the
reviews under categoryFilesSmall/ and the metadata under metaFiles2/, so the test builds a
mirror with that layout from symbolic links. The mirror has no ratings CSV: the default
download does not ask for it, and `--all-files` reports it missing without failing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from alignrec_data.cli import cli
from alignrec_data.lockfile import LOCK_NAME
from tests.conftest import shared_data

DATASET = "amazon2018-magazine-subscriptions"
REVIEWS = "Magazine_Subscriptions_5.json.gz"
META = "meta_Magazine_Subscriptions.json.gz"
# ../shared/data/README.md, amazon2018-magazine/
SHA = {
    REVIEWS: "95c124603d62d6acdfd1bd62284934fb6c513db836ea64c2e8176c14256426f2",
    META: "147cb78dac0f9ce04849b196e2e13cad6a504bff45d53500b7a1fe8121d91595",
}


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGNREC_MIRROR", raising=False)


def _mirror(tmp_path: Path) -> Path:
    """The shared files under the 2018 release's layout (links, nothing copied)."""
    src = shared_data("amazon2018-magazine")
    mirror = tmp_path / "mirror"
    for folder, name in (("categoryFilesSmall", REVIEWS), ("metaFiles2", META)):
        (mirror / folder).mkdir(parents=True)
        (mirror / folder / name).symlink_to(src / name)
    return mirror


def _invoke(*args: str) -> dict:
    res = CliRunner().invoke(cli, [*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.shared_data
def test_real_magazine_download_then_prepare(tmp_path: Path) -> None:
    mirror, data = _mirror(tmp_path), tmp_path / "data"
    get = ["download", DATASET, "--mirror", str(mirror), "--data-dir", str(data), "--no-progress"]

    doc = _invoke(*get)
    assert doc["ok"] is True
    assert [(f["status"], Path(f["path"]).name, f["trust"]) for f in doc["files"]] == [
        ("fetched", REVIEWS, "registry"),
        ("fetched", META, "registry"),
    ]
    assert {Path(f["path"]).name: f["sha256"] for f in doc["files"]} == SHA
    assert doc["not_fetched"] == [
        {"role": "ratings", "name": "categoryFilesSmall/Magazine_Subscriptions.csv"}
    ]
    raw = data / DATASET / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted([LOCK_NAME, REVIEWS, META])

    doc = _invoke(*get, "--all-files")  # the mirror has no ratings CSV: reported, not an error
    assert doc["ok"] is True
    assert [f["status"] for f in doc["files"]] == ["verified", "verified", "missing"]

    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  min_user_interactions: 5\n  min_item_interactions: 5\n")
    stats = _invoke("prepare", DATASET, "--data-dir", str(data), "--params", str(params))
    assert stats["release"] == "2018"
    assert {k: (v["file"], v["sha256"], v["trust"]) for k, v in stats["raw_files"].items()} == {
        "reviews": (REVIEWS, SHA[REVIEWS], "registry"),
        "meta": (META, SHA[META], "registry"),
    }
    steps = {s["step"]: (s["users"], s["items"], s["interactions"]) for s in stats["steps"]}
    # The README's counts: 2,375 review lines, 348 users, 157 items, 73 repeated pairs.
    assert steps["read"] == (348, 157, 2375)
    assert steps["dedupe"] == (348, 157, 2375 - 73)
    # 5-core (what prepare reports; 8 rounds of the filter).
    assert steps["k_core"] == (294, 132, 2027)
    assert (stats["users"], stats["items"], stats["interactions"]) == (294, 132, 2027)
    assert sum(stats["splits"].values()) == 2027
    assert (data / DATASET / "prepared" / "items.parquet").is_file()
