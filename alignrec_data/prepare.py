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
the first bad one, before the k-core step. The tables of :mod:`alignrec_data.schema` are built
and written by :mod:`alignrec_data.prepared`: into a staging folder next to ``prepared/`` which
then replaces it, so ``prepared/`` is always complete or absent (and has the mode of a plain
``mkdir``).
Steps 2-4, 6 and the write are shared with the datasets declared in ``params.yaml``
(:mod:`alignrec_data.prepared`). Same inputs and params give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from alignrec_data.config import check_ranges
from alignrec_data.declared import PARTS
from alignrec_data.errors import DataFormatError, DownloadError, UsageError
from alignrec_data.links import check_links
from alignrec_data.paths import DatasetPaths
from alignrec_data.prepared import (
    build_items,
    clean_interactions,
    finish,
    interactions_table,
    items_table,
    read_prepared,
    split_counts,
    users_table,
    write_prepared,
)
from alignrec_data.readers import BadLineLog, InteractionColumns, ItemMeta, reader_for
from alignrec_data.readers.amazon2014 import DEFAULT_MAX_LITERAL_LINE_BYTES
from alignrec_data.readers.base import MAX_IMAGE_URLS
from alignrec_data.readers.columns import read_review_columns
from alignrec_data.readers.lines import DEFAULT_MAX_LINE_BYTES
from alignrec_data.registry import DatasetSpec, get_dataset, raw_path
from alignrec_data.splits import SPLIT_METHODS
from alignrec_data.text import DEFAULT_TEMPLATE, clean_list, clean_text, validate_template

# The tables and the folder live in :mod:`alignrec_data.prepared`; importers of this module
# (interop, release source, users of the library API) find them here too.
__all__ = [
    "PrepareConfig",
    "build_items",
    "interactions_table",
    "items_table",
    "merge_metadata",
    "prepare_dataset",
    "read_prepared",
    "split_counts",
    "users_table",
    "write_prepared",
]

logger = logging.getLogger(__name__)
# The progress bars of the reads: on stderr when it is a terminal, redrawn at most once a second.
_progress = functools.partial(tqdm, disable=None, mininterval=1.0)


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
        """Reject values preparation cannot run with."""
        check_ranges(
            self,
            "prepare",
            {
                "min_user_interactions": (self.min_user_interactions >= 0, ">= 0 (0/1: off)"),
                "min_item_interactions": (self.min_item_interactions >= 0, ">= 0 (0/1: off)"),
                "split": (self.split in SPLIT_METHODS, f"one of {', '.join(SPLIT_METHODS)}"),
                "temporal_quantiles": (
                    len(self.temporal_quantiles) == 2,
                    "two numbers (the valid and test cut-off quantiles)",
                ),
                "max_line_bytes": (self.max_line_bytes >= 1, ">= 1 byte"),
                "max_literal_line_bytes": (self.max_literal_line_bytes >= 1, ">= 1 byte"),
                "max_reported_bad_lines": (self.max_reported_bad_lines >= 0, ">= 0"),
            },
        )
        validate_template(self.text_template)


# --- the stage ---------------------------------------------------------------------------------


def check_raw_files(
    spec: DatasetSpec, paths: DatasetPaths, verify: bool, log: logging.Logger = logger
) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """The raw files ``prepare`` reads (checked present, no broken link) and their record.

    The files are those of :data:`alignrec_data.registry.PREPARE_ROLES`, in the spec's order
    (a declared dataset's interactions and items files); optional files (the all-ratings CSV)
    are neither required nor checked. The record is what ``stats.json`` keeps of them: per
    role the file name, bytes, sha256 and where the expected hash came from (``trust``),
    checked against the sha256 of the registry or the lock file
    (:func:`alignrec_data.download.verify_dataset`); only name and size when ``verify`` is
    False.

    Args:
        spec: The dataset.
        paths: Its folders.
        verify: Check the sha256 of each file.
        log: The stage's logger (warns when not verifying).

    Raises:
        UsageError: A file is missing or a broken symbolic link.
        ChecksumError: A file changed since its download (names the file, expected and found
            sha256; the fix is to download it again, or to prepare with ``verify=False``).
        DownloadError: A file has no recorded hash (not in the registry, no lock entry): it
            was not fetched by ``alignrec-data download``, which records it.
    """
    files = {f.role: raw_path(paths.raw, spec, f.role) for f in spec.files_for()}
    check_links(files.values())
    declared = spec.declared is not None
    for role, path in files.items():
        if not path.is_file():
            msg = f"raw {PARTS[role] if declared else role} file {path} of {spec.id} does not exist"
            download = f"alignrec-data download {spec.id}{' --params ...' if declared else ''}"
            raise UsageError(msg, hint=f"run `{download}` first")
    if not verify:
        log.warning("not verifying the raw files of %s (verify=False)", spec.id)
        return files, {
            role: {"file": p.name, "bytes": p.stat().st_size, "sha256": None, "trust": None}
            for role, p in files.items()
        }
    from alignrec_data.download import verify_dataset

    try:
        results = verify_dataset(spec, paths.raw)  # the roles prepare reads (PREPARE_ROLES)
    except DownloadError as err:
        hint = (
            f"{err.hint}; or pass --no-verify to `alignrec-data prepare` to use the file as it is"
            if err.hint
            else None
        )
        raise type(err)(str(err), hint=hint) from err
    for r in results:
        logger.info("verified %s: sha256 %s (%s)", r.path.name, r.sha256, r.trust)
    return files, {
        r.role: {"file": r.path.name, "bytes": r.bytes, "sha256": r.sha256, "trust": r.trust}
        for r in results
    }


def _read_reviews(
    path: Path, reader: ModuleType, spec: DatasetSpec, config: PrepareConfig, strict: bool
) -> tuple[InteractionColumns, BadLineLog]:
    """Step 1: the reviews file into columns; an error when not one review is readable."""
    rlog = BadLineLog(path.name, strict, config.max_reported_bad_lines)
    logger.info("reading %s", path)
    with _progress(desc="reviews", unit=" lines") as bar:
        fields, divisor = reader.REVIEW_FIELDS, reader.TIMESTAMP_DIVISOR
        cols = read_review_columns(path, rlog, config.max_line_bytes, fields, divisor, bar)
    if len(cols) > 0:
        return cols, rlog
    found = (
        f"{rlog.lines:,} lines read, {rlog.count:,} bad" if rlog.lines else "it is empty (0 lines)"
    )
    if rlog.lines and rlog.examples:
        found += f"; first bad line {rlog.examples[0].line}: {rlog.examples[0].reason}"
    msg = (
        f"raw reviews file {path} holds no readable review ({found}); expected one JSON "
        f"object per line with the fields {', '.join(reader.REVIEW_FIELDS)} (Amazon "
        f"{spec.release} reviews); replace it with the reviews file of {spec.id}: delete it "
        f"and run `alignrec-data download {spec.id}`"
    )
    raise DataFormatError(msg)


def merge_metadata(
    records: Iterable[ItemMeta], wanted: set[str] | None = None
) -> tuple[dict[str, ItemMeta], dict[str, int]]:
    """One record per item from metadata lines that may repeat an item, merged in file order.

    Per field, over the lines of one item in file order: ``title``, ``brand`` and
    ``description``: the first value that is non-empty after cleaning (:func:`clean_text`;
    the raw value is kept, it is cleaned once when the table is built); ``categories``: the
    first path with a non-empty category (paths are not mixed); ``image_urls``: the union in
    first-seen order, at most :data:`~alignrec_data.readers.base.MAX_IMAGE_URLS`. So the
    first line wins wherever it has a value, identical repeats change nothing, and the result
    does not depend on anything but the order of the lines.

    Args:
        records: Metadata records in file order.
        wanted: Keys to keep (the items that survived the k-core); None keeps all.

    Returns:
        ``(metas, counts)``: the merged record by key, and ``duplicate_lines`` (lines of a
        kept item after its first), ``merged_items`` (kept items with more than one line),
        ``fields_filled`` (fields a later line filled or, for image URLs, extended).
    """
    metas: dict[str, ItemMeta] = {}
    repeated: set[str] = set()
    counts = dict.fromkeys(("duplicate_lines", "merged_items", "fields_filled"), 0)
    for m in records:
        if wanted is not None and m.key not in wanted:
            continue
        if m.key not in metas:
            metas[m.key] = m
            continue
        counts["duplicate_lines"] += 1
        repeated.add(m.key)
        metas[m.key], filled = _merge_two(metas[m.key], m)
        counts["fields_filled"] += filled
    counts["merged_items"] = len(repeated)
    return metas, counts


def _merge_two(first: ItemMeta, later: ItemMeta) -> tuple[ItemMeta, int]:
    """``first`` with its empty fields taken from ``later``; also the number of fields filled."""
    changes: dict[str, Any] = {}
    for name in ("title", "brand", "description"):
        mine, theirs = getattr(first, name), getattr(later, name)
        if mine != theirs and not clean_text(mine) and clean_text(theirs):
            changes[name] = theirs
    cats = later.categories
    if first.categories != cats and not clean_list(first.categories) and clean_list(cats):
        changes["categories"] = cats
    extra = [u for u in later.image_urls if u not in first.image_urls]
    if extra and len(first.image_urls) < MAX_IMAGE_URLS:
        changes["image_urls"] = (first.image_urls + extra)[:MAX_IMAGE_URLS]
    if not changes:
        return first, 0
    return dataclasses.replace(first, **changes), len(changes)


def items_step(
    records: Iterable[ItemMeta],
    item_keys: list[str],
    config: PrepareConfig,
    declared_text: bool = False,
) -> tuple[pa.Table, dict[str, Any]]:
    """Step 5: the kept items' metadata, repeated records merged (:func:`merge_metadata`).

    Then the items table with fallback titles (:func:`~alignrec_data.prepared.build_items`);
    with ``declared_text``
    its ``text`` column is the ``text`` each record carries (a declared template, filled by
    the reader).

    Returns:
        ``(items, stats)``: the table, and what ``stats.json`` records of it
        (``items_without_metadata``, ``duplicate_metadata_records``, ``metadata_merge``,
        ``title_sources``).
    """
    metas, counts = merge_metadata(records, set(item_keys))
    items, title_sources = build_items(
        item_keys, metas, config.text_template, config.category_separator
    )
    if declared_text:
        texts = [getattr(metas.get(key), "text", "") for key in item_keys]
        column = items.schema.get_field_index("text")
        items = items.set_column(column, "text", pa.array(texts, pa.string()))
    stats = {
        "items_without_metadata": len(item_keys) - len(metas),
        "duplicate_metadata_records": counts["duplicate_lines"],
        "metadata_merge": counts,
        "title_sources": title_sources,
    }
    return items, stats


def prepare_dataset(
    dataset_id: str,
    data_dir: str | Path,
    config: PrepareConfig,
    *,
    strict: bool = False,
    verify: bool = True,
    params: str | Path | None = None,
) -> dict[str, Any]:
    """Turn ``<data_dir>/<dataset_id>/raw/`` into ``<data_dir>/<dataset_id>/prepared/``.

    Args:
        dataset_id: A registry id (e.g. ``amazon-mini``), or one declared in ``params``.
        data_dir: The data directory.
        config: The ``prepare`` params.
        strict: Stop at the first bad raw line instead of counting it.
        verify: Check the raw files' sha256 first (:func:`check_raw_files`); False prepares
            files changed on purpose (or never downloaded) as they are.
        params: The params file whose ``declared:`` datasets are known too; a declared
            dataset is read by :func:`alignrec_data.declared_prepare.prepare_declared`.

    Returns:
        The statistics also written to ``stats.json``.

    Raises:
        UsageError: Unknown dataset, raw file missing or a broken symbolic link, bad params.
        ChecksumError: A raw file changed since its download (``verify``).
        DownloadError: A raw file has no recorded sha256 (``verify``).
        DataFormatError: A bad line in strict mode, a corrupt gzip stream, a reviews file
            without one readable review, or nothing left after the k-core filter.
    """
    spec = get_dataset(dataset_id, params=params)
    if spec.declared is not None:
        from alignrec_data.declared_prepare import prepare_declared

        return prepare_declared(spec, data_dir, config, strict=strict, verify=verify)
    reader = reader_for(spec.release)
    paths = DatasetPaths.of(data_dir, dataset_id)
    files, raw_files = check_raw_files(spec, paths, verify)
    cols, rlog = _read_reviews(files["reviews"], reader, spec, config, strict)
    kept = clean_interactions(cols, config, dataset_id)  # 2-4. dedupe, k-core, ids
    del cols
    mlog = BadLineLog(files["meta"].name, strict, config.max_reported_bad_lines)
    cap = config.max_literal_line_bytes if spec.release == "2014" else config.max_line_bytes
    logger.info("reading %s", files["meta"])
    records = _progress(reader.read_meta(files["meta"], mlog, cap), desc="metadata", unit=" rows")
    items = items_step(records, kept.item_keys, config)  # 5. metadata
    head = {
        "dataset": dataset_id,
        "release": spec.release,
        "source": "raw",
        "raw_files": raw_files,
    }
    return finish(paths, head, config, kept, items, {"reviews": rlog, "meta": mlog}, logger)
