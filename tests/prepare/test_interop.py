"""MMRec / LATTICE import and MMRec export, on the real Baby and MovieLens-100K folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from alignrec_data.atomic import write_parquet
from alignrec_data.clean import k_core
from alignrec_data.cli import cli
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.interop import import_lattice, import_mmrec
from alignrec_data.prepare import interactions_table, read_prepared
from alignrec_data.splits import assign_splits
from alignrec_data.text import assemble_text
from tests.conftest import shared_data


def _json_pairs(folder: Path, name: str) -> int:
    return sum(len(v) for v in json.loads((folder / name).read_text()).values())


@pytest.mark.shared_data
def test_baby_lattice_import_export_roundtrip(data_dir: Path, tmp_path: Path) -> None:
    src = shared_data("amazon-baby")
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "import",
            "lattice",
            str(src),
            "--name",
            "baby",
            "--data-dir",
            str(data_dir),
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert (stats["users"], stats["items"], stats["interactions"]) == (19445, 7050, 160792)
    assert (
        stats["splits"]
        == {
            "train": _json_pairs(src, "train.json"),
            "valid": _json_pairs(src, "val.json"),
            "test": _json_pairs(src, "test.json"),
        }
        == {"train": 119674, "valid": 20559, "test": 20559}
    )
    inter, items, users = read_prepared(data_dir / "baby" / "prepared")
    # Raw keys come from the id maps; the item numbering is MMRec's i_id_mapping.csv.
    mmrec_map = pd.read_csv(src / "i_id_mapping.csv", sep="\t", dtype={"asin": str})
    assert items.column("item_key").to_pylist() == mmrec_map.sort_values("itemID").asin.tolist()
    user2id = json.loads((src / "user2id.json").read_text())
    assert users.column("user_key").to_pylist() == sorted(user2id, key=user2id.get)
    assert inter.column("rating").null_count == inter.num_rows  # LATTICE has no ratings
    # The MMRec Baby set is 5-core: filtering it again is a fixed point.
    keep, rounds = k_core(
        inter.column("user_id").to_numpy(), inter.column("item_id").to_numpy(), 5, 5
    )
    assert len(keep) == inter.num_rows and rounds == 1

    out = tmp_path / "mmrec" / "baby"
    res = runner.invoke(
        cli, ["export", "mmrec", "baby", "--out", str(out), "--data-dir", str(data_dir)]
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "alignrec_export.json",  # the marker: a later export may replace this folder's files
        "baby.inter",
        "i_id_mapping.csv",
        "u_id_mapping.csv",
    ]
    header = (out / "baby.inter").read_text().splitlines()[0]
    assert header.split("\t") == ["userID", "itemID", "rating", "timestamp", "x_label"]
    exported = pd.read_csv(out / "baby.inter", sep="\t")
    assert exported.x_label.value_counts().sort_index().tolist() == [119674, 20559, 20559]
    assert (out / "i_id_mapping.csv").read_text() == (src / "i_id_mapping.csv").read_text()
    res = runner.invoke(
        cli, ["import", "mmrec", str(out), "--name", "baby2", "--data-dir", str(data_dir)]
    )
    assert res.exit_code == 0, res.output
    for a, b in zip(
        read_prepared(data_dir / "baby" / "prepared"),
        read_prepared(data_dir / "baby2" / "prepared"),
        strict=True,
    ):
        assert a.equals(b)


def _resplit(inter: pa.Table, method: str, seed: int, path: Path) -> tuple[dict, str, pa.Table]:
    u = inter.column("user_id").to_numpy()
    i = inter.column("item_id").to_numpy()
    t = inter.column("timestamp").to_numpy()
    n_users = int(u.max()) + 1
    codes, info = assign_splits(method, u, i, t, n_users, seed=seed)
    keys = pa.table({"k": inter.column("user_key"), "id": inter.column("user_id")})
    ukeys = dict(zip(keys.column("id").to_pylist(), keys.column("k").to_pylist(), strict=True))
    ikeys = dict(zip(i.tolist(), inter.column("item_key").to_pylist(), strict=True))
    table = interactions_table(
        u,
        i,
        [ukeys[k] for k in range(n_users)],
        [ikeys[k] for k in range(int(i.max()) + 1)],
        inter.column("rating"),
        inter.column("timestamp"),
        codes,
    )
    write_parquet(path, table)
    return info, hashlib.sha256(path.read_bytes()).hexdigest(), table


@pytest.mark.shared_data
def test_ml100k_real_timestamps_splits(data_dir: Path, tmp_path: Path) -> None:
    src = shared_data("ml100k-imdb")
    assert not list(src.glob("*.npy"))  # the real folder has no feature file
    stats = import_mmrec(src, "ml100k", data_dir)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert stats["has_timestamps"] and stats["has_ratings"]
    assert stats["features"] == {} and not (data_dir / "ml100k" / "features").exists()
    inter, items, _ = read_prepared(data_dir / "ml100k" / "prepared")
    assert items.column("item_key").to_pylist()[0] == "0_Toy Story"
    df = inter.to_pandas()

    # Users rate many movies in the same second: ties at each user's latest time are common.
    last = df[df.timestamp == df.groupby("user_id").timestamp.transform("max")]
    assert (last.groupby("user_id").size() > 1).sum() > 100

    _, h1, loo = _resplit(inter, "leave-one-out", 1, tmp_path / "loo1.parquet")
    _, h2, _ = _resplit(inter, "leave-one-out", 1, tmp_path / "loo2.parquet")
    _, h3, loo3 = _resplit(inter, "leave-one-out", 2, tmp_path / "loo3.parquet")
    assert h1 == h2 != h3  # same seed: identical bytes; another seed breaks ties otherwise
    ldf, ldf3 = loo.to_pandas(), loo3.to_pandas()
    for frame in (ldf, ldf3):
        counts = frame.split.value_counts()
        assert counts["test"] == counts["valid"] == df.user_id.nunique() == 943
        assert counts["train"] == 100000 - 2 * 943
        latest = frame.groupby("user_id").timestamp.transform("max")
        assert (frame[frame.split == "test"].timestamp == latest[frame.split == "test"]).all()
    assert ldf.drop(columns="split").equals(ldf3.drop(columns="split"))
    differ = ldf.split != ldf3.split
    assert differ.any()
    # Only tied interactions move: a changed row shares its time with another of its user.
    tied = df.duplicated(["user_id", "timestamp"], keep=False).to_numpy()
    assert tied[differ.to_numpy()].all()

    info, t1, tmp = _resplit(inter, "temporal", 1, tmp_path / "t1.parquet")
    _, t2, _ = _resplit(inter, "temporal", 1, tmp_path / "t2.parquet")
    _, t3, tmp3 = _resplit(inter, "temporal", 2, tmp_path / "t3.parquet")
    assert t1 == t2 != t3
    ts = np.sort(df.timestamp.to_numpy())
    assert (info["valid_start"], info["test_start"]) == (ts[80000], ts[90000])
    for table in (tmp, tmp3):
        frame = table.to_pandas()
        assert frame.split.value_counts().to_dict() == {
            "train": 80000,
            "valid": 10000,
            "test": 10000,
        }
        assert frame[frame.split == "train"].timestamp.max() <= ts[80000]
        assert frame[frame.split == "valid"].timestamp.min() >= ts[80000]
        assert frame[frame.split == "test"].timestamp.min() >= ts[90000]
    moved = tmp.to_pandas().split != tmp3.to_pandas().split
    assert moved.any()
    assert set(tmp.to_pandas().timestamp[moved]) <= {ts[80000], ts[90000]}  # cut-off ties only

    _, r1, _ = _resplit(inter, "random", 1, tmp_path / "r1.parquet")
    _, r2, _ = _resplit(inter, "random", 1, tmp_path / "r2.parquet")
    _, r3, _ = _resplit(inter, "random", 2, tmp_path / "r3.parquet")
    assert r1 == r2 != r3


@pytest.mark.shared_data
def test_ml100k_item_text_from_items_csv() -> None:
    src = shared_data("ml100k-imdb")
    movies = pd.read_csv(src / "items.csv")
    genres = [
        "Action",
        "Adventure",
        "Animation",
        "Children's",
        "Comedy",
        "Crime",
        "Documentary",
        "Drama",
        "Fantasy",
        "Film-Noir",
        "Horror",
        "Musical",
        "Mystery",
        "Romance",
        "Sci-Fi",
        "Thriller",
        "War",
        "Western",
    ]
    template = "{title}. Directed by {brand}. Genres: {categories}. {description}"
    texts = []
    for _, m in movies.iterrows():
        texts.append(
            assemble_text(
                template,
                title=m["movie title"],
                brand=m["Director"] if isinstance(m["Director"], str) else "",
                categories=[g for g in genres if m[g] == 1],
                description=m["Summary"] if isinstance(m["Summary"], str) else "",
                category_separator=", ",
            )
        )
    assert len(texts) == 1682
    toy = texts[0]
    assert (
        toy.startswith("Toy Story (1995). Directed by ")
        and "Genres: Animation, Children's, Comedy." in toy
    )
    assert movies["Summary"].iloc[0].split()[0] in toy
    assert all("  " not in t and "\n" not in t for t in texts)
    missing = movies["Summary"].isna()
    assert missing.sum() == 198
    no_summary = np.array(texts)[missing.to_numpy()]
    assert all(t.endswith(".") and "nan" not in t.split() for t in no_summary)


def test_import_errors(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "lat"
    folder.mkdir()
    with pytest.raises(
        UsageError,
        match="train.json does not exist; a LATTICE folder holds train.json, val.json, test.json",
    ):
        import_lattice(folder, "x", data_dir)
    (folder / "train.json").write_text('{"0": [0, 1], "1": [1]}')
    (folder / "val.json").write_text('{"0": [3]}')
    (folder / "test.json").write_text('{"1": ["a"]}')
    with pytest.raises(
        DataFormatError, match=r"test.json: user '1': expected a list of integer item ids"
    ):
        import_lattice(folder, "x", data_dir)
    (folder / "test.json").write_text('{"1": [0]}')
    with pytest.raises(
        DataFormatError,
        match=r"val.json: item id 3 is out of range: ids must be contiguous from 0, and 3 "
        r"distinct item ids used can only be 0..2; renumber",
    ):
        import_lattice(folder, "x", data_dir)
    with pytest.raises(UsageError, match="dataset '../x' is not a valid name"):
        import_lattice(folder, "../x", data_dir)
    mm = tmp_path / "mm"
    mm.mkdir()
    (mm / "mm.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t5\n")
    with pytest.raises(
        DataFormatError, match="x_label must be 0 .train., 1 .valid. or 2 .test., found 5"
    ):
        import_mmrec(mm, "y", data_dir)
    (mm / "mm.inter").write_text("user\titem\n0\t0\n")
    with pytest.raises(
        DataFormatError, match=r"missing column\(s\) \['userID', 'itemID', 'x_label'\]"
    ):
        import_mmrec(mm, "y", data_dir)
    (mm / "mm.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n1\t1\t2\n")
    stats = import_mmrec(mm, "y", data_dir)
    assert stats["has_ratings"] is False and stats["splits"] == {"train": 1, "valid": 0, "test": 1}
    res = CliRunner().invoke(
        cli,
        ["export", "mmrec", "nothing", "--out", str(tmp_path / "o"), "--data-dir", str(data_dir)],
    )
    assert res.exit_code == 2 and "alignrec-data prepare nothing" in res.output


def test_import_over_an_existing_dataset(tmp_path: Path, data_dir: Path) -> None:
    mm = tmp_path / "mm"
    mm.mkdir()
    (mm / "mm.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n1\t1\t2\n1\t2\t1\n")
    assert import_mmrec(mm, "d", data_dir)["removed"] == []
    (data_dir / "d" / "features").mkdir()
    (data_dir / "d" / "features" / "alignrec.parquet").write_bytes(b"old")
    with pytest.raises(UsageError, match=r"dataset 'd' already exists .*pass --overwrite"):
        import_mmrec(mm, "d", data_dir)
    (mm / "mm.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n")
    stats = import_mmrec(mm, "d", data_dir, overwrite=True)
    assert stats["removed"] == ["features/"] and stats["items"] == 2
    assert sorted(p.name for p in (data_dir / "d").iterdir()) == ["prepared"]
    assert "removed" not in json.loads((data_dir / "d" / "prepared" / "stats.json").read_text())


def test_ids_are_range_checked_before_allocation(tmp_path: Path, data_dir: Path) -> None:
    mm = tmp_path / "mm"
    mm.mkdir()
    (mm / "mm.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n")
    # A mapped id far beyond what the map and the interactions can fill.
    (mm / "i_id_mapping.csv").write_text("asin\titemID\nA\t0\nB\t1\nC\t1000000000000000\n")
    with pytest.raises(
        DataFormatError,
        match=r"i_id_mapping.csv: item id 1000000000000000 is out of range: .* 2 distinct item "
        r"ids used and 3 mapped can only be 0..4",
    ):
        import_mmrec(mm, "r", data_dir)
    # A gap the range check cannot see (it is filled by neither side) is still named.
    (mm / "i_id_mapping.csv").write_text("asin\titemID\nA\t0\nB\t1\nC\t3\n")
    with pytest.raises(DataFormatError, match=r"item ids must be contiguous from 0; id 2 of 0..3"):
        import_mmrec(mm, "r", data_dir)
    assert not (data_dir / "r").exists()


def _cli_ok(*args: str | Path) -> str:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output)
    return res.stdout


def test_mmrec_features_round_trip_then_train_evaluate_release(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our own export's image_feat.npy / text_feat.npy come back identical as mmrec-*."""
    import pyarrow.parquet as pq

    from alignrec_data.export_features import variant_modality
    from alignrec_data.features import read_features
    from alignrec_model.feature_eval import UNIMODAL_VARIANTS
    from tests.release.fixtures import make_dataset

    monkeypatch.chdir(tmp_path)  # packaged params, not the checkout's params.yaml
    built = make_dataset(
        data_dir, "src", n_items=60, variants={"effnet-image": 20, "minilm-text": 12}, extras=False
    )
    dd = ("--data-dir", data_dir)
    folder = tmp_path / "mmrec" / "src"
    _cli_ok(
        "export", "mmrec", "src", "--features", "effnet-image,minilm-text", "--out", folder, *dd
    )
    # Another numeric .npy of one row per item becomes mmrec-<stem>, stored as float32.
    extra = np.arange(60 * 3, dtype=np.int64).reshape(60, 3)
    np.save(folder / "v_feat.npy", extra)
    stats = json.loads(_cli_ok("import", "mmrec", folder, "--name", "new", "--format", "json", *dd))

    features = data_dir / "new" / "features"
    assert sorted(p.name for p in features.iterdir()) == [
        "mmrec-image.parquet",
        "mmrec-text.parquet",
        "mmrec-v_feat.parquet",
    ]
    _, items, _ = read_prepared(data_dir / "new" / "prepared")
    assert items.column("item_key").to_pylist() == built.item_keys
    for variant, file, expected in (
        ("mmrec-image", "image_feat.npy", built.features["effnet-image"]),
        ("mmrec-text", "text_feat.npy", built.features["minilm-text"]),
        ("mmrec-v_feat", "v_feat.npy", extra.astype(np.float32)),
    ):
        keys, matrix, missing = read_features(features / f"{variant}.parquet")
        assert matrix.dtype == np.float32 and np.array_equal(matrix, expected), variant
        assert list(keys) == built.item_keys and not missing.any()
        sha = hashlib.sha256((folder / file).read_bytes()).hexdigest()
        meta = json.loads(
            pq.read_schema(features / f"{variant}.parquet").metadata[b"alignrec.import"]
        )
        assert meta == {
            "tool": "alignrec-data import mmrec",
            "layout": "mmrec",
            "file": file,
            "sha256": sha,
            "dtype": "int64" if file == "v_feat.npy" else "float32",
            "shape": list(expected.shape),
        }
        assert stats["features"][variant] == {"file": file, "dim": expected.shape[1], "sha256": sha}
    assert stats["source_files"] == [
        "src.inter",
        "u_id_mapping.csv",
        "i_id_mapping.csv",
        "image_feat.npy",
        "text_feat.npy",
        "v_feat.npy",
    ]
    # Modality: mmrec-image / mmrec-text are unimodal; another stem is of unknown modality.
    assert (variant_modality("mmrec-image"), variant_modality("mmrec-text")) == ("image", "text")
    assert variant_modality("mmrec-v_feat") == "fused"
    assert UNIMODAL_VARIANTS["mmrec-image"] == "image" and UNIMODAL_VARIANTS["mmrec-text"] == "text"

    # Exported again: the very same bytes.
    again = tmp_path / "again" / "new"
    _cli_ok("export", "mmrec", "new", "--features", "mmrec-image,mmrec-text", "--out", again, *dd)
    for file in ("image_feat.npy", "text_feat.npy"):
        assert (again / file).read_bytes() == (folder / file).read_bytes()

    # AlignRec, ItemKNN, the intermediate evaluations and the release run on them.
    _cli_ok("train", "new", "--model", "alignrec", "--features", "mmrec-text", "--epochs", "1", *dd)
    _cli_ok("train", "new", "--model", "itemknn", "--features", "mmrec-image", *dd)
    _cli_ok("evaluate", "new", "--protocol", "zero-shot", "--features", "mmrec-text", *dd)
    _cli_ok("evaluate", "new", "--protocol", "item-cf", "--features", "mmrec-image", *dd)
    res = CliRunner().invoke(
        cli,
        ["evaluate", "new", "--protocol", "mask-modality", "--features", "mmrec-text",
         "--modality", "image", "--data-dir", str(data_dir)],
    )  # fmt: skip
    assert res.exit_code == 2 and "computed from the text only" in res.output
    metrics = {p.name for p in (data_dir / "new" / "metrics").iterdir()}
    assert metrics >= {
        "eval-item-cf-mmrec-image.json",
        "eval-zero-shot-mmrec-text.json",
        "train-alignrec-mmrec-text.json",
        "train-itemknn-mmrec-image.json",
    }
    _cli_ok("release", "new", *dd)
    release = data_dir / "new" / "release"
    assert {"features-mmrec-image", "features-mmrec-text"} <= {p.name for p in release.iterdir()}
    card = (release / "README.md").read_text()
    text_sha = hashlib.sha256((folder / "text_feat.npy").read_bytes()).hexdigest()
    assert "file: text_feat.npy" in card and text_sha in card  # provenance on the card
