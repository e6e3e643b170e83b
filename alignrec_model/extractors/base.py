"""The encoder interface: item texts and images in, one vector per item and output out.

Every kind is an :class:`Encoder` with :meth:`~Encoder.encode_texts` and / or
:meth:`~Encoder.encode_images`; :meth:`Encoder.rows` turns item rows into the feature rows of
each output, with the same rules for every kind:

- ``image`` / ``text`` output: the tower's vector; an item without image (or with empty text)
  gets a zero row and ``missing=True``.
- ``joint`` output: computed from both inputs (``mmenc``: the joint forward pass; ``hf-clip``:
  :func:`combine_towers` of the two towers). With one input absent the other tower alone is
  used (as the ``alignrec`` feature does: its text-only output); ``missing=True`` whenever an
  input is absent, and a zero row when both are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from alignrec_data.feature_info import feature_metadata
from alignrec_data.paths import DatasetPaths
from alignrec_model.extractors.entry import VariantEntry
from alignrec_model.extractors.source import ModelSource

#: Item images decoded once per side and reused by the entries of one run: size -> (images, has).
ImageCache = dict[int, tuple[torch.Tensor, np.ndarray]]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def combine_towers(
    image: np.ndarray, text: np.ndarray, has_image: np.ndarray, has_text: np.ndarray, how: str
) -> np.ndarray:
    """The joint vector of two towers: ``sum`` or ``concat`` of the L2-normalised towers.

    ``sum``: ``j = (i/|i| + t/|t|) / |i/|i| + t/|t||``, so an item with one input absent gets
    that tower alone, L2-normalised. ``concat``: ``[i/|i|, t/|t|]`` (the absent half zero).
    """
    img = np.where(has_image[:, None], l2_normalize(image), 0.0).astype(np.float32)
    txt = np.where(has_text[:, None], l2_normalize(text), 0.0).astype(np.float32)
    if how == "concat":
        return np.ascontiguousarray(np.hstack([img, txt]))  # (N, d_img + d_txt)
    return l2_normalize(img + txt)  # (N, d), needs d_img == d_txt (CLIP's projection)


def batches(n: int, batch_size: int, desc: str) -> Iterator[slice]:
    """Consecutive slices of ``batch_size`` over ``n`` rows, with a progress bar on stderr."""
    for start in tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False):
        yield slice(start, min(n, start + batch_size))


@dataclass(eq=False)
class Encoder:
    """Base of every kind: batching, missing inputs, joint outputs, metadata.

    Attributes:
        entry: The entry (with defaults filled in).
        source: The resolved model (:func:`~alignrec_model.extractors.source.entry_source`).
        image_size: Side the item images are decoded at (0: this encoder reads no image).
        device: Where the model runs.
    """

    entry: VariantEntry
    source: ModelSource
    device: torch.device
    bf16: bool = False  # bf16 autocast, on CUDA only
    image_size = 0  # a class default, not a field

    def __post_init__(self) -> None:
        """bf16 only on CUDA; load the model."""
        self.bf16 = self.bf16 and self.device.type == "cuda"
        self.load()

    def load(self) -> None:
        """Load the kind's model from :attr:`source` (eval mode, on :attr:`device`)."""

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """(N, d) float32 vectors of non-empty texts."""
        raise NotImplementedError(f"kind {self.entry.kind} encodes no text")

    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """(N, d) float32 vectors of (N, 3, S, S) uint8 images, S = :attr:`image_size`."""
        raise NotImplementedError(f"kind {self.entry.kind} encodes no image")

    def batched(self, n: int, fn: Callable[[slice], torch.Tensor], tower: str = "") -> np.ndarray:
        """``fn`` over batches of ``batch_size`` rows (progress bar ``extract <name><tower>``).

        Returns:
            The (N, d) float32 rows of every batch, concatenated.
        """
        desc = f"extract {self.entry.name}{tower}"
        out = [fn(sl).float().cpu().numpy() for sl in batches(n, self.entry.batch_size, desc)]
        return np.concatenate(out)

    def _tower(
        self, fn: Callable[[Any], np.ndarray], inputs: Any, has: np.ndarray, blank: Any
    ) -> np.ndarray:
        """(N, d) rows of one tower: ``fn(inputs)`` where ``has``, zeros elsewhere."""
        vec = fn(inputs) if has.any() else fn(blank)[:0]  # the width from one blank input
        out = np.zeros((len(has), vec.shape[1]), dtype=np.float32)
        out[has] = vec
        return out

    def encode_items(
        self,
        texts: list[str],
        images: torch.Tensor | None,
        has_image: np.ndarray,
        has_text: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """``{output: (N, d)}`` for the entry's outputs (see the module docstring)."""
        wanted = self.entry.wanted
        towers: dict[str, np.ndarray] = {}
        if "text" in wanted or "joint" in wanted:
            keep = [t for t, h in zip(texts, has_text, strict=True) if h]
            towers["text"] = self._tower(self.encode_texts, keep, has_text, [""])
        if "image" in wanted or "joint" in wanted:
            assert images is not None  # noqa: S101 (rows() loads them when image_size > 0)
            picked = images[torch.from_numpy(np.flatnonzero(has_image))]
            blank = torch.zeros(1, 3, self.image_size, self.image_size, dtype=torch.uint8)
            towers["image"] = self._tower(self.encode_images, picked, has_image, blank)
        out = {o: towers[o] for o in wanted if o != "joint"}
        if self.entry.normalize:
            out = {o: l2_normalize(v) for o, v in out.items()}
        if "joint" in wanted:
            out["joint"] = combine_towers(
                towers["image"], towers["text"], has_image, has_text, self.entry.joint
            )
        return out

    def rows(
        self, paths: DatasetPaths, item_rows: pd.DataFrame, images: ImageCache | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{variant: (matrix, missing)}`` of ``item_rows`` (columns ``item_id``, ``text``).

        Args:
            paths: The dataset's paths (images are read from ``paths.images``).
            item_rows: Any subset of the items, in the order wanted (row k -> matrix row k).
            images: Decoded images to reuse, by side (filled when None or missing a side).
        """
        from alignrec_model.preprocess import load_item_images

        texts = item_rows["text"].fillna("").astype(str).tolist()
        has_text = np.array([bool(t.strip()) for t in texts], dtype=bool)
        pixels, has_image = None, np.zeros(len(texts), dtype=bool)
        if self.image_size:
            cache = {} if images is None else images
            if self.image_size not in cache:
                ids = item_rows["item_id"].astype(int).tolist()
                cache[self.image_size] = load_item_images(paths.images, ids, self.image_size)
            pixels, has_image = cache[self.image_size]
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            feats = self.encode_items(texts, pixels, has_image, has_text)
        # Items lacking an input the output needs (joint: either input).
        missing = {"image": ~has_image, "text": ~has_text, "joint": ~(has_image & has_text)}
        return {
            self.entry.variant(o): (np.ascontiguousarray(m, dtype=np.float32), missing[o])
            for o, m in feats.items()
        }

    def metadata(self, output: str, dim: int) -> dict[str, Any]:
        """The ``alignrec.feature`` schema metadata of one output's file."""
        e = self.entry
        extra: dict[str, Any] = {}
        without = None
        if output == "joint":
            if e.kind == "mmenc" or e.joint == "sum":
                without = {"image": e.variant("text"), "text": e.variant("image")}
            if e.kind == "hf-clip":
                extra["joint"] = e.joint
        if e.normalize and output != "joint":
            extra["normalize"] = True
        if e.max_length and output != "image":
            extra["max_length"] = e.max_length
        if self.image_size and output != "text":
            extra["image_size"] = self.image_size
        return feature_metadata(
            e.variant(output),
            output,  # the modality: image, text or joint
            e.kind,
            dim,
            model=self.source.metadata(),
            pooling=e.pooling_used,
            without=without,
            **extra,
        )
