"""The ``pretrain:`` section of params.yaml as a frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from alignrec_data.config import check_ranges
from alignrec_model.encoder_config import SIZES, MMEncConfig
from alignrec_model.runtime import DEVICES

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

    def __post_init__(self) -> None:
        """Reject values pretraining cannot run with."""
        # The hybrid init has MiniLM's shape; the others take an encoder size.
        shapes = [s for s in SIZES if s != "hybrid-minilm"]
        if self.init == "hybrid":
            size_ok, size_expected = self.size == "hybrid-minilm", "hybrid-minilm"
            why = "init hybrid needs size hybrid-minilm, MiniLM's shape"
        elif self.init in INITS:
            size_ok, size_expected = self.size in shapes, f"one of {', '.join(shapes)}"
            why = f"init {self.init} needs an encoder size"
        else:  # the init is reported; the size only has to exist
            size_ok, size_expected = self.size in SIZES, f"one of {', '.join(SIZES)}"
            why = "the encoder size"
        check_ranges(
            self,
            "pretrain",
            {
                "init": (self.init in INITS, f"one of {', '.join(INITS)}"),
                "size": (size_ok, f"{size_expected} ({why})"),
                "beit3_checkpoint": (
                    self.init != "beit3" or bool(self.beit3_checkpoint),
                    "the path of the official BEiT-3 .pth (init beit3 needs it)",
                ),
                "image_size": (self.image_size >= 1, ">= 1 pixel"),
                "max_text_len": (self.max_text_len >= 1, ">= 1"),
                "epochs": (self.epochs >= 1, ">= 1"),
                "batch_size": (self.batch_size >= 1, ">= 1"),
                "grad_accum": (self.grad_accum >= 1, ">= 1"),
                "head_warmup_steps": (self.head_warmup_steps >= 0, ">= 0"),
                **{
                    key: (0 < getattr(self, key) < 1, "between 0 and 1, both excluded")
                    for key in ("text_mask_prob", "joint_text_mask_prob", "image_mask_ratio")
                },
                "device": (self.device in DEVICES, f"one of {', '.join(DEVICES)}"),
            },
        )

    def encoder_config(self) -> MMEncConfig:
        """The encoder config these params describe."""
        keys = ("max_text_len", "vl_layers", "dropout", "tokenizer", "image_size")
        return MMEncConfig.from_size(self.size, **{k: getattr(self, k) for k in keys})
