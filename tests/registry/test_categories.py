"""Every Amazon category of the three releases, generated from one table; aliases; suggestions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from alignrec_data.cli import cli
from alignrec_data.errors import UsageError
from alignrec_data.paths import check_name
from alignrec_data.registry import (
    PREPARE_ROLES,
    closest_ids,
    dataset_id,
    get_dataset,
    list_datasets,
    load_registry,
)

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "alignrec_data" / "registry_data"
BASE = {
    "2014": "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/",
    "2018": "https://deepyeti.ucsd.edu/jianmo/amazon/",
    "2023": "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/",
}
# The 12 ids of the registry before the category table, with their files (all sha256 unknown).
OLD_IDS = {
    "amazon-baby": ("2014", "Baby"),
    "amazon-sports": ("2014", "Sports_and_Outdoors"),
    "amazon-clothing": ("2014", "Clothing_Shoes_and_Jewelry"),
    "amazon-electronics": ("2014", "Electronics"),
    "amazon2018-sports-and-outdoors": ("2018", "Sports_and_Outdoors"),
    "amazon2018-clothing-shoes-and-jewelry": ("2018", "Clothing_Shoes_and_Jewelry"),
    "amazon2018-electronics": ("2018", "Electronics"),
    "amazon2023-baby-products": ("2023", "Baby_Products"),
    "amazon2023-sports-and-outdoors": ("2023", "Sports_and_Outdoors"),
    "amazon2023-electronics": ("2023", "Electronics"),
    "amazon2023-clothing-shoes-and-jewelry": ("2023", "Clothing_Shoes_and_Jewelry"),
}
# ../shared/data/amazon2018-magazine/README: the real files' sha256.
MAGAZINE = {
    "reviews": (401655, "95c124603d62d6acdfd1bd62284934fb6c513db836ea64c2e8176c14256426f2"),
    "meta": (1276947, "147cb78dac0f9ce04849b196e2e13cad6a504bff45d53500b7a1fe8121d91595"),
}


def _files(release: str, cat: str) -> list[tuple[str, str]]:
    """The file names each release publishes for a category, by role."""
    if release == "2014":
        names = [f"reviews_{cat}_5.json.gz", f"meta_{cat}.json.gz", f"ratings_{cat}.csv"]
    elif release == "2018":
        names = [
            f"categoryFilesSmall/{cat}_5.json.gz",
            f"metaFiles2/meta_{cat}.json.gz",
            f"categoryFilesSmall/{cat}.csv",
        ]
    else:
        names = [
            f"raw/review_categories/{cat}.jsonl.gz",
            f"raw/meta_categories/meta_{cat}.jsonl.gz",
        ]
    return list(zip(("reviews", "meta", "ratings"), names, strict=False))


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch):
    monkeypatch.delenv("ALIGNREC_MIRROR", raising=False)


def test_every_category_of_every_release():
    counts = Counter(s.group for s in list_datasets())
    assert counts == {"2014": 24, "2018": 29, "2023": 34, "synthetic": 1}
    assert {s.category for s in list_datasets("2023")} >= {"Unknown", "All_Beauty"}
    assert len({s.category for s in list_datasets("2023")} - {"Unknown"}) == 33
    for release in ("2014", "2018", "2023"):
        for s in list_datasets(release):
            assert s.id == dataset_id(release, s.category)
            assert [(f.role, f.name) for f in s.files] == _files(release, s.category)
            assert s.base_url == BASE[release]
            assert [f.role for f in s.files_for()] == list(PREPARE_ROLES)
            assert all(f.optional for f in s.files if f.role not in PREPARE_ROLES)
    for wanted in ("amazon2018-gift-cards", "amazon2014-beauty", "amazon2023-all-beauty"):
        assert get_dataset(wanted).id == wanted


def test_ids_unique_and_valid_names():
    every = list_datasets(aliases=True)
    ids = [s.id for s in every]
    assert len(ids) == len(set(ids)) == 24 + 29 + 34 + 1 + 4
    for i in ids:
        assert check_name(i, "dataset") == i


def test_todays_ids_stay_valid_with_the_same_files():
    for old, (release, cat) in OLD_IDS.items():
        spec = get_dataset(old)
        assert spec.id == old  # an alias keeps its own data folder
        assert (spec.release, spec.category) == (release, cat)
        assert [(f.role, f.name) for f in spec.files] == _files(release, cat)
        assert all(f.sha256 is None for f in spec.files)
    baby = get_dataset("amazon-baby")
    assert baby.alias_of == "amazon2014-baby"
    assert get_dataset("amazon2014-baby").aliases == ("amazon-baby",)
    assert baby.files == get_dataset("amazon2014-baby").files
    assert get_dataset("amazon2018-electronics").alias_of is None
    mini = get_dataset("amazon-mini")
    assert mini.synthetic and mini.release == "2018" and mini.base_url == "package:mini"
    assert [(f.name, f.size) for f in mini.files] == [
        ("reviews_Mini_5.json.gz", 712537),
        ("meta_Mini.json.gz", 82322),
    ]


def test_magazine_hashes_are_the_real_files():
    spec = get_dataset("amazon2018-magazine-subscriptions")
    for role, (size, digest) in MAGAZINE.items():
        assert (spec.file(role).size, spec.file(role).sha256) == (size, digest)
    assert spec.file("ratings").sha256 is None  # unknown: trust on first use


def test_release_filter():
    assert {s.release for s in list_datasets("2018")} == {"2018"}
    assert [s.id for s in list_datasets("synthetic")] == ["amazon-mini"]
    assert "amazon-mini" not in {s.id for s in list_datasets("2018")}
    with_aliases = [s.id for s in list_datasets("2014", aliases=True)]
    assert with_aliases.index("amazon-baby") == with_aliases.index("amazon2014-baby") + 1
    with pytest.raises(UsageError, match=r"release '2020' is not one of 2014, 2018, 2023"):
        list_datasets("2020")


def test_datasets_command_release_filter(tmp_path):
    runner = CliRunner()
    args = ["datasets", "--data-dir", str(tmp_path), "--release", "2018", "--format", "json"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["datasets"]
    assert len(rows) == 29 and {r["release"] for r in rows} == {"2018"}
    assert not any(r["synthetic"] for r in rows)
    res = runner.invoke(cli, ["datasets", "--data-dir", str(tmp_path), "--release", "2014"])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()[1:]
    assert len(lines) == 24 + 4
    assert any(line.startswith("amazon-sports ") and "alias of" in line for line in lines)
    assert all("  2+1  " in line for line in lines)  # reviews + meta, ratings with --all-files
    res = runner.invoke(cli, ["datasets", "--data-dir", str(tmp_path), "--release", "1999"])
    assert res.exit_code == 2 and "1999" in res.output


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("amazon2018-gift-card", "amazon2018-gift-cards"),
        ("baby", "amazon2014-baby"),
        ("amazon2023-all_beauty", "amazon2023-all-beauty"),
        ("amazon-sport", "amazon-sports"),
    ],
)
def test_unknown_id_suggests_the_closest(typo, expected):
    assert expected in closest_ids(typo)
    with pytest.raises(UsageError, match=rf"unknown dataset id '{typo}'; closest: .*{expected}"):
        get_dataset(typo)


def test_unknown_id_far_from_everything():
    with pytest.raises(UsageError, match=r"'qqqqqqqq'; no registered id is close") as err:
        get_dataset("qqqqqqqq")
    assert "alignrec-data datasets" in (err.value.hint or "")
    assert "--release" in (err.value.hint or "")


def _write(tmp_path: Path, rows: list, **doc: object) -> Path:
    base = json.loads((REGISTRY / "datasets.json").read_text())
    table = {"columns": ["release", "category", "role", "name", "size", "sha256", "base_url"]}
    (tmp_path / "t.json").write_text(json.dumps({**table, "rows": rows}))
    reg = {"releases": base["releases"], "tables": ["t.json"], **doc}
    (tmp_path / "reg.json").write_text(json.dumps(reg))
    return tmp_path / "reg.json"


def test_table_is_validated(tmp_path):
    url = "https://h/"
    good = [
        ["2018", "Gift_Cards", "reviews", "c/Gift_Cards_5.json.gz", None, None, url],
        ["2018", "Gift_Cards", "meta", "m/meta_Gift_Cards.json.gz", None, None, url],
    ]
    reg = load_registry(_write(tmp_path, good, aliases={"gifts": "amazon2018-gift-cards"}))
    assert reg["amazon2018-gift-cards"].description.startswith("Amazon 2018 Gift Cards:")
    assert reg["amazon2018-gift-cards"].license.startswith("Amazon review data (2018)")
    assert reg["gifts"].alias_of == "amazon2018-gift-cards"

    with pytest.raises(UsageError, match=r"has two base URLs"):
        load_registry(_write(tmp_path, [good[0], [*good[1][:6], "https://other/"]]))
    with pytest.raises(UsageError, match=r"Gift_Cards\): no meta file \(prepare reads"):
        load_registry(_write(tmp_path, good[:1]))
    with pytest.raises(UsageError, match=r"row 2: expected 7 values"):
        load_registry(_write(tmp_path, [good[0], good[1][:5]]))
    with pytest.raises(UsageError, match=r"not a safe relative file name"):
        load_registry(_write(tmp_path, [good[0], [*good[1][:3], "../x.gz", None, None, url]]))
    with pytest.raises(UsageError, match=r"alias x names 'amazon2018-nope', which is not"):
        load_registry(_write(tmp_path, good, aliases={"x": "amazon2018-nope"}))
    with pytest.raises(UsageError, match=r"alias amazon2018-gift-cards is also a dataset id"):
        load_registry(_write(tmp_path, good, aliases={"amazon2018-gift-cards": "x"}))
    with pytest.raises(UsageError, match=r"alias '\.\./up' is not a valid name"):
        load_registry(_write(tmp_path, good, aliases={"../up": "amazon2018-gift-cards"}))
    bad_cat = [[*r[:1], "../../x", *r[2:]] for r in good]
    with pytest.raises(UsageError, match=r"dataset id .* is not a valid name"):
        load_registry(_write(tmp_path, bad_cat))
    with pytest.raises(UsageError, match=r"dataset id amazon2018-gift-cards appears twice"):
        load_registry(_write(tmp_path, good + [[*r[:1], "gift_cards", *r[2:]] for r in good]))
