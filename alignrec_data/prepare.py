"""The ``prepare`` stage: raw review and metadata files to the prepared dataset folder.

Steps (each counted in ``stats.json``):

0. verify: the raw reviews and metadata files are hashed and checked against the sha256 of the
   registry or, for hashes the registry lacks, of ``raw/alignrec.lock.json`` (recorded by
   ``alignrec-data download``), so a raw file changed after its download is an error instead of
   a silently different dataset (:func:`alignrec_data.download.verify_dataset`).
1. ``read``: stream the reviews file of the dataset's release into compact columns
   (:mod:`alignrec_data.readers`); bad lines are counted, the first few reported.
2. ``dedupe``: keep the earliest interaction of each (user, item) pair.
3. ``k_core``: iterative k-core with ``min_user_interactions`` / ``min_item_interactions``.
4. ids: users and items renumbered 0..n-1 in the sorted order of their raw keys.
5. ``meta``: stream the metadata file, keeping only items that survived; clean the text
   fields and assemble the item text from ``text_template``.
6. ``split``: ``random`` (MMRec, seeded), ``leave-one-out`` or ``temporal``
   (:mod:`alignrec_data.splits`).

A reviews file with no readable review at all (empty, not JSON lines, or JSON objects without
the release's review fields) is an error that names the file, the lines read, the bad lines and
the first bad one, before the k-core step. The tables of :mod:`alignrec_data.schema` are written
into a staging folder next to ``prepared/`` which then replaces it, so ``prepared/`` is always
complete or absent (and has the mode of a plain ``mkdir``).
Same inputs and params give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from alignrec_data.atomic import atomic_dir, write_json, write_parquet
from alignrec_data.clean import dedupe_earliest, k_core, remap_by_key
from alignrec_data.config import to_dict
from alignrec_data.errors import DataFormatError, DownloadError, UsageError
from alignrec_data.paths import DatasetPaths
from alignrec_data.readers import BadLineLog, ItemMeta, reader_for
from alignrec_data.readers.amazon2014 import DEFAULT_MAX_LITERAL_LINE_BYTES
from alignrec_data.readers.base import DEFAULT_MAX_LINE_BYTES, read_review_columns
from alignrec_data.registry import DatasetSpec, check_links, get_dataset, raw_path
from alignrec_data.schema import (
    INTERACTIONS_FILE,
    INTERACTIONS_SCHEMA,
    ITEMS_FILE,
    ITEMS_SCHEMA,
    SPLITS,
    STATS_FILE,
    USERS_FILE,
    USERS_SCHEMA,
)
from alignrec_data.splits import SPLIT_METHODS, assign_splits
from alignrec_data.text import (
    DEFAULT_TEMPLATE,
    assemble_text,
    clean_list,
    clean_text,
    validate_template,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareConfig:
    """The ``prepare:`` section of ``params.yaml``.

    Attributes:
        min_user_interactions: k-core: users with fewer interactions are dropped (0/1: off).
        min_item_interactions: k-core: items with fewer interactions are dropped (0/1: off).
        split: ``random`` (MMRec rule), ``leave-one-out`` (per user by time) or ``temporal``.
        seed: Seed of the ``random`` split, and of the random tie-breaking of equal
            timestamps in ``leave-one-out`` and ``temporal``.
        temporal_quantiles: Quantiles of the timestamps used as the valid and test cut-offs
            of the ``temporal`` split when no explicit cut-off is given.
        temporal_valid_start: Explicit valid cut-off (Unix seconds), or None for the quantile.
        temporal_test_start: Explicit test cut-off (Unix seconds), or None for the quantile.
        text_template: Item text template over ``{title}``, ``{brand}``, ``{categories}``,
            ``{description}``.
        category_separator: Joins the category path in ``{categories}``.
        max_line_bytes: Longest accepted raw line in bytes; longer lines are counted as bad
            and skipped without being held in memory.
        max_literal_line_bytes: Longest accepted line of a 2014 metadata file (Python
            literals; their syntax tree is many times the line size).
        max_reported_bad_lines: Bad lines reported (logged and kept in ``stats.json``) per file.
    """

    min_user_interactions: int = 5  # MMRec / AlignRec 5-core
    min_item_interactions: int = 5
    split: str = "random"  # random | leave-one-out | temporal
    seed: int = 2024  # random split; tie-breaking of equal timestamps in the other two
    temporal_quantiles: tuple[float, float] = (0.8, 0.9)  # valid / test cut-off quantiles
    temporal_valid_start: int | None = None  # Unix seconds; None -> quantile
    temporal_test_start: int | None = None  # Unix seconds; None -> quantile
    text_template: str = DEFAULT_TEMPLATE
    category_separator: str = " "
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES  # 10 MiB
    max_literal_line_bytes: int = DEFAULT_MAX_LITERAL_LINE_BYTES  # 1 MiB
    max_reported_bad_lines: int = 5

    def __post_init__(self) -> None:
        if self.split not in SPLIT_METHODS:
            msg = f"prepare.split must be one of {', '.join(SPLIT_METHODS)}, found {self.split!r}"
            raise UsageError(msg)
        for name in ("min_user_interactions", "min_item_interactions", "max_reported_bad_lines"):
            if getattr(self, name) < 0:
                msg = f"prepare.{name} must be >= 0, found {getattr(self, name)}"
                raise UsageError(msg)
        for name in ("max_line_bytes", "max_literal_line_bytes"):
            if getattr(self, name) < 1:
                msg = (
                    f"prepare.{name} must be a positive number of bytes, found "
                    f"{getattr(self, name)}"
                )
                raise UsageError(msg)
        if len(self.temporal_quantiles) != 2:
            msg = (
                "prepare.temporal_quantiles must be two numbers, found "
                f"{list(self.temporal_quantiles)}"
            )
            raise UsageError(msg)
        validate_template(self.text_template)


# --- tables ------------------------------------------------------------------------------------


def interactions_table(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    user_keys: list[str],
    item_keys: list[str],
    ratings: pa.Array,
    timestamps: pa.Array,
    split_codes: np.ndarray,
) -> pa.Table:
    """Build ``interactions.parquet``, sorted by (user_id, timestamp, item_id); nulls sort first.

    Args:
        user_ids: (n,) contiguous user ids.
        item_ids: (n,) contiguous item ids.
        user_keys: Raw key of each user id.
        item_keys: Raw key of each item id.
        ratings: (n,) float32 ratings (nulls allowed).
        timestamps: (n,) int64 Unix seconds (nulls allowed).
        split_codes: (n,) 0/1/2 codes of :data:`alignrec_data.schema.SPLITS`.
    """
    user_ids = np.asarray(user_ids, dtype=np.int64)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    ts_sort = timestamps.fill_null(np.iinfo(np.int64).min).to_numpy()
    order = np.lexsort((item_ids, ts_sort, user_ids))
    take = pa.array(order)
    u = user_ids[order]
    i = item_ids[order]
    return pa.table(
        {
            "user_id": pa.array(u),
            "item_id": pa.array(i),
            "user_key": pa.array(user_keys, pa.string()).take(pa.array(u)),
            "item_key": pa.array(item_keys, pa.string()).take(pa.array(i)),
            "rating": ratings.cast(pa.float32()).take(take),
            "timestamp": timestamps.cast(pa.int64()).take(take),
            "split": pa.array(list(SPLITS), pa.string()).take(
                pa.array(np.asarray(split_codes)[order])
            ),
        },
        schema=INTERACTIONS_SCHEMA,
    )


def users_table(user_keys: list[str], user_ids: np.ndarray) -> pa.Table:
    """Build ``users.parquet`` (``n_interactions`` counts every split)."""
    counts = np.bincount(np.asarray(user_ids, dtype=np.int64), minlength=len(user_keys))
    return pa.table(
        {
            "user_id": pa.array(np.arange(len(user_keys), dtype=np.int64)),
            "user_key": pa.array(user_keys, pa.string()),
            "n_interactions": pa.array(counts.astype(np.int64)),
        },
        schema=USERS_SCHEMA,
    )


def items_table(
    item_keys: list[str],
    metas: dict[str, ItemMeta] | None,
    template: str = DEFAULT_TEMPLATE,
    category_separator: str = " ",
) -> pa.Table:
    """Build ``items.parquet``: cleaned text fields, assembled text, image URL candidates.

    Args:
        item_keys: Raw key of each item id.
        metas: Metadata by raw key (items without an entry get empty fields), or None.
        template: Item text template.
        category_separator: Joins the categories in the template.
    """
    cols: dict[str, list] = {
        k: [] for k in ("title", "brand", "categories", "description", "text", "image_urls")
    }
    empty = ItemMeta("", "", "", [], "", [])
    for key in item_keys:
        m = (metas or {}).get(key, empty)
        title, brand, desc = clean_text(m.title), clean_text(m.brand), clean_text(m.description)
        cats = clean_list(m.categories)
        cols["title"].append(title)
        cols["brand"].append(brand)
        cols["categories"].append(cats)
        cols["description"].append(desc)
        cols["text"].append(
            assemble_text(
                template,
                title=title,
                brand=brand,
                categories=cats,
                description=desc,
                category_separator=category_separator,
                clean=False,
            )
        )
        cols["image_urls"].append(list(m.image_urls))
    has_image = [bool(u) for u in cols["image_urls"]]
    return pa.table(
        {
            "item_id": pa.array(np.arange(len(item_keys), dtype=np.int64)),
            "item_key": pa.array(item_keys, pa.string()),
            **{k: pa.array(v, ITEMS_SCHEMA.field(k).type) for k, v in cols.items()},
            "has_image": pa.array(has_image, pa.bool_()),
        },
        schema=ITEMS_SCHEMA,
    )


def split_counts(table: pa.Table) -> dict[str, int]:
    """Interactions per split of an interactions table."""
    s = table.column("split").to_numpy(zero_copy_only=False)
    return {name: int((s == name).sum()) for name in SPLITS}


# --- the prepared folder -----------------------------------------------------------------------


def write_prepared(
    folder: str | Path,
    interactions: pa.Table,
    items: pa.Table,
    users: pa.Table,
    stats: dict[str, Any],
) -> Path:
    """Write the four prepared files into a staging folder, then swap it in as ``folder``.

    The staging folder is ``.prepared.tmp-<pid>-*`` next to ``folder``
    (:func:`alignrec_data.atomic.atomic_dir`): it gets the mode a plain ``mkdir`` gives, and
    the leftovers of a run killed mid-write are removed by the next write.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    check_links([folder], "prepared folder")
    with atomic_dir(folder) as tmp:
        write_parquet(tmp / INTERACTIONS_FILE, interactions)
        write_parquet(tmp / ITEMS_FILE, items)
        write_parquet(tmp / USERS_FILE, users)
        write_json(tmp / STATS_FILE, stats)
    return folder


def read_prepared(folder: str | Path) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Read ``(interactions, items, users)`` of a prepared folder.

    Raises:
        UsageError: The folder or a file is missing.
        DataFormatError: A file does not have the schema of :mod:`alignrec_data.schema`.
    """
    folder = Path(folder)
    out = []
    for name, schema in (
        (INTERACTIONS_FILE, INTERACTIONS_SCHEMA),
        (ITEMS_FILE, ITEMS_SCHEMA),
        (USERS_FILE, USERS_SCHEMA),
    ):
        path = folder / name
        if not path.is_file():
            msg = f"prepared file {path} does not exist"
            raise UsageError(
                msg,
                hint=(
                    f"run `alignrec-data prepare {folder.parent.name}` (or `alignrec-data "
                    "import`) first"
                ),
            )
        table = pq.read_table(path)
        if not table.schema.equals(schema, check_metadata=False):
            msg = f"{path} has schema {table.schema}, expected {schema}; prepare the dataset again"
            raise DataFormatError(msg)
        out.append(table)
    return out[0], out[1], out[2]


# --- the stage ---------------------------------------------------------------------------------


def _step(name: str, users: np.ndarray, items: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "step": name,
        "interactions": len(users),
        "users": int(np.count_nonzero(np.bincount(users))) if len(users) else 0,
        "items": int(np.count_nonzero(np.bincount(items))) if len(items) else 0,
        **extra,
    }


def verify_raw_files(spec: DatasetSpec, raw_dir: Path) -> dict[str, dict[str, Any]]:
    """Check the reviews and metadata files against their recorded size and sha256.

    Args:
        spec: The registry entry.
        raw_dir: Its raw folder.

    Returns:
        Per role: file name, bytes, sha256 and where the expected hash came from (``trust``).

    Raises:
        ChecksumError: A file changed since its download (names the file, expected and found
            sha256; the fix is to download it again, or to prepare with ``verify=False``).
        DownloadError: A file has no recorded hash (not in the registry, no lock entry): it
            was not fetched by ``alignrec-data download``, which records it.
    """
    from alignrec_data.download import verify_dataset

    used = dataclasses.replace(
        spec, files=tuple(f for f in spec.files if f.role in ("reviews", "meta"))
    )
    try:
        results = verify_dataset(used, raw_dir)
    except DownloadError as err:
        hint = (
            f"{err.hint}; or pass --no-verify to `alignrec-data prepare` to use the file as it is"
            if err.hint
            else None
        )
        raise type(err)(str(err), hint=hint) from err
    for r in results:
        logger.info("verified %s: sha256 %s (%s)", r.path.name, r.sha256, r.trust)
    return {
        r.role: {"file": r.path.name, "bytes": r.bytes, "sha256": r.sha256, "trust": r.trust}
        for r in results
    }


def _no_review_error(
    path: Path, rlog: BadLineLog, fields: tuple[str, ...], spec: DatasetSpec
) -> DataFormatError:
    """The error for a reviews file from which not one review could be read."""
    if rlog.lines == 0:
        found = "it is empty (0 lines)"
    else:
        found = f"{rlog.lines:,} lines read, {rlog.count:,} bad"
        if rlog.examples:
            first = rlog.examples[0]
            found += f"; first bad line {first.line}: {first.reason}"
    msg = (
        f"raw reviews file {path} holds no readable review ({found}); expected one JSON "
        f"object per line with the fields {', '.join(fields)} (Amazon {spec.release} "
        f"reviews); replace it with the reviews file of {spec.id}: delete it and run "
        f"`alignrec-data download {spec.id}`"
    )
    return DataFormatError(msg)


def prepare_dataset(
    dataset_id: str,
    data_dir: str | Path,
    config: PrepareConfig,
    *,
    strict: bool = False,
    verify: bool = True,
) -> dict[str, Any]:
    """Turn ``<data_dir>/<dataset_id>/raw/`` into ``<data_dir>/<dataset_id>/prepared/``.

    Args:
        dataset_id: A registry id (e.g. ``amazon-mini``).
        data_dir: The data directory.
        config: The ``prepare`` params.
        strict: Stop at the first bad raw line instead of counting it.
        verify: Check the raw files' sha256 first (:func:`verify_raw_files`); False prepares
            files changed on purpose (or never downloaded) as they are.

    Returns:
        The statistics also written to ``stats.json``.

    Raises:
        UsageError: Unknown dataset, raw file missing or a broken symbolic link, bad params.
        ChecksumError: A raw file changed since its download (``verify``).
        DownloadError: A raw file has no recorded sha256 (``verify``).
        DataFormatError: A bad line in strict mode, a corrupt gzip stream, a reviews file
            without one readable review, or nothing left after the k-core filter.
    """
    spec = get_dataset(dataset_id)
    reader = reader_for(spec.release)
    paths = DatasetPaths.of(data_dir, dataset_id)
    files = {role: raw_path(paths.raw, spec, role) for role in ("reviews", "meta")}
    check_links(files.values())
    for role, path in files.items():
        if not path.is_file():
            msg = f"raw {role} file {path} of {dataset_id} does not exist"
            raise UsageError(msg, hint=f"run `alignrec-data download {dataset_id}` first")
    if verify:
        raw_files = verify_raw_files(spec, paths.raw)
    else:
        logger.warning("not verifying the raw files of %s (verify=False)", dataset_id)
        raw_files = {
            role: {"file": p.name, "bytes": p.stat().st_size, "sha256": None, "trust": None}
            for role, p in files.items()
        }

    # 1. read
    rlog = BadLineLog(files["reviews"].name, strict, config.max_reported_bad_lines)
    logger.info("reading %s", files["reviews"])
    with tqdm(desc="reviews", unit=" lines", disable=None, mininterval=1.0) as bar:
        cols = read_review_columns(
            files["reviews"],
            rlog,
            config.max_line_bytes,
            reader.REVIEW_FIELDS,
            reader.TIMESTAMP_DIVISOR,
            bar,
        )
    u, i, r, t = cols.arrays()
    if len(u) == 0:
        raise _no_review_error(files["reviews"], rlog, reader.REVIEW_FIELDS, spec)
    steps = [_step("read", u, i)]

    # 2. dedupe
    keep = dedupe_earliest(u, i, t)
    u, i, r, t = u[keep], i[keep], r[keep], t[keep]
    steps.append(_step("dedupe", u, i))

    # 3. k-core
    keep, rounds = k_core(u, i, config.min_user_interactions, config.min_item_interactions)
    u, i, r, t = u[keep], i[keep], r[keep], t[keep]
    steps.append(_step("k_core", u, i, rounds=rounds))
    if len(u) == 0:
        msg = (
            f"{dataset_id}: no interaction is left after the {config.min_user_interactions}/"
            f"{config.min_item_interactions}-core filter ({steps[0]['interactions']} read); "
            "lower prepare.min_user_interactions / min_item_interactions"
        )
        raise DataFormatError(msg)

    # 4. ids
    user_ids, user_keys = remap_by_key(u, cols.user_keys)
    item_ids, item_keys = remap_by_key(i, cols.item_keys)
    del cols

    # 5. metadata of the kept items
    mlog = BadLineLog(files["meta"].name, strict, config.max_reported_bad_lines)
    wanted = set(item_keys)
    metas: dict[str, ItemMeta] = {}
    duplicates = 0
    cap = config.max_literal_line_bytes if spec.release == "2014" else config.max_line_bytes
    logger.info("reading %s", files["meta"])
    for m in tqdm(
        reader.read_meta(files["meta"], mlog, cap),
        desc="metadata",
        unit=" rows",
        disable=None,
        mininterval=1.0,
    ):
        if m.key in wanted:
            if m.key in metas:
                duplicates += 1
            else:
                metas[m.key] = m
    items = items_table(item_keys, metas, config.text_template, config.category_separator)

    # 6. split
    codes, split_info = assign_splits(
        config.split,
        user_ids,
        item_ids,
        t,
        len(user_keys),
        seed=config.seed,
        valid_start=config.temporal_valid_start,
        test_start=config.temporal_test_start,
        quantiles=config.temporal_quantiles,
    )
    inter = interactions_table(
        user_ids,
        item_ids,
        user_keys,
        item_keys,
        pa.array(r, pa.float32()),
        pa.array(t, pa.int64()),
        codes,
    )
    users = users_table(user_keys, user_ids)

    n_items = len(item_keys)
    has_image = items.column("has_image").to_numpy(zero_copy_only=False)
    stats: dict[str, Any] = {
        "dataset": dataset_id,
        "release": spec.release,
        "source": "raw",
        "raw_files": raw_files,
        "params": to_dict(config),
        "steps": steps,
        "users": len(user_keys),
        "items": n_items,
        "interactions": inter.num_rows,
        "splits": split_counts(inter),
        "split": split_info,
        "bad_lines": {"reviews": rlog.as_dict(), "meta": mlog.as_dict()},
        "items_without_metadata": n_items - len(metas),
        "duplicate_metadata_records": duplicates,
        "missing_image_url_rate": float(1.0 - has_image.mean()) if n_items else 0.0,
        "has_ratings": True,
        "has_timestamps": True,
    }
    write_prepared(paths.prepared, inter, items, users, stats)
    logger.info(
        "prepared %s: %d users, %d items, %d interactions -> %s",
        dataset_id,
        len(user_keys),
        n_items,
        inter.num_rows,
        paths.prepared,
    )
    return stats
