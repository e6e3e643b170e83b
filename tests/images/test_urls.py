"""Candidate order (DATA_FORMATS.md "Image URLs") and the mirror rewrite."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignrec_data.errors import UsageError
from alignrec_data.images.urls import (
    IMAGE_MIRROR_ENV,
    MirrorRule,
    MirrorRules,
    image_candidates,
    mirror_rules,
    strip_size_modifier,
)

IMG = "https://m.media-amazon.com/images/I/"


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        (IMG + "41pBVBfmxaL._SY300_.jpg", IMG + "41pBVBfmxaL.jpg"),
        (IMG + "41pBVBfmxaL._SS40_.jpg", IMG + "41pBVBfmxaL.jpg"),
        (IMG + "41pBVBfmxaL._SX300_.png", IMG + "41pBVBfmxaL.png"),
        (IMG + "41pBVBfmxaL._AC_UL320_SR320,320_.jpg", IMG + "41pBVBfmxaL.jpg"),
        (IMG + "41pBVBfmxaL.jpg", IMG + "41pBVBfmxaL.jpg"),
        (
            "http://ecx.images-amazon.com/images/I/5._SY300_.jpg?x=1",
            "http://ecx.images-amazon.com/images/I/5.jpg?x=1",
        ),
    ],
)
def test_strip_size_modifier(url: str, stripped: str) -> None:
    assert strip_size_modifier(url) == stripped


def test_candidates_2023_order_hi_res_large_stripped_thumb() -> None:
    hi_res, large, thumb = IMG + "81jJ._SL1500_.jpg", IMG + "41qf.jpg", IMG + "51ab._SS40_.jpg"
    assert image_candidates([hi_res, large, thumb]) == [
        hi_res,  # _SL1500_ counts as full size
        large,
        IMG + "81jJ.jpg",  # hi_res without modifier
        IMG + "51ab.jpg",  # thumb without modifier, before the thumb itself
        thumb,
    ]


def test_candidates_dedupe_and_blank_entries() -> None:
    large, thumb = IMG + "41qf.jpg", IMG + "41qf._SS40_.jpg"
    assert image_candidates([large, "", None, "  ", thumb, large]) == [large, thumb]
    assert image_candidates([]) == []
    assert image_candidates(None) == []


def test_candidates_2014_single_thumb_url() -> None:
    url = "http://ecx.images-amazon.com/images/I/41pBVBfmxaL._SY300_.jpg"
    assert image_candidates([url]) == [strip_size_modifier(url), url]


def test_mirror_rule_parse_errors() -> None:
    with pytest.raises(UsageError, match="expected PREFIX=REPLACEMENT, found 'no-equals'"):
        MirrorRule.parse("no-equals")
    with pytest.raises(UsageError, match="unsupported scheme 'ftp'"):
        MirrorRule.parse("https://a/=ftp://b/")


def test_longest_prefix_wins_and_local_folder(tmp_path: Path) -> None:
    rules = MirrorRules(
        [
            MirrorRule.parse("https://a.example/=https://mirror.example/all/"),
            MirrorRule.parse(f"https://a.example/images/I/={tmp_path}/"),
        ]
    )
    c = rules.resolve("https://a.example/images/I/x.jpg")
    assert c.error is None and c.url == (tmp_path / "x.jpg").as_uri()
    assert (
        rules.resolve("https://a.example/other/y.jpg").url
        == "https://mirror.example/all/other/y.jpg"
    )
    assert rules.resolve("https://b.example/z.jpg").url == "https://b.example/z.jpg"


def test_untrusted_urls_cannot_reach_local_files(tmp_path: Path) -> None:
    rules = MirrorRules([MirrorRule.parse(f"https://img.example/i/={tmp_path}/")])
    # file:// (and other schemes) from metadata are refused outright.
    assert rules.resolve("file:///etc/passwd").error == "unsupported-url"
    assert rules.resolve("javascript:alert(1)").error == "unsupported-url"
    # A rewritten URL may not climb out of the mirror folder, escaped or not.
    assert rules.resolve("https://img.example/i/../../etc/passwd").error == "unsafe-url"
    assert rules.resolve("https://img.example/i/%2e%2e/%2E%2E/etc/passwd").error == "unsafe-url"
    assert rules.resolve("https://img.example/i/sub/ok.jpg").error is None


def test_registry_default_rewrites_amazon_mini_to_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from alignrec_data.registry import get_dataset, resolve_base_url

    monkeypatch.delenv(IMAGE_MIRROR_ENV, raising=False)
    monkeypatch.delenv("ALIGNREC_MIRROR", raising=False)
    spec = get_dataset("amazon-mini")
    rules = mirror_rules("amazon-mini")
    c = rules.resolve(spec.image_base_url + "B00TEST.jpg")
    assert c.error is None
    assert c.url == resolve_base_url(spec) + "images/B00TEST.jpg"
    assert c.url.startswith("file://")
    # Datasets not in the registry (imported) get no rewrite.
    assert mirror_rules("my-imported-set").rules == ()


def test_explicit_and_env_mirrors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(
        IMAGE_MIRROR_ENV, f"https://a.example/=https://m1.example/  https://b.example/={tmp_path}/"
    )
    rules = mirror_rules("my-imported-set")
    assert rules.resolve("https://a.example/x.jpg").url == "https://m1.example/x.jpg"
    assert rules.resolve("https://b.example/y.jpg").url == (tmp_path / "y.jpg").as_uri()
    # --mirror replaces the environment variable.
    rules = mirror_rules("my-imported-set", ["https://a.example/=https://m2.example/"])
    assert rules.resolve("https://a.example/x.jpg").url == "https://m2.example/x.jpg"
    assert rules.resolve("https://b.example/y.jpg").url == "https://b.example/y.jpg"
    monkeypatch.setenv(IMAGE_MIRROR_ENV, "broken")
    with pytest.raises(UsageError, match=r"\$ALIGNREC_IMAGE_MIRROR: expected PREFIX=REPLACEMENT"):
        mirror_rules("x")
