"""The shape and layout of MMEnc: the size presets and :class:`MMEncConfig`.

A config is stored in every checkpoint; :class:`alignrec_model.encoder.MMEnc` is built from one
(and :mod:`alignrec_model.encoder` re-exports :class:`MMEncConfig`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from alignrec_data.errors import UsageError

# Sizes: (hidden, layers, heads, ffn) plus the settings that differ between them.
_SIZES: dict[str, dict[str, Any]] = {
    # For tests: 2 x 32, a 32 px image in 8 px patches (16 patches).
    "tiny": dict(
        hidden=32,
        layers=2,
        heads=2,
        ffn=64,
        image_size=32,
        patch_size=8,
        text_positions=66,
        max_text_len=64,
    ),
    # A 6 x 384 BEiT-3 layout model (from scratch).
    "small": dict(hidden=384, layers=6, heads=6, ffn=1536),
    # The BEiT-3 base shape: 12 x 768, 12 heads, FFN 3072, 224 px / 16 px patches,
    # 64,010 SentencePiece tokens, 1,024 text positions (torchscale's default).
    "base": dict(hidden=768, layers=12, heads=12, ffn=3072, vocab_size=64010),
    # The offline hybrid: MiniLM-L6's shape and BERT layout (post-LN, embedding LayerNorm,
    # positions from 0, eps 1e-12) with EfficientNet-Lite0 feature-map image tokens.
    "hybrid-minilm": dict(
        hidden=384,
        layers=6,
        heads=12,
        ffn=1536,
        vocab_size=30522,
        text_positions=512,
        position_offset=0,
        normalize_before=False,
        subln=False,
        layernorm_embedding=True,
        normalize_output=False,
        layernorm_eps=1e-12,
        image_stem="efficientnet",
        image_size=128,
    ),
}
SIZES = tuple(_SIZES)

EFFICIENTNET_CHANNELS = 1280  # channels of EfficientNet-Lite0's last feature map
EFFICIENTNET_STRIDE = 32  # its total stride ("same" padding: ceil(size / 32) cells a side)


@dataclass(frozen=True)
class MMEncConfig:
    """Shape and layout of the multiway encoder (stored in every checkpoint).

    Build one with :meth:`from_size`; the defaults below are the BEiT-3 (torchscale) layout.
    """

    size: str = "base"  # name of the preset this config came from (informative)
    hidden: int = 768  # model width D
    layers: int = 12  # number of multiway layers
    heads: int = 12  # attention heads (D must divide by it)
    ffn: int = 3072  # FFN inner width
    vocab_size: int = 30522  # text vocabulary (64,010 in official BEiT-3 checkpoints)
    text_positions: int = 1024  # rows of the text position table (incl. the offset)
    position_offset: int = 2  # first position id (2: fairseq/torchscale, 0: BERT)
    max_text_len: int = 128  # tokens per text after tokenisation (spec: 128)
    image_stem: str = "patch"  # "patch" (conv on pixels) or "efficientnet" (hybrid)
    image_size: int = 224  # input side in pixels
    patch_size: int = 16  # patch side in pixels (image_stem="patch" only)
    normalize_before: bool = True  # pre-LN (BEiT-3) or post-LN (BERT)
    subln: bool = True  # Magneto sub-LayerNorms inside attention and FFN (BEiT-3)
    layernorm_embedding: bool = False  # LayerNorm after the embeddings (BERT)
    normalize_output: bool = True  # final LayerNorm (pre-LN only, BEiT-3)
    layernorm_eps: float = 1e-5  # LayerNorm epsilon
    vl_layers: int = 0  # top layers with a vision-language FFN expert for joint input
    dropout: float = 0.0  # dropout on attention probs, residual branches and embeddings
    tokenizer: str = "minilm"  # "minilm" (offline WordPiece) or a local tokenizer path

    @classmethod
    def from_size(cls, size: str, **overrides: Any) -> MMEncConfig:
        """The preset ``size`` (tiny/small/base/hybrid-minilm) with ``overrides`` applied.

        Raises:
            UsageError: Unknown size or unknown override key.
        """
        if size not in _SIZES:
            msg = f"unknown encoder size {size!r}; choose one of {', '.join(SIZES)}"
            raise UsageError(msg)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            msg = f"unknown encoder setting(s) {', '.join(unknown)}; known: {sorted(names)}"
            raise UsageError(msg)
        return cls(**{"size": size, **_SIZES[size], **overrides}).validated()

    def validated(self) -> MMEncConfig:
        """Return self after checking the values fit together (raises UsageError)."""
        problems = []
        if self.hidden % self.heads:
            problems.append(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.image_stem not in ("patch", "efficientnet"):
            problems.append(f"image_stem {self.image_stem!r} is not 'patch' or 'efficientnet'")
        if self.image_stem == "patch" and self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of {self.patch_size}")
        if self.max_text_len + self.position_offset > self.text_positions:
            problems.append(
                f"max_text_len {self.max_text_len} + offset {self.position_offset} exceeds "
                f"text_positions {self.text_positions}"
            )
        if not 0 <= self.vl_layers <= self.layers:
            problems.append(f"vl_layers {self.vl_layers} is not in 0..{self.layers}")
        if problems:
            msg = "invalid encoder config: " + "; ".join(problems)
            raise UsageError(msg)
        return self

    @property
    def grid(self) -> int:
        """Patches per image side."""
        if self.image_stem == "efficientnet":
            return math.ceil(self.image_size / EFFICIENTNET_STRIDE)
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Image tokens without the CLS token."""
        return self.grid * self.grid

    @property
    def vision_positions(self) -> int:
        """Rows of the vision position table: CLS + patches + offset (torchscale layout)."""
        return self.num_patches + 1 + self.position_offset
