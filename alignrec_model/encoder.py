"""MMEnc: a BEiT-3 style multiway transformer over [image CLS + patches | text tokens].

Every layer runs self-attention over the whole sequence and routes each token through the
experts of its modality (the torchscale ``BEiT3`` layout: the q/k/v/out projections, the
LayerNorms and the FFN are modality specific, the attention itself is joint):

    x = [x_v; x_t]                                   # (B, 1 + N_p + T, D), split at s = 1 + N_p
    pre-LN (BEiT-3):  h = x + Out_m(Attn(QKV_m(LN1_m(x))))
                      y = h + FFN_m(LN2_m(h))
    post-LN (BERT):   h = LN1_m(x + Out_m(Attn(QKV_m(x))))
                      y = LN2_m(h + FFN_m(h))
    Attn(q, k, v) = softmax(q k^T / sqrt(d_h) + pad_mask) v   over all B x (s + T) tokens

where ``_m`` means "the vision expert for positions < s, the language expert for the rest".
With ``subln`` (Magneto, as in BEiT-3) a LayerNorm also sits inside the attention (before the
output projection) and inside the FFN (after the activation). The top ``vl_layers`` layers
optionally have a third, vision-language FFN expert (the BEiT-3 paper's VL-FFN) used by every
token of a joint input. The model runs image-only (``s = L``), text-only (``s = 0``) or joint.

The image stem is either a convolutional patch embedding on pixels (``image_stem="patch"``,
BEiT-3 faithful) or the feature map of EfficientNet-Lite0 projected to the hidden size
(``image_stem="efficientnet"``, the offline hybrid, :mod:`alignrec_model.hybrid`). The config
and its size presets are in :mod:`alignrec_model.encoder_config` (:class:`MMEncConfig` is
re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from alignrec_model.encoder_config import EFFICIENTNET_CHANNELS, MMEncConfig


@dataclass
class EncoderOutput:
    """Output of :class:`MMEnc`.

    Attributes:
        hidden: (B, L, D) last hidden states, image tokens first.
        n_image: Image tokens at the start of the sequence (CLS + patches; 0 for text-only).
        padding_mask: (B, L) bool, True at padded text positions.
    """

    hidden: torch.Tensor
    n_image: int
    padding_mask: torch.Tensor

    @property
    def cls(self) -> torch.Tensor:
        """(B, D) the first output: the image CLS (image-only and joint) or first text token."""
        return self.hidden[:, 0]


class Multiway(nn.Module):
    """Two (or three) copies of a module; tokens go to the copy of their modality.

    ``forward(x, n_image)`` applies ``vision`` to ``x[:, :n_image]`` and ``language`` to the
    rest; a ``vl`` expert (top layers' FFN) takes every token of a joint input.
    """

    def __init__(self, vision: nn.Module, language: nn.Module, vl: nn.Module | None = None):
        super().__init__()
        self.vision = vision
        self.language = language
        self.vl = vl

    def forward(self, x: torch.Tensor, n_image: int) -> torch.Tensor:
        """Route tokens to experts; ``x`` is (B, L, ...) with image tokens first."""
        length = x.shape[1]
        if self.vl is not None and 0 < n_image < length:
            return self.vl(x)
        if n_image >= length:
            return self.vision(x)
        if n_image == 0:
            return self.language(x)
        return torch.cat([self.vision(x[:, :n_image]), self.language(x[:, n_image:])], dim=1)


def _layernorm(cfg: MMEncConfig, dim: int | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(dim or cfg.hidden, eps=cfg.layernorm_eps)


def _norms(cfg: MMEncConfig, vl: bool = False) -> Multiway:
    """A LayerNorm per expert (a third for the VL expert with ``vl``)."""
    return Multiway(_layernorm(cfg), _layernorm(cfg), _layernorm(cfg) if vl else None)


class FeedForward(nn.Module):
    """FFN(x) = W2 [LN](GELU(W1 x)) (the LayerNorm only with ``subln``)."""

    def __init__(self, cfg: MMEncConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden, cfg.ffn)
        self.ffn_layernorm = _layernorm(cfg, cfg.ffn) if cfg.subln else None
        self.fc2 = nn.Linear(cfg.ffn, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = F.gelu(self.fc1(x))  # (B, L, F)
        if self.ffn_layernorm is not None:
            x = self.ffn_layernorm(x)
        return self.dropout(self.fc2(x))  # (B, L, D)


class MultiwayAttention(nn.Module):
    """Joint multi-head self-attention with modality-specific q/k/v/out projections.

    ``qkv`` is one fused (D -> 3D) projection per modality (torchscale's q_proj, k_proj and
    v_proj stacked in that order).
    """

    def __init__(self, cfg: MMEncConfig):
        super().__init__()
        self.heads = cfg.heads
        d = cfg.hidden
        self.qkv = Multiway(nn.Linear(d, 3 * d), nn.Linear(d, 3 * d))
        self.inner_attn_ln = _norms(cfg) if cfg.subln else None
        self.out_proj = Multiway(nn.Linear(d, d), nn.Linear(d, d))
        self.attn_dropout = cfg.dropout

    def forward(
        self, x: torch.Tensor, n_image: int, attn_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Attention over the whole sequence.

        Args:
            x: (B, L, D) normalised input.
            n_image: Image tokens at the start.
            attn_mask: (B, 1, 1, L) bool, True where a key may be attended; None = all.

        Returns:
            (B, L, D).
        """
        b, length, d = x.shape
        qkv = self.qkv(x, n_image)  # (B, L, 3D)
        qkv = qkv.view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, H, L, Dh)
        p = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(b, length, d)  # (B, L, D)
        if self.inner_attn_ln is not None:
            y = self.inner_attn_ln(y, n_image)
        return self.out_proj(y, n_image)


class MultiwayLayer(nn.Module):
    """One multiway transformer layer (pre-LN or post-LN, see the module docstring)."""

    def __init__(self, cfg: MMEncConfig, vl: bool = False):
        super().__init__()
        self.normalize_before = cfg.normalize_before
        self.attn_norm = _norms(cfg)
        self.attn = MultiwayAttention(cfg)
        self.ffn_norm = _norms(cfg, vl)
        self.ffn = Multiway(FeedForward(cfg), FeedForward(cfg), FeedForward(cfg) if vl else None)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, n_image: int, attn_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, L, D) -> (B, L, D)."""
        if self.normalize_before:
            x = x + self.dropout(self.attn(self.attn_norm(x, n_image), n_image, attn_mask))
            return x + self.ffn(self.ffn_norm(x, n_image), n_image)
        x = self.attn_norm(x + self.dropout(self.attn(x, n_image, attn_mask)), n_image)
        return self.ffn_norm(x + self.ffn(x, n_image), n_image)


class PatchStem(nn.Module):
    """Pixels (B, 3, H, W) -> patch tokens (B, N, D) by a stride-p convolution (ViT/BEiT)."""

    def __init__(self, cfg: MMEncConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.hidden, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.proj(pixel_values).flatten(2).transpose(1, 2)  # (B, N, D)


class FeatureStem(nn.Module):
    """Pixels -> EfficientNet-Lite0 map (B, 1280, g, g) -> tokens (B, g*g, D) by a linear map.

    The backbone is kept in eval mode (frozen BatchNorm statistics) even while training; its
    weights are trained only when ``requires_grad`` is set on them.
    """

    def __init__(self, cfg: MMEncConfig):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.backbone = EfficientNet.from_name("efficientnet-lite0", image_size=cfg.image_size)
        del self.backbone._fc  # classifier head unused
        self.proj = nn.Linear(EFFICIENTNET_CHANNELS, cfg.hidden)

    def train(self, mode: bool = True) -> FeatureStem:  # noqa: D102
        super().train(mode)
        self.backbone.eval()
        return self

    def feature_map(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, 1280, g, g)."""
        return self.backbone.extract_features(pixel_values)

    def forward(
        self, pixel_values: torch.Tensor | None = None, feature_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Tokens from pixels, or from a precomputed ``feature_map`` (B, 1280, g, g)."""
        if feature_map is None:
            feature_map = self.feature_map(pixel_values)
        return self.proj(feature_map.flatten(2).transpose(1, 2))  # (B, g*g, D)


class MMEnc(nn.Module):
    """The multiway encoder. See the module docstring for the equations.

    Index convention: the sequence is ``[image CLS, patch_1..patch_N, text_1..text_T]``; the
    image part is absent for text-only input and the text part for image-only input.
    """

    def __init__(self, cfg: MMEncConfig):
        super().__init__()
        self.cfg = cfg.validated()
        d = cfg.hidden
        self.text_embed = nn.Embedding(cfg.vocab_size, d)
        self.image_stem = FeatureStem(cfg) if cfg.image_stem == "efficientnet" else PatchStem(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = Multiway(
            nn.Embedding(cfg.vision_positions, d), nn.Embedding(cfg.text_positions, d)
        )
        self.embed_norm = _norms(cfg) if cfg.layernorm_embedding else None
        self.embed_dropout = nn.Dropout(cfg.dropout)
        first_vl = cfg.layers - cfg.vl_layers
        self.layers = nn.ModuleList(MultiwayLayer(cfg, vl=i >= first_vl) for i in range(cfg.layers))
        self.final_norm = _norms(cfg) if cfg.normalize_before and cfg.normalize_output else None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # ---- embeddings -------------------------------------------------------------------------
    def embed_image(
        self,
        pixel_values: torch.Tensor | None,
        image_mask: torch.Tensor | None = None,
        feature_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Image tokens before positions: (B, 1 + N, D), masked patches = the mask token.

        Args:
            pixel_values: (B, 3, H, W) normalised pixels (or None with ``feature_map``).
            image_mask: (B, N) bool, True = masked patch (for masked image modelling).
            feature_map: (B, 1280, g, g) precomputed backbone map (efficientnet stem only).
        """
        if feature_map is not None:
            x = self.image_stem(feature_map=feature_map)  # (B, N, D)
        else:
            x = self.image_stem(pixel_values)  # (B, N, D)
        if image_mask is not None:
            w = image_mask.unsqueeze(-1).to(x.dtype)  # (B, N, 1)
            x = x * (1 - w) + self.mask_token.to(x.dtype) * w
        cls = self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype)
        return torch.cat([cls, x], dim=1)  # (B, 1 + N, D)

    # ---- forward ----------------------------------------------------------------------------
    def embed(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        text_padding_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        feature_map: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int, torch.Tensor]:
        """The input of the first layer: image-only, text-only or joint input embedded.

        Args:
            pixel_values: (B, 3, H, W) normalised pixels, or None.
            input_ids: (B, T) token ids (right-padded), or None.
            text_padding_mask: (B, T) bool, True at padding; None = no padding.
            image_mask: (B, N) bool, True = replace the patch by the mask token.
            feature_map: (B, 1280, g, g) precomputed EfficientNet map instead of pixels.

        Returns:
            ``(x, n_image, padding_mask)``: (B, L, D) embedded tokens (positions, embedding norm
            and dropout applied, padded tokens zeroed), the number of image tokens at the start
            and the (B, L) bool padding mask.
        """
        has_image = pixel_values is not None or feature_map is not None
        if not has_image and input_ids is None:
            msg = "MMEnc.forward needs pixel_values/feature_map, input_ids or both"
            raise ValueError(msg)
        parts = []
        if has_image:
            parts.append(self.embed_image(pixel_values, image_mask, feature_map))
        if input_ids is not None:
            if input_ids.shape[1] + self.cfg.position_offset > self.cfg.text_positions:
                msg = (
                    f"text of {input_ids.shape[1]} tokens exceeds the "
                    f"{self.cfg.text_positions - self.cfg.position_offset} text positions"
                )
                raise ValueError(msg)
            parts.append(self.text_embed(input_ids))  # (B, T, D)
        x = torch.cat(parts, dim=1)  # (B, L, D)
        b, length, _ = x.shape
        n_image = parts[0].shape[1] if has_image else 0
        pad = torch.zeros(b, length, dtype=torch.bool, device=x.device)
        if text_padding_mask is not None and length > n_image:
            pad[:, n_image:] = text_padding_mask.to(torch.bool)
        off = self.cfg.position_offset  # per-modality position ids, (L,)
        pos = torch.cat(
            [torch.arange(off, off + n, device=x.device) for n in (n_image, length - n_image) if n]
        )
        x = x + self.pos_embed(pos.unsqueeze(0), n_image)  # (1, L, D) broadcast over B
        if self.embed_norm is not None:
            x = self.embed_norm(x, n_image)
        x = self.embed_dropout(x)
        x = x * (~pad).unsqueeze(-1).to(x.dtype)  # padded tokens start at zero (torchscale)
        return x, n_image, pad

    def run_layers(
        self,
        x: torch.Tensor,
        n_image: int,
        padding_mask: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
    ) -> torch.Tensor:
        """Layers ``start .. stop-1`` over (B, L, D) states, then the final norm at the top.

        ``run_layers(x, n, pad, 0, k)`` then ``run_layers(y, n, pad, k)`` equals one full pass
        (joint fine-tuning caches the first and trains the second).
        """
        stop = len(self.layers) if stop is None else stop
        final_norm = self.final_norm if stop == len(self.layers) else None
        return run_stack(self.layers[start:stop], final_norm, x, n_image, padding_mask)

    def forward(self, *args: torch.Tensor | None, **kwargs: torch.Tensor | None) -> EncoderOutput:
        """Encode image-only, text-only or joint input (the arguments of :meth:`embed`).

        Returns:
            :class:`EncoderOutput` with hidden states (B, L, D).
        """
        x, n_image, pad = self.embed(*args, **kwargs)
        x = self.run_layers(x, n_image, pad)
        return EncoderOutput(hidden=x, n_image=n_image, padding_mask=pad)


def run_stack(
    layers: Sequence[nn.Module],
    final_norm: nn.Module | None,
    x: torch.Tensor,
    n_image: int,
    padding_mask: torch.Tensor,
) -> torch.Tensor:
    """(B, L, D) states through ``layers`` and then ``final_norm`` (if any), padding masked."""
    attn_mask = (~padding_mask)[:, None, None, :] if bool(padding_mask.any()) else None
    for layer in layers:
        x = layer(x, n_image, attn_mask)  # attn_mask: (B, 1, 1, L) or None
    if final_norm is not None:
        x = final_norm(x, n_image)
    return x
