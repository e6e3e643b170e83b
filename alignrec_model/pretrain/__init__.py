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

from alignrec_model.pretrain.batches import make_parts
from alignrec_model.pretrain.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    RESUME_FILE,
    check_resume_config,
    encoder_from_checkpoint,
    load_checkpoint,
)
from alignrec_model.pretrain.config import INITS, PretrainConfig
from alignrec_model.pretrain.distributed import Dist, ranks_in_sync, setup_distributed
from alignrec_model.pretrain.entry import main, run_pretrain
from alignrec_model.pretrain.heads import (
    MIMHead,
    MLMHead,
    PretrainModel,
    build_encoder,
    build_model,
)
from alignrec_model.pretrain.items import (
    ItemData,
    compute_feature_maps,
    load_item_data,
    read_items,
)
from alignrec_model.pretrain.loop import NonFiniteLossError, StepCallback, pretrain, probe_losses
from alignrec_model.pretrain.metrics import HISTORY_FILE, METRICS_FILE, write_history
from alignrec_model.pretrain.optim import lr_at, make_optimizer

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "HISTORY_FILE",
    "INITS",
    "METRICS_FILE",
    "RESUME_FILE",
    "Dist",
    "ItemData",
    "MIMHead",
    "MLMHead",
    "NonFiniteLossError",
    "PretrainConfig",
    "PretrainModel",
    "StepCallback",
    "build_encoder",
    "build_model",
    "check_resume_config",
    "compute_feature_maps",
    "encoder_from_checkpoint",
    "load_checkpoint",
    "load_item_data",
    "lr_at",
    "main",
    "make_optimizer",
    "make_parts",
    "pretrain",
    "probe_losses",
    "ranks_in_sync",
    "read_items",
    "run_pretrain",
    "setup_distributed",
    "write_history",
]
