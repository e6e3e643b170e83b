"""The items pretraining reads, held in memory: tokenised texts, decoded images, teacher maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.paths import DatasetPaths
from alignrec_data.schema import ITEMS_FILE
from alignrec_model import preprocess
from alignrec_model.encoder import MMEnc, MMEncConfig


@dataclass
class ItemData:
    """Everything pretraining reads, held in memory (N items).

    Attributes:
        item_ids: (N,) item ids.
        input_ids: (N, T) token ids, right-padded to the longest text.
        lengths: (N,) tokens per text (with special tokens).
        valid: (N, T) bool, maskable text tokens (not padding or special).
        images: (N, 3, S, S) uint8 (zeros without image), or None.
        has_image: (N,) bool.
        mask_id: The tokenizer's [MASK] id.
        feature_maps: (N, 1280, g, g) frozen EfficientNet maps (hybrid), or None.
    """

    item_ids: np.ndarray
    input_ids: torch.Tensor
    lengths: torch.Tensor
    valid: torch.Tensor
    images: torch.Tensor
    has_image: np.ndarray
    mask_id: int
    feature_maps: torch.Tensor | None = None


def read_items(paths: DatasetPaths, max_items: int = 0) -> pd.DataFrame:
    """``prepared/items.parquet`` (item_id, item_key, text), first ``max_items`` if > 0.

    Raises:
        UsageError: The file is missing (hint: run prepare).
        DataFormatError: Columns are missing.
    """
    path = paths.prepared / ITEMS_FILE
    if not path.is_file():
        msg = f"items table {path} does not exist"
        raise UsageError(msg, hint=f"run `alignrec-data prepare {paths.name}` first")
    items = pd.read_parquet(path)
    lacking = {"item_id", "item_key", "text"} - set(items.columns)
    if lacking:
        msg = f"{path} lacks column(s) {sorted(lacking)}"
        raise DataFormatError(msg)
    items = items.sort_values("item_id").reset_index(drop=True)
    if not np.array_equal(items["item_id"].to_numpy(), np.arange(len(items))):
        msg = f"{path}: item_id must be 0..N-1"
        raise DataFormatError(msg)
    return items.iloc[:max_items] if max_items > 0 else items


def load_item_data(paths: DatasetPaths, cfg: MMEncConfig, max_items: int = 0) -> ItemData:
    """Tokenise the texts and decode the images of the dataset's items."""
    tok = preprocess.load_tokenizer(cfg.tokenizer)
    mask_id, specials = preprocess.special_ids(tok)  # checked before the items are read
    items = read_items(paths, max_items)
    ids, pad = preprocess.tokenize(tok, items["text"].fillna("").tolist(), cfg.max_text_len)
    valid = ~pad & ~torch.isin(ids, torch.tensor(specials))
    if int(ids.max()) >= cfg.vocab_size:
        msg = f"tokenizer ids reach {int(ids.max())} but vocab_size is {cfg.vocab_size}"
        raise UsageError(msg)
    images, has = preprocess.load_item_images(
        paths.images, items["item_id"].tolist(), cfg.image_size
    )
    return ItemData(
        item_ids=items["item_id"].to_numpy(),
        input_ids=ids,
        lengths=(~pad).sum(1),
        valid=valid,
        images=images,
        has_image=has,
        mask_id=mask_id,
    )


@torch.no_grad()
def compute_feature_maps(model: MMEnc, data: ItemData, batch_size: int = 64) -> torch.Tensor:
    """Frozen EfficientNet-Lite0 maps (N, 1280, g, g) of every item (zeros without image).

    The backbone runs in eval mode without gradient: BatchNorm uses its stored (ImageNet)
    statistics and leaves them unchanged, and drop-connect is off, so the maps (the masked
    image targets) are a function of the pixels alone, and the backbone saved in
    ``mmenc.pt`` is the one extraction runs.
    """
    mean, std = preprocess.pixel_stats(model.cfg.image_stem)
    stem = model.image_stem
    stem.backbone.eval()  # FeatureStem.train() keeps it so; a new module starts in training
    device = next(model.parameters()).device
    maps = [
        stem.feature_map(preprocess.normalize_pixels(chunk, mean, std).to(device)).float().cpu()
        for chunk in data.images.split(batch_size)
    ]
    out = torch.cat(maps)
    out[torch.from_numpy(~data.has_image)] = 0
    return out
