"""Masked micro-batches: which items go into which input kind, and their text and image masks.

Masks come from per-sample generators seeded by ``(seed, epoch, item, kind)``, so a batch is
the same whatever the number of processes and whether the run was resumed.
"""

from __future__ import annotations

from typing import Any

import torch

from alignrec_model.encoder import MMEncConfig
from alignrec_model.masking import block_mask, mask_text, sample_generator
from alignrec_model.preprocess import normalize_pixels, pixel_stats
from alignrec_model.pretrain.config import PretrainConfig
from alignrec_model.pretrain.items import ItemData

# Mask kinds (salt for the per-sample generators).
_K_JOINT_TEXT, _K_JOINT_IMAGE, _K_TEXT, _K_IMAGE = 1, 2, 3, 4


def make_parts(
    data: ItemData,
    idx: list[int],
    epoch: int,
    unimodal: bool,
    cfg: PretrainConfig,
    enc_cfg: MMEncConfig,
) -> list[dict[str, Any]]:
    """The masked inputs of one micro-batch (on CPU), one dict per input kind.

    Joint step: items with an image -> joint input (text ``joint_text_mask_prob``, image
    ``image_mask_ratio``); items without -> text-only (``text_mask_prob``). Unimodal step:
    image-only for items with an image, text-only for every item.
    """

    def generator(row: int, kind: int) -> torch.Generator:
        return sample_generator(cfg.seed, epoch, int(data.item_ids[row]), kind)

    def text(rows: torch.Tensor, prob: float, kind: int) -> dict[str, torch.Tensor]:
        """Masked ``input_ids``, ``text_padding_mask``, ``labels`` of ``rows`` (longest text)."""
        ids, labels = [], []
        for r in rows.tolist():
            g = generator(r, kind)
            i, lab = mask_text(
                data.input_ids[r], data.valid[r], prob, data.mask_id, enc_cfg.vocab_size, g
            )
            ids.append(i)
            labels.append(lab)
        t = int(data.lengths[rows].max())  # trim to the longest text of these rows
        return {
            "input_ids": torch.stack(ids)[:, :t],
            "text_padding_mask": torch.arange(t)[None, :] >= data.lengths[rows][:, None],  # (B, t)
            "labels": torch.stack(labels)[:, :t],
        }

    def image(rows: torch.Tensor, kind: int) -> dict[str, Any]:
        """``image_mask`` plus the pixels and/or cached feature maps of ``rows``."""
        n_mask = max(1, int(round(cfg.image_mask_ratio * enc_cfg.num_patches)))
        masks = [block_mask(enc_cfg.grid, n_mask, generator(r, kind)) for r in rows.tolist()]
        part: dict[str, Any] = {"image_mask": torch.stack(masks)}
        fmaps = data.feature_maps
        if fmaps is not None:
            part["target_map"] = fmaps[rows]
            if not cfg.train_backbone:
                part["feature_map"] = fmaps[rows]
        if fmaps is None or cfg.train_backbone:
            mean, std = pixel_stats(enc_cfg.image_stem)
            part["pixels"] = normalize_pixels(data.images[rows], mean, std)
        return part

    idx_t = torch.tensor(idx, dtype=torch.long)
    has = torch.from_numpy(data.has_image[idx])
    with_img, without = idx_t[has], idx_t[~has]
    if unimodal:
        parts = [image(with_img, _K_IMAGE)] if len(with_img) else []
        return [*parts, text(idx_t, cfg.text_mask_prob, _K_TEXT)]
    parts = []
    if len(with_img):  # joint: the image part, then the text part, of the same items
        joint_text = (with_img, cfg.joint_text_mask_prob, _K_JOINT_TEXT)
        parts.append({**image(with_img, _K_JOINT_IMAGE), **text(*joint_text)})
    if len(without):
        parts.append(text(without, cfg.text_mask_prob, _K_TEXT))
    return parts


def masked_counts(parts: list[dict[str, Any]]) -> tuple[float, float]:
    """Masked text tokens and masked patches of one micro-batch."""
    nt = sum(float((p["labels"] >= 0).sum()) for p in parts if "labels" in p)
    npch = sum(float(p["image_mask"].sum()) for p in parts if "image_mask" in p)
    return nt, npch


def to_device(part: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """One input kind's tensors on ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in part.items()}
