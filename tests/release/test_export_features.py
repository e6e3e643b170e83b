"""MMRec / AlignRec feature files, re-read by a reader written to MMRec's loading rules."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.export_features import load_npy
from alignrec_data.interop import EXPORT_MARKER, export_mmrec
from alignrec_data.loaders import to_mmrec
from alignrec_data.release import build_release
from tests.release.fixtures import make_dataset

VARIANTS = {"alignrec": 8, "effnet-image": 10, "minilm-text": 6}


def read_mmrec(folder: Path, name: str) -> dict:
    """Read a folder the way MMRec's dataset loader does.

    MMRec (``utils/dataset.py``): ``pd.read_csv(<name>.inter, sep='\\t')`` with a header row,
    ``userID``/``itemID`` 0-based contiguous ids, ``x_label`` 0/1/2 = train/valid/test (the
    AlignRec fork also reads ``timestamp``); ``np.load(image_feat.npy)`` / ``text_feat.npy``
    as float32 with row i = itemID i. The id maps are tab-separated despite the ``.csv``.
    """
    inter = pd.read_csv(folder / f"{name}.inter", sep="\t")
    assert list(inter.columns) == ["userID", "itemID", "rating", "timestamp", "x_label"]
    feats = {}
    for f in ("image_feat.npy", "text_feat.npy"):
        if (folder / f).exists():
            arr = np.load(folder / f, allow_pickle=False)
            assert arr.dtype == np.float32 and arr.ndim == 2
            feats[f] = arr
    imap = pd.read_csv(folder / "i_id_mapping.csv", sep="\t")
    umap = pd.read_csv(folder / "u_id_mapping.csv", sep="\t")
    return {"inter": inter, "feats": feats, "imap": imap, "umap": umap}


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("data")
    b = make_dataset(data_dir, "amazon-mini", variants=VARIANTS, extras=False)
    return data_dir, b


def _check_interactions(got: dict, b) -> None:
    t = b.interactions
    codes = {"train": 0, "valid": 1, "test": 2}
    inter = got["inter"]
    np.testing.assert_array_equal(inter["userID"], t.column("user_id").to_numpy())
    np.testing.assert_array_equal(inter["itemID"], t.column("item_id").to_numpy())
    np.testing.assert_array_equal(inter["timestamp"], t.column("timestamp").to_numpy())
    np.testing.assert_allclose(inter["rating"], t.column("rating").to_numpy())
    np.testing.assert_array_equal(
        inter["x_label"], [codes[s] for s in t.column("split").to_pylist()]
    )
    assert got["imap"]["asin"].tolist() == b.item_keys
    assert got["imap"]["itemID"].tolist() == list(range(len(b.item_keys)))
    assert got["umap"]["user_id"].tolist() == b.user_keys


def test_mmrec_layout_from_prepared_dataset(ds, tmp_path: Path) -> None:
    data_dir, b = ds
    out = tmp_path / "mini"
    export_mmrec(data_dir, "amazon-mini", out)
    (out / "text_feat.npy").write_bytes(b"stale")  # replaced, not left over
    res = export_mmrec(data_dir, "amazon-mini", out, features="effnet-image,minilm-text")
    assert res["features"]["features"]["image_feat.npy"]["shape"] == [40, 10]
    got = read_mmrec(out, "mini")
    _check_interactions(got, b)
    # Row i = itemID i: the feature of the item whose asin is in row i of i_id_mapping.csv.
    np.testing.assert_array_equal(got["feats"]["image_feat.npy"], b.features["effnet-image"])
    np.testing.assert_array_equal(got["feats"]["text_feat.npy"], b.features["minilm-text"])


def test_alignrec_layout_has_only_the_fused_feature(ds, tmp_path: Path) -> None:
    data_dir, b = ds
    out = tmp_path / "mini"
    export_mmrec(data_dir, "amazon-mini", out, features="effnet-image,minilm-text")
    res = export_mmrec(data_dir, "amazon-mini", out, layout="alignrec")
    assert res["removed"] == ["text_feat.npy"]  # ours, from the first export
    assert sorted(p.name for p in out.iterdir()) == sorted([*res["files"], EXPORT_MARKER])
    assert "text_feat.npy" not in res["files"]
    np.testing.assert_array_equal(np.load(out / "image_feat.npy"), b.features["alignrec"])


def test_a_text_feature_no_export_wrote_is_kept_or_refused(ds, tmp_path: Path) -> None:
    data_dir, _ = ds
    out = tmp_path / "mine"
    out.mkdir()
    np.save(out / "text_feat.npy", np.ones((40, 2), np.float32))
    mine = (out / "text_feat.npy").read_bytes()
    res = export_mmrec(data_dir, "amazon-mini", out, features="effnet-image", overwrite=True)
    assert res["removed"] == [] and (out / "text_feat.npy").read_bytes() == mine
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UsageError, match=r"text_feat\.npy was not written by alignrec-data export"):
        export_mmrec(data_dir, "amazon-mini", out, layout="alignrec")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_layout_rules_and_bad_features(ds, tmp_path: Path) -> None:
    data_dir, _ = ds
    out = tmp_path / "x"

    def export(features: str, layout: str = "mmrec") -> None:
        export_mmrec(data_dir, "amazon-mini", out, features=features, layout=layout)

    with pytest.raises(UsageError, match="fused image\\+text feature.*use --layout alignrec"):
        export("alignrec")
    with pytest.raises(UsageError, match="exactly one .* found effnet-image, minilm-text"):
        export("effnet-image,minilm-text", layout="alignrec")
    with pytest.raises(
        UsageError,
        match=r"'clip-image' has no file .*variants there: alignrec, effnet-image, minilm-text",
    ):
        export("clip-image")
    with pytest.raises(UsageError, match="layout 'lattice' is not one of mmrec, alignrec"):
        export("effnet-image", layout="lattice")
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((3, 4), np.float32))
    with pytest.raises(DataFormatError, match="3 rows, but the dataset has 40 items"):
        export(f"image={short}")
    assert not out.exists()  # every refusal came before the first byte


def test_pickled_npy_is_refused(ds, tmp_path: Path) -> None:
    data_dir, _ = ds
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    raw = tmp_path / "raw.npy"
    raw.write_bytes(pickle.dumps(np.zeros((40, 3))))
    for path in (obj, raw):
        with pytest.raises(DataFormatError, match="pickled Python objects .*allow_pickle=False"):
            load_npy(path)
        with pytest.raises(DataFormatError, match="never unpickles"):
            export_mmrec(data_dir, "amazon-mini", tmp_path / "o", features=f"image={path}")
    noise = tmp_path / "noise.npy"
    noise.write_bytes(bytes(range(7, 256)) * 4)  # random-looking bytes are no pickle
    with pytest.raises(DataFormatError, match=r"noise.npy is not a .npy file \(it does not start"):
        load_npy(noise)
    good = tmp_path / "good.npy"
    np.save(good, np.arange(120, dtype=np.float64).reshape(40, 3))
    res = export_mmrec(data_dir, "amazon-mini", tmp_path / "o", features=f"image={good}")
    assert res["features"]["features"]["image_feat.npy"]["shape"] == [40, 3]
    assert np.load(tmp_path / "o" / "image_feat.npy").dtype == np.float32


def test_to_mmrec_from_a_release(ds, tmp_path: Path) -> None:
    data_dir, b = ds
    rel = tmp_path / "rel"
    build_release(data_dir, "amazon-mini", rel)
    res = to_mmrec(rel, tmp_path / "baby", features="effnet-image,minilm-text")
    assert sorted(res["files"]) == sorted(
        ["baby.inter", "u_id_mapping.csv", "i_id_mapping.csv", "image_feat.npy", "text_feat.npy"]
    )
    marker = json.loads((tmp_path / "baby" / EXPORT_MARKER).read_text())
    assert marker["files"] == sorted(res["files"]) and marker["layout"] == "mmrec"
    got = read_mmrec(tmp_path / "baby", "baby")
    _check_interactions(got, b)
    np.testing.assert_array_equal(got["feats"]["text_feat.npy"], b.features["minilm-text"])
    to_mmrec(rel, tmp_path / "al", layout="alignrec")
    got = read_mmrec(tmp_path / "al", "al")
    assert list(got["feats"]) == ["image_feat.npy"]
    np.testing.assert_array_equal(got["feats"]["image_feat.npy"], b.features["alignrec"])
    with pytest.raises(UsageError, match="no feature variant 'nope'"):
        to_mmrec(rel, tmp_path / "z", features="nope")
    with pytest.raises(UsageError, match="use --layout alignrec"):
        to_mmrec(rel, tmp_path / "z", features="alignrec")
    with pytest.raises(UsageError, match=r"MMRec dataset name '\.\./x' is not a valid name"):
        to_mmrec(rel, tmp_path / "z", name="../x")
    assert not (tmp_path / "z").exists()  # nothing written before the check


def test_to_mmrec_removes_only_the_text_feature_it_wrote(ds, tmp_path: Path) -> None:
    data_dir, b = ds
    rel = tmp_path / "rel"
    build_release(data_dir, "amazon-mini", rel)
    out = tmp_path / "baby"
    to_mmrec(rel, out, features="effnet-image,minilm-text")
    res = to_mmrec(rel, out, layout="alignrec")  # a previous export: no overwrite needed
    assert res["removed"] == ["text_feat.npy"] and not (out / "text_feat.npy").exists()
    np.testing.assert_array_equal(np.load(out / "image_feat.npy"), b.features["alignrec"])
    # A text_feat.npy no export wrote: kept in the MMRec layout, refused in the AlignRec one.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "text_feat.npy").write_bytes(b"my own features")
    res = to_mmrec(rel, mine, features="effnet-image", overwrite=True)
    assert res["removed"] == [] and (mine / "text_feat.npy").read_bytes() == b"my own features"
    with pytest.raises(UsageError, match=r"text_feat\.npy was not written by alignrec-data"):
        to_mmrec(rel, mine, layout="alignrec")
    assert (mine / "text_feat.npy").read_bytes() == b"my own features"


def test_export_mmrec_cli_with_features_and_layout(ds, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from alignrec_data.cli import cli

    data_dir, b = ds
    runner = CliRunner()
    out = tmp_path / "mini"
    base = ["export", "mmrec", "amazon-mini", "--data-dir", str(data_dir)]
    res = runner.invoke(
        cli,
        [*base, "--features", "effnet-image,minilm-text", "--out", str(out), "--format", "json"],
    )
    assert res.exit_code == 0, res.output
    assert {"image_feat.npy", "text_feat.npy", "mini.inter"} <= set(json.loads(res.stdout)["files"])
    got = read_mmrec(out, "mini")
    _check_interactions(got, b)
    np.testing.assert_array_equal(got["feats"]["image_feat.npy"], b.features["effnet-image"])
    np.testing.assert_array_equal(got["feats"]["text_feat.npy"], b.features["minilm-text"])

    res = runner.invoke(cli, [*base, "--layout", "alignrec", "--out", str(out)])
    assert res.exit_code == 0, res.output
    got = read_mmrec(out, "mini")
    assert list(got["feats"]) == ["image_feat.npy"]
    np.testing.assert_array_equal(got["feats"]["image_feat.npy"], b.features["alignrec"])

    bad = tmp_path / "bad"
    res = runner.invoke(cli, [*base, "--features", "alignrec", "--out", str(bad)])
    assert res.exit_code == 2 and "use --layout alignrec" in res.output
    assert not bad.exists()  # refused before anything was written


def test_npy_header_is_checked_against_the_file_size(tmp_path: Path) -> None:
    from alignrec_data.export_features import npy_header

    path = tmp_path / "m.npy"
    np.save(path, np.ones((5, 3), np.int16))
    shape, dtype, offset = npy_header(path)
    assert (shape, dtype, offset) == ((5, 3), np.dtype("<i2"), 128)
    assert load_npy(path).dtype == np.float32
    # The same header over too few bytes: refused from the header, nothing is allocated.
    data = path.read_bytes()
    forged = data.replace(b"(5, 3), }" + b" " * 9, b"(9999999999, 3), }")  # same header length
    path.write_bytes(forged)
    with pytest.raises(DataFormatError, match=r"9,999,999,999 x 3 int16 matrix .* holds 30 bytes"):
        load_npy(path)
    path.write_bytes(data + b"extra")
    with pytest.raises(DataFormatError, match=r"holds 35 bytes of data: it is truncated or not"):
        load_npy(path)


def test_export_mmrec_writes_all_files_and_the_marker(ds, tmp_path: Path) -> None:
    data_dir, b = ds
    out = tmp_path / "nested" / "mini"
    res = export_mmrec(data_dir, "amazon-mini", out, features="effnet-image,minilm-text")
    assert res["files"] == [
        "mini.inter",
        "u_id_mapping.csv",
        "i_id_mapping.csv",
        "image_feat.npy",
        "text_feat.npy",
    ]
    marker = json.loads((out / EXPORT_MARKER).read_text())
    assert marker["files"] == sorted(res["files"]) and marker["layout"] == "mmrec"
    assert sorted(p.name for p in out.iterdir()) == sorted([*res["files"], EXPORT_MARKER])
    _check_interactions(read_mmrec(out, "mini"), b)
    # Same folder, the AlignRec layout: our text_feat.npy from the first run is removed.
    res = export_mmrec(data_dir, "amazon-mini", out, layout="alignrec")
    assert res["removed"] == ["text_feat.npy"] and res["features"]["removed"] == ["text_feat.npy"]
    got = read_mmrec(out, "mini")
    np.testing.assert_array_equal(got["feats"]["image_feat.npy"], b.features["alignrec"])
    # A bad spec or a missing variant fails before the folder is created.
    for features in ("clip-image", "../../x-image"):
        with pytest.raises(UsageError):
            export_mmrec(data_dir, "amazon-mini", tmp_path / "new", features=features)
        assert not (tmp_path / "new").exists()


def test_a_custom_variant_is_exported_by_the_modality_its_file_records(tmp_path: Path) -> None:
    """A text encoder named `bert` (no `-text` suffix) lands in text_feat.npy, from the data
    dir (its file's metadata) and from a release (the manifest records the modality)."""
    from alignrec_data.feature_info import feature_metadata
    from alignrec_data.features import write_features

    data_dir = tmp_path / "data"
    b = make_dataset(data_dir, "amazon-mini", variants={"effnet-image": 10}, extras=False)
    bert = np.random.default_rng(3).normal(size=(len(b.item_keys), 12)).astype(np.float32)
    write_features(
        data_dir / "amazon-mini" / "features" / "bert.parquet",
        b.item_keys,
        bert,
        metadata=feature_metadata("bert", "text", "hf-text", 12, pooling="cls"),
    )
    export_mmrec(data_dir, "amazon-mini", tmp_path / "x", features="effnet-image,bert")
    np.testing.assert_array_equal(load_npy(tmp_path / "x" / "text_feat.npy"), bert)
    rel = tmp_path / "rel"
    build_release(data_dir, "amazon-mini", rel)
    manifest = json.loads((rel / "alignrec_release.json").read_text())
    assert manifest["configs"]["features-bert"]["modality"] == "text"
    assert manifest["configs"]["features-effnet-image"]["modality"] == "image"
    to_mmrec(rel, tmp_path / "y", features="effnet-image,bert")
    np.testing.assert_array_equal(load_npy(tmp_path / "y" / "text_feat.npy"), bert)
    np.testing.assert_array_equal(
        load_npy(tmp_path / "y" / "image_feat.npy"), b.features["effnet-image"]
    )
