"""The real Amazon Baby interactions (../shared/data/amazon-baby): import, release, load back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alignrec_data.card import front_matter
from alignrec_data.release import build_release
from tests.conftest import shared_data


@pytest.mark.shared_data
def test_release_of_imported_real_baby_interactions(tmp_path: Path) -> None:
    import datasets

    from alignrec_data.interop import import_lattice
    from alignrec_data.loaders import load_interactions

    src = shared_data("amazon-baby")
    data_dir = tmp_path / "data"
    import_lattice(src, "amazon-baby", data_dir)
    out = tmp_path / "release"
    result = build_release(data_dir, "amazon-baby", out)
    assert result.variants == []  # no features were extracted: the card says so
    card = (out / "README.md").read_text()
    assert "No item features are included" in card
    assert "Imported from: lattice layout" in card
    assert front_matter(card)["license"] == "other"  # the Amazon 2014 terms, from the registry
    assert "Ups and downs" in card  # the data's citation

    expected = {"train": "train.json", "validation": "val.json", "test": "test.json"}
    item2id = json.loads((src / "item2id.json").read_text())
    inter = datasets.load_dataset(str(out), "interactions", cache_dir=str(tmp_path / "hf"))
    for split, fname in expected.items():
        doc = json.loads((src / fname).read_text())
        n = sum(len(v) for v in doc.values())
        assert inter[split].num_rows == n
        pairs = {(int(u), i) for u, items in doc.items() for i in items}
        got = set(zip(inter[split]["user_id"][:], inter[split]["item_id"][:], strict=True))
        assert got == pairs
    assert sum(inter[s].num_rows for s in expected) == 160_792
    items = datasets.load_dataset(str(out), "items", cache_dir=str(tmp_path / "hf"))["train"]
    assert items.num_rows == 7_050
    keys = items["item_key"][:]
    assert all(keys[i] == k for k, i in item2id.items())
    train = load_interactions(out, "train")
    assert len(train["user_id"]) == 119_674 and np.isnan(train["rating"]).all()
