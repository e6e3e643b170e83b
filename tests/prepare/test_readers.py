"""The three release readers on fixtures in their exact formats, and hostile input."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from alignrec_data.errors import DataFormatError
from alignrec_data.prepare import prepare_dataset
from alignrec_data.readers import (
    BadLineLog,
    amazon2014,
    amazon2018,
    amazon2023,
    iter_lines,
    url_candidates,
)
from alignrec_data.readers.base import strip_size_modifier
from tests.prepare.conftest import FIXTURES, NO_CORE, Place


def _prepared(data_dir: Path, dataset: str) -> tuple[list[dict], list[dict], dict]:
    import json

    folder = data_dir / dataset / "prepared"
    inter = pq.read_table(folder / "interactions.parquet").to_pylist()
    items = pq.read_table(folder / "items.parquet").to_pylist()
    return inter, items, json.loads((folder / "stats.json").read_text())


def test_2014_reviews_and_single_quoted_metadata(
    data_dir: Path, place_release: Place, tmp_path: Path
) -> None:
    pwned = tmp_path / "pwned"
    dataset = place_release("2014", lambda role, text: text.replace("PWNED_PATH", str(pwned)))
    stats = prepare_dataset(dataset, data_dir, NO_CORE)
    inter, items, saved = _prepared(data_dir, dataset)
    assert saved == stats
    # 6 lines: one not JSON, one without unixReviewTime -> 4 reviews of 2 users and 2 items.
    assert stats["bad_lines"]["reviews"]["bad_lines"] == 2
    assert [e["line"] for e in stats["bad_lines"]["reviews"]["examples"]] == [4, 5]
    assert "unixReviewTime" in stats["bad_lines"]["reviews"]["examples"][1]["reason"]
    assert (stats["users"], stats["items"], stats["interactions"]) == (2, 2, 4)
    # Metadata: the code line is rejected by literal_eval and never run; the truncated dict too.
    assert not pwned.exists()
    meta_bad = stats["bad_lines"]["meta"]
    assert meta_bad["bad_lines"] == 2 and [e["line"] for e in meta_bad["examples"]] == [2, 5]
    by_key = {it["item_key"]: it for it in items}
    one = by_key["B000ITEM01"]
    assert one["title"] == "Organic Cotton Swaddle & Blanket"
    assert one["categories"] == ["Baby", "Nursery", "Bedding", "Gifts"]
    assert one["description"] == "It's soft, breathable and large."
    assert (
        one["text"] == "Organic Cotton Swaddle & Blanket Aden Baby Nursery Bedding Gifts "
        "It's soft, breathable and large."
    )
    assert one["image_urls"] == [
        "http://ecx.images-amazon.com/images/I/51fAmVkTbyL._SY300_.jpg",
        "http://ecx.images-amazon.com/images/I/51fAmVkTbyL.jpg",
    ]
    assert one["has_image"] is True
    two = by_key["B000ITEM02"]
    assert (
        two["title"] == "Baby's First Rattle"
        and two["image_urls"] == []
        and two["has_image"] is False
    )
    assert stats["missing_image_url_rate"] == 0.5
    # Users sorted by raw key get ids 0, 1; rows sorted by (user_id, timestamp, item_id).
    assert [(r["user_key"], r["item_key"], r["rating"], r["timestamp"]) for r in inter] == [
        ("A1OTHERUSER", "B000ITEM01", 4.0, 1300000000),
        ("A1OTHERUSER", "B000ITEM02", 2.0, 1310000000),
        ("A2SUAM1J3GNN3B", "B000ITEM01", 5.0, 1252800000),
        ("A2SUAM1J3GNN3B", "B000ITEM02", 3.0, 1262304000),
    ]
    assert [r["user_id"] for r in inter] == [0, 0, 1, 1]


def test_2018_duplicates_keep_earliest_and_html_categories(
    data_dir: Path, place_release: Place
) -> None:
    dataset = place_release("2018")
    stats = prepare_dataset(dataset, data_dir, NO_CORE)
    inter, items, _ = _prepared(data_dir, dataset)
    steps = {s["step"]: s["interactions"] for s in stats["steps"]}
    assert steps == {"read": 5, "dedupe": 3, "k_core": 3}
    assert stats["bad_lines"]["reviews"]["bad_lines"] == 1  # "overall": "five"
    first = [r for r in inter if (r["user_key"], r["item_key"]) == ("AUSER1", "B00ASIN001")]
    assert [(r["rating"], r["timestamp"]) for r in first] == [
        (5.0, 1441324800)
    ]  # not the 2017 re-review
    tripod = next(it for it in items if it["item_key"] == "B00ASIN001")
    assert tripod["categories"] == ["Electronics", "Camera & Photo", "Accessories"]
    assert tripod["description"] == "Sturdy tripod. Aluminium legs."  # &nbsp; -> space
    assert tripod["title"] == "Mini Tripod"  # the first of two metadata records
    assert stats["duplicate_metadata_records"] == 1
    # The first record has every field: the repeat fills nothing (and adds no image URL).
    assert stats["metadata_merge"] == {"duplicate_lines": 1, "merged_items": 1, "fields_filled": 0}
    assert stats["title_sources"]["title"] == stats["items"]
    assert tripod["image_urls"] == [
        "https://images-na.ssl-images-amazon.com/images/I/41abc.jpg",
        "https://images-na.ssl-images-amazon.com/images/I/41abc._SS40_.jpg",
    ]


def test_2023_parent_asin_and_millisecond_timestamps(data_dir: Path, place_release: Place) -> None:
    dataset = place_release("2023")
    stats = prepare_dataset(dataset, data_dir, NO_CORE)
    inter, items, _ = _prepared(data_dir, dataset)
    assert stats["bad_lines"]["reviews"]["bad_lines"] == 2  # no parent_asin; a JSON array
    reasons = [e["reason"] for e in stats["bad_lines"]["reviews"]["examples"]]
    assert "parent_asin" in reasons[0] and "expected an object, found list" in reasons[1]
    # Two variants of one parent are one item: the earliest review is kept, ms -> s floored.
    assert {(r["item_key"], r["timestamp"], r["rating"]) for r in inter} == {
        ("B0PARENT01", 1588687728, 5.0),
        ("B0PARENT02", 1609459200, 3.0),
    }
    blanket = next(it for it in items if it["item_key"] == "B0PARENT01")
    assert blanket["brand"] == "Cozy Co" and blanket["categories"] == [
        "Baby",
        "Baby Products",
        "Nursery",
    ]
    assert blanket["description"] == "A warm blanket. Machine washable."
    # MAIN image first: hi_res, its full-size form, then large.
    assert blanket["image_urls"][:3] == [
        "https://m.media-amazon.com/images/I/71main._AC_SL1500_.jpg",
        "https://m.media-amazon.com/images/I/71main.jpg",
        "https://m.media-amazon.com/images/I/41main._AC_.jpg",
    ]
    teether = next(it for it in items if it["item_key"] == "B0PARENT02")
    assert teether["brand"] == "Chewy" and teether["has_image"] is False


@pytest.mark.parametrize("release", ["2014", "2018", "2023"])
def test_strict_stops_at_first_bad_line(data_dir: Path, place_release: Place, release: str) -> None:
    dataset = place_release(release)
    name = {
        "2014": "reviews_Baby_5.json.gz",
        "2018": "Electronics_5.json.gz",
        "2023": "Baby_Products.jsonl.gz",
    }[release]
    line = {"2014": 4, "2018": 6, "2023": 4}[release]
    with pytest.raises(DataFormatError, match=rf"{name} line {line}: .*--strict"):
        prepare_dataset(dataset, data_dir, NO_CORE, strict=True)
    assert not (data_dir / dataset / "prepared").exists()


def test_readers_yield_records_directly() -> None:
    log = BadLineLog("reviews_2014.json")
    rows = list(amazon2014.read_reviews(FIXTURES / "reviews_2014.json", log))
    assert rows[0] == ("A2SUAM1J3GNN3B", "B000ITEM01", 5.0, 1252800000) and log.lines == 6
    log = BadLineLog("meta_2018.json")
    assert [m.key for m in amazon2018.read_meta(FIXTURES / "meta_2018.json", log)] == [
        "B00ASIN001",
        "B00ASIN002",
        "B00ASIN001",
    ]
    log = BadLineLog("reviews_2023.jsonl", max_examples=1)
    assert len(list(amazon2023.read_reviews(FIXTURES / "reviews_2023.jsonl", log))) == 3
    assert log.count == 2 and len(log.examples) == 1


def _write_long_line_gz(path: Path, long_bytes: int) -> None:
    """Line 1 ok, line 2 is ``long_bytes`` long (written in 1 MiB pieces), line 3 ok."""
    ok = b'{"reviewerID": "U1", "asin": "I1", "overall": 4.0, "unixReviewTime": 1000}\n'
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(ok)
        f.write(b'{"reviewerID": "U2", "asin": "I2", "reviewText": "')
        piece = b"x" * (1 << 20)
        for _ in range(long_bytes // len(piece)):
            f.write(piece)
        f.write(b'", "overall": 1.0, "unixReviewTime": 1}\n')
        f.write(ok.replace(b"U1", b"U3"))


def test_over_long_line_is_counted_and_never_held(tmp_path: Path) -> None:
    path = tmp_path / "reviews.json.gz"
    _write_long_line_gz(path, 50 * (1 << 20))  # a 50 MiB line against a 10 MiB cap
    log = BadLineLog(path.name)
    tracemalloc.start()
    rows = list(amazon2018.read_reviews(path, log, max_line_bytes=10 * (1 << 20)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [r[0] for r in rows] == ["U1", "U3"]
    assert log.count == 1 and log.examples[0].line == 2 and log.lines == 3
    assert "longer than max_line_bytes=10485760" in log.examples[0].reason
    assert peak < 25 * (1 << 20), f"peak traced memory {peak / 2**20:.1f} MiB for a 10 MiB cap"
    with pytest.raises(DataFormatError, match=r"reviews.json.gz line 2: line longer than"):
        list(
            amazon2018.read_reviews(
                path, BadLineLog(path.name, strict=True), max_line_bytes=10 * (1 << 20)
            )
        )


def test_line_of_exactly_the_cap_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    body = b'{"a": "' + b"y" * 10 + b'"}'
    path.write_bytes(body + b"\n" + body)  # last line without newline
    log = BadLineLog(path.name)
    assert [n for n, _ in iter_lines(path, log, max_line_bytes=len(body))] == [1, 2]
    assert log.count == 0
    log = BadLineLog(path.name)
    assert list(iter_lines(path, log, max_line_bytes=len(body) - 1)) == [] and log.count == 2


def test_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    data = gzip.compress((FIXTURES / "reviews_2018.json").read_bytes() * 50)
    path = tmp_path / "Electronics_5.json.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        DataFormatError, match=r"Electronics_5.json.gz: corrupt or truncated gzip.*download"
    ):
        list(amazon2018.read_reviews(path, BadLineLog(path.name)))


def test_deeply_nested_and_huge_literals_are_bad_lines_not_crashes(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    path.write_text("[" * 100000 + "\n" + "{'asin': 'B1', 'title': 'ok'}\n" + "(" * 5000 + "\n")
    log = BadLineLog(path.name)
    metas = list(amazon2014.read_meta(path, log))
    assert [m.key for m in metas] == ["B1"] and log.count == 2
    log = BadLineLog(path.name)
    assert list(amazon2018.read_meta(path, log)) == [] and log.count == 3


def test_url_candidates() -> None:
    assert (
        strip_size_modifier("https://h/images/I/41x._SX38_SY50_CR,0,0,38,50_.jpg")
        == "https://h/images/I/41x.jpg"
    )
    assert strip_size_modifier("https://h/images/I/41x.jpg") == "https://h/images/I/41x.jpg"
    urls = url_candidates(
        [("file:///etc/passwd", "https://h/I/a._SS40_.jpg", "https://h/I/a.jpg", 7, None)]
    )
    assert urls == ["https://h/I/a._SS40_.jpg", "https://h/I/a.jpg"]
    many = url_candidates([(f"https://h/I/{k}._SS40_.jpg",) for k in range(10)])
    assert len(many) == 8


def test_block_reader_skips_over_long_lines_with_exact_numbers(tmp_path: Path) -> None:
    from alignrec_data.readers.columns import read_review_columns

    path = tmp_path / "reviews.json.gz"
    _write_long_line_gz(path, 50 * (1 << 20))
    log = BadLineLog(path.name)
    tracemalloc.start()
    cols = read_review_columns(
        path, log, 10 * (1 << 20), amazon2018.REVIEW_FIELDS, block_bytes=1 << 20
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert cols.user_keys == ["U1", "U3"] and len(cols) == 2
    assert log.count == 1 and log.examples[0].line == 2 and log.lines == 3
    assert peak < 40 * (1 << 20), f"peak traced memory {peak / 2**20:.1f} MiB for a 10 MiB cap"
    # Long lines inside one block, blank lines, a final line without newline, bad records.
    plain = tmp_path / "plain.json"
    ok = '{"reviewerID": "U%d", "asin": "I", "overall": 1, "unixReviewTime": %d}'
    rows = [
        ok % (1, 5),
        "x" * 300,
        "",
        ok % (2, 6),
        '{"reviewerID": "", "asin": "I", "overall": 1, "unixReviewTime": 1}',
        ok % (3, 7),
    ]
    plain.write_text("\n".join(rows))
    for block in (64, 1 << 20):
        log = BadLineLog(plain.name)
        cols = read_review_columns(plain, log, 200, amazon2018.REVIEW_FIELDS, block_bytes=block)
        u, _, r, t = cols.arrays()
        assert [cols.user_keys[c] for c in u] == ["U1", "U2", "U3"] and t.tolist() == [5, 6, 7], (
            block
        )
        assert [(e.line, e.reason.split(" (")[0]) for e in log.examples] == [
            (2, "line longer than max_line_bytes=200"),
            (5, "field 'reviewerID' must be a non-empty string, found ''"),
        ], block
        assert log.lines == 6


def test_bad_line_reasons_carry_no_memory_address() -> None:
    # ast.literal_eval names the offending node by its repr, whose address changes every run:
    # without it the bad-line report (kept in stats.json) is the same for the same input.
    import ast

    from alignrec_data.readers.lines import short_error

    try:
        ast.literal_eval("{'asin': f(1)}")
    except ValueError as err:
        reason = short_error(err)
    assert "0x" not in reason and reason.startswith("ValueError: malformed node or string")
