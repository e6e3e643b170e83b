"""Tiny random-initialised transformers models saved with ``save_pretrained`` for the kinds.

Every folder holds what ``from_pretrained`` needs offline: the weights, the config, the
offline MiniLM WordPiece tokenizer (``alignrec_model.hybrid.minilm_path()``) and / or an image
processor. Weights are seeded, so two builds give the same files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from alignrec_model.hybrid import minilm_path

VOCAB = 30522  # MiniLM's WordPiece vocabulary
SEP_ID = 102  # [SEP], the end-of-text token of the tiny CLIP text tower
SIDE = 32  # image side of the tiny vision towers


def _tokenizer(folder: Path) -> None:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True).save_pretrained(folder)


def tiny_bert(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with the MiniLM tokenizer."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(folder)
    _tokenizer(folder)
    return folder


def tiny_vit(folder: Path) -> Path:
    """A 2-layer, 32-wide ViT on 32-pixel inputs (8-pixel patches) with its processor."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(1)
    config = ViTConfig(
        image_size=SIDE,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTModel(config).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": SIDE, "width": SIDE}).save_pretrained(folder)
    return folder


def tiny_clip(folder: Path) -> Path:
    """A CLIP with 2-layer, 32-wide towers, 16-d projections, the MiniLM tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(2)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=101,
            eos_token_id=SEP_ID,
            pad_token_id=0,
        ),
        vision_config=dict(
            image_size=SIDE,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    _tokenizer(folder)
    CLIPImageProcessor(
        size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE}
    ).save_pretrained(folder)
    return folder


def tiny_models(root: Path) -> dict[str, Path]:
    """The three tiny models, each in its own folder under ``root``."""
    return {
        "bert": tiny_bert(root / "bert"),
        "vit": tiny_vit(root / "vit"),
        "clip": tiny_clip(root / "clip"),
    }
