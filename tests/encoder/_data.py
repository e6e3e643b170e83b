"""Test inputs for the encoder stages: a prepared items table plus the packed image store.

The image store is written with the `images` stage's own writers
(``alignrec_data.images.store.write_shard`` / ``write_index``), so the encoder reads real
shards and a real index exactly as in the pipeline.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image, ImageDraw

from alignrec_data.images.store import write_index, write_shard
from alignrec_data.paths import DatasetPaths
from alignrec_data.schema import ITEMS_FILE, ITEMS_SCHEMA

SETTINGS = {"shorter_side": 256, "format": "jpeg", "quality": 90}


def write_dataset(
    data_dir: Path,
    name: str,
    texts: list[str],
    images: list[Image.Image | None],
    keys: list[str] | None = None,
) -> DatasetPaths:
    """Write ``prepared/items.parquet`` and ``images/`` for items 0..N-1."""
    paths = DatasetPaths.of(data_dir, name)
    paths.prepared.mkdir(parents=True, exist_ok=True)
    paths.images.mkdir(parents=True, exist_ok=True)
    n = len(texts)
    keys = keys or [f"ITEM{i:05d}" for i in range(n)]
    table = pa.table(
        {
            "item_id": np.arange(n, dtype=np.int64),
            "item_key": keys,
            "title": [t.split(".")[0] for t in texts],
            "brand": ["brand"] * n,
            "categories": [["cat"]] * n,
            "description": texts,
            "text": texts,
            "image_urls": [
                [f"file:///img/{k}.jpg"] if im is not None else []
                for k, im in zip(keys, images, strict=True)
            ],
            "has_image": [im is not None for im in images],
        },
        schema=ITEMS_SCHEMA,
    )
    pq.write_table(table, paths.prepared / ITEMS_FILE)
    shard_rows, index_rows = [], []
    shard = None
    for i, (key, im) in enumerate(zip(keys, images, strict=True)):
        row = {
            "item_id": i,
            "item_key": key,
            "has_image": im is not None,
            "reason": None,
            "url": None,
            "http_status": None,
            "sha256": None,
            "width": None,
            "height": None,
            "shard": None,
            "candidates": [],
            "attempts": [],
        }
        if im is None:
            row["reason"] = "no-url"
        else:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="JPEG", quality=90)
            data = buf.getvalue()
            sha = hashlib.sha256(data).hexdigest()
            url = f"file:///img/{key}.jpg"
            shard_rows.append(
                {
                    "item_id": i,
                    "item_key": key,
                    "image": data,
                    "width": im.width,
                    "height": im.height,
                    "sha256": sha,
                    "url": url,
                    "http_status": None,
                }
            )
            row.update(
                url=url,
                sha256=sha,
                width=im.width,
                height=im.height,
                shard="shard-00000.parquet",
                candidates=[url],
                attempts=["ok"],
            )
        index_rows.append(row)
    if shard_rows:
        shard = write_shard(paths.images, 0, shard_rows, SETTINGS)
        assert shard == "shard-00000.parquet"
    write_index(paths.images, index_rows, SETTINGS)
    return paths


COLOURS = [(220, 40, 40), (40, 160, 60), (40, 70, 220), (230, 200, 30)]
WORDS = [
    ["red", "apple", "cherry"],
    ["green", "leaf", "frog"],
    ["blue", "sea", "sky"],
    ["yellow", "sun", "lemon"],
]


def synthetic_dataset(
    data_dir: Path,
    name: str = "synth",
    n: int = 16,
    px: int = 32,
    no_image_every: int = 5,
    seed: int = 0,
) -> tuple[DatasetPaths, np.ndarray]:
    """``n`` items in 4 categories: a coloured shape and a text naming the category.

    Every ``no_image_every``-th item has no image. Returns the paths and the categories.
    """
    rng = np.random.default_rng(seed)
    texts, images, cats = [], [], []
    for i in range(n):
        c = i % 4
        words = " ".join(rng.choice(WORDS[c], size=3 + i % 3))
        texts.append(f"item {i}. a {words} thing")
        if no_image_every and i % no_image_every == no_image_every - 1:
            images.append(None)
        else:
            im = Image.new("RGB", (px, px), (255, 255, 255))
            d = ImageDraw.Draw(im)
            o = int(rng.integers(0, px // 4))
            d.ellipse([o, o, px - 1 - o // 2, px - 1 - o // 3], fill=COLOURS[c])
            images.append(im)
        cats.append(c)
    return write_dataset(data_dir, name, texts, images), np.array(cats)


def hm_dataset(
    data_dir: Path, hm_dir: Path, name: str = "hm", extra_without_image: int = 20
) -> tuple[DatasetPaths, pd.DataFrame]:
    """The 100 hm-sample articles with photos plus ``extra_without_image`` without.

    Text = name + brand + product group + description (the product *type* is not in the
    categories, so a same-type neighbour is not a plain string match).
    """
    arts = pd.read_parquet(hm_dir / "articles_sample.parquet")
    arts["key"] = arts["article_id"].astype(str).str.zfill(10)
    photo = {p.stem for p in (hm_dir / "images").glob("*.jpg")}
    with_img = arts[arts["key"].isin(photo)].sort_values("key")
    without = arts[~arts["key"].isin(photo)].sort_values("key").head(extra_without_image)
    rows = pd.concat([with_img, without], ignore_index=True)
    texts = [
        f"{r.prod_name}. H&M. {r.product_group_name}. "
        + (r.detail_desc if isinstance(r.detail_desc, str) else "")
        for r in rows.itertuples()
    ]
    images = []
    for r in rows.itertuples():
        p = hm_dir / "images" / f"{r.key}.jpg"
        if p.is_file():
            with Image.open(p) as im:
                im = im.convert("RGB")
                im.thumbnail((256, 256))
                images.append(im)
        else:
            images.append(None)
    paths = write_dataset(data_dir, name, texts, images, keys=rows["key"].tolist())
    return paths, rows


def tiny_params(path: Path, variants: list[str], **pretrain: object) -> Path:
    """A params file: a tiny scratch MMEnc pretrained for one epoch, and extraction settings."""
    settings = dict(
        init="scratch",
        size="tiny",
        image_size=32,
        max_text_len=32,
        epochs=1,
        batch_size=8,
        probe_items=0,
        num_threads=1,
    )
    path.write_text(
        yaml.safe_dump(
            {
                "pretrain": {**settings, **pretrain},
                "extract": dict(variants=variants, batch_size=5, num_threads=1),
            }
        )
    )
    return path
