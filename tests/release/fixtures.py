"""A small dataset in the documented on-disk formats, built in a temporary data dir.

Prepared tables (alignrec_data/schema.py), features via ``write_features``, an encoder
checkpoint, metrics JSONs, a lock file, a pipeline report with a figure and packed images.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from alignrec_data.features import write_features
from alignrec_data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, SPLITS, USERS_SCHEMA

VARIANT_DIMS = {
    "alignrec": 16,
    "mmenc-image": 16,
    "mmenc-text": 16,
    "minilm-text": 12,
    "effnet-image": 20,
}


@dataclass
class Built:
    root: Path
    item_keys: list[str]
    user_keys: list[str]
    interactions: pa.Table
    features: dict[str, np.ndarray]
    missing: dict[str, np.ndarray]
    checkpoint_sha256: str | None
    raw_sha256: dict[str, str]
    metrics: dict[str, dict]
    images: dict[int, bytes]


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_dataset(
    data_dir: Path,
    dataset: str = "amazon-mini",
    *,
    n_users: int = 25,
    n_items: int = 40,
    variants: dict[str, int] | None = None,
    seed: int = 0,
    extras: bool = True,
) -> Built:
    """Write ``<data_dir>/<dataset>/{prepared,features,models,metrics,raw,images}``."""
    rng = np.random.default_rng(seed)
    root = Path(data_dir) / dataset
    prepared = root / "prepared"
    prepared.mkdir(parents=True, exist_ok=True)
    item_keys = [f"B{1000 + i:07d}" for i in range(n_items)]
    user_keys = [f"A{5000 + u:08d}" for u in range(n_users)]

    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(5, 12)), replace=False)
        ts = np.sort(rng.integers(1_300_000_000, 1_400_000_000, len(items)))
        for j, (i, t) in enumerate(zip(items, ts, strict=True)):
            split = "test" if j == len(items) - 1 else ("valid" if j == len(items) - 2 else "train")
            rows.append((u, int(i), float(rng.integers(1, 6)), int(t), split))
    rows.sort(key=lambda r: (r[0], r[3], r[1]))
    inter = pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "item_id": pa.array([r[1] for r in rows], pa.int64()),
            "user_key": pa.array([user_keys[r[0]] for r in rows], pa.string()),
            "item_key": pa.array([item_keys[r[1]] for r in rows], pa.string()),
            "rating": pa.array([r[2] for r in rows], pa.float32()),
            "timestamp": pa.array([r[3] for r in rows], pa.int64()),
            "split": pa.array([r[4] for r in rows], pa.string()),
        },
        schema=INTERACTIONS_SCHEMA,
    )
    urls = [
        [f"https://images.example.invalid/{k}._SX300_.jpg"] if i % 7 else []
        for i, k in enumerate(item_keys)
    ]
    items = pa.table(
        {
            "item_id": pa.array(np.arange(n_items), pa.int64()),
            "item_key": pa.array(item_keys, pa.string()),
            "title": pa.array([f"Item {i} title" for i in range(n_items)], pa.string()),
            "brand": pa.array(["Brand"] * n_items, pa.string()),
            "categories": pa.array([["Baby", "Toys"]] * n_items, pa.list_(pa.string())),
            "description": pa.array([f"desc {i}" for i in range(n_items)], pa.string()),
            "text": pa.array(
                [f"Item {i} title Brand Baby Toys desc {i}" for i in range(n_items)], pa.string()
            ),
            "image_urls": pa.array(urls, pa.list_(pa.string())),
            "has_image": pa.array([bool(u) for u in urls], pa.bool_()),
        },
        schema=ITEMS_SCHEMA,
    )
    counts = np.bincount(inter.column("user_id").to_numpy(), minlength=n_users)
    users = pa.table(
        {
            "user_id": pa.array(np.arange(n_users), pa.int64()),
            "user_key": pa.array(user_keys, pa.string()),
            "n_interactions": pa.array(counts.astype(np.int64)),
        },
        schema=USERS_SCHEMA,
    )
    pq.write_table(inter, prepared / "interactions.parquet")
    pq.write_table(items, prepared / "items.parquet")
    pq.write_table(users, prepared / "users.parquet")
    split_counts = {
        s: int(np.sum(inter.column("split").to_numpy(zero_copy_only=False) == s)) for s in SPLITS
    }
    (prepared / "stats.json").write_text(
        json.dumps(
            {
                "dataset": dataset,
                "splits": split_counts,
                "steps": [{"step": "read", "interactions": len(rows)}],
            }
        ),
        encoding="utf-8",
    )

    feats, missing = {}, {}
    for v, d in (VARIANT_DIMS if variants is None else variants).items():
        m = rng.standard_normal((n_items, d)).astype(np.float32)
        miss = np.zeros(n_items, dtype=bool)
        if v.endswith("image"):
            miss[::7] = True
            m[miss] = 0.0
        write_features(root / "features" / f"{v}.parquet", item_keys, m, miss)
        feats[v], missing[v] = m, miss

    ckpt_sha = None
    raw_sha: dict[str, str] = {}
    metrics: dict[str, dict] = {}
    images: dict[int, bytes] = {}
    if extras:
        (root / "models").mkdir(parents=True, exist_ok=True)
        ckpt = rng.bytes(4096)
        (root / "models" / "mmenc.pt").write_bytes(ckpt)
        ckpt_sha = hashlib.sha256(ckpt).hexdigest()

        raw = root / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        files = {}
        for role, name in (("reviews", "reviews_Mini_5.json.gz"), ("meta", "meta_Mini.json.gz")):
            data = rng.bytes(1000)
            (raw / name).write_bytes(data)
            raw_sha[name] = hashlib.sha256(data).hexdigest()
            files[name] = {
                "role": role,
                "url": f"https://mirror.example.invalid/amazon/{name}",
                "size": len(data),
                "sha256": raw_sha[name],
                "trust": "first-use",
                "when": "2025-01-01T00:00:00Z",
            }
        (raw / "alignrec.lock.json").write_text(
            json.dumps({"version": 1, "dataset": dataset, "files": files})
        )

        mdir = root / "metrics"
        mdir.mkdir(parents=True, exist_ok=True)

        def run(model: str) -> dict:
            def split() -> dict:
                return {
                    f"{m}@{k}": round(float(rng.uniform(0.01, 0.2)), 6)
                    for m in ("recall", "ndcg", "precision", "map")
                    for k in (10, 20)
                }

            return {
                "model": model,
                "best_epoch": int(rng.integers(1, 50)),
                "valid": split(),
                "test": split(),
            }

        metrics["train-lightgcn"] = run("lightgcn")
        metrics["train-alignrec-alignrec"] = run("alignrec")
        metrics["train-alignrec-minilm-text"] = run("alignrec")
        metrics["eval-zero-shot-alignrec"] = {"test": {"recall@20": 0.0456, "ndcg@20": 0.0234}}
        metrics["eval-item-cf-minilm-text"] = {"test": {"recall@20": 0.0345, "ndcg@20": 0.0123}}
        metrics["eval-mask-modality-alignrec"] = {
            "unmasked": {"recall@20": 0.08},
            "masked": {"recall@20": 0.07},
            "drop": {"recall@20": 0.01},
        }
        metrics["pretrain"] = {
            "steps": 100,
            "final_loss": 1.2345,
            "loss": {"text": 2.5, "image": 0.75},
        }
        for stem, doc in metrics.items():
            (mdir / f"{stem}.json").write_text(json.dumps(doc))
        rdir = root / "report"  # the pipeline's `report` stage output
        (rdir / "figs").mkdir(parents=True, exist_ok=True)
        (rdir / "figs" / "recall.png").write_bytes(_png(1))
        (rdir / "report.md").write_text(
            "# Pipeline report\n\nRecall improves with AlignRec features.\n\n"
            "![recall](figs/recall.png)\n"
            "\n![outside](../../../../etc/passwd.png)\n",
            encoding="utf-8",
        )

        # The images stage's layout (alignrec_data/images/store.py): shards + authoritative index.
        from alignrec_data.images.store import INDEX_SCHEMA, SHARD_SCHEMA

        idir = root / "images"
        idir.mkdir(parents=True, exist_ok=True)
        ids = [i for i in range(n_items) if i % 7]
        for i in ids:
            images[i] = _png(100 + i)
        ok = [i for i in ids if i % 5]  # some fetches failed
        shard_rows = [
            {
                "item_id": i,
                "item_key": item_keys[i],
                "image": images[i],
                "width": 5,
                "height": 6,
                "sha256": hashlib.sha256(images[i]).hexdigest(),
                "url": f"https://images.example.invalid/{item_keys[i]}.jpg",
                "http_status": 200,
            }
            for i in ok
        ]
        pq.write_table(
            pa.Table.from_pylist(shard_rows[::2], schema=SHARD_SCHEMA), idir / "shard-00000.parquet"
        )
        pq.write_table(
            pa.Table.from_pylist(shard_rows[1::2], schema=SHARD_SCHEMA),
            idir / "shard-00001.parquet",
        )
        index_rows = []
        for i in range(n_items):
            stored = i in ok
            index_rows.append(
                {
                    "item_id": i,
                    "item_key": item_keys[i],
                    "has_image": stored,
                    "reason": None if stored else ("no-url" if i not in ids else "http-404"),
                    "url": f"https://images.example.invalid/{item_keys[i]}.jpg"
                    if i in ids
                    else None,
                    "http_status": 200 if stored else (404 if i in ids else None),
                    "sha256": hashlib.sha256(images[i]).hexdigest() if stored else None,
                    "width": 5 if stored else None,
                    "height": 6 if stored else None,
                    "shard": f"shard-0000{ok.index(i) % 2}.parquet" if stored else None,
                    "fetched_url": None,
                    "candidates": [],
                    "attempts": [],
                }
            )
        pq.write_table(
            pa.Table.from_pylist(index_rows, schema=INDEX_SCHEMA), idir / "index.parquet"
        )
        images = {i: images[i] for i in ok}
    return Built(
        root, item_keys, user_keys, inter, feats, missing, ckpt_sha, raw_sha, metrics, images
    )
