"""The images stage on 100 real H&M product photos served over loopback (../shared/data)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from alignrec_data.images import ImagesConfig, fetch_images, iter_images, load_image_index
from alignrec_data.paths import DatasetPaths
from tests.conftest import shared_data
from tests.images.helpers import png_bomb, write_items
from tests.images.server import ImageServer, Reply

pytestmark = pytest.mark.shared_data

RATE = 200.0  # requests/s to the one loopback host: >= 5 ms between request starts
CONFIG = ImagesConfig(
    shorter_side=64,
    concurrency=4,
    per_host_rate=RATE,
    retries=1,
    backoff=0.01,
    timeout=5.0,
    max_pixels=20_000_000,
    max_bytes=2_000_000,
)


def serve_hm(srv: ImageServer, folder: Path) -> tuple[list[list[str]], list[str], dict]:
    """Serve the real photos under /hm/ plus hostile variants; return items and expectations."""
    files = sorted(folder.glob("*.jpg"))
    urls, keys, expected = [], [], {}
    for f in files:
        srv.route(f"/hm/{f.name}", Reply(body=f.read_bytes()))
        urls.append([f"{srv.url}hm/{f.name}"])
        keys.append(f.stem)
        expected[f.stem] = (True, None)
    real = files[0].read_bytes()
    bad = {
        "truncated": (Reply(body=real[: len(real) // 3]), "corrupt"),
        "bad-header": (Reply(body=b"GIF00" + real[5:]), "not-an-image"),
        "html": (
            Reply(body=b"<!doctype html><title>Error</title><p>Image not found</p>"),
            "not-an-image",
        ),
        "zero": (Reply(body=b""), "empty"),
        "bomb": (Reply(body=png_bomb(6000), content_type="image/png"), "decompression-bomb"),
    }
    for name, (reply, reason) in bad.items():
        srv.route(f"/bad/{name}.jpg", reply)
        urls.append([f"{srv.url}bad/{name}.jpg"])
        keys.append(f"bad-{name}")
        expected[f"bad-{name}"] = (False, reason)
    urls.append([f"{srv.url}hm/does-not-exist.jpg"])
    keys.append("bad-404")
    expected["bad-404"] = (False, "http-404")
    # Only a thumb URL with a size modifier: its stripped URL is a real photo.
    urls.append([f"{srv.url}hm/{files[1].stem}._SS40_.jpg"])
    keys.append("thumb-only")
    expected["thumb-only"] = (True, None)
    return urls, keys, expected


def test_hm_sample_real_photos(tmp_path: Path) -> None:
    folder = shared_data("hm-sample") / "images"
    with ImageServer() as srv:
        urls, keys, expected = serve_hm(srv, folder)
        runs = {}
        for name, config in (
            ("a", CONFIG),
            ("b", ImagesConfig(**{**CONFIG.__dict__, "per_host_rate": 0})),
        ):
            data_dir = tmp_path / name
            write_items(DatasetPaths.of(data_dir, "hm").prepared, urls, keys)
            if name == "a":
                srv.clear_log()
            runs[name] = fetch_images(data_dir, "hm", config, progress=False)
            if name == "a":
                starts = sorted(h.t for h in srv.hits())
        images_a = DatasetPaths.of(tmp_path / "a", "hm").images

        # Rerun: nothing new is requested.
        srv.clear_log()
        rerun = fetch_images(tmp_path / "a", "hm", CONFIG, progress=False)
        assert srv.hits() == [] and rerun.fetched == 0

    # The per-host limiter spaced the request starts (server-side arrival times, which jitter
    # by several ms on a busy machine: check every window of 20 consecutive requests).
    assert len(starts) >= 107
    windows = [b - a for a, b in zip(starts, starts[20:], strict=False)]
    assert min(windows) >= 0.7 * 20 / RATE, min(windows)

    index = load_image_index(images_a)
    got = {
        k: (bool(h), None if pd.isna(r) else r)
        for k, h, r in zip(index["item_key"], index["has_image"], index["reason"], strict=True)
    }
    assert got == expected
    stats = runs["a"].stats
    assert (stats["n_items"], stats["n_with_image"]) == (107, 101)
    assert stats["missing_rate"] == round(6 / 107, 6)

    # Stored photos decode as RGB with the shorter side 64 and the source aspect ratio.
    n = 0
    for item_id, im in iter_images(images_a):
        key = index.loc[index["item_id"] == item_id, "item_key"].item()
        src = key if key != "thumb-only" else sorted(folder.glob("*.jpg"))[1].stem
        with Image.open(folder / f"{src}.jpg") as orig:
            sw, sh = orig.size
        assert im.mode == "RGB" and min(im.size) == 64
        assert abs(im.size[0] / im.size[1] - sw / sh) < 0.02
        n += 1
    assert n == 101

    # Same photos and params: byte-identical stored images and shards in both runs.
    index_b = load_image_index(DatasetPaths.of(tmp_path / "b", "hm").images)
    assert index["sha256"].equals(index_b["sha256"])
    for shard in runs["a"].new_shards:
        a = (images_a / shard).read_bytes()
        assert (
            hashlib.sha256(a).digest()
            == hashlib.sha256(
                (DatasetPaths.of(tmp_path / "b", "hm").images / shard).read_bytes()
            ).digest()
        )
