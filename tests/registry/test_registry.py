"""The dataset registry: packaged entries, lookups, URL resolution and name validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignrec_data.errors import UsageError
from alignrec_data.registry import (
    DatasetSpec,
    FileSpec,
    get_dataset,
    list_datasets,
    load_registry,
    raw_path,
    resolve_base_url,
    validate_name,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch):
    monkeypatch.delenv("ALIGNREC_MIRROR", raising=False)


def test_packaged_registry_has_every_release_and_role():
    specs = {s.id: s for s in list_datasets(aliases=True)}
    for cat, slug in [
        ("Baby", "baby"),
        ("Sports_and_Outdoors", "sports"),
        ("Clothing_Shoes_and_Jewelry", "clothing"),
        ("Electronics", "electronics"),
    ]:
        s = specs[f"amazon-{slug}"]
        assert s.release == "2014" and s.category == cat
        assert [f.name for f in s.files] == [
            f"reviews_{cat}_5.json.gz",
            f"meta_{cat}.json.gz",
            f"ratings_{cat}.csv",
        ]
        assert s.base_url == "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
        assert "SIGIR 2015" in s.citation and "WWW 2016" in s.citation
    e18 = specs["amazon2018-electronics"]
    assert e18.file("reviews").name == "categoryFilesSmall/Electronics_5.json.gz"
    assert e18.file("meta").name == "metaFiles2/meta_Electronics.json.gz"
    assert "EMNLP" in e18.citation
    b23 = specs["amazon2023-baby-products"]
    assert b23.file("meta").name == "raw/meta_categories/meta_Baby_Products.jsonl.gz"
    assert "Bridging Language and Items" in b23.citation
    assert {s.release for s in specs.values()} == {"2014", "2018", "2023"}
    assert all(s.base_url.startswith("https://") for s in specs.values() if not s.synthetic)
    mini = specs["amazon-mini"]
    assert mini.synthetic and mini.base_url == "package:mini"
    assert mini.image_base_url == "https://images.amazon-mini.invalid/images/"


def test_unknown_id_and_role_errors_list_what_exists():
    with pytest.raises(
        UsageError, match=r"unknown dataset id 'amazon-bbay'; closest: amazon-baby"
    ) as err:
        get_dataset("amazon-bbay")
    assert "run `alignrec-data datasets`" in (err.value.hint or "")
    with pytest.raises(
        UsageError, match=r"amazon2023-electronics has no 'ratings' file; it has: reviews, meta"
    ):
        get_dataset("amazon2023-electronics").file("ratings")


def test_resolve_base_url_precedence(monkeypatch, tmp_path):
    spec = get_dataset("amazon-baby")
    assert resolve_base_url(spec) == spec.base_url
    monkeypatch.setenv("ALIGNREC_MIRROR", "https://env.mirror/a")
    assert resolve_base_url(spec) == "https://env.mirror/a/"
    assert resolve_base_url(spec, "https://arg.mirror/{release}/{dataset}") == (
        "https://arg.mirror/2014/amazon-baby/"
    )
    assert resolve_base_url(spec, str(tmp_path)) == tmp_path.resolve().as_uri() + "/"
    with pytest.raises(UsageError, match=r"unsupported scheme 'ftp'"):
        resolve_base_url(spec, "ftp://x/")


def test_package_base_url_points_into_the_installed_package():
    url = resolve_base_url(get_dataset("amazon-mini"))
    assert url.startswith("file://") and url.endswith("/alignrec_data/mini/")


def test_raw_path_is_flat_and_validated(tmp_path):
    spec = get_dataset("amazon2018-sports-and-outdoors")
    assert raw_path(tmp_path, spec, "meta") == tmp_path / "meta_Sports_and_Outdoors.json.gz"
    bad = DatasetSpec(
        "x",
        "2014",
        "X",
        "",
        "",
        "",
        "",
        "https://h/",
        (FileSpec("reviews", "../../etc/passwd", None, None),),
    )
    with pytest.raises(UsageError, match="not a safe relative file name"):
        raw_path(tmp_path, bad, "reviews")


@pytest.mark.parametrize("name", ["../x", "a/../b", "/abs", "a\\b", ".hidden", "a//b", "", "a/"])
def test_unsafe_names_are_rejected(name):
    with pytest.raises(UsageError, match="not a safe relative file name"):
        validate_name(name)


def test_registry_file_is_validated(tmp_path):
    good = json.loads((REPO / "alignrec_data/registry_data/datasets.json").read_text())
    entry = {
        "id": "amazon-baby",
        "release": "2014",
        "category": "Baby",
        "description": "Baby",
        "base_url": "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/",
        "files": [
            {"role": "reviews", "name": "reviews_Baby_5.json.gz", "size": None, "sha256": None},
            {"role": "meta", "name": "meta_Baby.json.gz", "size": None, "sha256": None},
        ],
    }

    def load(**change):
        doc = {"releases": good["releases"], "datasets": [{**entry, **change}]}
        p = tmp_path / "reg.json"
        p.write_text(json.dumps(doc))
        return load_registry(p)

    assert load()[entry["id"]].license.startswith("Amazon product data (2014)")
    bad_file = [{"role": "reviews", "name": "../up.gz", "size": None, "sha256": None}]
    with pytest.raises(UsageError, match="not a safe relative file name"):
        load(files=bad_file)
    with pytest.raises(UsageError, match=r"sha256 of a\.gz must be 64 lower-case hex digits"):
        load(files=[{"role": "reviews", "name": "a.gz", "size": 1, "sha256": "abc"}])
    with pytest.raises(UsageError, match=r"file role 'images' is not one of"):
        load(files=[{"role": "images", "name": "a.gz"}])
    with pytest.raises(UsageError, match=r"release '2020' is not one of"):
        load(release="2020")
    no_base = {k: v for k, v in entry.items() if k != "base_url"}
    (tmp_path / "reg2.json").write_text(json.dumps({"datasets": [no_base]}))
    with pytest.raises(UsageError, match=r"missing or has a malformed field: 'base_url'"):
        load_registry(tmp_path / "reg2.json")
    dup = {"releases": good["releases"], "datasets": [entry, entry]}
    (tmp_path / "reg3.json").write_text(json.dumps(dup))
    with pytest.raises(UsageError, match=r"dataset id amazon-baby appears twice"):
        load_registry(tmp_path / "reg3.json")
