"""The images stage end to end: loopback server, hostile answers, resume, mirrors, CLI, DVC."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.images import (
    IMAGE_MIRROR_ENV,
    ImagesConfig,
    fetch_images,
    iter_images,
    load_image_index,
    load_images,
)
from alignrec_data.paths import DatasetPaths
from tests.images.helpers import jpeg_bytes, png_bomb, write_items
from tests.images.server import ImageServer, Reply

CONFIG = ImagesConfig(
    shorter_side=32,
    max_pixels=1_000_000,
    min_side=8,
    max_bytes=200_000,
    concurrency=4,
    per_host_rate=0,
    retries=1,
    backoff=0.01,
    timeout=2.0,
    shard_size_mb=0.002,  # 2 kB: two or three images per shard, so several shards are written
)
DS = "toy"


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_MIRROR_ENV, raising=False)
    monkeypatch.delenv("ALIGNREC_MIRROR", raising=False)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return png_bomb(8000)


def build_site(srv: ImageServer, bomb: bytes) -> tuple[list[list[str]], dict[str, tuple]]:
    """Script the server; return each item's image_urls and what the index must say."""
    u = srv.url + "I/"
    good = jpeg_bytes((120, 90))
    truncated = jpeg_bytes((400, 300))[:900]
    srv.route("/I/good.jpg", Reply(body=good))
    srv.route("/I/tall.jpg", Reply(body=jpeg_bytes((50, 200), (0, 90, 200))))
    srv.route("/I/strip.jpg", Reply(body=jpeg_bytes((80, 80), (10, 10, 10))))  # full image
    srv.route("/I/fallback.jpg", Reply(body=jpeg_bytes((64, 96), (90, 90, 0))))
    srv.route("/I/busy.jpg", Reply(429, b"", "text/plain", {"Retry-After": "0"}), Reply(body=good))
    srv.route("/I/html.jpg", Reply(body=b"<html><body>Service Unavailable</body></html>"))
    srv.route("/I/empty.jpg", Reply(body=b""))
    srv.route("/I/trunc.jpg", Reply(body=truncated))
    srv.route("/I/bomb.png", Reply(body=bomb, content_type="image/png"))
    srv.route("/I/huge.jpg", Reply(body=b"\xff\xd8" + b"\0" * 300_000))
    items = [
        ([u + "good.jpg"], (True, None, u + "good.jpg", 200)),
        ([u + "tall.jpg"], (True, None, u + "tall.jpg", 200)),
        # Only the thumb URL is known; its modifier-stripped URL serves the full image.
        ([u + "strip._SS40_.jpg"], (True, None, u + "strip.jpg", 200)),
        # hi_res is dead, the next candidate works.
        ([u + "dead-hires.jpg", u + "fallback.jpg"], (True, None, u + "fallback.jpg", 200)),
        ([u + "busy.jpg"], (True, None, u + "busy.jpg", 200)),
        ([u + "html.jpg"], (False, "not-an-image", u + "html.jpg", 200)),
        ([u + "empty.jpg"], (False, "empty", u + "empty.jpg", 200)),
        ([u + "trunc.jpg"], (False, "corrupt", u + "trunc.jpg", 200)),
        ([u + "bomb.png"], (False, "decompression-bomb", u + "bomb.png", 200)),
        ([u + "huge.jpg"], (False, "too-large", u + "huge.jpg", 200)),
        ([u + "dead.jpg", u + "dead._SS40_.jpg"], (False, "http-404", u + "dead.jpg", 404)),
        # A 404 on hi_res and a bad image on the thumb: the bad image is the reason shown.
        ([u + "dead2.jpg", u + "html.jpg"], (False, "not-an-image", u + "html.jpg", 200)),
        ([], (False, "no-url", None, None)),
        (["file:///etc/passwd"], (False, "unsupported-url", "file:///etc/passwd", None)),
    ]
    return [urls for urls, _ in items], {f"B{i:09d}": exp for i, (_, exp) in enumerate(items)}


def image_requests(srv: ImageServer) -> int:
    return sum(1 for h in srv.hits() if h.path.startswith("/I/"))


def test_fetch_validate_store_resume(data_dir: Path, bomb: bytes) -> None:
    paths = DatasetPaths.of(data_dir, DS)
    with ImageServer() as srv:
        urls, expected = build_site(srv, bomb)
        write_items(paths.prepared, urls)
        first = fetch_images(data_dir, DS, CONFIG, progress=False)

        index = load_image_index(paths.images)
        assert list(index["item_id"]) == list(range(len(urls)))
        for row in index.to_dict("records"):
            got = tuple(
                None if pd.isna(row[k]) else row[k]
                for k in ("has_image", "reason", "url", "http_status")
            )
            assert got == expected[row["item_key"]], row["item_key"]
        fallback = index[index["item_key"] == "B000000003"].iloc[0]
        assert list(fallback["attempts"]) == ["http-404", "ok"]

        # Stored images decode, are RGB, with the shorter side from params.
        images = dict(iter_images(paths.images))
        assert sorted(images) == [0, 1, 2, 3, 4]
        sizes = {i: im.size for i, im in images.items()}
        assert sizes == {0: (43, 32), 1: (32, 128), 2: (32, 32), 3: (32, 48), 4: (43, 32)}
        assert all(im.mode == "RGB" for im in images.values())
        raw = load_images(paths.images)
        stored = index[index["has_image"]]
        for item_id, sha in zip(stored["item_id"], stored["sha256"], strict=True):
            import hashlib

            assert hashlib.sha256(raw[item_id]).hexdigest() == sha

        # Packed: a few shards, no loose image files.
        files = sorted(p.name for p in paths.images.iterdir())
        assert len(first.new_shards) >= 2
        assert files == sorted(["index.parquet", "stats.json", *first.new_shards])
        shard = pq.read_table(paths.images / first.new_shards[0])
        assert shard.schema.names == [
            "item_id",
            "item_key",
            "image",
            "width",
            "height",
            "sha256",
            "url",
            "http_status",
        ]

        stats = json.loads((paths.images / "stats.json").read_text())
        assert (stats["n_items"], stats["n_with_image"], stats["n_missing"]) == (14, 5, 9)
        assert stats["missing_rate"] == round(9 / 14, 6)
        assert stats["reasons"] == {
            "corrupt": 1,
            "decompression-bomb": 1,
            "empty": 1,
            "http-404": 1,
            "no-url": 1,
            "not-an-image": 2,
            "too-large": 1,
            "unsupported-url": 1,
        }
        assert stats["served_by_candidate"] == {"0": 4, "1": 1}
        assert first.fetched == 13 and first.requests == image_requests(srv)
        host = srv.url.split("/")[2]
        # Per host: the item counts, and this run's requests (file:///etc/passwd: no request).
        failed = {k: v for k, v in stats["reasons"].items() if not k.endswith("url")}
        assert stats["hosts"] == {
            host: {"requests": image_requests(srv), "ok": 5, "failed": failed, "skipped": 0},
            "file://": {"requests": 0, "ok": 0, "failed": {"unsupported-url": 1}, "skipped": 0},
        }
        assert stats["hosts_down"] == []

        # Rerun: every image is stored or a permanent failure: zero image requests.
        srv.clear_log()
        second = fetch_images(data_dir, DS, CONFIG, progress=False)
        assert image_requests(srv) == 0
        assert (second.fetched, second.resumed_stored, second.resumed_failed) == (0, 5, 9)
        assert second.new_shards == [] and second.removed_shards == []
        assert load_image_index(paths.images).equals(index)
        # The same stats, but for the requests per host (those of the run that wrote them).
        again = json.loads((paths.images / "stats.json").read_text())
        assert again["hosts"][host]["requests"] == 0
        again["hosts"][host]["requests"] = stats["hosts"][host]["requests"]
        assert again == stats

        # --retry-missing asks again for the failures only.
        third = fetch_images(data_dir, DS, CONFIG, retry_missing=True, progress=False)
        assert third.fetched == 8 and third.resumed_stored == 5
        assert {h.path for h in srv.hits()} >= {"/I/dead.jpg", "/I/html.jpg", "/I/bomb.png"}
        assert "/I/good.jpg" not in {h.path for h in srv.hits()}


def test_byte_identical_across_runs(tmp_path: Path, bomb: bytes) -> None:
    with ImageServer() as srv:
        urls, _ = build_site(srv, bomb)
        runs = []
        for name in ("a", "b"):
            data_dir = tmp_path / name
            paths = DatasetPaths.of(data_dir, DS)
            write_items(paths.prepared, urls)
            fetch_images(data_dir, DS, CONFIG, progress=False)
            runs.append(paths.images)
    a, b = (load_image_index(p) for p in runs)
    assert list(a["sha256"].dropna()) == list(b["sha256"].dropna())
    assert len(a["sha256"].dropna()) == 5
    for shard in sorted(p.name for p in runs[0].glob("shard-*.parquet")):
        assert (runs[0] / shard).read_bytes() == (runs[1] / shard).read_bytes()


def test_transient_failures_and_new_items_are_fetched_on_rerun(data_dir: Path) -> None:
    paths = DatasetPaths.of(data_dir, DS)
    config = ImagesConfig(**{**CONFIG.__dict__, "retries": 0})
    with ImageServer() as srv:
        good = jpeg_bytes((90, 90))
        a = srv.route("/I/a.jpg", Reply(body=good))
        flaky = srv.route("/I/flaky.jpg", Reply(503, b"busy", "text/html"), Reply(body=good))
        write_items(paths.prepared, [[a], [flaky]])
        first = fetch_images(data_dir, DS, config, progress=False)
        assert first.stats["reasons"] == {"http-503": 1}

        c = srv.route("/I/c.jpg", Reply(body=jpeg_bytes((40, 60))))
        write_items(paths.prepared, [[a], [flaky], [c]])
        srv.clear_log()
        second = fetch_images(data_dir, DS, config, progress=False)
        assert sorted(h.path for h in srv.hits()) == ["/I/c.jpg", "/I/flaky.jpg"]
        assert second.resumed_stored == 1 and second.fetched == 2
        assert second.stats["n_with_image"] == 3 and second.stats["missing_rate"] == 0.0
        assert second.new_shards == ["shard-00001.parquet"]  # only the new images
        assert len(pq.read_table(paths.images / "shard-00001.parquet")) == 2


def test_item_ids_follow_the_current_items_table(data_dir: Path) -> None:
    """A re-prepared items table may renumber items: readers use the index's item_id."""
    paths = DatasetPaths.of(data_dir, DS)
    with ImageServer() as srv:
        a = srv.route("/I/a.jpg", Reply(body=jpeg_bytes((90, 90), (250, 0, 0))))
        b = srv.route("/I/b.jpg", Reply(body=jpeg_bytes((90, 90), (0, 0, 250))))
        write_items(paths.prepared, [[a], [b]], keys=["KA", "KB"])
        fetch_images(data_dir, DS, CONFIG, progress=False)
        write_items(paths.prepared, [[b]], keys=["KB"])  # KA dropped, KB is now item 0
        srv.clear_log()
        fetch_images(data_dir, DS, CONFIG, progress=False)
        assert srv.hits() == []
    index = load_image_index(paths.images)
    assert list(index["item_key"]) == ["KB"] and list(index["item_id"]) == [0]
    ((item_id, im),) = list(iter_images(paths.images))
    assert item_id == 0 and im.getpixel((16, 16))[2] > 150  # the blue one


def test_changed_encoding_params_need_force(data_dir: Path) -> None:
    paths = DatasetPaths.of(data_dir, DS)
    with ImageServer() as srv:
        a = srv.route("/I/a.jpg", Reply(body=jpeg_bytes((90, 120))))
        write_items(paths.prepared, [[a]])
        first = fetch_images(data_dir, DS, CONFIG, progress=False)
        bigger = ImagesConfig(**{**CONFIG.__dict__, "shorter_side": 64})
        with pytest.raises(
            UsageError, match=r"shard-00000.parquet holds images made with .*'shorter_side': 32"
        ) as info:
            fetch_images(data_dir, DS, bigger, progress=False)
        assert "--force" in info.value.hint
        rebuilt = fetch_images(data_dir, DS, bigger, force=True, progress=False)
    assert rebuilt.removed_shards == first.new_shards
    assert [p.name for p in paths.images.glob("shard-*")] == rebuilt.new_shards
    assert load_image_index(paths.images)["width"].tolist() == [64]


def test_file_urls_through_a_mirror(data_dir: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "x.jpg").write_bytes(jpeg_bytes((100, 70)))
    (mirror / "bad.jpg").write_bytes(b"<html>nope</html>")
    base = "https://img.example/I/"
    paths = DatasetPaths.of(data_dir, DS)
    write_items(paths.prepared, [[base + "x._SX300_.jpg"], [base + "y.jpg"], [base + "bad.jpg"]])
    result = fetch_images(data_dir, DS, CONFIG, mirrors=[f"{base}={mirror}/"], progress=False)
    index = load_image_index(paths.images)
    assert index["has_image"].tolist() == [True, False, False]
    assert index["reason"].tolist()[1:] == ["file-not-found", "not-an-image"]
    # The metadata URL (modifier stripped) is recorded; the rewritten one is what was read.
    assert index["url"][0] == base + "x.jpg"
    assert index["fetched_url"][0] == (mirror / "x.jpg").as_uri()
    assert index["http_status"].isna().all()
    assert result.requests == 0
    assert (index["width"][0], index["height"][0]) == (46, 32)

    # Same mirror: the permanent failures are kept. Another mirror may have them: retried.
    again = fetch_images(data_dir, DS, CONFIG, mirrors=[f"{base}={mirror}/"], progress=False)
    assert (again.fetched, again.resumed_failed) == (0, 2)
    other = tmp_path / "other"
    other.mkdir()
    (other / "y.jpg").write_bytes(jpeg_bytes((40, 40)))
    moved = fetch_images(data_dir, DS, CONFIG, mirrors=[f"{base}={other}/"], progress=False)
    assert (moved.fetched, moved.resumed_stored) == (2, 1)
    index = load_image_index(paths.images)
    assert index["has_image"].tolist() == [True, True, False]
    assert index["reason"][2] == "file-not-found"  # bad.jpg is not in the other mirror


def test_amazon_mini_default_rewrite_reads_packaged_images(data_dir: Path) -> None:
    from alignrec_data.registry import get_dataset, resolve_base_url

    spec = get_dataset("amazon-mini")
    folder = Path(resolve_base_url(spec).removeprefix("file://")) / "images"
    asins = sorted(p.stem for p in folder.glob("*.jpg"))[:3] if folder.is_dir() else []
    assert len(asins) == 3, f"the packaged amazon-mini images are missing from {folder}"
    urls = [
        [spec.image_base_url + f"{a}.jpg", spec.image_base_url + f"{a}._SS40_.jpg"] for a in asins
    ]
    urls.append([spec.image_base_url + "NOSUCHASIN._SS40_.jpg"])
    paths = DatasetPaths.of(data_dir, "amazon-mini")
    write_items(paths.prepared, urls, keys=[*asins, "NOSUCHASIN"])
    result = fetch_images(data_dir, "amazon-mini", CONFIG, progress=False)
    index = load_image_index(paths.images)
    assert index["has_image"].tolist() == [True, True, True, False]
    assert index["reason"].iloc[3] == "file-not-found"
    # url is the metadata URL (the stripped variant is tried first for the thumb-only item).
    assert list(index["url"]) == [u[0] for u in urls[:3]] + [spec.image_base_url + "NOSUCHASIN.jpg"]
    assert all(u.startswith(folder.as_uri()) for u in index["fetched_url"])
    assert result.requests == 0


def test_missing_or_malformed_items_file(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        UsageError, match=r"prepared items file .*items.parquet does not exist"
    ) as info:
        fetch_images(data_dir, DS, CONFIG)
    assert info.value.hint == f"run `alignrec-data prepare {DS}` first"
    prepared = DatasetPaths.of(data_dir, DS).prepared
    prepared.mkdir(parents=True)
    import pyarrow as pa

    pq.write_table(pa.table({"item_id": [0], "item_key": ["a"]}), prepared / "items.parquet")
    with pytest.raises(
        DataFormatError, match="expected columns item_id, item_key, image_urls, missing image_urls"
    ):
        fetch_images(data_dir, DS, CONFIG)
    with pytest.raises(UsageError, match=r"does not exist") as info:
        load_image_index(DatasetPaths.of(data_dir, DS).images)
    assert info.value.hint == f"run `alignrec-data images {DS}` first"


def test_bad_params_are_usage_errors(tmp_path: Path) -> None:
    from alignrec_data.config import load_section

    p = tmp_path / "params.yaml"
    p.write_text("images:\n  jpeg_quality: 120\n")
    with pytest.raises(
        UsageError, match=r"images.jpeg_quality = 120 is out of range: expected between 1 and 95"
    ):
        load_section(p, "images", ImagesConfig)
    p.write_text("images:\n  shorter_sied: 64\n")
    with pytest.raises(UsageError, match=r"unknown key\(s\) shorter_sied"):
        load_section(p, "images", ImagesConfig)


def test_repo_params_yaml_has_a_valid_images_section() -> None:
    from alignrec_data.config import load_section
    from tests.conftest import REPO

    config = load_section(REPO / "params.yaml", "images", ImagesConfig)
    assert config.shorter_side >= 224  # the encoder's 224-px crops need at least this much


def test_cli(data_dir: Path, tmp_path: Path) -> None:
    from alignrec_data.cli import cli

    params = tmp_path / "params.yaml"
    params.write_text(
        "images:\n  shorter_side: 24\n  per_host_rate: 0\n  retries: 0\n  min_side: 8\n"
    )
    paths = DatasetPaths.of(data_dir, DS)
    runner = CliRunner()
    with ImageServer() as srv:
        a = srv.route("/I/a.jpg", Reply(body=jpeg_bytes((90, 60))))
        write_items(paths.prepared, [[a], [srv.url + "I/missing.jpg"]])
        args = ["images", DS, "--data-dir", str(data_dir), "--params", str(params)]
        res = runner.invoke(cli, [*args, "--format", "json"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert doc["stats"]["n_with_image"] == 1 and doc["stats"]["reasons"] == {"http-404": 1}
        assert doc["fetched"] == 2

        res = runner.invoke(cli, args)
        assert res.exit_code == 0, res.output
        assert "1 of 2 items have an image (missing rate 50.00%)" in res.stdout
        assert "missing because: http-404 1" in res.stdout
        assert "nothing fetched" in res.stdout

        res = runner.invoke(cli, [*args, "--mirror", "nonsense"])
        assert res.exit_code == 2
        assert "expected PREFIX=REPLACEMENT, found 'nonsense'" in res.output

        res = runner.invoke(cli, ["images", "--help"])
        assert res.exit_code == 0 and "alignrec-data images amazon-mini" in res.stdout

    assert json.loads((paths.images / "stats.json").read_text())["missing_rate"] == 0.5
    with Image.open(io.BytesIO(next(iter(load_images(paths.images).values())))) as im:
        assert min(im.size) == 24
