"""Fixtures for prepare tests: raw fixture files placed where a registry dataset expects them."""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from alignrec_data.download import download_dataset, raise_for_failures
from alignrec_data.prepare import PrepareConfig
from alignrec_data.registry import get_dataset, raw_path

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "prepare"
# Tiny fixtures: no k-core so that every parsed record is visible in the output.
NO_CORE = PrepareConfig(min_user_interactions=1, min_item_interactions=1)
# Registry ids whose raw file names we reuse for fixtures of each release.
RELEASE_DATASET = {
    "2014": "amazon-baby",
    "2018": "amazon2018-electronics",
    "2023": "amazon2023-baby-products",
}
FIXTURE_FILES = {
    "2014": ("reviews_2014.json", "meta_2014.json"),
    "2018": ("reviews_2018.json", "meta_2018.json"),
    "2023": ("reviews_2023.jsonl", "meta_2023.jsonl"),
}

Place = Callable[..., str]


@pytest.fixture
def place_release(data_dir: Path) -> Place:
    """Gzip a release's fixture files into ``<data_dir>/<registry id>/raw/``; returns the id.

    The files are then recorded in the lock file the way a user records files copied in by
    hand: `download` finds them present, checks them and records their sha256 (nothing is
    fetched: these registry entries have no known hash), so `prepare` verifies them.
    """

    def place(release: str, transform: Callable[[str, str], str] | None = None) -> str:
        dataset = RELEASE_DATASET[release]
        spec = get_dataset(dataset)
        raw = data_dir / dataset / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for role, name in zip(("reviews", "meta"), FIXTURE_FILES[release], strict=True):
            text = (FIXTURES / name).read_text(encoding="utf-8")
            if transform is not None:
                text = transform(role, text)
            raw_path(raw, spec, role).write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        roles = {"reviews", "meta"}
        recorded = dataclasses.replace(spec, files=tuple(f for f in spec.files if f.role in roles))
        results = download_dataset(recorded, raw, progress=False)
        raise_for_failures(results)
        assert {r.status for r in results} == {"verified"}  # present, nothing fetched
        return dataset

    return place
