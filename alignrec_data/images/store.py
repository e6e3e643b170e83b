"""Packed image storage: parquet shards, an index and stats, and the readers.

Layout of ``<data-dir>/<dataset>/images/`` (never one loose file per image):

- ``shard-00000.parquet``, ``shard-00001.parquet``, ...: the stored images, columns
  ``item_id`` (int64, the id when written), ``item_key`` (string), ``image`` (binary: the
  re-encoded RGB JPEG), ``width`` / ``height`` (int32), ``sha256`` (string, of ``image``),
  ``url`` (string, the candidate that served it as the metadata names it, i.e. before any
  mirror rewrite, so shards are the same on every machine; the modifier-stripped variant when
  that one served), ``http_status`` (int32, null for ``file://``).
  Row groups of :data:`ROW_GROUP_SIZE` rows, so readers stream a shard in small batches. The
  schema metadata key ``alignrec.images`` holds the settings the images were made with.
- ``index.parquet``: one row per item of ``prepared/items.parquet``, sorted by ``item_id``:
  ``item_id``, ``item_key``, ``has_image`` (bool), ``reason`` (null when stored, else why not:
  ``no-url``, ``http-404``, ``not-an-image``, ``too-large``, ``decompression-bomb``, ``empty``,
  ``timeout``...), ``url`` (the candidate that served, or whose failure is the reason, before
  the mirror rewrite), ``http_status``, ``sha256``, ``width``, ``height``, ``shard`` (file
  name holding the image, null when missing), ``fetched_url`` (``url`` after the mirror
  rewrite: what was actually requested), ``candidates`` (the URLs to try, before the rewrite)
  and ``attempts`` (one reason per candidate tried, ``"ok"`` for the one that served). The
  index is authoritative: an item whose key is in an older shard but whose index row points
  elsewhere (or nowhere) is not read. Its schema metadata also records the mirror rules.
- ``stats.json``: counts, the missing rate, the reasons histogram, settings.
- ``index-part-00003.parquet`` (only while a distributed run is going on, or after one was
  killed): the index rows of one shard task's items (failures included), written just before
  its shard; a rerun trusts them like the index, and the next full index replaces them.

Every file is written atomically (:mod:`alignrec_data.atomic`): a shard is written as
``.shard-00003.parquet.tmp-<pid>-<random>.parquet`` and renamed into place. A run killed with
``kill -9`` can leave such a temporary behind; the next run removes those of processes no
longer alive (:func:`clean_stale_temporaries`). A shard that was renamed into place before
the kill but that no index names yet is reused by the next run (its items are not fetched
again), or removed when no item refers to it.

Readers (used by the encoder and extract stages): :func:`load_image_index`,
:func:`iter_images` (RGB ``PIL.Image`` objects), :func:`iter_image_bytes`, :func:`load_images`.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from alignrec_data.atomic import clean_stale, write_parquet
from alignrec_data.errors import DataFormatError, UsageError

INDEX_FILE = "index.parquet"
STATS_FILE = "stats.json"
SHARD_TEMPLATE = "shard-{:05d}.parquet"
SETTINGS_KEY = b"alignrec.images"
ROW_GROUP_SIZE = 256
# Nullable pandas dtypes, so a missing width or reason is <NA>, not NaN in a float column.
_NULLABLE = {
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
}
_SHARD_NAME = re.compile(r"^shard-(\d{5,})\.parquet$")
# Temporaries of this folder's files (atomic.py naming: .<target>.tmp-<pid>-<random>...).
_TEMP_NAME = re.compile(
    r"^\.(shard-\d{5,}\.parquet|index-part-\d{5,}\.parquet|index\.parquet|stats\.json)"
    r"\.(?:tmp|old)-\d+-"
)
INDEX_PART_TEMPLATE = "index-part-{:05d}.parquet"
_PART_NAME = re.compile(r"^index-part-(\d{5,})\.parquet$")

SHARD_SCHEMA = pa.schema(
    [
        ("item_id", pa.int64()),
        ("item_key", pa.string()),
        ("image", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
        ("url", pa.string()),
        ("http_status", pa.int32()),
    ]
)

INDEX_SCHEMA = pa.schema(
    [
        ("item_id", pa.int64()),
        ("item_key", pa.string()),
        ("has_image", pa.bool_()),
        ("reason", pa.string()),
        ("url", pa.string()),
        ("http_status", pa.int32()),
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("shard", pa.string()),
        ("fetched_url", pa.string()),
        ("candidates", pa.list_(pa.string())),
        ("attempts", pa.list_(pa.string())),
    ]
)


def _matching(images_dir: str | Path, pattern: re.Pattern[str]) -> list[tuple[re.Match, Path]]:
    """The files of ``images_dir`` whose name matches ``pattern``, with their match."""
    d = Path(images_dir)
    return [(m, p) for p in d.iterdir() if (m := pattern.match(p.name))] if d.is_dir() else []


def shard_files(images_dir: str | Path) -> list[Path]:
    """The shard files of ``images_dir``, in shard-number order."""
    found = [(int(m.group(1)), p) for m, p in _matching(images_dir, _SHARD_NAME)]
    return [p for _, p in sorted(found)]


def clean_stale_temporaries(images_dir: str | Path) -> list[Path]:
    """Remove the temporaries of shards, index and stats left by processes no longer alive.

    A run killed mid-write (``kill -9``, power loss) leaves ``.<file>.tmp-<pid>-*``; those of
    a run still going on (its pid alive) and any file the stage did not name so are kept.

    Args:
        images_dir: The images folder.

    Returns:
        The paths removed.
    """
    names = {m.group(1) for m, _ in _matching(images_dir, _TEMP_NAME)}
    return [path for name in sorted(names) for path in clean_stale(Path(images_dir), name)]


def next_shard_number(images_dir: str | Path) -> int:
    """The number of the next shard to write (one past the highest existing)."""
    return max((int(m.group(1)) + 1 for m, _ in _matching(images_dir, _SHARD_NAME)), default=0)


def _write_rows(
    path: Path, rows: list[dict[str, Any]], schema: pa.Schema, settings: dict[str, Any], **kw: Any
) -> None:
    """Atomically write ``rows`` with ``settings`` in the schema metadata (``kw``: the writer's)."""
    meta = {SETTINGS_KEY: json.dumps(settings, sort_keys=True).encode()}
    write_parquet(path, pa.Table.from_pylist(rows, schema=schema.with_metadata(meta)), **kw)


def read_settings(path: Path) -> dict[str, Any] | None:
    """The settings recorded in a shard's or the index's schema metadata (None if absent)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(SETTINGS_KEY)
    return json.loads(raw) if raw else None


def write_shard(
    images_dir: str | Path, number: int, rows: list[dict[str, Any]], settings: dict[str, Any]
) -> str:
    """Atomically write one shard of stored images.

    Args:
        images_dir: The images folder.
        number: Shard number (the file is ``shard-<number:05d>.parquet``).
        rows: Dicts with the :data:`SHARD_SCHEMA` columns.
        settings: Image settings recorded in the schema metadata.

    Returns:
        The shard file name.
    """
    name = SHARD_TEMPLATE.format(number)
    _write_rows(
        Path(images_dir) / name,
        rows,
        SHARD_SCHEMA,
        settings,
        row_group_size=ROW_GROUP_SIZE,
        compression={c: ("none" if c == "image" else "zstd") for c in SHARD_SCHEMA.names},
    )
    return name


def read_shard_catalog(
    images_dir: str | Path,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """What the shards hold, without the image bytes.

    Args:
        images_dir: The images folder.

    Returns:
        ``(catalog, settings_by_shard)``: ``{item_key: row}`` with the shard columns except
        ``image``, plus ``shard`` (the latest shard wins when a key is in several); and each
        shard's recorded settings.

    Raises:
        DataFormatError: A shard is unreadable or lacks columns.
    """
    catalog: dict[str, dict[str, Any]] = {}
    settings: dict[str, Any] = {}
    columns = [c for c in SHARD_SCHEMA.names if c != "image"]
    for path in shard_files(images_dir):
        try:
            rows = pq.read_table(path, columns=columns).to_pylist()
            settings[path.name] = read_settings(path)
        except (OSError, pa.ArrowException, KeyError) as err:
            msg = (
                f"image shard {path} is unreadable ({err}); delete it and rerun "
                "`alignrec-data images` to fetch its items again"
            )
            raise DataFormatError(msg) from err
        for row in rows:
            row["shard"] = path.name
            catalog[row["item_key"]] = row
    return catalog, settings


def write_index(
    images_dir: str | Path,
    rows: list[dict[str, Any]],
    settings: dict[str, Any],
    part: int | None = None,
) -> str:
    """Atomically (re)write ``index.parquet``, sorted by ``item_id``.

    With ``part``, write instead the index rows of that shard task
    (``index-part-<part:05d>.parquet``). Returns the file name.
    """
    name = INDEX_FILE if part is None else INDEX_PART_TEMPLATE.format(part)
    rows = sorted(rows, key=lambda r: r["item_id"])
    _write_rows(Path(images_dir) / name, rows, INDEX_SCHEMA, settings, compression="zstd")
    return name


def index_parts(images_dir: str | Path) -> list[Path]:
    """The index parts left in ``images_dir`` (by a distributed run not finished yet)."""
    return sorted(p for _, p in _matching(images_dir, _PART_NAME))


def read_index_parts(images_dir: str | Path) -> list[tuple[dict[str, Any] | None, list[dict]]]:
    """Each index part's recorded settings and rows (unreadable parts are skipped)."""
    parts = []
    for path in index_parts(images_dir):
        try:
            parts.append((read_settings(path), pq.read_table(path).to_pylist()))
        except (OSError, pa.ArrowException):
            continue  # a part is only a shortcut: its items are fetched again
    return parts


def load_image_index(images_dir: str | Path) -> pd.DataFrame:
    """Read ``index.parquet``: one row per item (see the module docstring for the columns).

    Args:
        images_dir: ``<data-dir>/<dataset>/images``.

    Returns:
        The index, sorted by ``item_id``, with nullable dtypes (missing values are ``pd.NA``).

    Raises:
        UsageError: The index does not exist yet (the hint names the command that makes it).
    """
    path = Path(images_dir) / INDEX_FILE
    if not path.is_file():
        dataset = Path(images_dir).parent.name
        msg = f"image index {path} does not exist"
        raise UsageError(msg, hint=f"run `alignrec-data images {dataset}` first")
    return pq.read_table(path).to_pandas(types_mapper=_NULLABLE.get)


def iter_image_bytes(
    images_dir: str | Path, item_ids: Iterable[int] | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(item_id, jpeg_bytes)`` of stored images, shard by shard, in storage order.

    Memory stays bounded by one row group (:data:`ROW_GROUP_SIZE` images).

    Args:
        images_dir: ``<data-dir>/<dataset>/images``.
        item_ids: Only these items (None: every item with an image).

    Yields:
        The current ``item_id`` (from the index) and the stored JPEG bytes.

    Raises:
        UsageError: No index yet.
        DataFormatError: The index names a shard that is missing.
    """
    index = load_image_index(images_dir)
    index = index[index["has_image"]]
    if item_ids is not None:
        index = index[index["item_id"].isin(set(int(i) for i in item_ids))]
    for shard, group in index.groupby("shard", sort=True):
        wanted = dict(zip(group["item_key"], group["item_id"], strict=True))
        path = Path(images_dir) / str(shard)
        if not path.is_file():
            msg = (
                f"image shard {path} named by the index is missing; rerun "
                f"`alignrec-data images {Path(images_dir).parent.name}` to rebuild it"
            )
            raise DataFormatError(msg)
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(columns=["item_key", "image"], batch_size=ROW_GROUP_SIZE):
            for key, image in zip(batch.column(0).to_pylist(), batch.column(1), strict=True):
                item_id = wanted.pop(key, None)
                if item_id is not None:
                    yield int(item_id), image.as_py()


def iter_images(
    images_dir: str | Path, item_ids: Iterable[int] | None = None
) -> Iterator[tuple[int, Image.Image]]:
    """Yield ``(item_id, RGB PIL image)`` of stored images, in storage order.

    Args:
        images_dir: ``<data-dir>/<dataset>/images``.
        item_ids: Only these items (None: every item with an image).

    Yields:
        The item id and its decoded RGB image (shorter side = ``images.shorter_side``, or
        smaller when the source was smaller).
    """
    for item_id, data in iter_image_bytes(images_dir, item_ids):
        with Image.open(io.BytesIO(data)) as im:
            yield item_id, im.convert("RGB")


def load_images(images_dir: str | Path) -> dict[int, bytes]:
    """All stored images as ``{item_id: jpeg_bytes}`` (fine for small datasets)."""
    return dict(iter_image_bytes(images_dir))
