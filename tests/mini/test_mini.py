"""The embedded amazon-mini dataset: reproducible bytes, 2018 format, counts and structure."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignrec_data.errors import UsageError
from scripts import amazon_mini as mini

MINI = mini.MINI_DIR
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_amazon_mini.py"
REGISTRY = MINI.parent / "registry_data" / "datasets.json"
SMALL = mini.MiniConfig(n_users=120, n_items=60, n_meta_only_items=3, mean_interactions=8.0)

REVIEW_KEYS = {"overall", "verified", "reviewTime", "reviewerID", "asin", "reviewerName",
               "reviewText", "summary", "unixReviewTime"}  # fmt: skip
META_KEYS = {"asin", "title", "feature", "description", "price", "imageURL", "imageURLHighRes",
             "also_buy", "also_view", "rank", "brand", "category", "main_cat", "date", "details",
             "similar_item", "tech1", "tech2"}  # fmt: skip


def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def reviews() -> list[dict]:
    return _jsonl(MINI / mini.REVIEWS_FILE)


@pytest.fixture(scope="module")
def meta() -> list[dict]:
    return _jsonl(MINI / mini.META_FILE)


@pytest.fixture(scope="module")
def latent() -> dict[str, dict]:
    return mini.load_latent_items()


def five_core(pairs: set[tuple[str, str]], k: int = 5) -> set[tuple[str, str]]:
    """Independent iterative k-core (not mini.kcore), so the test checks the generator."""
    while True:
        users = Counter(u for u, _ in pairs)
        items = Counter(i for _, i in pairs)
        kept = {(u, i) for u, i in pairs if users[u] >= k and items[i] >= k}
        if kept == pairs:
            return kept
        pairs = kept


@pytest.fixture(scope="module")
def core(reviews: list[dict]) -> set[tuple[str, str]]:
    return five_core({(r["reviewerID"], r["asin"]) for r in reviews})


# ------------------------------------------------------------------ reproducibility


def _script_main():
    spec = importlib.util.spec_from_file_location("make_amazon_mini", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_shipped_files_regenerate_byte_identically(capsys: pytest.CaptureFixture) -> None:
    assert _script_main()(["--check", "--out", str(MINI), "--seed", "0"]) == 0
    assert "matches the generator" in capsys.readouterr().out


def test_generation_is_deterministic_and_seeded(tmp_path: Path) -> None:
    a = mini.generate_amazon_mini(tmp_path / "a", seed=3, config=SMALL)
    b = mini.generate_amazon_mini(tmp_path / "b", seed=3, config=SMALL)
    c = mini.generate_amazon_mini(tmp_path / "c", seed=4, config=SMALL)
    assert a == b == mini.file_sha256s(tmp_path / "a")
    assert a[mini.REVIEWS_FILE] != c[mini.REVIEWS_FILE]
    # gzip header: fixed name, mtime 0 (bytes 4-7), so the bytes do not depend on the clock.
    head = (tmp_path / "a" / mini.REVIEWS_FILE).read_bytes()[:40]
    assert head[4:8] == b"\0\0\0\0" and b"reviews_Mini_5.json\0" in head


def test_check_reports_changed_missing_and_unexpected_files(tmp_path: Path) -> None:
    shas = mini.generate_amazon_mini(tmp_path / "m", seed=1, config=SMALL)
    images = [p for p in shas if p.startswith("images/")]
    (tmp_path / "m" / images[0]).write_bytes(b"tampered")
    (tmp_path / "m" / images[1]).unlink()
    (tmp_path / "m" / "extra.txt").write_text("x")
    problems = mini.check_amazon_mini(tmp_path / "m", seed=1, config=SMALL)
    assert sorted(p.split(" ")[0] for p in problems) == ["changed:", "missing:", "unexpected:"]
    assert any(images[0] in p and shas[images[0]] in p for p in problems)


def test_bad_config_and_missing_ground_truth_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"n_users=1.*MiniConfig"):
        mini.generate_amazon_mini(tmp_path, config=mini.MiniConfig(n_users=1))
    with pytest.raises(UsageError, match=r"latent_items.tsv does not exist.*make_amazon_mini"):
        mini.load_latent_items(tmp_path)


def test_registry_entry_matches_shipped_files() -> None:
    assert REGISTRY.is_file(), f"the registry {REGISTRY} is missing"
    reg = json.loads(REGISTRY.read_text(encoding="utf-8"))
    entries = reg["datasets"] if isinstance(reg.get("datasets"), list) else []
    entry = next((e for e in entries if e.get("id") == "amazon-mini"), None)
    assert entry is not None, "amazon-mini is missing from the registry"
    assert entry["synthetic"] is True and entry["base_url"] == "package:mini"
    assert entry["image_base_url"] == mini.IMAGE_BASE_URL
    for f in entry["files"]:
        data = (MINI / f["name"]).read_bytes()
        assert f["size"] in (None, len(data)), f["name"]
        assert f["sha256"] in (None, hashlib.sha256(data).hexdigest()), f["name"]
    assert all(f["sha256"] for f in entry["files"]), "fill sha256 with the shipped files' hashes"


def test_readme_says_synthetic_and_states_measured_counts(core: set) -> None:
    text = (MINI / "README.md").read_text(encoding="utf-8")
    assert "SYNTHETIC" in text and "make_amazon_mini.py" in text
    users, items = {u for u, _ in core}, {i for _, i in core}
    assert f"| users after dedupe + 5-core | {len(users):,} |" in text
    assert f"| items after dedupe + 5-core | {len(items):,} |" in text
    assert f"| interactions after dedupe + 5-core | {len(core):,} |" in text


def test_shipped_data_is_small() -> None:
    total = sum(p.stat().st_size for p in MINI.rglob("*") if p.is_file())
    images = sum(p.stat().st_size for p in (MINI / "images").iterdir())
    assert total < 5_000_000 and images < 3_000_000


# ------------------------------------------------------------------ Amazon 2018 format


def test_review_lines_have_the_2018_fields(reviews: list[dict]) -> None:
    for r in reviews:
        assert REVIEW_KEYS <= r.keys() <= REVIEW_KEYS | {"vote", "style", "image"}
        assert isinstance(r["overall"], float) and 1.0 <= r["overall"] <= 5.0
        assert isinstance(r["verified"], bool) and isinstance(r["unixReviewTime"], int)
        day = dt.datetime.fromtimestamp(r["unixReviewTime"], tz=dt.UTC)
        assert r["reviewTime"] == f"{day.month:02d} {day.day}, {day.year}"
        assert re.fullmatch(r"A[0-9A-Z]{13}", r["reviewerID"])
        assert re.fullmatch(r"B0[0-9A-Z]{8}", r["asin"])
        assert isinstance(r.get("vote", ""), str)
    share = {k: sum(k in r for r in reviews) / len(reviews) for k in ("vote", "style", "image")}
    assert 0.05 < share["vote"] < 0.3 and 0.2 < share["style"] < 0.6 and 0 < share["image"] < 0.03
    assert any("," in r.get("vote", "") for r in reviews)  # "1,200" as in the real files
    assert all(v.startswith(" ") for r in reviews for v in r.get("style", {}).values())


def test_meta_lines_have_the_2018_fields_and_blemishes(meta: list[dict], latent: dict) -> None:
    for m in meta:
        assert META_KEYS <= m.keys()
        assert isinstance(m["feature"], list) and isinstance(m["description"], list)
        assert m["price"] == "" or re.fullmatch(r"\$\d+\.\d\d", m["price"])
        for url in m["imageURLHighRes"]:
            assert url == f"{mini.IMAGE_BASE_URL}{m['asin']}.jpg"
        for url in m["imageURL"]:
            assert re.fullmatch(
                re.escape(mini.IMAGE_BASE_URL + m["asin"]) + r"\._S[SXY]\d+_\.jpg", url
            )
    asins = [m["asin"] for m in meta]
    assert len(asins) - len(set(asins)) == 3  # duplicate metadata lines, as in the real files
    assert set(asins) == set(latent)
    assert any("&amp;" in c for m in meta for c in m["category"])
    assert any("<span" in c for m in meta for c in m["category"])
    thumb_only = [m for m in meta if m["imageURL"] and not m["imageURLHighRes"]]
    assert len(thumb_only) >= 10  # the images stage must strip the size modifier


# ------------------------------------------------------------------ counts and structure


def test_counts_after_dedupe_and_5core_meet_the_minimums(reviews: list[dict], core: set) -> None:
    pairs = {(r["reviewerID"], r["asin"]) for r in reviews}
    users, items = {u for u, _ in core}, {i for _, i in core}
    assert len(users) >= 1000 and len(items) >= 400 and len(core) >= 15_000
    assert len(reviews) - len(pairs) >= 100  # duplicate reviews exist
    # The raw file is not already a 5-core: filtering removes both users and items.
    assert min(Counter(u for u, _ in pairs).values()) < 5
    assert min(Counter(i for _, i in pairs).values()) < 5
    assert len({u for u, _ in pairs}) > len(users) and len({i for _, i in pairs}) > len(items)
    exact = Counter(json.dumps(r, sort_keys=True) for r in reviews)
    assert any(n > 1 for n in exact.values())  # some duplicates are exact copies
    times: dict[tuple[str, str], set[int]] = {}
    for r in reviews:
        times.setdefault((r["reviewerID"], r["asin"]), set()).add(r["unixReviewTime"])
    assert any(len(t) > 1 for t in times.values())  # some are later re-reviews


def test_timestamps_span_about_two_years(reviews: list[dict]) -> None:
    ts = np.array([r["unixReviewTime"] for r in reviews])
    assert 600 <= (ts.max() - ts.min()) / 86400 <= 760


def test_item_popularity_is_skewed(core: set) -> None:
    deg = np.array(sorted(Counter(i for _, i in core).values()))
    assert deg.max() >= 3 * np.median(deg)  # a popular head
    assert np.percentile(deg, 90) >= 2.5 * np.percentile(deg, 10)  # and a thin tail


def test_new_items_draw_attention_while_they_are_new(reviews: list[dict], latent: dict) -> None:
    first: dict[tuple[str, str], int] = {}
    for r in reviews:
        key = (r["reviewerID"], r["asin"])
        first[key] = min(first.get(key, r["unixReviewTime"]), r["unixReviewTime"])
    start, end = min(first.values()), max(first.values())
    early, expected = [], []
    for (_, asin), t in first.items():
        launch = latent[asin]["launch"]
        if launch > start:  # launched inside the review window
            early.append(t - launch < 60 * 86400)
            expected.append(60 * 86400 / (end - launch))  # share of 60 days in its lifetime
    assert all(t >= latent[a]["launch"] for (_, a), t in first.items())  # never before launch
    # The novelty boost puts far more of a new item's reviews in its first two months.
    assert np.mean(early) > 1.5 * np.mean(np.minimum(expected, 1.0))


def test_users_prefer_few_categories(core: set, latent: dict) -> None:
    by_user: dict[str, Counter] = {}
    for u, i in core:
        by_user.setdefault(u, Counter())[latent[i]["category"]] += 1
    top3 = np.mean([sum(n for _, n in c.most_common(3)) / c.total() for c in by_user.values()])
    # Under uniform random choice over 10 categories the top 3 would hold roughly 45-55%.
    assert top3 > 0.85


def test_users_prefer_one_style(core: set, latent: dict) -> None:
    by_user: dict[str, Counter] = {}
    for u, i in core:
        by_user.setdefault(u, Counter())[latent[i]["style"]] += 1
    top1 = np.mean([c.most_common(1)[0][1] / c.total() for c in by_user.values()])
    # Under uniform random choice over 3 styles the top one would hold roughly 45-50%.
    assert top1 > 0.6
    assert {r["style"] for r in latent.values()} == {name for name, _ in mini.STYLES}


# ------------------------------------------------------------------ images


def test_image_statuses_behave_as_labelled(meta: list[dict], latent: dict) -> None:
    by_asin = {m["asin"]: m for m in meta}
    seen = Counter()
    for asin, row in latent.items():
        status, path, m = row["image_status"], MINI / "images" / f"{asin}.jpg", by_asin[asin]
        seen[status] += 1
        if status == mini.IMAGE_NO_URL:
            assert not m["imageURL"] and not m["imageURLHighRes"] and not path.exists()
            continue
        assert m["imageURL"]
        if status == mini.IMAGE_MISSING:
            assert not path.exists()
        elif status == mini.IMAGE_OK:
            with Image.open(path) as im:
                im.load()
                assert im.format == "JPEG" and im.size == (96, 96)
        else:
            assert path.exists()
            with pytest.raises(OSError):  # UnidentifiedImageError and truncation are OSErrors
                with Image.open(path) as im:
                    im.load()
    assert all(seen[s] >= 3 for s in (*mini.BROKEN_IMAGE_STATUSES, mini.IMAGE_MISSING))
    assert seen[mini.IMAGE_NO_URL] >= 10
    files = {p.stem for p in (MINI / "images").iterdir()}
    assert files <= set(latent)


# ------------------------------------------------------------------ latent categories


def _nearest_centroid_scores(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Cosine scores of every row to the class centroids of the training rows, z-scored."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    cent = np.stack([x[train & (y == c)].mean(0) for c in range(len(mini.CATEGORIES))])
    s = x @ (cent / np.linalg.norm(cent, axis=1, keepdims=True)).T
    return (s - s.mean(1, keepdims=True)) / s.std(1, keepdims=True)


def test_category_is_ambiguous_per_modality_and_clearer_with_both(
    meta: list[dict], latent: dict
) -> None:
    by_asin = {m["asin"]: m for m in meta}
    asins = sorted(a for a, r in latent.items() if r["image_status"] == mini.IMAGE_OK)
    y = np.array([latent[a]["category"] for a in asins])
    # Image: 4x4x4 RGB colour histogram (it sees the palette, hardly the shape).
    hists = []
    for a in asins:
        px = np.asarray(Image.open(MINI / "images" / f"{a}.jpg").convert("RGB")) // 64
        hists.append(
            np.bincount((px[..., 0] * 16 + px[..., 1] * 4 + px[..., 2]).ravel(), minlength=64)
        )
    # Text: bag of words of the title (word overlap with each category's titles).
    docs = [re.findall(r"[a-z]+", by_asin[a]["title"].lower()) for a in asins]
    vocab = {w: j for j, w in enumerate(sorted({w for d in docs for w in d}))}
    bow = np.zeros((len(asins), len(vocab)))
    for r, d in enumerate(docs):
        for w in d:
            bow[r, vocab[w]] += 1
    train = np.random.default_rng(0).random(len(asins)) < 0.5
    s_img = _nearest_centroid_scores(np.array(hists, dtype=float), y, train)
    s_txt = _nearest_centroid_scores(bow, y, train)
    acc = {
        name: float((s[~train].argmax(1) == y[~train]).mean())
        for name, s in (("image", s_img), ("text", s_txt), ("both", s_img + s_txt))
    }
    chance = 1 / len(mini.CATEGORIES)
    assert 2 * chance < acc["image"] < 0.95, acc
    assert 2 * chance < acc["text"] < 0.95, acc
    assert acc["both"] > max(acc["image"], acc["text"]) + 0.1, acc
