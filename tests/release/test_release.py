"""The release folder: a Hugging Face dataset repo that `datasets.load_dataset` reads offline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from alignrec_data.card import front_matter
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.release import MANIFEST_NAME, ReleaseConfig, build_release
from tests.release.fixtures import VARIANT_DIMS, make_dataset

SHARD_MB = 0.002  # ~2 KB shards, so every config of the tiny dataset has several


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("data")
    b = make_dataset(data_dir)
    out = tmp_path_factory.mktemp("rel") / "release"
    result = build_release(
        data_dir,
        "amazon-mini",
        out,
        ReleaseConfig(images=True, shard_size_mb=SHARD_MB, repo_id="me/mini"),
    )
    return data_dir, b, out, result


def _load(folder: Path, config: str, cache: Path):
    import datasets

    return datasets.load_dataset(str(folder), config, cache_dir=str(cache))


def test_every_config_loads_with_datasets_offline(built, tmp_path: Path) -> None:
    import datasets

    _, b, out, result = built
    names = [c["config_name"] for c in front_matter((out / "README.md").read_text())["configs"]]
    assert names == ["items", "interactions"] + [f"features-{v}" for v in sorted(VARIANT_DIMS)] + [
        "images"
    ]

    items = _load(out, "items", tmp_path)["train"]
    assert items.num_rows == len(b.item_keys)
    assert items["item_key"][:] == b.item_keys
    assert items.features["has_image"] == datasets.Value("bool")
    # The images stage fetched only some items: has_image follows what was fetched.
    assert [i for i, h in enumerate(items["has_image"][:]) if h] == sorted(b.images)

    inter = _load(out, "interactions", tmp_path)
    split = np.asarray(b.interactions.column("split").to_pylist())
    for hf_name, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
        ds = inter[hf_name]
        mask = split == name
        assert ds.num_rows == mask.sum()
        assert ds.features["rating"] == datasets.Value("float32")
        assert ds.features["timestamp"] == datasets.Value("int64")
        assert ds["item_id"][:] == b.interactions.column("item_id").to_numpy()[mask].tolist()
        assert ds["timestamp"][:] == b.interactions.column("timestamp").to_numpy()[mask].tolist()

    for v, d in VARIANT_DIMS.items():
        ds = _load(out, f"features-{v}", tmp_path)["train"]
        assert ds.features["embedding"] == datasets.List(datasets.Value("float32"), length=d)
        assert ds.num_rows == len(b.item_keys)
        assert ds["item_id"][:] == list(range(len(b.item_keys)))
        emb = np.asarray(ds.with_format("numpy")[:]["embedding"])
        assert emb.dtype == np.float32 and emb.shape == (len(b.item_keys), d)
        np.testing.assert_array_equal(emb, b.features[v])
        assert ds["missing"][:] == b.missing[v].tolist()
        n_shards = len(list((out / f"features-{v}").glob("train-*.parquet")))
        assert n_shards > 1  # sharded by size, and datasets reassembles them in order

    images = _load(out, "images", tmp_path)["train"]
    assert images.features["image"] == datasets.Image()
    assert sorted(images["item_id"][:]) == sorted(b.images)  # storage order of the images stage
    raw = images.cast_column("image", datasets.Image(decode=False))
    for row in raw:
        assert row["image"]["bytes"] == b.images[row["item_id"]]  # packed bytes, unchanged
    assert images[0]["image"].size == (5, 6)
    assert result.configs["images"] == {"train": len(b.images)}


def test_shard_names_and_manifest(built) -> None:
    _, _, out, _ = built
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    for name, cfg in manifest["configs"].items():
        for split, entry in cfg["splits"].items():
            shards = entry["shards"]
            n = len(shards)
            assert [Path(s["path"]).name for s in shards] == [
                f"{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)
            ]
            for s in shards:
                data = (out / s["path"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == s["sha256"] and len(data) == s["bytes"]
                assert s["path"].startswith(f"{name}/")


def test_card_documents_provenance_metrics_loading_and_licence(built) -> None:
    _, b, out, _ = built
    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["license"] == "apache-2.0"
    assert meta["configs"][2]["data_files"] == [
        {"split": "train", "path": "features-alignrec/train-*.parquet"}
    ]
    assert "Synthetic data" in card  # the default dataset is flagged
    for name, sha in b.raw_sha256.items():
        assert sha in card and f"https://mirror.example.invalid/amazon/{name}" in card
    assert b.checkpoint_sha256 in card
    assert "Params hash: `" in card and "alignrec 0.1.0" in card
    # Evaluation tables carry the numbers of the metrics files.
    test_r20 = b.metrics["train-alignrec-alignrec"]["test"]["recall@20"]
    assert f"{test_r20:.4f}" in card
    assert "0.0456" in card and "0.0345" in card and "Mask modality" in card
    # Loading lines and the MMRec export command.
    assert 'load_dataset(REPO, "features-alignrec", revision=REVISION, split="train")' in card
    assert '"me/mini"' in card
    assert "alignrec-data export mmrec amazon-mini --features effnet-image,minilm-text" in card
    assert "--layout alignrec --features alignrec" in card
    assert "AlignRec: Aligning and Training in Multimodal Recommendations" in card
    # The pipeline report is embedded with its figure copied; a path outside metrics/ is not.
    assert "Recall improves with AlignRec features." in card
    assert "](figures/figs_recall.png)" in card and (out / "figures" / "figs_recall.png").is_file()
    assert "etc/passwd" not in "".join(p.as_posix() for p in out.rglob("*"))
    assert "](../../../../etc/passwd.png)" not in card


def test_rebuild_is_byte_identical(built, tmp_path: Path) -> None:
    data_dir, _, out, _ = built
    again = tmp_path / "again"
    build_release(
        data_dir,
        "amazon-mini",
        again,
        ReleaseConfig(images=True, shard_size_mb=SHARD_MB, repo_id="me/mini"),
    )

    def digest(folder: Path) -> dict[str, str]:
        return {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    assert digest(again) == digest(out)


def test_imported_dataset_without_features_or_registry_entry(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_dataset(data_dir, "my-import", variants={}, extras=False)
    out = tmp_path / "rel"
    result = build_release(data_dir, "my-import", out)
    card = (out / "README.md").read_text()
    assert front_matter(card)["license"] == "unknown"
    assert "Source unknown / imported" in card
    assert "No item features are included" in card
    assert "No raw files are recorded" in card
    assert result.variants == [] and any("no feature files" in n for n in result.notes)
    assert [c["config_name"] for c in front_matter(card)["configs"]] == ["items", "interactions"]


def test_rebuild_replaces_stale_configs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_dataset(data_dir, "amazon-mini", variants={"alignrec": 4, "minilm-text": 3}, extras=False)
    out = tmp_path / "rel"
    build_release(data_dir, "amazon-mini", out)
    (data_dir / "amazon-mini" / "features" / "minilm-text.parquet").unlink()
    build_release(data_dir, "amazon-mini", out)
    assert not (out / "features-minilm-text").exists()
    assert not list(tmp_path.glob(".rel*"))  # no staging folder left behind


def test_errors_name_the_problem(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(
        UsageError,
        match=r"prepared interactions .* does not exist; run `alignrec-data prepare nothing`",
    ):
        build_release(data_dir, "nothing", tmp_path / "rel")
    b = make_dataset(data_dir, "amazon-mini", variants={"alignrec": 4}, extras=False)
    with pytest.raises(UsageError, match=r"feature variant\(s\) clip-image .* \(found: alignrec\)"):
        build_release(
            data_dir, "amazon-mini", tmp_path / "rel", ReleaseConfig(features=("clip-image",))
        )
    # Features extracted from another prepare run (other item order) are refused.
    from alignrec_data.features import write_features

    write_features(
        b.root / "features" / "alignrec.parquet", b.item_keys[::-1], b.features["alignrec"]
    )
    with pytest.raises(DataFormatError, match=r"item 0 has key .* re-run `alignrec-data extract`"):
        build_release(data_dir, "amazon-mini", tmp_path / "rel")
    with pytest.raises(UsageError, match=r"shard_size_mb = 0 is out of range: expected > 0"):
        ReleaseConfig(shard_size_mb=0)


def test_token_never_reaches_the_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hf_SECRETtoken1234567890abcdef"
    monkeypatch.setenv("HF_TOKEN", secret)
    data_dir = tmp_path / "data"
    make_dataset(data_dir, "amazon-mini", variants={"alignrec": 4}, extras=False)
    params = tmp_path / "params.yaml"
    # Even a token pasted by mistake into a params section that the card shows is scrubbed.
    params.write_text(f"extract:\n  note: {secret}\n  seed: 7\nrelease:\n  shard_size_mb: 1\n")
    out = tmp_path / "rel"
    build_release(data_dir, "amazon-mini", out, params_path=params)
    text = "".join(
        p.read_text(errors="replace") for p in out.rglob("*") if p.suffix in (".md", ".json")
    )
    assert secret not in text
    assert "`extract.seed` = 7" in text


def test_cli(tmp_path: Path) -> None:
    from alignrec_data.cli import cli

    data_dir = tmp_path / "data"
    make_dataset(data_dir, "amazon-mini", variants={"alignrec": 4, "minilm-text": 3}, extras=False)
    params = tmp_path / "params.yaml"
    params.write_text("release:\n  shard_size_mb: 5\n  features: [alignrec]\n  images: false\n")
    res = CliRunner().invoke(
        cli,
        [
            "release",
            "amazon-mini",
            "--data-dir",
            str(data_dir),
            "--params",
            str(params),
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["variants"] == ["alignrec"]
    assert doc["configs"]["interactions"]["validation"] > 0
    assert Path(doc["out"]) == data_dir / "amazon-mini" / "release"

    res = CliRunner().invoke(
        cli, ["release", "amazon-mini", "--data-dir", str(data_dir), "--features", "nope"]
    )
    assert res.exit_code == 2 and "feature variant(s) nope" in res.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("release:\n  shard_size: 5\n")
    res = CliRunner().invoke(
        cli, ["release", "amazon-mini", "--data-dir", str(data_dir), "--params", str(bad)]
    )
    assert res.exit_code == 2 and "unknown key(s) shard_size" in res.output

    out = tmp_path / "elsewhere"
    args = ["release", "amazon-mini", "--data-dir", str(data_dir), "--params", str(params)]
    res = CliRunner().invoke(cli, [*args, "--out", str(out), "--shard-size-mb", "2"])
    assert res.exit_code == 0, res.output
    # the settings log names the command-line value and the params value it replaced
    assert f"shard_size_mb=2.0 [command line; not 5 in {params}:release]" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        MANIFEST_NAME,
        "features-alignrec",
        "interactions",
        "items",
    ]


def test_card_is_read_by_huggingface_hub_and_keeps_long_values_on_one_line(
    tmp_path: Path,
) -> None:
    from huggingface_hub import DatasetCard

    dataset = "amazon2023-clothing-shoes-and-jewelry"  # a registry id: `other` licence
    data_dir = tmp_path / "data"
    make_dataset(data_dir, dataset, variants={"alignrec": 4}, extras=False)
    out = tmp_path / "rel"
    build_release(data_dir, dataset, out)
    text = (out / "README.md").read_text(encoding="utf-8")
    card = DatasetCard(text)
    pretty = f"alignrec {dataset}: items, interactions and multimodal item features"
    assert card.data.pretty_name == pretty and card.data.license == "other"
    assert [c["config_name"] for c in card.data.configs] == [
        "items",
        "interactions",
        "features-alignrec",
    ]
    assert card.text.startswith(f"\n# alignrec {dataset}\n")
    # Written as dumped (huggingface_hub's own dump would fold this line at 80 columns).
    assert f"pretty_name: '{pretty}'" in text.splitlines()


def test_inputs_are_checked_before_the_release_folder_is_created(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data_dir = tmp_path / "data"
    b = make_dataset(data_dir, "amazon-mini", variants={"alignrec": 4}, extras=False)
    path = b.root / "prepared" / "interactions.parquet"
    table = pq.read_table(path)
    split = table.column("split").to_pylist()
    split[0] = "holdout"
    idx = table.schema.get_field_index("split")
    pq.write_table(table.set_column(idx, "split", pa.array(split, pa.string())), path)
    with pytest.raises(DataFormatError, match=r"unknown split value\(s\) \['holdout'\]"):
        build_release(data_dir, "amazon-mini", tmp_path / "rel")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no release, no staging


def test_one_shard_writer_for_tables_and_streams(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alignrec_data.release_configs import ShardWriter

    writer = ShardWriter(tmp_path, max_bytes=800, compression="none")
    table = pa.table({"x": pa.array(range(300), pa.int64())})  # 2,400 bytes: 3 shards
    shards = writer.write_table(table, "cfg", "train")
    assert [s.path for s in shards] == [f"cfg/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [s.rows for s in shards] == [100, 100, 100]
    parts = [pq.read_table(tmp_path / s.path) for s in shards]
    assert pa.concat_tables(parts).column("x").to_pylist() == list(range(300))
    for s in shards:
        data = (tmp_path / s.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s.sha256 and len(data) == s.bytes

    schema = pa.schema([("x", pa.int64())])
    rows = (({"x": i}, 300) for i in range(7))  # a shard is closed once it holds >= 800 bytes
    shards = writer.write_stream(rows, schema, "stream", "train")
    assert [s.rows for s in shards] == [3, 3, 1]
    assert [s.path for s in shards][-1] == "stream/train-00002-of-00003.parquet"
    empty = writer.write_stream(iter(()), schema, "empty", "test")
    assert [(s.path, s.rows) for s in empty] == [("empty/test-00000-of-00001.parquet", 0)]
    assert not list(tmp_path.rglob(".part-*"))


def test_markdown_table_is_shared_by_card_and_report() -> None:
    from alignrec_data.markdown import markdown_table
    from alignrec_model import report

    assert markdown_table(["a", "b"], [[1234, 0.5], [None, "x|y"], [True, 12345.0]]) == (
        "| a | b |\n|---|---|\n| 1,234 | 0.5000 |\n| — | x\\|y |\n| true | 12,345.0 |"
    )
    # The report keeps its own cell format (blank for None, "nan") through the same helper.
    assert markdown_table(["r"], [[None], [float("nan")]], report._fmt) == (
        "| r |\n|---|\n|  |\n| nan |"
    )
