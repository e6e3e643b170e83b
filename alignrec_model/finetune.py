"""Joint fine-tuning of MMEnc's top layers inside AlignRec (stage 2, ``finetune_encoder_layers``).

The paper trains stage 2 on frozen stage-1 features and discusses the "learning speed" balance
between the encoder and the recommender. This module makes the alternative usable: the encoder's
lower layers run once, their output states are cached, and :class:`EncoderTop` runs the top
``n`` layers (trainable, their own learning rate ``encoder_lr``) over the cached states of the
items a batch needs, producing the same features as stage-1 extraction::

    S_i   = MMEnc layers 1 .. L-n (embed(image_i, text_i))      cached, no gradient
    F_i   = first output of MMEnc layers L-n+1 .. L (S_i)       with gradient (feature_fn)

so that, before any update, ``EncoderTop(ids)`` in eval mode equals the extracted feature file
(``alignrec``: joint image-text CLS, text-only where the item has no image; ``mmenc-text``: the
text-only first output). :func:`encoder_top_for_dataset` builds it from ``models/mmenc.pt``,
``images/`` and ``prepared/items.parquet`` and checks that equality on a few items.

Memory: the cache holds ``N_items x L x hidden`` floats (``L`` = image tokens + the longest text),
e.g. 7,050 Baby items x 145 tokens x 384 x 2 bytes (``cache_dtype`` bfloat16) = 0.8 GB for the
hybrid encoder; each step back-propagates the top layers over the batch's distinct items (up to
2 x batch_size), which is meant for a GPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alignrec_data.errors import UsageError
from alignrec_data.paths import DatasetPaths
from alignrec_model.encoder import MMEnc, run_stack

logger = logging.getLogger(__name__)

#: Feature variants that the top layers can reproduce.
FINETUNE_VARIANTS: tuple[str, ...] = ("alignrec", "mmenc-text")


class EncoderTop(nn.Module):
    """Item ids -> features through the top ``n_layers`` of an MMEnc over cached states.

    Args:
        encoder: The stage-1 encoder (its top layers and final norm are kept, trainable).
        n_layers: Top layers fine-tuned (1 .. encoder layers).
        n_image: Image tokens at the start of ``joint_states`` (0 when there are none).
        **states: The cached buffers (:func:`lower_states`): ``joint_states`` (N_j, L_j, D)
            after layer ``L - n`` of the items encoded with an image (image tokens first) and
            ``joint_padding`` (N_j, L_j) bool; ``text_states`` (N_t, T, D) of the items encoded
            from text only and ``text_padding`` (N_t, T); ``group`` (N,) int8: 0 = item ``i``
            is row ``row[i]`` of the joint states, 1 = of the text states; ``row`` (N,) int64.
            An empty group's states are (0, 1, D) and its padding (0, 1).
    """

    def __init__(self, encoder: MMEnc, n_layers: int, n_image: int, **states: torch.Tensor) -> None:
        super().__init__()
        total = len(encoder.layers)
        _check_top_layers(n_layers, total, "the encoder")
        self.layers = nn.ModuleList(encoder.layers[total - n_layers :])
        self.final_norm = encoder.final_norm
        for p in self.parameters():
            p.requires_grad_(True)
        self.n_image = int(n_image)
        for name, tensor in states.items():
            self.register_buffer(name, tensor, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(n,) item ids -> (n, D) float32 features (with gradient to the top layers)."""
        ids = ids.to(self.group.device)
        group = self.group[ids]
        parts, order = [], []
        for g, states, padding, n_image in (
            (0, self.joint_states, self.joint_padding, self.n_image),
            (1, self.text_states, self.text_padding, 0),
        ):
            sel = torch.nonzero(group == g).squeeze(1)  # positions in ids
            if sel.numel() == 0:
                continue
            rows = self.row[ids[sel]]
            x = states[rows].to(torch.float32)  # (b, L, D)
            # the top layers (and final norm) -> (b, D) first outputs
            parts.append(run_stack(self.layers, self.final_norm, x, n_image, padding[rows])[:, 0])
            order.append(sel)
        # (n, D) in group order; argsort of the permutation puts it back in the order of ids
        return torch.cat(parts)[torch.argsort(torch.cat(order))]


def _check_top_layers(n_layers: int, total: int, owner: str) -> None:
    """Raise a UsageError naming the key unless ``1 <= n_layers <= total`` (``owner`` has them)."""
    if not 1 <= n_layers <= total:
        msg = (
            f"train.alignrec.finetune_encoder_layers = {n_layers}: {owner} has {total} "
            f"layers; choose 1 .. {total} (0 trains on frozen features)"
        )
        raise UsageError(msg)


@torch.no_grad()
def lower_states(
    encoder: MMEnc,
    texts: list[str],
    images: torch.Tensor | None,
    has_image: np.ndarray | None,
    n_layers: int,
    device: torch.device,
    cache_dtype: torch.dtype,
    batch_size: int = 64,
) -> dict[str, torch.Tensor | int]:
    """States after the lower ``L - n_layers`` layers of every item (eval mode, no gradient).

    Args:
        encoder: The encoder (put in eval mode here).
        texts: N item texts.
        images: (N, 3, S, S) uint8 at the encoder's image size (zeros where no image), or None:
            every item is encoded from its text only (the ``mmenc-text`` variant).
        has_image: (N,) bool, or None with ``images``.
        n_layers: Top layers that will be fine-tuned.
        device: Where to run.
        cache_dtype: dtype of the stored states (bfloat16 halves the memory).
        batch_size: Items per batch.

    Returns:
        The keyword arguments of :class:`EncoderTop` except ``encoder`` and ``n_layers``.
    """
    from alignrec_model.extract import image_inputs
    from alignrec_model.preprocess import load_tokenizer, normalize_pixels, pixel_stats, tokenize

    encoder.eval()
    cfg = encoder.cfg
    stop = len(encoder.layers) - n_layers
    tok = load_tokenizer(cfg.tokenizer)
    ids_all, pad_all = tokenize(tok, texts, cfg.max_text_len)  # padded to the longest text
    n = len(texts)
    use_image = np.zeros(n, dtype=bool) if images is None else has_image.astype(bool)
    group = torch.from_numpy((~use_image).astype(np.int8))
    row = torch.zeros(n, dtype=torch.int64)
    out: dict[str, torch.Tensor | int] = {"n_image": 0}
    mean, std = pixel_stats(cfg.image_stem)
    for g, name in ((0, "joint"), (1, "text")):
        members = np.flatnonzero(group.numpy() == g)
        row[members] = torch.arange(len(members))
        if len(members) == 0:
            out[f"{name}_states"] = torch.zeros(0, 1, cfg.hidden)
            out[f"{name}_padding"] = torch.zeros(0, 1, dtype=torch.bool)
            continue
        chunks, pads = [], []
        for start in range(0, len(members), batch_size):
            sel = torch.from_numpy(members[start : start + batch_size])
            kwargs = dict(
                input_ids=ids_all[sel].to(device), text_padding_mask=pad_all[sel].to(device)
            )
            if g == 0:
                kwargs |= image_inputs(encoder, normalize_pixels(images[sel].to(device), mean, std))
            x, n_image, pad = encoder.embed(**kwargs)
            x = encoder.run_layers(x, n_image, pad, 0, stop)
            chunks.append(x.to(cache_dtype))
            pads.append(pad)
            if g == 0:
                out["n_image"] = n_image
        out[f"{name}_states"], out[f"{name}_padding"] = torch.cat(chunks), torch.cat(pads)
    out["group"], out["row"] = group, row
    return out


def encoder_top_for_dataset(
    paths: DatasetPaths,
    variant: str,
    n_layers: int,
    reference: np.ndarray | None = None,
    device: torch.device | None = None,
    cache_dtype: torch.dtype = torch.float32,
    check_items: int = 32,
) -> EncoderTop:
    """Build the :class:`EncoderTop` of a prepared dataset from its ``models/mmenc.pt``.

    Args:
        paths: The dataset's paths (``models/mmenc.pt``, ``images/``, ``prepared/``).
        variant: ``alignrec`` (joint CLS) or ``mmenc-text``: the feature file being fine-tuned.
        n_layers: Top layers to fine-tune.
        reference: (N, D) the variant's extracted features; when given, the first
            ``check_items`` items must be reproduced (max abs difference <= 1e-3 relative to
            the largest value), otherwise the checkpoint and the feature file disagree.
        device: Where to build the cache (default CPU).
        cache_dtype: dtype of the cached states.
        check_items: Items compared with ``reference``.

    Returns:
        The module, in train mode, on ``device``.

    Raises:
        UsageError: Unknown variant, bad ``n_layers``, missing checkpoint/images, or features
            that the checkpoint does not reproduce (re-run extract after pretrain).
    """
    from alignrec_model.preprocess import load_item_images
    from alignrec_model.pretrain import (
        CHECKPOINT_FILE,
        encoder_from_checkpoint,
        load_checkpoint,
        read_items,
    )

    if variant not in FINETUNE_VARIANTS:
        msg = (
            f"joint fine-tuning reproduces the features {', '.join(FINETUNE_VARIANTS)} of the "
            f"MMEnc encoder, not {variant!r}; train with --features alignrec or set "
            "train.alignrec.finetune_encoder_layers to 0"
        )
        raise UsageError(msg)
    device = device or torch.device("cpu")
    ckpt_path = paths.models / CHECKPOINT_FILE
    encoder = encoder_from_checkpoint(load_checkpoint(ckpt_path), str(ckpt_path)).to(device)
    items = read_items(paths)
    texts = items["text"].fillna("").astype(str).tolist()
    images = has_image = None  # mmenc-text: no image is read
    if variant != "mmenc-text":
        ids = items["item_id"].tolist()
        images, has_image = load_item_images(paths.images, ids, encoder.cfg.image_size)
    total = len(encoder.layers)
    _check_top_layers(n_layers, total, str(ckpt_path))
    logger.info(
        "caching the states of %d items below the top %d of %d encoder layers",
        len(texts),
        n_layers,
        total,
    )
    states = lower_states(encoder, texts, images, has_image, n_layers, device, cache_dtype)
    top = EncoderTop(encoder, n_layers=n_layers, **states).to(device)
    del encoder
    if reference is not None and check_items > 0:
        _check_reproduces(top, reference, check_items, paths.feature_file(variant))
    return top.train()


@torch.no_grad()
def _check_reproduces(top: EncoderTop, reference: np.ndarray, n: int, source: Path) -> None:
    ids = torch.arange(min(n, top.group.numel()))
    mine = top.eval()(ids).float().cpu().numpy()  # the caller puts it back in train mode
    ref = np.asarray(reference[: len(ids)], dtype=np.float32)
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(mine - ref).max()) / scale
    # The cached states set the precision: bf16 (CUDA) states of either group get the wider
    # tolerance (a text-only variant has no joint states: an empty float32 buffer).
    cached = [s for s in (top.joint_states, top.text_states) if s.numel()]
    tol = 1e-3 if all(s.dtype == torch.float32 for s in cached) else 5e-2
    if err > tol:
        msg = (
            f"the encoder in models/ does not reproduce {source} (relative difference {err:.3g}); "
            "re-run `alignrec-data extract` after `pretrain` so that both come from one encoder"
        )
        raise UsageError(msg)
    logger.info("fine-tuning starts from features equal to %s (max rel. diff %.2g)", source, err)
