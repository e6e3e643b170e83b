"""Stage 1 pretraining of MMEnc: masked language and masked image modelling (ICA).

Objective (losses on masked positions only; M_t masked text tokens, M_p masked patches of the
whole optimizer step, over all processes):

    L = w_mlm * (1/M_t) sum_{t masked} CE(head_mlm(h_t), token_t)
      + w_mim * (1/M_p) sum_{p masked} || head_mim(h_p) - target_p ||^2 / d_target

- Text: about 15% of the tokens of text-only inputs, about 50% of the text of image-text
  pairs (BERT 80/10/10 replacement). Image: block-wise masking of about 40% of the patches.
- MIM target: the frozen EfficientNet-Lite0 feature of the patch, LayerNorm-ed over its 1280
  channels (hybrid), or the patch's normalised pixels as in MAE (``image_stem="patch"``).
- Inputs: every step is joint (items with an image) + text-only (items without); every
  ``unimodal_every``-th step is image-only MIM + text-only MLM instead, so the experts also
  see single-modality input as in BEiT-3.

Training: AdamW, linear warm-up then cosine decay to ``min_lr``, gradient accumulation,
gradient clipping, bf16 autocast on CUDA; a non-finite loss stops the run
(:class:`NonFiniteLossError`). Distributed with ``torchrun`` (DDP, one process per GPU or
gloo on CPU, any number of nodes): :class:`~torch.utils.data.DistributedSampler` with the run
seed, global batch = batch_size x world_size x grad_accum; rank 0 alone logs and writes.

Resume: ``models/mmenc.resume.pt`` (written atomically every ``checkpoint_every`` steps) holds
the model, heads, optimizer, step and config; data order comes from (seed, epoch), masks from
(seed, epoch, item) and dropout from (seed, step, rank), so a killed run resumes to the same
parameters as an uninterrupted one. The final ``models/mmenc.pt`` holds the encoder config
and weights (what ``extract`` needs) plus the heads.

Run: ``python -m alignrec_model.pretrain --data-dir data --dataset amazon-mini`` or
``torchrun --nproc_per_node 8 -m alignrec_model.pretrain ...`` (same arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from alignrec_data.atomic import atomic_path, write_json, write_text
from alignrec_data.config import load_section, to_dict
from alignrec_data.errors import AlignrecError, DataFormatError, UsageError
from alignrec_data.paths import DatasetPaths
from alignrec_data.schema import ITEMS_FILE
from alignrec_model.encoder import SIZES, MMEnc, MMEncConfig
from alignrec_model.masking import block_mask, mask_text, sample_generator
from alignrec_model.preprocess import (
    load_item_images,
    load_tokenizer,
    normalize_pixels,
    pixel_stats,
    special_ids,
    tokenize,
)
from alignrec_model.runtime import resolve_device, torch_threads

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "alignrec-mmenc/1"
CHECKPOINT_FILE = "mmenc.pt"
RESUME_FILE = "mmenc.resume.pt"
METRICS_FILE = "pretrain.json"
HISTORY_FILE = "pretrain_history.csv"
INITS = ("hybrid", "scratch", "beit3")
# Test hook: SIGKILL this process right after the given optimizer step (kill-and-resume test).
KILL_ENV = "ALIGNREC_PRETRAIN_KILL_AFTER_STEP"
# Config keys that do not change the result (allowed to differ when resuming).
_RESUME_FREE = ("checkpoint_every", "resume", "num_threads", "device", "log_every")
# Mask kinds (salt for the per-sample generators).
_K_JOINT_TEXT, _K_JOINT_IMAGE, _K_TEXT, _K_IMAGE = 1, 2, 3, 4


class NonFiniteLossError(AlignrecError):
    """The loss became NaN or infinite; the run stops (lower lr, or check the inputs)."""


@dataclass(frozen=True)
class PretrainConfig:
    """The ``pretrain:`` section of params.yaml (defaults: the offline hybrid, CPU-sized)."""

    init: str = "hybrid"  # hybrid (offline MiniLM+EfficientNet) | scratch | beit3 (official)
    size: str = "hybrid-minilm"  # tiny | small | base | hybrid-minilm (hybrid needs this)
    beit3_checkpoint: str | None = None  # path of an official BEiT-3 .pth (init: beit3)
    tokenizer: str = "minilm"  # minilm, a local tokenizer folder, or beit3.spm
    image_size: int = 128  # encoder input side in pixels (hybrid: 128 -> 4x4 tokens)
    max_text_len: int = 128  # text tokens per item (spec: 128)
    vl_layers: int = 0  # top layers with a vision-language FFN expert (0: torchscale layout)
    vision_init: str = "language"  # hybrid vision experts: copy of language | random
    train_backbone: bool = False  # hybrid: also train the EfficientNet backbone
    dropout: float = 0.1  # dropout in the encoder
    epochs: int = 2  # passes over the items
    max_steps: int = 0  # stop after this many optimizer steps (0: epochs decide)
    max_items: int = 0  # use only the first N items (0: all)
    batch_size: int = 32  # items per process per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 2.0e-4  # peak learning rate
    min_lr: float = 1.0e-6  # learning rate at the end of the cosine decay
    warmup_steps: int = 5  # linear warm-up steps
    head_warmup_steps: int = 0  # first steps train only the MLM/MIM heads (encoder frozen)
    weight_decay: float = 0.05  # AdamW weight decay (not on biases, norms, embeddings' tokens)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas (BEiT-3)
    grad_clip: float = 3.0  # max gradient norm (0: off)
    text_mask_prob: float = 0.15  # masked share of text-only inputs
    joint_text_mask_prob: float = 0.5  # masked share of the text of image-text pairs
    image_mask_ratio: float = 0.4  # block-masked share of image patches
    unimodal_every: int = 3  # every k-th step is image-only + text-only (0: never)
    mlm_weight: float = 1.0  # weight of the masked language loss
    mim_weight: float = 1.0  # weight of the masked image loss
    probe_items: int = 64  # items of the fixed probe set (losses before/after training)
    checkpoint_every: int = 50  # steps between resume checkpoints (0: only at the end)
    resume: bool = True  # continue from models/mmenc.resume.pt when it exists
    bf16: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    num_threads: int = 0  # torch CPU threads per process (0: torch default)
    seed: int = 0  # seed of the init, data order, masks and dropout
    log_every: int = 10  # steps between log lines

    def validated(self) -> PretrainConfig:
        """Check values (raises UsageError naming the key)."""
        problems = []
        if self.init not in INITS:
            problems.append(f"init {self.init!r} is not one of {', '.join(INITS)}")
        if self.size not in SIZES:
            problems.append(f"size {self.size!r} is not one of {', '.join(SIZES)}")
        if self.init == "hybrid" and self.size != "hybrid-minilm":
            problems.append("init hybrid needs size hybrid-minilm (MiniLM's shape)")
        if self.init != "hybrid" and self.size == "hybrid-minilm":
            problems.append(f"init {self.init} needs size tiny, small or base")
        if self.init == "beit3" and not self.beit3_checkpoint:
            problems.append("init beit3 needs beit3_checkpoint (path of the official .pth)")
        if self.head_warmup_steps < 0:
            problems.append(f"head_warmup_steps must be >= 0, found {self.head_warmup_steps}")
        for key in ("batch_size", "grad_accum", "epochs", "image_size", "max_text_len"):
            if getattr(self, key) < 1:
                problems.append(f"{key} must be >= 1, found {getattr(self, key)}")
        for key in ("text_mask_prob", "joint_text_mask_prob", "image_mask_ratio"):
            if not 0 < getattr(self, key) < 1:
                problems.append(f"{key} must be in (0, 1), found {getattr(self, key)}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device {self.device!r} is not auto, cpu or cuda")
        if problems:
            raise UsageError("params.yaml:pretrain: " + "; ".join(problems))
        return self

    def encoder_config(self) -> MMEncConfig:
        """The encoder config these params describe."""
        over: dict[str, Any] = dict(
            max_text_len=self.max_text_len,
            vl_layers=self.vl_layers,
            dropout=self.dropout,
            tokenizer=self.tokenizer,
            image_size=self.image_size,
        )
        return MMEncConfig.from_size(self.size, **over)


# ---- distributed helpers ----------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    """Process-group facts: rank, world size, device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """True on rank 0 (the only process that logs and writes)."""
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device, "pretrain").type == "cuda"
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, device=dev)


def _all_sum(values: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def ranks_in_sync(model: nn.Module, d: Dist) -> bool | None:
    """Whether every rank holds the same parameters (None in a single process).

    Compares per-tensor float64 sums exactly across ranks (one all-gather).
    """
    if d.world == 1:
        return None
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()])  # (P,)
    gathered = [torch.zeros_like(sums) for _ in range(d.world)]
    dist.all_gather(gathered, sums)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def _barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


# ---- data -------------------------------------------------------------------------------------
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
        feature_maps: (N, 1280, g, g) frozen EfficientNet maps (hybrid), or None.
    """

    item_ids: np.ndarray
    input_ids: torch.Tensor
    lengths: torch.Tensor
    valid: torch.Tensor
    images: torch.Tensor
    has_image: np.ndarray
    feature_maps: torch.Tensor | None = None


def read_items(paths: DatasetPaths, max_items: int = 0) -> pd.DataFrame:
    """``prepared/items.parquet`` (item_id, item_key, text), first ``max_items`` if > 0.

    Raises:
        UsageError: The file is missing (hint: run prepare).
        DataFormatError: Columns are missing.
    """
    path = paths.prepared / ITEMS_FILE
    if not path.is_file():
        raise UsageError(
            f"items table {path} does not exist",
            hint=f"run `alignrec-data prepare {paths.name}` first",
        )
    items = pd.read_parquet(path)
    lacking = {"item_id", "item_key", "text"} - set(items.columns)
    if lacking:
        raise DataFormatError(f"{path} lacks column(s) {sorted(lacking)}")
    items = items.sort_values("item_id").reset_index(drop=True)
    if not np.array_equal(items["item_id"].to_numpy(), np.arange(len(items))):
        raise DataFormatError(f"{path}: item_id must be 0..N-1")
    return items.iloc[:max_items] if max_items > 0 else items


def load_item_data(paths: DatasetPaths, cfg: MMEncConfig, max_items: int = 0) -> ItemData:
    """Tokenise the texts and decode the images of the dataset's items."""
    items = read_items(paths, max_items)
    tok = load_tokenizer(cfg.tokenizer)
    ids, pad = tokenize(tok, items["text"].fillna("").tolist(), cfg.max_text_len)
    _, _, specials = special_ids(tok)
    valid = ~pad & ~torch.isin(ids, torch.tensor(specials))
    if int(ids.max()) >= cfg.vocab_size:
        raise UsageError(f"tokenizer ids reach {int(ids.max())} but vocab_size is {cfg.vocab_size}")
    images, has = load_item_images(paths.images, items["item_id"].tolist(), cfg.image_size)
    return ItemData(
        item_ids=items["item_id"].to_numpy(),
        input_ids=ids,
        lengths=(~pad).sum(1),
        valid=valid,
        images=images,
        has_image=has,
    )


@torch.no_grad()
def compute_feature_maps(model: MMEnc, data: ItemData, batch_size: int = 64) -> torch.Tensor:
    """Frozen EfficientNet-Lite0 maps (N, 1280, g, g) of every item (zeros without image)."""
    mean, std = pixel_stats(model.cfg.image_stem)
    backbone = model.image_stem
    out = None
    for start in range(0, len(data.images), batch_size):
        x = normalize_pixels(data.images[start : start + batch_size], mean, std)
        fm = backbone.feature_map(x.to(next(model.parameters()).device)).float().cpu()
        if out is None:
            out = torch.zeros(len(data.images), *fm.shape[1:])
        out[start : start + len(fm)] = fm
    assert out is not None
    out[torch.from_numpy(~data.has_image)] = 0
    return out


# ---- model with pretraining heads -------------------------------------------------------------
class MLMHead(nn.Module):
    """h -> LN(GELU(W h)) E^T + b, decoder tied to the text embedding E (BERT)."""

    def __init__(self, encoder: MMEnc):
        super().__init__()
        d = encoder.cfg.hidden
        self.transform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d, eps=1e-12))
        self.bias = nn.Parameter(torch.zeros(encoder.cfg.vocab_size))
        self.encoder_embed = [encoder.text_embed]  # not a submodule: tied, saved with encoder

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.transform(h) @ self.encoder_embed[0].weight.t() + self.bias  # (M, V)


class MIMHead(nn.Module):
    """h -> W2 LN(GELU(W1 h)): regresses the target of a masked patch."""

    def __init__(self, hidden: int, target_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, target_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(h)  # (M, target_dim)


class PretrainModel(nn.Module):
    """The encoder plus the MLM and MIM heads; forward returns loss sums and counts.

    ``forward_loss`` computes, for one micro-batch of one input kind:
    ``(ce_sum, n_text, sq_err_sum, n_patches)`` where sq_err is averaged over target dims.
    """

    def __init__(self, encoder: MMEnc):
        super().__init__()
        self.encoder = encoder
        cfg = encoder.cfg
        self.target_dim = 1280 if cfg.image_stem == "efficientnet" else 3 * cfg.patch_size**2
        self.mlm_head = MLMHead(encoder)
        self.mim_head = MIMHead(cfg.hidden, self.target_dim)
        for module in (self.mlm_head, self.mim_head):
            module.apply(MMEnc._init_weights)

    def image_target(self, pixels: torch.Tensor | None, fmap: torch.Tensor | None) -> torch.Tensor:
        """(B, N, target_dim): LayerNorm-ed teacher features, or per-patch normalised pixels."""
        if fmap is not None:
            t = fmap.flatten(2).transpose(1, 2)  # (B, N, 1280)
        else:
            p = self.encoder.cfg.patch_size
            b, c, h, w = pixels.shape
            t = pixels.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
            t = t.reshape(b, (h // p) * (w // p), p * p * c)  # (B, N, p*p*3)
        return F.layer_norm(t.float(), t.shape[-1:], eps=1e-6)

    def forward(self, parts: list[dict[str, Any]]) -> torch.Tensor:
        """Loss sums of a micro-batch, one row per input kind (see :meth:`forward_loss`).

        One forward per micro-batch (whatever the number of input kinds) keeps DDP's
        one-forward-one-backward contract.

        Returns:
            (P, 4) float32: ``ce_sum, n_masked_tokens, sq_err_sum, n_masked_patches`` per part.
        """
        return torch.stack([torch.stack(self.forward_loss(**part)).float() for part in parts])

    def forward_loss(
        self,
        input_ids: torch.Tensor | None = None,
        text_padding_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixels: torch.Tensor | None = None,
        feature_map: torch.Tensor | None = None,
        target_map: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Masked losses of one input kind (image-only, text-only or joint).

        Args:
            input_ids: (B, T) masked token ids, or None.
            text_padding_mask: (B, T) True at padding.
            labels: (B, T) original ids at masked positions, -100 elsewhere.
            pixels: (B, 3, S, S) normalised pixels (patch stem or trainable backbone).
            feature_map: (B, 1280, g, g) cached frozen map fed to the encoder (hybrid).
            target_map: (B, 1280, g, g) frozen teacher map for the MIM target (hybrid).
            image_mask: (B, N) True = masked patch.

        Returns:
            ``(ce_sum, n_masked_tokens, sq_err_sum, n_masked_patches)`` as float tensors.
        """
        out = self.encoder(
            pixel_values=pixels if feature_map is None else None,
            input_ids=input_ids,
            text_padding_mask=text_padding_mask,
            image_mask=image_mask,
            feature_map=feature_map,
        )
        h = out.hidden
        zero = h.new_zeros((), dtype=torch.float32)
        ce, nt, se, npch = zero, zero, zero, zero
        if input_ids is not None and labels is not None:
            sel = labels >= 0  # (B, T)
            h_text = h[:, out.n_image :][sel]  # (M_t, D)
            logits = self.mlm_head(h_text).float()  # (M_t, V)
            ce = F.cross_entropy(logits, labels[sel], reduction="sum")
            nt = sel.sum().float()
        if image_mask is not None and out.n_image:
            h_img = h[:, 1 : out.n_image][image_mask]  # (M_p, D), CLS excluded
            target = self.image_target(pixels, target_map)[image_mask]  # (M_p, target_dim)
            pred = self.mim_head(h_img).float()
            se = ((pred - target) ** 2).mean(-1).sum()
            npch = image_mask.sum().float()
        return ce, nt, se, npch


def build_encoder(cfg: PretrainConfig) -> MMEnc:
    """The encoder at its starting point: hybrid (offline), scratch, or an official BEiT-3."""
    enc_cfg = cfg.encoder_config()
    torch.manual_seed(cfg.seed)
    if cfg.init == "hybrid":
        from alignrec_model.hybrid import build_hybrid

        model = build_hybrid(enc_cfg, vision_init=cfg.vision_init)
    elif cfg.init == "beit3":
        from alignrec_model.beit3_compat import load_beit3_checkpoint

        model = load_beit3_checkpoint(cfg.beit3_checkpoint, enc_cfg)
    else:
        model = MMEnc(enc_cfg)
    if enc_cfg.image_stem == "efficientnet":
        model.image_stem.backbone.requires_grad_(cfg.train_backbone)
    return model


# ---- batches ----------------------------------------------------------------------------------
def make_parts(
    data: ItemData,
    idx: list[int],
    epoch: int,
    unimodal: bool,
    cfg: PretrainConfig,
    enc_cfg: MMEncConfig,
    mask_id: int,
) -> list[dict[str, Any]]:
    """The masked inputs of one micro-batch (on CPU), one dict per input kind.

    Joint step: items with an image -> joint input (text ``joint_text_mask_prob``, image
    ``image_mask_ratio``); items without -> text-only (``text_mask_prob``). Unimodal step:
    image-only for items with an image, text-only for every item.
    """
    idx_t = torch.tensor(idx, dtype=torch.long)
    has = torch.from_numpy(data.has_image[idx])
    n_mask = max(1, int(round(cfg.image_mask_ratio * enc_cfg.num_patches)))
    mean, std = pixel_stats(enc_cfg.image_stem)

    def text(rows: torch.Tensor, prob: float, kind: int) -> tuple[torch.Tensor, ...]:
        ids, labels = [], []
        for r in rows.tolist():
            g = sample_generator(cfg.seed, epoch, int(data.item_ids[r]), kind)
            i, lab = mask_text(
                data.input_ids[r], data.valid[r], prob, mask_id, enc_cfg.vocab_size, g
            )
            ids.append(i)
            labels.append(lab)
        t = int(data.lengths[rows].max())  # trim to the longest text of these rows
        pad = torch.arange(t)[None, :] >= data.lengths[rows][:, None]  # (B, t)
        return torch.stack(ids)[:, :t], pad, torch.stack(labels)[:, :t]

    def image(rows: torch.Tensor, kind: int) -> dict[str, Any]:
        masks = [
            block_mask(
                enc_cfg.grid, n_mask, sample_generator(cfg.seed, epoch, int(data.item_ids[r]), kind)
            )
            for r in rows.tolist()
        ]
        part: dict[str, Any] = {"image_mask": torch.stack(masks)}
        fmaps = data.feature_maps
        if fmaps is not None:
            part["target_map"] = fmaps[rows]
            if not cfg.train_backbone:
                part["feature_map"] = fmaps[rows]
        if fmaps is None or cfg.train_backbone:
            part["pixels"] = normalize_pixels(data.images[rows], mean, std)
        return part

    parts = []
    with_img, without = idx_t[has], idx_t[~has]
    if unimodal:
        if len(with_img):
            parts.append(image(with_img, _K_IMAGE))
        ids, pad, lab = text(idx_t, cfg.text_mask_prob, _K_TEXT)
        parts.append({"input_ids": ids, "text_padding_mask": pad, "labels": lab})
        return parts
    if len(with_img):
        ids, pad, lab = text(with_img, cfg.joint_text_mask_prob, _K_JOINT_TEXT)
        part = image(with_img, _K_JOINT_IMAGE)
        part.update(input_ids=ids, text_padding_mask=pad, labels=lab)
        parts.append(part)
    if len(without):
        ids, pad, lab = text(without, cfg.text_mask_prob, _K_TEXT)
        parts.append({"input_ids": ids, "text_padding_mask": pad, "labels": lab})
    return parts


def _counts(parts: list[dict[str, Any]]) -> tuple[float, float]:
    nt = sum(float((p["labels"] >= 0).sum()) for p in parts if "labels" in p)
    npch = sum(float(p["image_mask"].sum()) for p in parts if "image_mask" in p)
    return nt, npch


def _to(part: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) for k, v in part.items()}


# ---- schedule, optimizer, checkpoints ---------------------------------------------------------
def lr_at(step: int, total: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms, CLS/mask tokens and position tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "pos_embed" in name or name.endswith(("cls_token", "mask_token")):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = bool(decay) and all(p.is_cuda for p in decay + no_decay)  # one kernel on CUDA
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=1e-8, fused=fused or None)


def _save(path: Path, obj: dict[str, Any]) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load an MMEnc checkpoint written by :func:`pretrain` (``weights_only=True``).

    Raises:
        UsageError: The file is missing.
        DataFormatError: Not an alignrec MMEnc checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(
            f"checkpoint {path} does not exist", hint="run `alignrec-data pretrain` first"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise DataFormatError(f"cannot load {path} as a weights-only checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise DataFormatError(f"{path} is not an {CHECKPOINT_FORMAT} checkpoint (found {found!r})")
    return ckpt


def encoder_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> MMEnc:
    """Rebuild the encoder from a checkpoint (architecture from the checkpoint itself).

    Raises:
        DataFormatError: Unknown config keys or weights that do not fit the config.
    """
    names = {f.name for f in dataclasses.fields(MMEncConfig)}
    raw = dict(ckpt["encoder_config"])
    unknown = sorted(set(raw) - names)
    if unknown:
        raise DataFormatError(f"{source}: unknown encoder config key(s) {unknown}")
    cfg = MMEncConfig(**raw).validated()
    model = MMEnc(cfg)
    try:
        model.load_state_dict(ckpt["encoder"], strict=True)
    except RuntimeError as err:
        raise DataFormatError(f"{source}: weights do not fit its encoder config: {err}") from err
    return model


def _resume_key(cfg: PretrainConfig, global_batch: int) -> dict[str, Any]:
    key = {k: v for k, v in to_dict(cfg).items() if k not in _RESUME_FREE}
    key["global_batch"] = global_batch
    return key


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], source: str) -> None:
    """Refuse a resume checkpoint written with other params, naming every differing key."""
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diff:
        detail = ", ".join(
            f"{k} (checkpoint {saved.get(k)!r}, params {current.get(k)!r})" for k in diff
        )
        raise UsageError(
            f"{source} was written with other pretrain params: {detail}",
            hint=f"delete {source} to start afresh, or set pretrain.resume: false",
        )


# ---- the training loop ------------------------------------------------------------------------
@torch.no_grad()
def probe_losses(
    model: PretrainModel, data: ItemData, cfg: PretrainConfig, mask_id: int, device: torch.device
) -> dict[str, float]:
    """Masked losses on a fixed probe set with fixed masks (joint + text-only inputs)."""
    was_training = model.training
    model.eval()
    n = min(cfg.probe_items, len(data.item_ids)) if cfg.probe_items > 0 else 0
    sums = torch.zeros(4)
    for start in range(0, n, cfg.batch_size):
        idx = list(range(start, min(n, start + cfg.batch_size)))
        parts = make_parts(data, idx, -1, False, cfg, model.encoder.cfg, mask_id)
        sums += model([_to(p, device) for p in parts]).sum(0).cpu()
    model.train(was_training)
    return {
        "mlm_loss": float(sums[0] / sums[1]) if sums[1] else float("nan"),
        "mim_loss": float(sums[2] / sums[3]) if sums[3] else float("nan"),
    }


def _plan(n_per_rank: int, cfg: PretrainConfig, world: int) -> tuple[int, int]:
    steps_per_epoch = (n_per_rank // cfg.batch_size) // cfg.grad_accum
    if steps_per_epoch < 1:
        raise UsageError(
            f"{n_per_rank} items per process cannot fill one step of batch_size {cfg.batch_size} x "
            f"grad_accum {cfg.grad_accum} (x {world} processes); lower pretrain.batch_size"
        )
    total = steps_per_epoch * cfg.epochs
    return steps_per_epoch, min(total, cfg.max_steps) if cfg.max_steps > 0 else total


def pretrain(data_dir: str | Path, dataset: str, cfg: PretrainConfig) -> dict[str, Any]:
    """Pretrain MMEnc on one dataset; see the module docstring.

    Works in one process or under ``torchrun`` (every process calls this).

    Args:
        data_dir: The data directory.
        dataset: Dataset id (folder under ``data_dir``).
        cfg: The ``pretrain`` params.

    Returns:
        The metrics written to ``metrics/pretrain.json``.

    Raises:
        UsageError: Missing inputs, bad params, or a resume checkpoint from other params.
        NonFiniteLossError: The loss became NaN/inf.
    """
    cfg = cfg.validated()
    paths = DatasetPaths.of(data_dir, dataset)
    d = setup_distributed(cfg.device)
    with torch_threads(cfg.num_threads):
        return _pretrain(paths, cfg, d)


def _pretrain(paths: DatasetPaths, cfg: PretrainConfig, d: Dist) -> dict[str, Any]:
    enc_cfg = cfg.encoder_config()
    tok = load_tokenizer(enc_cfg.tokenizer)
    _, mask_id, _ = special_ids(tok)

    data = load_item_data(paths, enc_cfg, cfg.max_items)
    encoder = build_encoder(cfg)
    model = PretrainModel(encoder)
    torch.manual_seed(cfg.seed + 1)
    model.mlm_head.apply(MMEnc._init_weights)
    model.mim_head.apply(MMEnc._init_weights)
    if enc_cfg.image_stem == "efficientnet":
        data.feature_maps = compute_feature_maps(encoder, data)
    model.to(d.device)

    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(len(data.item_ids)), num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed
    )
    steps_per_epoch, total = _plan(len(sampler), cfg, d.world)
    global_batch = cfg.batch_size * d.world * cfg.grad_accum
    optimizer = make_optimizer(model, cfg)
    encoder_params = list(model.encoder.parameters())  # frozen during head_warmup_steps
    history: list[dict[str, Any]] = []
    step = 0
    resume_path = paths.models / RESUME_FILE
    resume_key = _resume_key(cfg, global_batch)
    probe_before = None
    if cfg.resume and resume_path.is_file():
        ckpt = load_checkpoint(resume_path)
        check_resume_config(ckpt["resume_key"], resume_key, str(resume_path))
        model.encoder.load_state_dict(ckpt["encoder"])
        model.mlm_head.load_state_dict(ckpt["mlm_head"])
        model.mim_head.load_state_dict(ckpt["mim_head"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, history, probe_before = int(ckpt["step"]), list(ckpt["history"]), ckpt["probe_before"]
        if d.main:
            logger.info("resuming from %s at step %d of %d", resume_path, step, total)
    if probe_before is None:
        probe_before = probe_losses(model, data, cfg, mask_id, d.device)

    ddp = (
        nn.parallel.DistributedDataParallel(
            model,
            device_ids=[d.local_rank] if d.device.type == "cuda" else None,
            find_unused_parameters=True,  # text-only steps leave the vision experts unused
        )
        if d.world > 1
        else model
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if d.device.type == "cuda" and cfg.bf16
        else contextlib.nullcontext()
    )
    kill_after = int(os.environ.get(KILL_ENV, "0") or 0)
    model.train()
    bar = tqdm(total=total, initial=step, desc="pretrain", unit="step", disable=not d.main)
    t0, samples_done = time.perf_counter(), 0
    steps_run = 0
    while step < total:
        epoch = step // steps_per_epoch
        sampler.set_epoch(epoch)
        order = list(sampler)
        within = step % steps_per_epoch
        micro = cfg.batch_size
        # Each optimizer step: grad_accum micro-batches of this rank's share.
        first = within * cfg.grad_accum * micro
        batches = [
            order[first + a * micro : first + (a + 1) * micro] for a in range(cfg.grad_accum)
        ]
        unimodal = cfg.unimodal_every > 0 and (step + 1) % cfg.unimodal_every == 0
        torch.manual_seed(cfg.seed * 1_000_003 + step * 7919 + d.rank)  # dropout RNG
        parts_per_micro = [
            make_parts(data, b, epoch, unimodal, cfg, enc_cfg, mask_id) for b in batches
        ]
        counts = [_counts(p) for p in parts_per_micro]
        totals = _all_sum(
            torch.tensor(
                [sum(c[0] for c in counts), sum(c[1] for c in counts)], dtype=torch.float64
            ),
            d,
        )
        n_text, n_patch = max(float(totals[0]), 1.0), max(float(totals[1]), 1.0)
        lr = lr_at(step, total, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sums = torch.zeros(4, dtype=torch.float64)
        for a, parts in enumerate(parts_per_micro):
            sync = a == len(parts_per_micro) - 1
            ctx = ddp.no_sync() if (d.world > 1 and not sync) else contextlib.nullcontext()
            with ctx:
                with autocast:
                    s = ddp([_to(p, d.device) for p in parts]).sum(0)  # (4,)
                loss = cfg.mlm_weight * s[0] / n_text + cfg.mim_weight * s[2] / n_patch
                (loss * d.world).backward()  # DDP averages gradients over the world
            sums += s.detach().double().cpu()
        sums = _all_sum(sums.to(torch.float64), d)
        mlm, mim = float(sums[0]) / n_text, float(sums[2]) / n_patch
        finite = math.isfinite(mlm) and math.isfinite(mim)
        if not finite:
            raise NonFiniteLossError(
                f"non-finite loss at step {step} (mlm {mlm}, mim {mim}); the run stops",
                hint="lower pretrain.lr or check the inputs",
            )
        if step < cfg.head_warmup_steps:
            # Heads first (LP-FT): the randomly initialised heads' first gradients would
            # distort the pretrained encoder, so its weights wait (no update, no decay).
            for p in encoder_params:
                p.grad = None
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        steps_run += 1
        samples_done += global_batch
        record = {
            "step": step,
            "epoch": epoch,
            "lr": lr,
            "kind": "unimodal" if unimodal else "joint",
            "mlm_loss": mlm if sums[1] else None,
            "mim_loss": mim if sums[3] else None,
            "loss": cfg.mlm_weight * (mlm if sums[1] else 0.0)
            + cfg.mim_weight * (mim if sums[3] else 0.0),
        }
        history.append(record)
        bar.update(1)
        bar.set_postfix(mlm=f"{mlm:.3f}", mim=f"{mim:.3f}")
        if d.main and cfg.log_every > 0 and step % cfg.log_every == 0:
            logger.info("step %d/%d lr %.2e mlm %.4f mim %.4f", step, total, lr, mlm, mim)
        if cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0 and step < total:
            if d.main:
                _save(
                    resume_path,
                    _state(model, optimizer, step, history, probe_before, resume_key, cfg, enc_cfg),
                )
            _barrier(d)
        if kill_after and step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: a hard crash, no cleanup
    bar.close()
    seconds = time.perf_counter() - t0
    probe_after = probe_losses(model, data, cfg, mask_id, d.device)
    in_sync = ranks_in_sync(model, d)
    if in_sync is False:
        logger.error("parameters differ between ranks after training")
    metrics = _metrics(
        history,
        probe_before,
        probe_after,
        steps_run,
        samples_done,
        seconds,
        d,
        cfg,
        global_batch,
        model,
    )
    metrics["ranks_in_sync"] = in_sync
    if d.main:
        state = _state(model, None, step, history, probe_before, resume_key, cfg, enc_cfg)
        state["metrics"] = metrics
        _save(paths.models / CHECKPOINT_FILE, state)
        write_json(paths.metrics / METRICS_FILE, metrics)
        write_history(paths.metrics / HISTORY_FILE, history)
        resume_path.unlink(missing_ok=True)
        logger.info("wrote %s and %s", paths.models / CHECKPOINT_FILE, paths.metrics / METRICS_FILE)
    _barrier(d)
    return metrics


def _state(
    model: PretrainModel,
    optimizer: torch.optim.Optimizer | None,
    step: int,
    history: list[dict[str, Any]],
    probe_before: dict[str, float],
    resume_key: dict[str, Any],
    cfg: PretrainConfig,
    enc_cfg: MMEncConfig,
) -> dict[str, Any]:
    state = {
        "format": CHECKPOINT_FORMAT,
        "encoder_config": enc_cfg.to_dict(),
        "pretrain_config": to_dict(cfg),
        "resume_key": resume_key,
        "encoder": {k: v.detach().cpu() for k, v in model.encoder.state_dict().items()},
        "mlm_head": {k: v.detach().cpu() for k, v in model.mlm_head.state_dict().items()},
        "mim_head": {k: v.detach().cpu() for k, v in model.mim_head.state_dict().items()},
        "step": step,
        "history": history,
        "probe_before": probe_before,
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    return state


def _mean_last(history: list[dict[str, Any]], key: str, n: int = 10) -> float | None:
    vals = [h[key] for h in history if h.get(key) is not None and h["kind"] == "joint"][-n:]
    return float(np.mean(vals)) if vals else None


def _metrics(
    history, before, after, steps_run, samples, seconds, d, cfg, global_batch, model
) -> dict[str, Any]:
    def clean(x: dict[str, float]) -> dict[str, float | None]:
        return {k: (v if math.isfinite(v) else None) for k, v in x.items()}

    return {
        "probe_before": clean(before),
        "probe_after": clean(after),
        "train": {
            "steps": len(history),
            "first_mlm_loss": history[0]["mlm_loss"] if history else None,
            "first_mim_loss": history[0]["mim_loss"] if history else None,
            "last_mlm_loss": _mean_last(history, "mlm_loss"),
            "last_mim_loss": _mean_last(history, "mim_loss"),
            "seconds": round(seconds, 3),
            "samples_per_s": round(samples / seconds, 3) if seconds > 0 and steps_run else None,
        },
        "world_size": d.world,
        "global_batch": global_batch,
        "device": d.device.type,
        "parameters": sum(p.numel() for p in model.encoder.parameters()),
        "init": cfg.init,
        "size": cfg.size,
    }


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Per-step losses as CSV (``step,epoch,kind,lr,loss,mlm_loss,mim_loss``) for DVC plots."""
    buf = io.StringIO()
    cols = ["step", "epoch", "kind", "lr", "loss", "mlm_loss", "mim_loss"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for h in history:
        w.writerow({c: ("" if h.get(c) is None else h[c]) for c in cols})
    write_text(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    """``python -m alignrec_model.pretrain`` (also under ``torchrun``)."""
    parser = argparse.ArgumentParser(
        prog="python -m alignrec_model.pretrain", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", type=Path, default=None, help="params.yaml (section pretrain)")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = load_section(args.params, "pretrain", PretrainConfig)
        metrics = pretrain(args.data_dir, args.dataset, cfg)
    except AlignrecError as err:
        logger.error("%s%s", err, f"\nHint: {err.hint}" if err.hint else "")
        return err.exit_code
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        logger.info("pretrain done: %s", metrics["probe_after"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
