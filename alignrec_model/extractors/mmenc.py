"""The ``mmenc`` kind: the pretrained MMEnc checkpoint (``models/mmenc.pt``), three outputs.

- ``joint`` (built-in ``alignrec``): CLS output (position 0) of the joint image+text input;
  item without image: the text-only output of the same encoder.
- ``image`` (``mmenc-image``): CLS output of the image-only input.
- ``text`` (``mmenc-text``): first output of the text-only input.

The image stem runs once per batch; its tokens serve both the image-only and the joint input.
"""

from __future__ import annotations

import numpy as np
import torch

from alignrec_model.extractors.base import Encoder, batches
from alignrec_model.preprocess import load_tokenizer, normalize_pixels, pixel_stats, tokenize


def image_inputs(model: torch.nn.Module, px: torch.Tensor) -> dict[str, torch.Tensor]:
    """The image keyword argument of ``MMEnc`` for normalised pixels.

    The EfficientNet feature map (computed once, reusable for several inputs) or the pixels.
    """
    if model.cfg.image_stem == "efficientnet":
        return {"feature_map": model.image_stem.feature_map(px)}
    return {"pixel_values": px}


@torch.no_grad()
def encode_items(
    model: torch.nn.Module,
    texts: list[str],
    images: torch.Tensor | None,
    has_image: np.ndarray,
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
) -> dict[str, np.ndarray]:
    """Joint, image-only and text-only first outputs of every item.

    Args:
        model: An :class:`~alignrec_model.encoder.MMEnc` in eval mode on ``device``.
        texts: N item texts.
        images: (N, 3, S, S) uint8 at the encoder's image size (None: no item has one).
        has_image: (N,) bool.
        batch_size: Items per batch.
        device: Where to run.
        bf16: bf16 autocast (CUDA only).

    Returns:
        ``{"alignrec", "mmenc-image", "mmenc-text"}`` -> (N, D) float32 (zeros where undefined).
    """
    cfg = model.cfg
    tok = load_tokenizer(cfg.tokenizer)
    mean, std = pixel_stats(cfg.image_stem)
    n, d = len(texts), cfg.hidden
    out = {k: np.zeros((n, d), dtype=np.float32) for k in ("alignrec", "mmenc-image", "mmenc-text")}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")
    for sl in batches(n, batch_size, "extract mmenc"):
        ids, pad = tokenize(tok, texts[sl], cfg.max_text_len)
        ids, pad = ids.to(device), pad.to(device)
        has = torch.from_numpy(has_image[sl]).to(device)
        with autocast:
            text_cls = model(input_ids=ids, text_padding_mask=pad).cls.float().cpu().numpy()
            out["mmenc-text"][sl] = out["alignrec"][sl] = text_cls
            if bool(has.any()):
                px = normalize_pixels(images[sl][has.cpu()].to(device), mean, std)
                image_in = image_inputs(model, px)
                img_cls = model(**image_in).cls
                joint_cls = model(**image_in, input_ids=ids[has], text_padding_mask=pad[has]).cls
                out["mmenc-image"][sl][has_image[sl]] = img_cls.float().cpu().numpy()
                out["alignrec"][sl][has_image[sl]] = joint_cls.float().cpu().numpy()
    return out


class MMEncEncoder(Encoder):
    """``mmenc``: the pretrained multiway encoder (checkpoint ``model`` or models/mmenc.pt)."""

    def load(self) -> None:
        """The encoder of the checkpoint, and its tokenizer."""
        from alignrec_model.pretrain import encoder_from_checkpoint, load_checkpoint

        path = self.source.path
        self.model = encoder_from_checkpoint(load_checkpoint(path), str(path)).to(self.device)
        self.model.eval()
        self.image_size = self.model.cfg.image_size
        load_tokenizer(self.model.cfg.tokenizer)  # loaded before the clock starts

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Text-only CLS outputs (N, hidden)."""
        return self._run(texts, None, np.zeros(len(texts), dtype=bool))["mmenc-text"]

    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """Image-only CLS outputs (N, hidden)."""
        return self._run([""] * len(images), images, np.ones(len(images), dtype=bool))[
            "mmenc-image"
        ]

    def _run(self, texts: list[str], images: torch.Tensor | None, has: np.ndarray) -> dict:
        bs = self.entry.batch_size
        return encode_items(self.model, texts, images, has, bs, self.device, self.bf16)

    def encode_items(
        self,
        texts: list[str],
        images: torch.Tensor | None,
        has_image: np.ndarray,
        has_text: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """All three outputs in one pass over the items (one image stem run per batch)."""
        feats = self._run(texts, images, has_image)
        feats["mmenc-text"][~has_text] = 0.0
        # Without text the joint feature is the image-only output; with neither, a zero row.
        feats["alignrec"][has_image & ~has_text] = feats["mmenc-image"][has_image & ~has_text]
        feats["alignrec"][~has_image & ~has_text] = 0.0
        named = {"joint": "alignrec", "image": "mmenc-image", "text": "mmenc-text"}
        return {o: feats[named[o]] for o in self.entry.wanted}
