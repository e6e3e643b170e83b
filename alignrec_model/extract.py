"""Item feature extraction with the pretrained MMEnc and the two unimodal baselines.

Variants written to ``<data-dir>/<ds>/features/<variant>.parquet`` (row i = item i):

- ``alignrec``: CLS output (position 0) of the joint image+text input, the AlignRec feature.
  Item without image: the text-only output of the same encoder (first text token),
  ``missing=True``.
- ``mmenc-image``: CLS output of the image-only input. Without image: zero row, ``missing=True``.
- ``mmenc-text``: first output of the text-only input (``missing=True`` only for empty text).
- ``minilm-text``: all-MiniLM-L6-v2 over the assembled text, mean pooling + L2 normalisation
  as sentence-transformers computes it (MMRec's text feature).
- ``effnet-image``: EfficientNet-Lite0 ImageNet features, global average pooled (1280-d).
  Without image: zero row, ``missing=True``.

The mask-modality evaluation uses ``mmenc-image`` / ``mmenc-text`` as the recomputed features
of items whose text / image it masks. Extraction is deterministic: same checkpoint and params,
same bytes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from alignrec_data.atomic import write_json
from alignrec_data.config import check_ranges
from alignrec_data.features import write_features
from alignrec_data.paths import DatasetPaths
from alignrec_model.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_item_images,
    load_tokenizer,
    normalize_pixels,
    pixel_stats,
    tokenize,
)
from alignrec_model.pretrain import (
    CHECKPOINT_FILE,
    encoder_from_checkpoint,
    load_checkpoint,
    read_items,
)
from alignrec_model.runtime import DEVICES, resolve_device, torch_threads

logger = logging.getLogger(__name__)

VARIANTS = ("alignrec", "mmenc-image", "mmenc-text", "minilm-text", "effnet-image")
METRICS_FILE = "extract.json"


@dataclass(frozen=True)
class ExtractConfig:
    """The ``extract:`` section of params.yaml."""

    variants: tuple[str, ...] = VARIANTS  # feature files to write (see the module docstring)
    batch_size: int = 64  # items per encoder batch
    effnet_image_size: int = 224  # input side of the EfficientNet-Lite0 baseline
    minilm_batch_size: int = 64  # texts per MiniLM batch
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    bf16: bool = False  # bf16 autocast on CUDA (features are stored as float32 anyway)
    num_threads: int = 0  # torch CPU threads (0: torch default)

    def __post_init__(self) -> None:
        """Reject values extraction cannot run with."""
        unknown = sorted(set(self.variants) - set(VARIANTS))
        check_ranges(
            self,
            "extract",
            {
                "variants": (
                    bool(self.variants) and not unknown,
                    f"a non-empty list of {', '.join(VARIANTS)}"
                    + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
                ),
                "batch_size": (self.batch_size >= 1, ">= 1"),
                "effnet_image_size": (self.effnet_image_size >= 32, ">= 32 pixels"),
                "minilm_batch_size": (self.minilm_batch_size >= 1, ">= 1"),
                "device": (self.device in DEVICES, f"one of {', '.join(DEVICES)}"),
            },
        )


def image_inputs(model: torch.nn.Module, px: torch.Tensor) -> dict[str, torch.Tensor]:
    """The image keyword argument of ``MMEnc`` for normalised pixels.

    The EfficientNet feature map (computed once, reusable for several inputs) or the pixels.
    """
    if model.cfg.image_stem == "efficientnet":
        return {"feature_map": model.image_stem.feature_map(px)}
    return {"pixel_values": px}


@torch.no_grad()
def encode_items(
    model: torch.nn.Module,
    texts: list[str],
    images: torch.Tensor,
    has_image: np.ndarray,
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
) -> dict[str, np.ndarray]:
    """Joint, image-only and text-only first outputs of every item.

    Args:
        model: An :class:`~alignrec_model.encoder.MMEnc` in eval mode on ``device``.
        texts: N item texts.
        images: (N, 3, S, S) uint8 at the encoder's image size.
        has_image: (N,) bool.
        batch_size: Items per batch.
        device: Where to run.
        bf16: bf16 autocast (CUDA only).

    Returns:
        ``{"alignrec", "mmenc-image", "mmenc-text"}`` -> (N, D) float32 (zeros where undefined).
    """
    cfg = model.cfg
    tok = load_tokenizer(cfg.tokenizer)
    mean, std = pixel_stats(cfg.image_stem)
    n, d = len(texts), cfg.hidden
    out = {k: np.zeros((n, d), dtype=np.float32) for k in ("alignrec", "mmenc-image", "mmenc-text")}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")
    for start in tqdm(range(0, n, batch_size), desc="extract mmenc", unit="batch", leave=False):
        sl = slice(start, min(n, start + batch_size))
        ids, pad = tokenize(tok, texts[sl], cfg.max_text_len)
        ids, pad = ids.to(device), pad.to(device)
        has = torch.from_numpy(has_image[sl]).to(device)
        with autocast:
            text_cls = model(input_ids=ids, text_padding_mask=pad).cls.float()
            out["mmenc-text"][sl] = text_cls.cpu().numpy()
            joint = text_cls.clone()
            if bool(has.any()):
                px = normalize_pixels(images[sl][has.cpu()].to(device), mean, std)
                # The image stem runs once; its tokens serve both the image-only and joint input.
                image_in = image_inputs(model, px)
                img_cls = model(**image_in).cls.float()
                joint_cls = model(
                    **image_in, input_ids=ids[has], text_padding_mask=pad[has]
                ).cls.float()
                joint[has] = joint_cls
                img_full = torch.zeros_like(text_cls)
                img_full[has] = img_cls
                out["mmenc-image"][sl] = img_full.cpu().numpy()
            out["alignrec"][sl] = joint.cpu().numpy()
    return out


@torch.no_grad()
def effnet_features(
    images: torch.Tensor, has_image: np.ndarray, size: int, batch_size: int, device: torch.device
) -> np.ndarray:
    """EfficientNet-Lite0 global-average-pooled features (N, 1280); zeros without image."""
    from alignrec_model.hybrid import load_efficientnet

    model = load_efficientnet(size).to(device)
    t0 = time.perf_counter()
    out = np.zeros((len(images), 1280), dtype=np.float32)
    rows = np.flatnonzero(has_image)
    for start in tqdm(
        range(0, len(rows), batch_size), desc="extract effnet", unit="batch", leave=False
    ):
        r = rows[start : start + batch_size]
        x = normalize_pixels(images[torch.from_numpy(r)].to(device), IMAGENET_MEAN, IMAGENET_STD)
        out[r] = model.extract_features(x).mean((2, 3)).float().cpu().numpy()
    logger.info("EfficientNet-Lite0: %d images in %.2f s", len(rows), time.perf_counter() - t0)
    return out


def minilm_features(texts: list[str], batch_size: int, device: torch.device) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (N, 384), as sentence-transformers computes them."""
    from sentence_transformers import SentenceTransformer

    from alignrec_model.hybrid import minilm_path

    model = SentenceTransformer(str(minilm_path()), device=str(device))
    t0 = time.perf_counter()
    emb = model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
    logger.info("MiniLM: %d texts in %.2f s", len(texts), time.perf_counter() - t0)
    return np.asarray(emb, dtype=np.float32)


def _resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, 3, S, S) uint8 at another square size (bicubic via Pillow, as loading does)."""
    from PIL import Image

    from alignrec_model.preprocess import image_to_uint8

    out = torch.zeros(len(images), 3, size, size, dtype=torch.uint8)
    for i, im in enumerate(images):
        out[i] = image_to_uint8(Image.fromarray(im.permute(1, 2, 0).numpy()), size)
    return out


def extract(data_dir: str | Path, dataset: str, cfg: ExtractConfig) -> dict[str, Any]:
    """Write the feature files of ``cfg.variants`` for every item of the dataset.

    Args:
        data_dir: The data directory.
        dataset: Dataset id.
        cfg: The ``extract`` params.

    Returns:
        The metrics written to ``metrics/extract.json`` (items, dims, missing counts, items/s).

    Raises:
        UsageError: Missing items table, image index or checkpoint (for the mmenc variants).
    """
    paths = DatasetPaths.of(data_dir, dataset)
    device = resolve_device(cfg.device, "extract")
    with torch_threads(cfg.num_threads):
        return _extract(paths, cfg, device)


def _extract(paths: DatasetPaths, cfg: ExtractConfig, device: torch.device) -> dict[str, Any]:
    items = read_items(paths)
    keys = items["item_key"].astype(str).tolist()
    texts = items["text"].fillna("").astype(str).tolist()
    no_text = np.array([not t.strip() for t in texts])
    n = len(items)
    metrics: dict[str, Any] = {"items": n, "variants": {}}
    mm = [v for v in cfg.variants if v in ("alignrec", "mmenc-image", "mmenc-text")]
    images = has_image = None
    size = None
    if mm:
        ckpt_path = paths.models / CHECKPOINT_FILE
        model = (
            encoder_from_checkpoint(load_checkpoint(ckpt_path), str(ckpt_path)).to(device).eval()
        )
        size = model.cfg.image_size
        images, has_image = load_item_images(paths.images, items["item_id"].tolist(), size)
        load_tokenizer(model.cfg.tokenizer)  # loaded before the clock starts
        t0 = time.perf_counter()
        feats = encode_items(model, texts, images, has_image, cfg.batch_size, device, cfg.bf16)
        seconds = time.perf_counter() - t0
        missing = {"alignrec": ~has_image, "mmenc-image": ~has_image, "mmenc-text": no_text}
        for v in mm:
            write_features(paths.features / f"{v}.parquet", keys, feats[v], missing[v])
            metrics["variants"][v] = {
                "dim": int(feats[v].shape[1]),
                "missing": int(missing[v].sum()),
            }
        metrics["mmenc_items_per_s"] = round(n / seconds, 2) if seconds > 0 else None
        del model
    if "effnet-image" in cfg.variants:
        if images is None or size != cfg.effnet_image_size:
            if images is not None and size is not None and size >= cfg.effnet_image_size:
                images = _resize_batch(images, cfg.effnet_image_size)
            else:
                images, has_image = load_item_images(
                    paths.images, items["item_id"].tolist(), cfg.effnet_image_size
                )
        t0 = time.perf_counter()
        emb = effnet_features(images, has_image, cfg.effnet_image_size, cfg.batch_size, device)
        seconds = time.perf_counter() - t0
        write_features(paths.features / "effnet-image.parquet", keys, emb, ~has_image)
        metrics["variants"]["effnet-image"] = {"dim": 1280, "missing": int((~has_image).sum())}
        metrics["effnet_items_per_s"] = (
            round(int(has_image.sum()) / seconds, 2) if seconds > 0 else None
        )
    if "minilm-text" in cfg.variants:
        t0 = time.perf_counter()
        emb = minilm_features(texts, cfg.minilm_batch_size, device)
        seconds = time.perf_counter() - t0
        write_features(paths.features / "minilm-text.parquet", keys, emb, no_text)
        metrics["variants"]["minilm-text"] = {
            "dim": int(emb.shape[1]),
            "missing": int(no_text.sum()),
        }
        metrics["minilm_items_per_s"] = round(n / seconds, 2) if seconds > 0 else None
    if has_image is not None:
        metrics["items_with_image"] = int(has_image.sum())
    write_json(paths.metrics / METRICS_FILE, metrics)
    logger.info(
        "wrote %d feature files for %d items under %s", len(metrics["variants"]), n, paths.features
    )
    return metrics
