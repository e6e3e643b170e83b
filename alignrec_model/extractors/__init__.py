"""Feature extractors: one ``extract.variants`` entry -> an encoder -> feature rows.

``entry`` parses entries, ``source`` resolves models offline, ``base`` holds the encoder
interface and the rules for missing inputs, and one module per kind family (``hf``,
``offline``, ``mmenc``) implements ``encode_texts`` / ``encode_images``.
:func:`encode_entry` computes the rows of one entry for any subset of the items (what a
sharded extraction calls per worker).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from alignrec_data.paths import DatasetPaths

# What other modules, the tests and the benchmarks import from the package.
from alignrec_model.extractors.base import Encoder, ImageCache
from alignrec_model.extractors.entry import BUILTINS, VariantEntry, parse_entry, resolve_entries
from alignrec_model.extractors.source import entry_source, resolve_model, weights_sha256

__all__ = [
    "BUILTINS",
    "ImageCache",
    "VariantEntry",
    "build_encoder",
    "encode_entry",
    "entry_source",
    "parse_entry",
    "resolve_entries",
    "resolve_model",
    "weights_sha256",
]


def build_encoder(
    entry: VariantEntry, paths: DatasetPaths, device: torch.device | str = "cpu", bf16: bool = False
) -> Encoder:
    """The encoder of ``entry`` (model loaded, eval mode, on ``device``).

    :meth:`alignrec_model.extract.ExtractConfig.entries` fills in the section's defaults; an
    entry without them gets the ``ExtractConfig`` defaults (batch 64, EfficientNet side 224).

    Raises:
        UsageError: The model cannot be found offline or does not fit the kind.
    """
    from alignrec_model.extract import ExtractConfig  # (which imports this package)

    device = torch.device(device)
    entry = ExtractConfig().fill(entry)
    source = entry_source(entry, paths)
    return entry.encoder_class(entry, source, device, bf16)


def encode_entry(
    entry: VariantEntry,
    paths: DatasetPaths,
    item_rows: pd.DataFrame,
    *,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    images: ImageCache | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The feature rows of one entry for a subset of the items.

    Args:
        entry: A resolved entry (defaults filled in).
        paths: The dataset's paths (images from ``paths.images``, mmenc from ``paths.models``).
        item_rows: Rows of ``prepared/items.parquet`` (``item_id``, ``text``), any subset.
        device: Where the model runs.
        bf16: bf16 autocast on CUDA.
        images: Decoded images by side, reused and filled (must belong to ``item_rows``).

    Returns:
        ``{variant: (matrix (n, d) float32, missing (n,) bool)}``, row k = ``item_rows`` row k.
    """
    return build_encoder(entry, paths, device, bf16).rows(paths, item_rows, images)
