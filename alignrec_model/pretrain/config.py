"""The ``pretrain:`` section of params.yaml as a frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignrec_data.errors import UsageError
from alignrec_model.encoder import SIZES, MMEncConfig

INITS = ("hybrid", "scratch", "beit3")


@dataclass(frozen=True)
class PretrainConfig:
    """The ``pretrain:`` section of params.yaml (defaults: the offline hybrid, CPU-sized)."""

    init: str = "hybrid"  # hybrid (offline MiniLM+EfficientNet) | scratch | beit3 (official)
    size: str = "hybrid-minilm"  # tiny | small | base | hybrid-minilm (hybrid needs this)
    beit3_checkpoint: str | None = None  # path of an official BEiT-3 .pth (init: beit3)
    tokenizer: str = "minilm"  # minilm, a local tokenizer folder, or beit3.spm
    image_size: int = 128  # encoder input side in pixels (hybrid: 128 -> 4x4 tokens)
    max_text_len: int = 128  # text tokens per item (spec: 128)
    vl_layers: int = 0  # top layers with a vision-language FFN expert (0: torchscale layout)
    vision_init: str = "language"  # hybrid vision experts: copy of language | random
    train_backbone: bool = False  # hybrid: also train the EfficientNet backbone
    dropout: float = 0.1  # dropout in the encoder
    epochs: int = 2  # passes over the items
    max_steps: int = 0  # stop after this many optimizer steps (0: epochs decide)
    max_items: int = 0  # use only the first N items (0: all)
    batch_size: int = 32  # items per process per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 2.0e-4  # peak learning rate
    min_lr: float = 1.0e-6  # learning rate at the end of the cosine decay
    warmup_steps: int = 5  # linear warm-up steps
    head_warmup_steps: int = 0  # first steps train only the MLM/MIM heads (encoder frozen)
    weight_decay: float = 0.05  # AdamW weight decay (not on biases, norms, embeddings' tokens)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas (BEiT-3)
    grad_clip: float = 3.0  # max gradient norm (0: off)
    text_mask_prob: float = 0.15  # masked share of text-only inputs
    joint_text_mask_prob: float = 0.5  # masked share of the text of image-text pairs
    image_mask_ratio: float = 0.4  # block-masked share of image patches
    unimodal_every: int = 3  # every k-th step is image-only + text-only (0: never)
    mlm_weight: float = 1.0  # weight of the masked language loss
    mim_weight: float = 1.0  # weight of the masked image loss
    probe_items: int = 64  # items of the fixed probe set (losses before/after training)
    checkpoint_every: int = 50  # steps between resume checkpoints (0: only at the end)
    resume: bool = True  # continue from models/mmenc.resume.pt when it exists
    bf16: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    num_threads: int = 0  # torch CPU threads per process (0: torch default)
    seed: int = 0  # seed of the init, data order, masks and dropout
    log_every: int = 10  # steps between log lines

    def validated(self) -> PretrainConfig:
        """Check values (raises UsageError naming the key)."""
        problems = []
        if self.init not in INITS:
            problems.append(f"init {self.init!r} is not one of {', '.join(INITS)}")
        if self.size not in SIZES:
            problems.append(f"size {self.size!r} is not one of {', '.join(SIZES)}")
        if self.init == "hybrid" and self.size != "hybrid-minilm":
            problems.append("init hybrid needs size hybrid-minilm (MiniLM's shape)")
        if self.init != "hybrid" and self.size == "hybrid-minilm":
            problems.append(f"init {self.init} needs size tiny, small or base")
        if self.init == "beit3" and not self.beit3_checkpoint:
            problems.append("init beit3 needs beit3_checkpoint (path of the official .pth)")
        if self.head_warmup_steps < 0:
            problems.append(f"head_warmup_steps must be >= 0, found {self.head_warmup_steps}")
        for key in ("batch_size", "grad_accum", "epochs", "image_size", "max_text_len"):
            if getattr(self, key) < 1:
                problems.append(f"{key} must be >= 1, found {getattr(self, key)}")
        for key in ("text_mask_prob", "joint_text_mask_prob", "image_mask_ratio"):
            if not 0 < getattr(self, key) < 1:
                problems.append(f"{key} must be in (0, 1), found {getattr(self, key)}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device {self.device!r} is not auto, cpu or cuda")
        if problems:
            raise UsageError("params.yaml:pretrain: " + "; ".join(problems))
        return self

    def encoder_config(self) -> MMEncConfig:
        """The encoder config these params describe."""
        over: dict[str, Any] = dict(
            max_text_len=self.max_text_len,
            vl_layers=self.vl_layers,
            dropout=self.dropout,
            tokenizer=self.tokenizer,
            image_size=self.image_size,
        )
        return MMEncConfig.from_size(self.size, **over)
