"""AdamW with BEiT-3's weight-decay groups, and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from alignrec_model.pretrain.config import PretrainConfig


def lr_at(step: int, total: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr``.

    lr(s) = lr * (s + 1) / W                                   for s < W
    lr(s) = min_lr + (lr - min_lr) * (1 + cos(pi * (s - W) / (S - W))) / 2    otherwise
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms, CLS/mask tokens and position tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            exempt = p.ndim < 2 or "pos_embed" in name or name.endswith(("cls_token", "mask_token"))
            (no_decay if exempt else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = bool(decay) and all(p.is_cuda for p in decay + no_decay)  # one kernel on CUDA
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=1e-8, fused=fused or None)
