"""The transformers kinds: ``hf-text``, ``hf-image`` and ``hf-clip``.

- ``hf-text``: ``AutoModel`` + ``AutoTokenizer``; ``pooling: mean`` is the attention-masked
  mean of the last hidden states, ``sum_t m_t h_t / max(sum_t m_t, 1e-9)`` (as
  sentence-transformers computes it), ``cls`` the first token's state.
- ``hf-image``: ``AutoModel`` + ``AutoImageProcessor``; ``pooling: pooler`` is the model's
  ``pooler_output``, ``mean`` the mean of the last hidden states over tokens (or over the
  spatial grid of convolutional models), ``cls`` the first token's state.
- ``hf-clip``: a dual-tower ``AutoModel`` (CLIP, SigLIP, ...) with ``get_text_features`` /
  ``get_image_features`` (the projected embeddings); SigLIP-style models, trained on texts
  padded to the maximum length, get their texts padded the same way.

Images reach the processor as the decoded item images (``image_size`` square, RGB uint8); the
processor then resizes and normalises them as the model expects.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from alignrec_data.errors import UsageError
from alignrec_model.extractors.base import Encoder, batches
from alignrec_model.extractors.entry import VariantEntry
from alignrec_model.extractors.source import ModelSource

DEFAULT_MAX_LENGTH = 512
DEFAULT_IMAGE_SIZE = 224


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, D) over the tokens where ``mask`` (B, T) is 1 -> (B, D)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def processor_size(processor: Any) -> int:
    """The square input side an image processor produces (crop size, else size), or 224."""
    for attr in ("crop_size", "size"):
        size = getattr(processor, attr, None)
        if attr == "crop_size" and not getattr(processor, "do_center_crop", False):
            continue
        if isinstance(size, int):
            return size
        for key in ("height", "shortest_edge"):  # a dict, or transformers' SizeDict
            side = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
            if side:
                return int(side)
    return DEFAULT_IMAGE_SIZE


def _load(what: str, source: ModelSource, entry: VariantEntry) -> Any:
    """``transformers.<what>.from_pretrained`` of the local folder, offline.

    Raises:
        UsageError: The folder does not hold what the kind needs.
    """
    import transformers

    cls = getattr(transformers, what)
    try:
        return cls.from_pretrained(str(source.path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        msg = (
            f"extract.variants[{entry.name}]: kind {entry.kind}: {source.path} has no usable "
            f"{what} ({first})"
        )
        raise UsageError(msg) from err


def _max_length(entry: VariantEntry, tokenizer: Any, config: Any) -> int:
    """``max_length`` of the entry, else the smaller of the tokenizer's and the model's limit."""
    if entry.max_length:
        return entry.max_length
    limit = getattr(config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    return int(min(tokenizer.model_max_length or limit, limit))


def _pixel_batch(processor: Any, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) uint8 -> the processor's ``pixel_values`` (channels-last arrays in)."""
    arrays = [im.permute(1, 2, 0).numpy() for im in images]  # (S, S, 3) uint8 each
    return processor(images=arrays, return_tensors="pt")["pixel_values"]


def _features(out: Any) -> torch.Tensor:
    """A ``get_*_features`` result: a tensor, or an output whose ``pooler_output`` is it."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class HFText(Encoder):
    """``hf-text``: a transformers text encoder with ``cls`` or masked ``mean`` pooling."""

    def __init__(self, entry: VariantEntry, source: ModelSource, device: torch.device, bf16: bool):
        super().__init__(entry, device, bf16)
        self.source = source
        self.tokenizer = _load("AutoTokenizer", source, entry)
        self.model = _load("AutoModel", source, entry).to(device).eval()
        self.max_length = _max_length(entry, self.tokenizer, self.model.config)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Pooled last hidden states (N, hidden)."""
        out = []
        for sl in batches(len(texts), self.entry.batch_size, f"extract {self.entry.name}"):
            enc = self.tokenizer(
                texts[sl],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**enc).last_hidden_state  # (B, T, D)
            if self.entry.pooling_used == "cls":
                pooled = hidden[:, 0]
            else:
                pooled = masked_mean(hidden, enc["attention_mask"])
            out.append(pooled.float().cpu().numpy())
        return np.concatenate(out)


class HFImage(Encoder):
    """``hf-image``: a transformers vision encoder with ``pooler``, ``mean`` or ``cls``."""

    def __init__(self, entry: VariantEntry, source: ModelSource, device: torch.device, bf16: bool):
        super().__init__(entry, device, bf16)
        self.source = source
        self.processor = _load("AutoImageProcessor", source, entry)
        self.model = _load("AutoModel", source, entry).to(device).eval()
        self.image_size = entry.image_size or processor_size(self.processor)

    def pool(self, out: Any) -> torch.Tensor:
        """One (B, D) vector per image from the model output.

        Raises:
            UsageError: ``pooler`` asked of a model without a pooler.
        """
        pooling = self.entry.pooling_used
        if pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                msg = (
                    f"extract.variants[{self.entry.name}]: the model has no pooler output; "
                    "use pooling: mean or cls"
                )
                raise UsageError(msg)
            return out.pooler_output.flatten(1)  # (B, D) also for (B, D, 1, 1)
        hidden = out.last_hidden_state
        if hidden.ndim == 4:  # (B, C, H, W) of a convolutional model
            return hidden.mean((2, 3)) if pooling == "mean" else hidden.flatten(2)[:, :, 0]
        return hidden.mean(1) if pooling == "mean" else hidden[:, 0]  # (B, T, D) -> (B, D)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """Pooled features (N, D)."""
        out = []
        for sl in batches(len(images), self.entry.batch_size, f"extract {self.entry.name}"):
            px = _pixel_batch(self.processor, images[sl]).to(self.device)
            out.append(self.pool(self.model(pixel_values=px)).float().cpu().numpy())
        return np.concatenate(out)


class HFClip(Encoder):
    """``hf-clip``: projected image and text embeddings of a dual-tower model."""

    def __init__(self, entry: VariantEntry, source: ModelSource, device: torch.device, bf16: bool):
        super().__init__(entry, device, bf16)
        self.source = source
        self.model = _load("AutoModel", source, entry).to(device).eval()
        for method in ("get_text_features", "get_image_features"):
            if not hasattr(self.model, method):
                msg = (
                    f"extract.variants[{entry.name}]: kind hf-clip needs a dual-tower model "
                    f"with {method}; {type(self.model).__name__} in {source.path} has none"
                )
                raise UsageError(msg)
        self.tokenizer = _load("AutoTokenizer", source, entry)
        self.processor = _load("AutoImageProcessor", source, entry)
        self.image_size = entry.image_size or processor_size(self.processor)
        text_config = getattr(self.model.config, "text_config", self.model.config)
        self.max_length = _max_length(entry, self.tokenizer, text_config)
        self.padding: bool | str = (
            "max_length" if self.model.config.model_type.startswith("siglip") else True
        )
        self._text_args = set(inspect.signature(self.model.get_text_features).parameters)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """``get_text_features`` (N, projection_dim)."""
        out = []
        for sl in batches(len(texts), self.entry.batch_size, f"extract {self.entry.name}-text"):
            enc = self.tokenizer(
                texts[sl],
                padding=self.padding,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            args = {k: v.to(self.device) for k, v in enc.items() if k in self._text_args}
            out.append(_features(self.model.get_text_features(**args)).float().cpu().numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """``get_image_features`` (N, projection_dim)."""
        out = []
        for sl in batches(len(images), self.entry.batch_size, f"extract {self.entry.name}-image"):
            px = _pixel_batch(self.processor, images[sl]).to(self.device)
            feats = _features(self.model.get_image_features(pixel_values=px))
            out.append(feats.float().cpu().numpy())
        return np.concatenate(out)
