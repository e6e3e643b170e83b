"""Stage 1 pretraining of MMEnc: masked language and masked image modelling (ICA).

Objective (losses on masked positions only; M_t masked text tokens, M_p masked patches of the
whole optimizer step, over all processes):

    L = w_mlm * (1/M_t) sum_{t masked} CE(head_mlm(h_t), token_t)
      + w_mim * (1/M_p) sum_{p masked} || head_mim(h_p) - target_p ||^2 / d_target

- Text: about 15% of the tokens of text-only inputs, about 50% of the text of image-text
  pairs (BERT 80/10/10 replacement). Image: block-wise masking of about 40% of the patches.
- MIM target: the frozen EfficientNet-Lite0 feature of the patch, LayerNorm-ed over its 1280
  channels (hybrid), or the patch's normalised pixels as in MAE (``image_stem="patch"``).
- Inputs: every step is joint (items with an image) + text-only (items without); every
  ``unimodal_every``-th step is image-only MIM + text-only MLM instead, so the experts also
  see single-modality input as in BEiT-3.

Training: AdamW, linear warm-up then cosine decay to ``min_lr``, gradient accumulation,
gradient clipping, bf16 autocast on CUDA; a non-finite loss stops the run
(:class:`NonFiniteLossError`). Distributed with ``torchrun`` (DDP, one process per GPU or
gloo on CPU, any number of nodes): :class:`~torch.utils.data.DistributedSampler` with the run
seed, global batch = batch_size x world_size x grad_accum; rank 0 alone logs and writes.

Resume: ``models/mmenc.resume.pt`` (written atomically every ``checkpoint_every`` steps) holds
the model, heads, optimizer, step and config; data order comes from (seed, epoch), masks from
(seed, epoch, item) and dropout from (seed, step, rank), so a killed run resumes to the same
parameters as an uninterrupted one. The final ``models/mmenc.pt`` holds the encoder config
and weights (what ``extract`` needs) plus the heads.

Run: ``alignrec-data pretrain DATASET``, ``python -m alignrec_model.pretrain --data-dir data
--dataset amazon-mini --params params.yaml``, or the latter under ``torchrun --nproc_per_node 8``;
all go through :func:`~alignrec_model.pretrain.entry.run_pretrain`.

Modules: ``config`` (params), ``items`` (the items in memory), ``batches`` (masked
micro-batches), ``heads`` (MLM/MIM heads and the encoder's starting point), ``optim`` (AdamW
and the schedule), ``checkpoint`` (checkpoint I/O and resume checks), ``distributed``
(torchrun process group), ``loop`` (the run), ``metrics`` (JSON and CSV outputs), ``entry``
(command line).
"""

# What other modules, the tests and the benchmarks import from the package.
from alignrec_model.pretrain.checkpoint import (
    CHECKPOINT_FILE,
    RESUME_FILE,
    encoder_from_checkpoint,
    load_checkpoint,
)
from alignrec_model.pretrain.config import PretrainConfig
from alignrec_model.pretrain.entry import run_pretrain
from alignrec_model.pretrain.heads import PretrainModel, build_encoder
from alignrec_model.pretrain.items import compute_feature_maps, read_items
from alignrec_model.pretrain.loop import NonFiniteLossError, pretrain
from alignrec_model.pretrain.metrics import HISTORY_FILE, METRICS_FILE
from alignrec_model.pretrain.optim import make_optimizer

__all__ = [
    "CHECKPOINT_FILE",
    "HISTORY_FILE",
    "METRICS_FILE",
    "RESUME_FILE",
    "NonFiniteLossError",
    "PretrainConfig",
    "PretrainModel",
    "build_encoder",
    "compute_feature_maps",
    "encoder_from_checkpoint",
    "load_checkpoint",
    "make_optimizer",
    "pretrain",
    "read_items",
    "run_pretrain",
]
