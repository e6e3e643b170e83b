"""``prepare`` for a dataset declared in ``params.yaml`` (:mod:`alignrec_data.declared`).

The same stage as for the Amazon sets (:mod:`alignrec_data.prepare`), with the table reader of
:mod:`alignrec_data.readers.tabular` in place of a release reader:

0. verify the raw copies against the lock file (as ``prepare`` does);
1. ``read``: the interactions file through the column mapping (bad rows counted);
2-3. the same ``dedupe`` (earliest pair; file order without timestamps) and ``k_core``
   (``prepare.min_user_interactions`` / ``min_item_interactions``);
4. the same ids (sorted raw keys);
5. ``meta``: the items file, repeated rows merged (:func:`~alignrec_data.prepare.merge_metadata`),
   fields cleaned, the text from the declared template (else ``prepare.text_template``), image
   values mapped to URLs (:func:`alignrec_data.declared.image_url`);
6. the same seeded ``split``.

Without a rating or timestamp column those columns of interactions.parquet are null and
``stats.json`` says so (``has_ratings``, ``has_timestamps``); the ``leave-one-out`` and
``temporal`` splits need timestamps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa

from alignrec_data import declared as declared_mod
from alignrec_data.clean import remap_by_key
from alignrec_data.config import to_dict
from alignrec_data.errors import UsageError
from alignrec_data.paths import DatasetPaths
from alignrec_data.prepare import (
    PrepareConfig,
    _clean,
    _split,
    build_items,
    merge_metadata,
    verify_raw_files,
)
from alignrec_data.prepared import split_counts, users_table, write_prepared
from alignrec_data.readers.lines import BadLineLog
from alignrec_data.readers.tabular import read_interactions, read_items
from alignrec_data.registry import DatasetSpec, check_links, raw_path

logger = logging.getLogger(__name__)


def _raw_files(
    spec: DatasetSpec, paths: DatasetPaths, verify: bool
) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """The raw copies (present, no broken link) and their record for ``stats.json``."""
    files = {f.role: raw_path(paths.raw, spec, f.role) for f in spec.files}
    check_links(files.values())
    for role, path in files.items():
        if not path.is_file():
            what = "interactions" if role == "reviews" else "items"
            msg = f"raw {what} file {path} of {spec.id} does not exist"
            raise UsageError(msg, hint=f"run `alignrec-data download {spec.id} --params ...` first")
    if verify:
        return files, verify_raw_files(spec, paths.raw)
    logger.warning("not verifying the raw files of %s (verify=False)", spec.id)
    return files, {
        role: {"file": p.name, "bytes": p.stat().st_size, "sha256": None, "trust": None}
        for role, p in files.items()
    }


def _nulls(table: pa.Table, name: str) -> pa.Table:
    """``table`` with column ``name`` all null (a column the declaration does not have)."""
    k = table.schema.get_field_index(name)
    field = table.schema.field(k)
    return table.set_column(k, field, pa.nulls(table.num_rows, field.type))


def prepare_declared(
    spec: DatasetSpec,
    data_dir: str | Path,
    config: PrepareConfig,
    *,
    strict: bool = False,
    verify: bool = True,
) -> dict[str, Any]:
    """Turn a declared dataset's raw copies into ``<data_dir>/<id>/prepared/``.

    Args:
        spec: The declared dataset (``get_dataset(id, params=...)``).
        data_dir: The data directory.
        config: The ``prepare`` params (k-core, split, seed, text template).
        strict: Stop at the first bad row instead of counting it.
        verify: Check the raw copies' sha256 first.

    Returns:
        The statistics also written to ``stats.json``.

    Raises:
        UsageError: Raw file missing, a mapped column missing, a split that needs timestamps.
        ChecksumError: A raw copy changed since its download (``verify``).
        DataFormatError: An unreadable table, a bad row in strict mode, no usable row, or
            nothing left after the k-core filter.
    """
    d: declared_mod.Declared = spec.declared
    paths = DatasetPaths.of(data_dir, spec.id)
    files, raw_files = _raw_files(spec, paths, verify)
    inter_decl, items_decl = d.decl.interactions, d.decl.items

    rlog = BadLineLog(files["reviews"].name, strict, config.max_reported_bad_lines)
    logger.info("reading %s", files["reviews"])
    cols, has_ratings, has_timestamps = read_interactions(
        files["reviews"], d.formats["reviews"], inter_decl, d.key("reviews"), rlog
    )
    if config.split != "random" and not has_timestamps:
        msg = (
            f"prepare.split = {config.split!r} orders each user's interactions by time, but "
            f"{d.key('reviews')} declares no timestamp column; add timestamp: <column> or use "
            "split: random"
        )
        raise UsageError(msg)
    (u, i, r, t), steps = _clean(cols, config, spec.id)
    user_ids, user_keys = remap_by_key(u, cols.user_keys)
    item_ids, item_keys = remap_by_key(i, cols.item_keys)
    del cols

    mlog = BadLineLog(
        files["meta"].name if "meta" in files else "", strict, config.max_reported_bad_lines
    )
    image_counts = {"local": 0, "url": 0, "unusable": 0}

    def image_url(value: str) -> str | None:
        url = declared_mod.image_url(value, d)
        if url is None:
            image_counts["unusable"] += 1
        else:
            image_counts["local" if url.startswith(declared_mod.IMAGE_HOST) else "url"] += 1
        return url

    metas: dict[str, Any] = {}
    merge_counts = {"duplicate_lines": 0, "merged_items": 0, "fields_filled": 0}
    if items_decl is not None:
        logger.info("reading %s", files["meta"])
        wanted = set(item_keys)
        records = read_items(
            files["meta"], d.formats["meta"], items_decl, d.key("meta"), mlog, image_url, wanted
        )
        metas, merge_counts = merge_metadata(records, wanted)
    items, title_sources = build_items(
        item_keys, metas, config.text_template, config.category_separator
    )
    if items_decl is not None and items_decl.text is not None:
        k = items.schema.get_field_index("text")
        texts = [getattr(metas.get(key), "text", "") for key in item_keys]
        items = items.set_column(k, items.schema.field(k), pa.array(texts, pa.string()))

    inter, split_info = _split(config, user_ids, item_ids, user_keys, item_keys, r, t)
    if not has_ratings:
        inter = _nulls(inter, "rating")
    if not has_timestamps:
        inter = _nulls(inter, "timestamp")
    users = users_table(user_keys, user_ids)

    n_items = len(item_keys)
    has_image = items.column("has_image").to_numpy(zero_copy_only=False)
    mirror = declared_mod.image_mirror(spec)
    stats: dict[str, Any] = {
        "dataset": spec.id,
        "release": spec.release,
        "source": "declared",
        "declared": {
            "params": d.where.rsplit(":", 1)[0],
            "interactions": {"url": d.urls["reviews"], "format": d.formats["reviews"]},
            "items": (
                {"url": d.urls["meta"], "format": d.formats["meta"]} if "meta" in d.urls else None
            ),
            "images": {**image_counts, "mirror": mirror},
        },
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
        "duplicate_metadata_records": merge_counts["duplicate_lines"],
        "metadata_merge": merge_counts,
        "title_sources": title_sources,
        "missing_image_url_rate": float(1.0 - has_image.mean()) if n_items else 0.0,
        "has_ratings": has_ratings,
        "has_timestamps": has_timestamps,
    }
    write_prepared(paths.prepared, inter, items, users, stats)
    logger.info(
        "prepared %s: %d users, %d items, %d interactions -> %s",
        spec.id,
        len(user_keys),
        n_items,
        inter.num_rows,
        paths.prepared,
    )
    if mirror is not None and image_counts["local"]:
        logger.info(
            "%s: %d items have local images; fetch them with `alignrec-data images %s --mirror %s`",
            spec.id,
            image_counts["local"],
            spec.id,
            mirror,
        )
    return stats
