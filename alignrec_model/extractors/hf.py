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
from alignrec_model.extractors.base import Encoder
from alignrec_model.extractors.entry import VariantEntry

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


def _max_length(entry: VariantEntry, tokenizer: Any, config: Any) -> int:
    """``max_length`` of the entry, else the smaller of the tokenizer's and the model's limit."""
    if entry.max_length:
        return entry.max_length
    limit = getattr(config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    return int(min(tokenizer.model_max_length or limit, limit))


def _features(out: Any) -> torch.Tensor:
    """A ``get_*_features`` result: a tensor, or an output whose ``pooler_output`` is it."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class _HFEncoder(Encoder):
    """Shared by the transformers kinds: loading, inputs for the tokenizer and image processor."""

    def _load(self, what: str) -> Any:
        """``transformers.<what>.from_pretrained`` of the local folder, offline.

        Raises:
            UsageError: The folder does not hold what the kind needs.
        """
        import transformers

        cls = getattr(transformers, what)
        path, entry = self.source.path, self.entry
        try:
            return cls.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            msg = (
                f"extract.variants[{entry.name}]: kind {entry.kind}: {path} has no usable "
                f"{what} ({first})"
            )
            raise UsageError(msg) from err

    def _tokens(self, texts: list[str], padding: bool | str = True) -> Any:
        """The tokenizer's tensors of ``texts`` (truncated to ``max_length``)."""
        return self.tokenizer(
            texts, padding=padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 -> the processor's ``pixel_values`` on the device."""
        arrays = [im.permute(1, 2, 0).numpy() for im in images]  # (S, S, 3) uint8 each
        return self.processor(images=arrays, return_tensors="pt")["pixel_values"].to(self.device)


class HFText(_HFEncoder):
    """``hf-text``: a transformers text encoder with ``cls`` or masked ``mean`` pooling."""

    def load(self) -> None:
        """The tokenizer and the model."""
        self.tokenizer = self._load("AutoTokenizer")
        self.model = self._load("AutoModel").to(self.device).eval()
        self.max_length = _max_length(self.entry, self.tokenizer, self.model.config)

    def _pool(self, texts: list[str]) -> torch.Tensor:
        enc = self._tokens(texts).to(self.device)
        hidden = self.model(**enc).last_hidden_state  # (B, T, D)
        if self.entry.pooling_used == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, enc["attention_mask"])

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Pooled last hidden states (N, hidden)."""
        return self.batched(len(texts), lambda sl: self._pool(texts[sl]))


class HFImage(_HFEncoder):
    """``hf-image``: a transformers vision encoder with ``pooler``, ``mean`` or ``cls``."""

    def load(self) -> None:
        """The image processor and the model."""
        self.processor = self._load("AutoImageProcessor")
        self.model = self._load("AutoModel").to(self.device).eval()
        self.image_size = self.entry.image_size or processor_size(self.processor)

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
        return self.batched(
            len(images), lambda sl: self.pool(self.model(pixel_values=self._pixels(images[sl])))
        )


class HFClip(_HFEncoder):
    """``hf-clip``: projected image and text embeddings of a dual-tower model."""

    def load(self) -> None:
        """The dual-tower model, its tokenizer and image processor.

        Raises:
            UsageError: The model lacks ``get_text_features`` or ``get_image_features``.
        """
        self.model = self._load("AutoModel").to(self.device).eval()
        for method in ("get_text_features", "get_image_features"):
            if not hasattr(self.model, method):
                msg = (
                    f"extract.variants[{self.entry.name}]: kind hf-clip needs a dual-tower model "
                    f"with {method}; {type(self.model).__name__} in {self.source.path} has none"
                )
                raise UsageError(msg)
        self.tokenizer = self._load("AutoTokenizer")
        self.processor = self._load("AutoImageProcessor")
        self.image_size = self.entry.image_size or processor_size(self.processor)
        text_config = getattr(self.model.config, "text_config", self.model.config)
        self.max_length = _max_length(self.entry, self.tokenizer, text_config)
        siglip = self.model.config.model_type.startswith("siglip")  # trained on max-length texts
        self.padding: bool | str = "max_length" if siglip else True
        self._text_args = set(inspect.signature(self.model.get_text_features).parameters)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        enc = self._tokens(texts, self.padding)
        args = {k: v.to(self.device) for k, v in enc.items() if k in self._text_args}
        return _features(self.model.get_text_features(**args))

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """``get_text_features`` (N, projection_dim)."""
        return self.batched(len(texts), lambda sl: self._text_features(texts[sl]), "-text")

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """``get_image_features`` (N, projection_dim)."""
        return self.batched(
            len(images),
            lambda sl: _features(
                self.model.get_image_features(pixel_values=self._pixels(images[sl]))
            ),
            "-image",
        )
