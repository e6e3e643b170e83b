"""Cleaning (dedupe, k-core, remap), item text, and the three split methods."""

from __future__ import annotations

import numpy as np
import pytest

from alignrec_data.clean import dedupe_earliest, k_core, remap_by_key
from alignrec_data.config import load_section
from alignrec_data.errors import UsageError
from alignrec_data.prepare import PrepareConfig
from alignrec_data.splits import assign_splits, split_leave_one_out, split_random, split_temporal
from alignrec_data.text import assemble_text, clean_text, validate_template


def test_dedupe_keeps_earliest_and_file_order_on_ties() -> None:
    u = np.array([0, 0, 1, 0, 0])
    i = np.array([5, 5, 5, 5, 6])
    t = np.array([30, 10, 10, 10, 1])
    # (0,5) at rows 0,1,3: earliest time 10 at rows 1 and 3 -> row 1 (first in the file).
    assert dedupe_earliest(u, i, t).tolist() == [1, 2, 4]


def test_k_core_is_iterative_and_reports_fixed_points() -> None:
    # Item 9 has 2 users (< 3): dropping it leaves users 2 and 3 with 1 item (< 2); dropping
    # them leaves items 1 and 2 with exactly 3 users each, a fixed point after 3 rounds.
    pairs = [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 9), (3, 9), (3, 2), (4, 1), (4, 2)]
    u, i = (np.array(x) for x in zip(*pairs, strict=True))
    keep, rounds = k_core(u, i, 2, 3)
    assert {pairs[k] for k in keep.tolist()} == {(0, 1), (0, 2), (1, 1), (1, 2), (4, 1), (4, 2)}
    assert rounds == 3
    again, r2 = k_core(u[keep], i[keep], 2, 3)
    assert len(again) == len(keep) and r2 == 1
    assert len(k_core(u, i, 3, 3)[0]) == 0


def test_remap_sorts_by_key_independent_of_code_order() -> None:
    ids, keys = remap_by_key(np.array([2, 0, 2, 1]), ["b", "c", "a"])
    assert keys == ["a", "b", "c"] and ids.tolist() == [0, 1, 0, 2]
    ids2, keys2 = remap_by_key(np.array([0, 1, 0]), ["a", "c", "zz-unused"])
    assert keys2 == ["a", "c"] and ids2.tolist() == [0, 1, 0]


def _mmrec_rule(n: int) -> tuple[int, int, int]:
    """The rule as written in ALIGNREC_SPEC.md."""
    if n < 10:
        return n - 2, 1, 1
    tot = int(np.floor(0.2 * n))
    return n - tot, tot // 2, tot - tot // 2


def test_random_split_follows_the_mmrec_rule_and_the_seed() -> None:
    ns = list(range(3, 60))
    users = np.repeat(np.arange(len(ns)), ns)
    codes = split_random(users, len(ns), seed=7)
    for u, n in enumerate(ns):
        got = np.bincount(codes[users == u], minlength=3)
        assert tuple(got) == _mmrec_rule(n), n
    assert np.array_equal(codes, split_random(users, len(ns), seed=7))
    assert not np.array_equal(codes, split_random(users, len(ns), seed=8))
    # Tiny users (no k-core): 1 -> train, 2 -> train + test.
    tiny = split_random(np.array([0, 1, 1]), 2, seed=0)
    assert tiny[0] == 0 and sorted(tiny[1:].tolist()) == [0, 2]


def test_random_split_permutation_is_uniform() -> None:
    # 5 interactions: 3/1/1. Each position must reach test about 1/5 of the time over seeds.
    users = np.zeros(5, dtype=np.int64)
    hits = np.zeros(5)
    for seed in range(2000):
        hits += split_random(users, 1, seed) == 2
    assert np.allclose(hits / 2000, 0.2, atol=0.03)


def test_leave_one_out_by_time_with_seeded_ties() -> None:
    users = np.array([0, 0, 0, 0, 1, 1, 2])
    items = np.array([4, 3, 9, 1, 5, 6, 7])
    ts = np.array([10, 20, 20, 5, 1, 2, 3])
    # user 0: item1 (5), item4 (10), then item3 and item9 tied at 20: one test, one valid.
    seen = set()
    for seed in range(200):
        codes = split_leave_one_out(users, items, ts, 3, seed)
        assert codes[[0, 3, 4, 5, 6]].tolist() == [0, 0, 0, 2, 0]
        assert sorted(codes[[1, 2]].tolist()) == [1, 2]
        seen.add(tuple(codes[[1, 2]].tolist()))
        assert np.array_equal(codes, split_leave_one_out(users, items, ts, 3, seed))
    assert seen == {(1, 2), (2, 1)}  # both orders of the tie occur


def test_tie_breaking_is_uniform_and_independent_of_row_order() -> None:
    # One user, 4 interactions all at the same time: each is test about 1/4 of the time.
    users, items, ts = np.zeros(4, np.int64), np.arange(4), np.full(4, 7)
    hits = np.zeros(4)
    for seed in range(2000):
        hits += split_leave_one_out(users, items, ts, 1, seed) == 2
    assert np.allclose(hits / 2000, 0.25, atol=0.04)
    # Shuffled input rows: every (user, item) gets the same split for the same seed.
    rng = np.random.default_rng(0)
    u = rng.integers(0, 30, 600)
    i = rng.integers(0, 1000, 600)
    t = rng.integers(0, 5, 600)  # many ties
    keep = dedupe_earliest(u, i, t)
    u, i, t = u[keep], i[keep], t[keep]
    perm = rng.permutation(len(u))
    for method in ("leave-one-out", "temporal"):
        a, _ = assign_splits(method, u, i, t, 30, seed=3)
        b, _ = assign_splits(method, u[perm], i[perm], t[perm], 30, seed=3)
        assert np.array_equal(a[perm], b), method
        c, _ = assign_splits(method, u, i, t, 30, seed=4)
        assert not np.array_equal(a, c), method
        assert np.array_equal(np.bincount(a, minlength=3), np.bincount(c, minlength=3))


def test_temporal_quantile_and_explicit_cutoffs() -> None:
    ts = np.arange(100, dtype=np.int64)
    codes, info = assign_splits("temporal", np.zeros(100, np.int64), np.arange(100), ts, 1, seed=0)
    assert (info["valid_start"], info["test_start"]) == (80, 90)
    assert np.bincount(codes).tolist() == [80, 10, 10]
    assert (codes == np.repeat([0, 1, 2], [80, 10, 10])).all()
    assert split_temporal(np.array([1, 5, 9]), 5, 9).tolist() == [0, 1, 2]
    # Ties at a quantile cut-off are split by the seeded key: exact counts, earlier times first.
    tied = np.repeat(np.arange(10), 10)  # 10 interactions at each of 10 times
    users = np.arange(100) % 7
    for seed in (0, 1):
        codes, info = assign_splits(
            "temporal", users, np.arange(100), tied, 7, seed=seed, quantiles=(0.75, 0.85)
        )
        assert np.bincount(codes).tolist() == [75, 10, 15]
        assert (info["valid_start"], info["test_start"]) == (7, 8)
        assert (codes[tied < 7] == 0).all() and (codes[tied > 8] == 2).all()
    a = assign_splits("temporal", users, np.arange(100), tied, 7, seed=0, quantiles=(0.75, 0.85))
    b = assign_splits("temporal", users, np.arange(100), tied, 7, seed=1, quantiles=(0.75, 0.85))
    assert not np.array_equal(a[0], b[0])
    # Explicit cut-offs compare timestamps: no tie is broken, the seed has no effect.
    for seed in (0, 1):
        codes, info = assign_splits(
            "temporal", users, np.arange(100), tied, 7, seed=seed, valid_start=7, test_start=9
        )
        assert np.array_equal(codes, split_temporal(tied, 7, 9))
        assert (info["valid_start"], info["test_start"]) == (7, 9)
    with pytest.raises(UsageError, match="valid cut-off 9 is after the test cut-off 5"):
        assign_splits(
            "temporal",
            np.zeros(3, np.int64),
            np.arange(3),
            ts[:3],
            1,
            seed=0,
            valid_start=9,
            test_start=5,
        )


def test_text_cleaning_and_template() -> None:
    assert clean_text("Baby &amp; Kids<br/> <b>Toys</b>\n\t ok") == "Baby & Kids Toys ok"
    assert clean_text("<script>alert(1)</script>Safe &lt;i&gt;x&lt;/i&gt;") == "Safe x"
    assert clean_text("&amp;amp;") == "&amp;"  # decoded once
    text = assemble_text(
        "{title} | {brand} | {categories}",
        title="T",
        brand="",
        categories=["A", "<b>B</b>", "A"],
        category_separator=" > ",
    )
    assert text == "T | | A > B"
    with pytest.raises(UsageError, match=r"field \{title.__class__\} is not allowed"):
        validate_template("{title.__class__}")
    with pytest.raises(UsageError, match=r"field \{price\} is not allowed"):
        validate_template("{title} {price}")
    with pytest.raises(UsageError, match="not a valid template"):
        validate_template("{title")


def test_config_rejects_unknown_keys_and_bad_values(tmp_path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("prepare:\n  split: random\n  k_core: 5\n")
    with pytest.raises(UsageError, match=r"unknown key\(s\) k_core"):
        load_section(p, "prepare", PrepareConfig)
    p.write_text("prepare:\n  split: by-time\n")
    with pytest.raises(
        UsageError,
        match=(
            "prepare.split = 'by-time' is out of range: "
            "expected one of random, leave-one-out, temporal"
        ),
    ):
        load_section(p, "prepare", PrepareConfig)
    p.write_text("prepare:\n  split: temporal\n  temporal_quantiles: [0.8, 0.9]\n  seed: 3\n")
    cfg = load_section(p, "prepare", PrepareConfig)
    assert cfg.temporal_quantiles == (0.8, 0.9) and cfg.seed == 3
