"""One writer per release config: ``items``, ``interactions``, ``features-<variant>``, ``images``.

Each ``*_config`` function reads and checks its inputs and returns a
:class:`~alignrec_data.release_layout.ConfigInfo` whose splits hold the tables (``images``: a
lazy row stream); nothing is written until :func:`alignrec_data.release.build_release` calls
:func:`write_config` with the one :class:`ShardWriter` of the staging folder, which returns
the config with its written shards, as the card and the manifest describe it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.errors import DataFormatError
from alignrec_data.feature_info import feature_info
from alignrec_data.integrity import sha256_file
from alignrec_data.paths import DatasetPaths
from alignrec_data.release_inputs import Prepared, feature_meta, read_features
from alignrec_data.release_layout import (
    FEATURES_PREFIX,
    SPLIT_NAMES,
    ConfigInfo,
    ShardInfo,
)
from alignrec_data.schema import INTERACTIONS_SCHEMA

# The image column is a ``datasets.Image`` struct, declared in the ``huggingface`` metadata so
# that ``load_dataset`` decodes it.
_IMAGE_FIELDS = [
    ("item_id", pa.int64()),
    ("item_key", pa.string()),
    ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("sha256", pa.string()),
    ("url", pa.string()),
]
IMAGE_FEATURES = {
    name: {"_type": "Image"} if name == "image" else {"dtype": str(dtype), "_type": "Value"}
    for name, dtype in _IMAGE_FIELDS
}
IMAGE_SCHEMA = pa.schema(
    _IMAGE_FIELDS,
    metadata={b"huggingface": json.dumps({"info": {"features": IMAGE_FEATURES}}).encode()},
)


def write_config(config: ConfigInfo, shards: ShardWriter) -> ConfigInfo:
    """Write a config's splits (tables, or the image row stream) as shards: the written config."""
    written = {
        sp: shards.write_table(data, config.name, sp)
        if isinstance(data, pa.Table)
        else shards.write_stream(data, IMAGE_SCHEMA, config.name, sp)
        for sp, data in config.splits.items()
    }
    return replace(config, splits=written)


def config_writers(
    paths: DatasetPaths,
    images: bool,
    prepared: Prepared,
    variants: list[str],
) -> tuple[list[ConfigInfo], list[str]]:
    """Every config, in card order, not written yet, and what the release will lack (notes).

    Args:
        paths: The dataset's folders (``paths.name``: the dataset id, named in the notes).
        images: Add the ``images`` config (``release.images``).
        prepared: The checked prepared tables.
        variants: Feature variants to release.
    """
    from alignrec_data.images.store import INDEX_FILE

    features = [
        features_config(paths.features / f"{v}.parquet", v, prepared.item_keys) for v in variants
    ]
    index = paths.images / INDEX_FILE  # written by the images stage (authoritative) if it ran
    image_index = pq.read_table(index) if index.is_file() else None
    writers = [
        items_config(prepared.items, image_index),
        interactions_config(prepared),
        *features,
    ]
    notes = []
    if not variants:
        notes.append(f"no feature files in {paths.features}: the release has no features")
    if images and image_index is None:
        notes.append(
            f"release.images is true but {paths.images} has no index.parquet "
            f"(run `alignrec-data images {paths.name}`): no images config"
        )
    elif images:
        rows = _image_rows(paths.images, image_index)
        writers.append(ConfigInfo("images", "images", {"train": rows}, list(IMAGE_FEATURES)))
    return writers, notes


# ----------------------------------------------------------------------------- shards
# The one shard writer: tables or row streams -> ``<config>/<split>-*.parquet``.

MAX_ROW_GROUP = 100_000  # rows per parquet row group of a table shard


@dataclass(frozen=True)
class ShardWriter:
    """Writes the shards of every config under ``root`` (the staging release folder).

    Attributes:
        root: The release folder being built.
        max_bytes: Largest shard, in bytes of data.
        compression: Parquet codec (``zstd``, ``snappy``, ``gzip`` or ``none``).
    """

    root: Path
    max_bytes: int
    compression: str

    def write_table(self, table: pa.Table, config: str, split: str) -> list[ShardInfo]:
        """Write ``table`` as equal-row shards ``config/<split>-0000i-of-0000n.parquet``."""
        n_rows = table.num_rows
        n = min(max(1, math.ceil(table.nbytes / self.max_bytes)), max(1, n_rows))
        per = math.ceil(n_rows / n)
        parts = (table.slice(i * per, per) if n_rows else table for i in range(n))
        return self._write_parts(parts, config, split, row_groups=True)

    def write_stream(
        self,
        rows: Iterable[tuple[dict[str, Any], int]],
        schema: pa.Schema,
        config: str,
        split: str,
    ) -> list[ShardInfo]:
        """Write ``(row, size)`` pairs in order, starting a shard once ``max_bytes`` is reached.

        Memory stays bounded by one shard. An empty stream gives one empty shard.
        """
        return self._write_parts(self._batches(rows, schema), config, split, row_groups=False)

    def _batches(
        self, rows: Iterable[tuple[dict[str, Any], int]], schema: pa.Schema
    ) -> Iterator[pa.Table]:
        batch: list[dict[str, Any]] = []
        size = n = 0
        for row, row_size in rows:
            batch.append(row)
            size += row_size
            if size >= self.max_bytes:
                yield pa.Table.from_pylist(batch, schema=schema)
                batch, size, n = [], 0, n + 1
        if batch or not n:
            yield pa.Table.from_pylist(batch, schema=schema)

    def _write_parts(
        self, tables: Iterable[pa.Table], config: str, split: str, row_groups: bool
    ) -> list[ShardInfo]:
        """Write each table as ``.part-<i>.parquet``, then rename all once their number is known.

        Table shards get row groups of at most :data:`MAX_ROW_GROUP` rows; streamed shards keep
        pyarrow's default (``row_groups=False``).
        """
        folder = self.root / config
        folder.mkdir(parents=True, exist_ok=True)
        parts = []
        for i, table in enumerate(tables):
            part = folder / f".part-{i:05d}.parquet"
            group = min(max(table.num_rows, 1), MAX_ROW_GROUP) if row_groups else None
            pq.write_table(table, part, compression=self.compression, row_group_size=group)
            parts.append((part, table.num_rows))
        shards = []
        for i, (part, n_rows) in enumerate(parts):
            path = folder / f"{split}-{i:05d}-of-{len(parts):05d}.parquet"
            os.replace(part, path)
            size = path.stat().st_size
            shards.append(ShardInfo(f"{config}/{path.name}", n_rows, size, sha256_file(path)))
        return shards


# ----------------------------------------------------------------------------- items


def items_config(items: pa.Table, image_index: pa.Table | None) -> ConfigInfo:
    """``items``: ids, keys, title, text, the image URL and whether an image exists.

    With the images stage's index, ``image_url`` is the URL that served and ``has_image``
    whether one was stored; without it, the first candidate URL of the metadata.
    """
    n = items.num_rows
    urls = items.column("image_urls").to_pylist() if "image_urls" in items.column_names else None
    image_url: list[str | None] = [(u[0] if u else None) for u in urls] if urls else [None] * n
    if image_index is not None:  # the images stage ran: the URL that served, and whether one did
        rows = image_index.select(["item_id", "has_image", "url"]).to_pylist()
        fetched = {int(r["item_id"]): r["url"] for r in rows if r["has_image"]}
        image_url = [fetched.get(i, image_url[i]) for i in range(n)]
        has_image = [i in fetched for i in range(n)]
    elif "has_image" in items.column_names:
        has_image = items.column("has_image").to_pylist()
    else:
        has_image = [u is not None for u in image_url]

    def text_col(name: str) -> pa.Array:
        if name in items.column_names:
            return items.column(name).combine_chunks().cast(pa.string())
        return pa.nulls(n, pa.string())

    table = pa.table(
        {
            "item_id": items.column("item_id").cast(pa.int64()),
            "item_key": items.column("item_key").cast(pa.string()),
            "title": text_col("title"),
            "text": text_col("text"),
            "image_url": pa.array(image_url, pa.string()),
            "has_image": pa.array(has_image, pa.bool_()),
        }
    )
    return ConfigInfo("items", "items", {"train": table}, table.column_names)


# ----------------------------------------------------------------------------- interactions


def interactions_config(prepared: Prepared) -> ConfigInfo:
    """``interactions``: one split per prepared split (``valid`` published as ``validation``).

    Raises:
        DataFormatError: The prepared ``split`` column holds another value.
    """
    inter, item_keys = prepared.interactions, prepared.item_keys

    def column(name: str, dtype: pa.DataType) -> pa.ChunkedArray | pa.Array:
        if name in inter.column_names:
            return inter.column(name).cast(dtype)
        if name == "item_key":  # from the prepared items
            item_ids = inter.column("item_id").to_numpy()
            return pa.array([item_keys[i] for i in item_ids], pa.string())
        return pa.nulls(inter.num_rows, dtype)

    # The published columns are the prepared layout's, without the split.
    fields = [f for f in INTERACTIONS_SCHEMA if f.name != "split"]
    pub = pa.table({f.name: column(f.name, f.type) for f in fields})
    split_col = inter.column("split").to_numpy(zero_copy_only=False)
    unknown = sorted(set(split_col) - set(SPLIT_NAMES))
    if unknown:
        msg = (
            f"{prepared.interactions_path}: unknown split value(s) {unknown}; "
            "expected train, valid, test"
        )
        raise DataFormatError(msg)
    splits = {dst: pub.filter(pa.array(split_col == src)) for src, dst in SPLIT_NAMES.items()}
    return ConfigInfo("interactions", "interactions", splits, pub.column_names)


# ----------------------------------------------------------------------------- features


def features_config(path: Path, variant: str, item_keys: list[str]) -> ConfigInfo:
    """``features-<variant>``: row i = item i (see :func:`~.release_inputs.read_features`).

    Args:
        path: ``features/<variant>.parquet``.
        variant: The feature variant.
        item_keys: The prepared item keys the rows must match.
    """
    table, dim = read_features(path, variant, item_keys)
    extra = {
        "missing": int(np.count_nonzero(table.column("missing").to_numpy(zero_copy_only=False))),
        "file_meta": feature_meta(path),
        "modality": feature_info(path).modality,
    }
    name, columns = FEATURES_PREFIX + variant, table.column_names
    return ConfigInfo(name, "features", {"train": table}, columns, dim, variant, extra)


# ----------------------------------------------------------------------------- images


def _image_rows(images_dir: Path, index: pa.Table) -> Iterator[tuple[dict[str, Any], int]]:
    """The stored images as ``(row, size)``, in storage order (read only while written)."""
    from alignrec_data.images.store import iter_image_bytes

    meta = {int(r["item_id"]): r for r in index.to_pylist() if r["has_image"]}
    for item_id, data in iter_image_bytes(images_dir):
        row = {k: meta[item_id][k] for k in ("item_key", "width", "height", "sha256", "url")}
        yield {**row, "item_id": item_id, "image": {"bytes": data, "path": None}}, len(data)
