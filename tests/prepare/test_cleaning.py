"""Real-world text cleaning: broken markup, entities, fallback titles, merged metadata lines.

Hand-written hostile cases first, then the real Amazon 2018 Magazine_Subscriptions files
(``../shared/data/amazon2018-magazine``), whose titles are almost all a cut-off
``<span class="a-size-medium a-color-secondary"`` and whose metadata repeats asins.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from alignrec_data.errors import UsageError
from alignrec_data.prepare import PrepareConfig, build_items, merge_metadata, prepare_dataset
from alignrec_data.readers import BadLineLog, ItemMeta, reader_for
from alignrec_data.readers.amazon2018 import meta_record
from alignrec_data.readers.base import MAX_IMAGE_URLS, as_str
from alignrec_data.registry import get_dataset, raw_path
from alignrec_data.text import clean_list, clean_text, fallback_title, first_sentence
from tests.conftest import shared_data

SPAN = '<span class="a-size-medium a-color-secondary"'  # 3,153 of the Magazine titles


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        # Unclosed and cut-off tags: to the end of the string, or from its start.
        (SPAN, ""),
        (f"Vogue {SPAN}", "Vogue"),
        ("Line one<br", "Line one"),
        ('<a href="/help?x=1&y=2" target="_blank">Learn', "Learn"),
        ('<a href="/never-closed', ""),
        (' Magazines" />', ""),
        ('a-color-secondary">Real Title', "Real Title"),
        # Complete tags, nested, upper case, ">" inside a quoted attribute value.
        ("<div><p>Nested <b><i>deep</i></b> text</p></div>", "Nested deep text"),
        ("<B>Bold</B><BR/>next", "Bold next"),
        ('<a title="a > b">link</a> text', "link text"),
        ("<img src=x alt=it's> after", "after"),  # a quote opens a value only after "="
        # Script and style content goes with the tags; unclosed ones run to the end.
        (
            '<script type="text/javascript">var a = "<b>";</script>Hi<style>p{}</style> there',
            "Hi there",
        ),
        ("Before<script>alert(1)", "Before"),
        ("x <!-- a > b --> y", "x y"),
        # Entities decoded exactly once; an escaped tag decodes to a tag, which goes too.
        ("Baby &amp; Kids", "Baby & Kids"),
        ("&amp;lt;b&amp;gt;Bold", "&lt;b&gt;Bold"),
        ("&amp;amp;", "&amp;"),
        ("Safe &lt;i&gt;x&lt;/i&gt;", "Safe x"),
        ("D&eacute;cor &ndash; &#x2019;", "D\u00e9cor \u2013 \u2019"),
        # A "<" or ">" that cannot start or end a tag is text, as a browser shows it.
        ("a < b", "a < b"),
        ("I <3 it", "I <3 it"),
        ("Books > Kids", "Books > Kids"),
        ("&quot;x&quot; &gt; y", '"x" > y'),
        ("5 &lt; 6", "5 < 6"),
        # Whitespace collapsed; leftovers without a letter or digit dropped.
        (" a\n\t b\u00a0c &nbsp; ", "a b c"),
        ("&nbsp;&nbsp;", ""),
        ("<b>-</b> / <i>()</i>", ""),
        ('" />', ""),
        ("", ""),
    ],
)
def test_clean_text_hostile_cases(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_clean_text_is_linear_on_adversarial_markup() -> None:
    import time

    nasty = [
        '<a x="' * 20_000,
        "<" * 100_000,
        "<a " + "=" * 100_000,
        '"' + " " * 100_000 + "x>",
        '<a b="' + "'" * 100_000,
        "<script>" * 20_000,
    ]
    start = time.perf_counter()
    for value in nasty:
        clean_text(value)
    assert time.perf_counter() - start < 2.0


def test_list_elements_cut_inside_a_tag_do_not_swallow_the_next_ones() -> None:
    parts = ["Intro.", '<a href="/help" target="_blank">Learn', SPAN, "Outro &amp; more."]
    assert clean_text(as_str(parts)) == "Intro. Learn Outro & more."
    m = meta_record({"asin": "B1", "title": SPAN, "description": parts, "category": [SPAN, "A"]})
    assert (clean_text(m.title), clean_text(m.description)) == ("", "Intro. Learn Outro & more.")
    assert clean_list(m.categories) == ["A"]


def test_fallback_title_order() -> None:
    assert fallback_title("T", "B", ["A", "C"], "D. E.") == ("T", "title")
    assert fallback_title("", "B", ["A", "C"], "First one. Second.") == (
        "First one.",
        "description",
    )
    assert fallback_title("", "B", ["A", "C"], "") == ("B", "brand")
    assert fallback_title("", "", ["A", "C"], "") == ("C", "categories")
    assert fallback_title("", "", [], "") == ("", "none")
    long = "word " * 60
    cut = first_sentence(long)
    assert len(cut) <= 120 and long.startswith(cut) and not cut.endswith(" ")
    assert first_sentence("x" * 300) == "x" * 120  # no space to cut at
    assert first_sentence("Version 2.0 is out! Get it.") == "Version 2.0 is out!"


def _meta(key: str, title: str = "", brand: str = "", cats=(), desc: str = "", urls=()):
    return ItemMeta(key, title, brand, list(cats), desc, list(urls))


def test_merge_metadata_first_non_empty_value_per_field_in_file_order() -> None:
    lines = [
        _meta("A", SPAN, "", ["<b></b>"], "First desc", ["u1", "u2"]),
        _meta("B", "Bee", "Bz", ["X"], "d", ["b1"]),
        _meta("A", "Real Title", "Brand 2", ["Cat", "Sub"], "Later desc", ["u2", "u3"]),
        _meta("A", "Third", "Brand 3", ["Other"], "", [f"v{k}" for k in range(10)]),
        _meta("B", "Bee", "Bz", ["X"], "d", ["b1"]),  # an identical repeat changes nothing
        _meta("C", "Sea"),
    ]
    metas, counts = merge_metadata(lines)
    a = metas["A"]
    assert (a.title, a.brand, a.categories, a.description) == (
        "Real Title",  # the first line's title is only markup
        "Brand 2",
        ["Cat", "Sub"],  # the first path with a category, not mixed with "Other"
        "First desc",  # the first line wins where it has a value
    )
    assert a.image_urls == ["u1", "u2", "u3", "v0", "v1", "v2", "v3", "v4"]
    assert len(a.image_urls) == MAX_IMAGE_URLS
    assert metas["B"] == lines[1] and metas["C"] == lines[5]
    assert counts == {"duplicate_lines": 3, "merged_items": 2, "fields_filled": 5}
    # Only the wanted items are kept and counted.
    metas, counts = merge_metadata(lines, {"B", "C"})
    assert sorted(metas) == ["B", "C"]
    assert counts == {"duplicate_lines": 1, "merged_items": 1, "fields_filled": 0}
    # Deterministic: the same lines give the same records.
    assert merge_metadata(lines) == merge_metadata(list(lines))


def test_build_items_falls_back_without_repeating_words_in_text() -> None:
    metas = {
        "A": _meta("A", SPAN, "Pub", ["Mags", "Arts"], "<p>Covers design. And more.</p>"),
        "B": _meta("B", "<b>Bee</b> &amp; Co", "Pub", ["Mags"], ""),
        "C": _meta("C", ' Magazines" />', "Pub &amp; Sons", ["Mags"], "<br>"),
    }
    items, sources = build_items(["A", "B", "C", "D"], metas)
    rows = {r["item_key"]: r for r in items.to_pylist()}
    assert rows["A"]["title"] == "Covers design."
    assert rows["A"]["text"] == "Pub Mags Arts Covers design. And more."
    assert (rows["B"]["title"], rows["B"]["text"]) == ("Bee & Co", "Bee & Co Pub Mags")
    assert (rows["C"]["title"], rows["C"]["text"]) == ("Pub & Sons", "Pub & Sons Mags")
    assert rows["D"]["title"] == "" and rows["D"]["text"] == ""  # no metadata
    assert sources == {"title": 1, "description": 1, "brand": 1, "categories": 0, "none": 1}
    with pytest.raises(UsageError, match=r"field \{price\} is not allowed"):
        PrepareConfig(text_template="{title} {price}")


# --- the real Magazine_Subscriptions files ------------------------------------------------------

MAGAZINE = "amazon2018-magazine"
REVIEWS, META = "Magazine_Subscriptions_5.json.gz", "meta_Magazine_Subscriptions.json.gz"


def _assert_clean(rows: list[dict]) -> None:
    for row in rows:
        for value in (
            row["title"],
            row["brand"],
            row["description"],
            row["text"],
            *row["categories"],
        ):
            assert "<" not in value and "class=" not in value, (row["item_key"], value)


@pytest.mark.shared_data
def test_magazine_metadata_file_cleaned_and_merged() -> None:
    src = shared_data(MAGAZINE)
    with gzip.open(src / META, "rt", encoding="utf-8") as f:
        raw_titles = [json.loads(line)["title"] for line in f]
    assert (len(raw_titles), raw_titles.count(SPAN)) == (3385, 3153)  # the problem, measured
    log = BadLineLog(META, False, 5)
    metas, counts = merge_metadata(reader_for("2018").read_meta(src / META, log))
    assert (log.lines, log.count) == (3385, 0)
    # 1,065 asins appear on two identical lines: 3,385 lines - 2,320 asins.
    assert len(metas) == 2320
    assert counts == {"duplicate_lines": 1065, "merged_items": 1065, "fields_filled": 0}
    items, sources = build_items(sorted(metas), metas)
    rows = items.to_pylist()
    _assert_clean(rows)
    assert sources == {"title": 147, "description": 1932, "brand": 239, "categories": 2, "none": 0}
    assert all(r["title"] and r["text"] for r in rows)


@pytest.mark.shared_data
def test_magazine_prepared_titles_and_text_are_clean(data_dir: Path) -> None:
    src = shared_data(MAGAZINE)
    try:
        spec = get_dataset("amazon2018-magazine-subscriptions")
    except UsageError:  # no registry entry: the 2018 file names of another category will do
        spec = get_dataset("amazon2018-electronics")
    raw = data_dir / spec.id / "raw"
    raw.mkdir(parents=True)
    shutil.copy(src / REVIEWS, raw_path(raw, spec, "reviews"))
    shutil.copy(src / META, raw_path(raw, spec, "meta"))
    stats = prepare_dataset(spec.id, data_dir, PrepareConfig(), verify=False)
    assert (stats["users"], stats["items"], stats["interactions"]) == (294, 132, 2027)
    assert stats["items_without_metadata"] == 4
    assert stats["duplicate_metadata_records"] == 87
    assert stats["metadata_merge"] == {
        "duplicate_lines": 87,
        "merged_items": 87,
        "fields_filled": 0,
    }
    assert stats["title_sources"] == {
        "title": 2,
        "description": 123,
        "brand": 3,
        "categories": 0,
        "none": 4,  # the 4 items without metadata
    }
    rows = pq.read_table(data_dir / spec.id / "prepared" / "items.parquet").to_pylist()
    _assert_clean(rows)
    assert sum(not r["title"] for r in rows) == 4
