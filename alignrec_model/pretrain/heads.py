"""The model under pretraining: the encoder's starting point plus the MLM and MIM heads."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alignrec_model.encoder import MMEnc
from alignrec_model.pretrain.config import PretrainConfig


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

    Args:
        encoder: The encoder at its starting point (see :func:`build_encoder`).
        seed: The run seed. The heads are initialised once, as the encoder's own layers
            (truncated normal, std 0.02), from the global RNG seeded with ``seed + 1`` (as
            :func:`build_encoder` seeds it with ``seed``); None: from the RNG as it is.
    """

    def __init__(self, encoder: MMEnc, seed: int | None = None):
        super().__init__()
        self.encoder = encoder
        cfg = encoder.cfg
        self.target_dim = 1280 if cfg.image_stem == "efficientnet" else 3 * cfg.patch_size**2
        self.mlm_head = MLMHead(encoder)
        self.mim_head = MIMHead(cfg.hidden, self.target_dim)
        if seed is not None:
            torch.manual_seed(seed + 1)
        for head in (self.mlm_head, self.mim_head):
            head.apply(MMEnc._init_weights)

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
