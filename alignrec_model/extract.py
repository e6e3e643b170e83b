"""Item feature extraction: every ``extract.variants`` entry -> ``features/<variant>.parquet``.

An entry is a built-in name or a mapping describing an encoder
(:mod:`alignrec_model.extractors`, docs/features.md). The built-ins (row i = item i):

- ``alignrec``: CLS output (position 0) of the pretrained MMEnc on the joint image+text input,
  the AlignRec feature. Item without image: the text-only output of the same encoder,
  ``missing=True``.
- ``mmenc-image``: CLS output of the image-only input. Without image: zero row, ``missing=True``.
- ``mmenc-text``: first output of the text-only input (empty text: zero row, ``missing=True``).
- ``minilm-text``: all-MiniLM-L6-v2 over the assembled text, mean pooling + L2 normalisation
  as sentence-transformers computes it (MMRec's text feature).
- ``effnet-image``: EfficientNet-Lite0 ImageNet features, global average pooled (1280-d).
  Without image: zero row, ``missing=True``.

Every file records its provenance (variant, kind, modality, dim, model and weights sha256,
pooling, and for joint features the variants computed without each modality) in its schema
metadata (:func:`alignrec_data.feature_info.feature_metadata`); the mask-modality evaluation,
the card and the MMRec export read it. Extraction is deterministic: same models and params,
same bytes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignrec_data.atomic import write_json
from alignrec_data.config import check_ranges
from alignrec_data.features import write_features
from alignrec_data.paths import DatasetPaths
from alignrec_model.extractors import BUILTINS, VariantEntry, build_encoder, resolve_entries
from alignrec_model.extractors.base import ImageCache
from alignrec_model.extractors.mmenc import encode_items, image_inputs
from alignrec_model.pretrain import read_items
from alignrec_model.runtime import DEVICES, resolve_device, torch_threads

logger = logging.getLogger(__name__)

__all__ = ["VARIANTS", "ExtractConfig", "encode_items", "extract", "image_inputs"]

#: The built-in variants (written by default).
VARIANTS: tuple[str, ...] = tuple(BUILTINS)
METRICS_FILE = "extract.json"


@dataclass(frozen=True)
class ExtractConfig:
    """The ``extract:`` section of params.yaml."""

    variants: tuple[str | dict[str, Any], ...] = VARIANTS  # built-in names or entry mappings
    batch_size: int = 64  # items per encoder batch (entries without their own batch_size)
    effnet_image_size: int = 224  # input side of the EfficientNet-Lite0 baseline
    minilm_batch_size: int = 64  # texts per MiniLM batch (built-in minilm-text)
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    bf16: bool = False  # bf16 autocast on CUDA (features are stored as float32 anyway)
    num_threads: int = 0  # torch CPU threads (0: torch default)

    def __post_init__(self) -> None:
        """Reject values extraction cannot run with (entries are parsed here)."""
        check_ranges(
            self,
            "extract",
            {
                "variants": (
                    bool(self.variants),
                    f"a non-empty list of built-in names ({', '.join(VARIANTS)}) or entries",
                ),
                "batch_size": (self.batch_size >= 1, ">= 1"),
                "effnet_image_size": (self.effnet_image_size >= 32, ">= 32 pixels"),
                "minilm_batch_size": (self.minilm_batch_size >= 1, ">= 1"),
                "device": (self.device in DEVICES, f"one of {', '.join(DEVICES)}"),
            },
        )
        resolve_entries(self.variants)

    def entries(self) -> list[VariantEntry]:
        """The entries, merged per encoder, with the section's defaults filled in."""
        return [self.fill(e) for e in resolve_entries(self.variants)]

    def fill(self, e: VariantEntry) -> VariantEntry:
        """``e`` with the section's defaults where it leaves ``batch_size`` / ``image_size`` 0."""
        builtin_minilm = e.kind == "sentence-transformers" and not e.model
        default_bs = self.minilm_batch_size if builtin_minilm else self.batch_size
        fill: dict[str, Any] = {"batch_size": e.batch_size or default_bs}
        if e.kind == "effnet":
            fill["image_size"] = e.image_size or self.effnet_image_size
        return dataclasses.replace(e, **fill)


def record_speed(metrics: dict[str, Any], entry: VariantEntry, n: int, seconds: float) -> None:
    """Record ``entry``'s ``items_per_s`` (``n`` items in ``seconds``) in ``metrics``.

    The built-in mmenc entry's speed is also ``mmenc_items_per_s``.
    """
    speed = round(n / seconds, 2) if seconds > 0 else None
    metrics["items_per_s"][entry.name] = speed
    if entry.kind == "mmenc" and not entry.model:
        metrics["mmenc_items_per_s"] = speed


def extract(data_dir: str | Path, dataset: str, cfg: ExtractConfig) -> dict[str, Any]:
    """Write the feature files of ``cfg.variants`` for every item of the dataset.

    Args:
        data_dir: The data directory.
        dataset: Dataset id.
        cfg: The ``extract`` params.

    Returns:
        The metrics written to ``metrics/extract.json`` (items, dims, missing counts, items/s).

    Raises:
        UsageError: Missing items table, image index, checkpoint (mmenc) or model.
    """
    paths = DatasetPaths.of(data_dir, dataset)
    device = resolve_device(cfg.device, "extract")
    with torch_threads(cfg.num_threads):
        items = read_items(paths)
        keys = items["item_key"].astype(str).tolist()
        n = len(items)
        metrics: dict[str, Any] = {"items": n, "variants": {}, "items_per_s": {}}
        images: ImageCache = {}
        for entry in cfg.entries():
            encoder = build_encoder(entry, paths, device, cfg.bf16)
            t0 = time.perf_counter()
            rows = encoder.rows(paths, items, images)
            seconds = time.perf_counter() - t0
            for output, variant in entry.variants().items():
                matrix, missing = rows[variant]
                meta = encoder.metadata(output, matrix.shape[1])
                write_features(paths.features / f"{variant}.parquet", keys, matrix, missing, meta)
                metrics["variants"][variant] = {
                    "dim": int(matrix.shape[1]),
                    "missing": int(missing.sum()),
                }
            record_speed(metrics, entry, n, seconds)
            logger.info("%s (%s): %d items in %.2f s", entry.name, entry.kind, n, seconds)
            del encoder
    if images:
        metrics["items_with_image"] = int(next(iter(images.values()))[1].sum())
    write_json(paths.metrics / METRICS_FILE, metrics)
    logger.info(
        "wrote %d feature files for %d items under %s", len(metrics["variants"]), n, paths.features
    )
    return metrics
