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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alignrec_data import declared as declared_mod
from alignrec_data.errors import UsageError
from alignrec_data.paths import DatasetPaths
from alignrec_data.prepare import PrepareConfig, check_raw_files, items_step
from alignrec_data.prepared import clean_interactions, finish
from alignrec_data.readers.lines import BadLineLog
from alignrec_data.readers.tabular import DeclaredMeta, read_interactions, read_items
from alignrec_data.registry import DatasetSpec

logger = logging.getLogger(__name__)


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
    files, raw_files = check_raw_files(spec, paths, verify, logger)
    rlog = BadLineLog(files["reviews"].name, strict, config.max_reported_bad_lines)
    logger.info("reading %s", files["reviews"])
    cols = read_interactions(d, files["reviews"], rlog)
    if config.split != "random" and not cols.has_timestamps:  # the split orders by time
        msg = (
            f"prepare.split = {config.split!r} orders each user's interactions by time, but "
            f"{d.key('reviews')} declares no timestamp column; add timestamp: <column> or use "
            "split: random"
        )
        raise UsageError(msg)
    kept = clean_interactions(cols, config, spec.id)
    del cols
    images = declared_mod.ImageCounts(d)  # 5. the items file (when declared)
    meta = files["meta"].name if "meta" in files else ""
    mlog = BadLineLog(meta, strict, config.max_reported_bad_lines)
    records: Iterable[DeclaredMeta] = ()
    if d.decl.items is not None:
        logger.info("reading %s", files["meta"])
        records = read_items(d, files["meta"], mlog, images.url, set(kept.item_keys))
    declared_text = d.decl.items is not None and d.decl.items.text is not None
    items = items_step(records, kept.item_keys, config, declared_text)
    mirror = declared_mod.image_mirror(spec)
    head = {  # the dataset, and where its declaration came from
        "dataset": spec.id,
        "release": spec.release,
        "source": "declared",
        "declared": {
            "params": d.where.rsplit(":", 1)[0],
            "interactions": {"url": d.urls["reviews"], "format": d.formats["reviews"]},
            "items": (
                {"url": d.urls["meta"], "format": d.formats["meta"]} if "meta" in d.urls else None
            ),
            "images": {**images.counts, "mirror": mirror},
        },
        "raw_files": raw_files,
    }
    stats = finish(paths, head, config, kept, items, {"reviews": rlog, "meta": mlog}, logger)
    if mirror is not None and images.counts["local"]:
        logger.info(
            "%s: %d items have local images; fetch them with `alignrec-data images %s --mirror %s`",
            spec.id,
            images.counts["local"],
            spec.id,
            mirror,
        )
    return stats
