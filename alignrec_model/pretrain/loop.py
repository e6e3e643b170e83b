"""The pretraining loop: set-up, resume, optimizer steps, and the outputs rank 0 writes.

Each optimizer step runs ``grad_accum`` micro-batches of this rank's share of the items; the
losses are normalised by the masked counts of the whole step over all processes, so one
process and N processes with the same global batch take the same step. Dropout is seeded per
``(seed, step, rank)``, data order by ``(seed, epoch)`` and masks by ``(seed, epoch, item)``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from alignrec_data.atomic import write_json
from alignrec_data.errors import AlignrecError, UsageError
from alignrec_data.paths import DatasetPaths
from alignrec_model.pretrain.batches import make_parts, masked_counts, to_device
from alignrec_model.pretrain.checkpoint import (
    CHECKPOINT_FILE,
    RESUME_FILE,
    checkpoint_state,
    resume,
    resume_key,
    save_checkpoint,
)
from alignrec_model.pretrain.config import PretrainConfig
from alignrec_model.pretrain.distributed import (
    Dist,
    all_sum,
    barrier,
    ranks_in_sync,
    setup_distributed,
)
from alignrec_model.pretrain.heads import PretrainModel, build_encoder
from alignrec_model.pretrain.items import ItemData, compute_feature_maps, load_item_data
from alignrec_model.pretrain.metrics import (
    HISTORY_FILE,
    METRICS_FILE,
    run_metrics,
    without_wall_time,
    write_history,
)
from alignrec_model.pretrain.optim import lr_at, make_optimizer
from alignrec_model.runtime import torch_threads

logger = logging.getLogger(__name__)

StepCallback = Callable[[dict[str, Any]], None]


class NonFiniteLossError(AlignrecError):
    """The loss became NaN or infinite; the run stops (lower lr, or check the inputs)."""


@dataclass
class _Run:
    """What one pretraining run holds from set-up to the last step."""

    paths: DatasetPaths
    cfg: PretrainConfig
    d: Dist
    data: ItemData
    model: PretrainModel
    optimizer: torch.optim.Optimizer
    sampler: DistributedSampler
    steps_per_epoch: int
    total: int
    global_batch: int
    resume_key: dict[str, Any]
    step: int = 0  # optimizer steps done (resumed ones included)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per step
    probe_before: dict[str, float] = field(default_factory=dict)  # probe losses before training
    ddp: nn.Module | None = None  # the model (under DDP with torchrun) while training
    autocast: Any = None  # bf16 autocast on CUDA (when enabled) while training

    @property
    def resume_path(self) -> Path:
        return self.paths.models / RESUME_FILE


def pretrain(
    data_dir: str | Path, dataset: str, cfg: PretrainConfig, on_step: StepCallback | None = None
) -> dict[str, Any]:
    """Pretrain MMEnc on one dataset; see :mod:`alignrec_model.pretrain`.

    Works in one process or under ``torchrun`` (every process calls this).

    Args:
        data_dir: The data directory.
        dataset: Dataset id (folder under ``data_dir``).
        cfg: The ``pretrain`` params.
        on_step: Called on every process after each optimizer step (and after the resume
            checkpoint of that step, if any, is written) with the step's history record
            (``step, epoch, kind, lr, loss, mlm_loss, mim_loss``), e.g. to report progress.

    Returns:
        The metrics written to ``metrics/pretrain.json``.

    Raises:
        UsageError: Missing inputs, bad params, or a resume checkpoint from other params.
        NonFiniteLossError: The loss became NaN/inf.
    """
    paths = DatasetPaths.of(data_dir, dataset)
    d = setup_distributed(cfg.device)
    with torch_threads(cfg.num_threads):
        return _pretrain(_prepare(paths, cfg, d), on_step)


def _pretrain(run: _Run, on_step: StepCallback | None) -> dict[str, Any]:
    cfg, d = run.cfg, run.d
    _start(run)
    run.ddp = _wrap_ddp(run.model, d)
    bf16 = d.device.type == "cuda" and cfg.bf16
    run.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)
    run.model.train()
    bar = tqdm(total=run.total, initial=run.step, desc="pretrain", unit="step", disable=not d.main)
    t0, first = time.perf_counter(), run.step
    while run.step < run.total:
        record, mlm, mim = _train_step(run)
        run.step += 1
        run.history.append(record)
        bar.update(1)
        bar.set_postfix(mlm=f"{mlm:.3f}", mim=f"{mim:.3f}")
        step = run.step
        if d.main and cfg.log_every > 0 and step % cfg.log_every == 0:
            logger.info(
                "step %d/%d lr %.2e mlm %.4f mim %.4f", step, run.total, record["lr"], mlm, mim
            )
        if cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0 and step < run.total:
            if d.main:
                save_checkpoint(run.resume_path, checkpoint_state(run, run.optimizer))
            barrier(d)
        if on_step is not None:
            on_step(record)
    bar.close()
    return _finish(run, run.step - first, time.perf_counter() - t0)


def _prepare(paths: DatasetPaths, cfg: PretrainConfig, d: Dist) -> _Run:
    """Items, model (encoder at its starting point + heads), sampler, plan and optimizer."""
    enc_cfg = cfg.encoder_config()
    data = load_item_data(paths, enc_cfg, cfg.max_items)
    model = PretrainModel(build_encoder(cfg), seed=cfg.seed)  # heads seeded by cfg.seed too
    if enc_cfg.image_stem == "efficientnet":
        data.feature_maps = compute_feature_maps(model.encoder, data)
    model.to(d.device)
    sampler = DistributedSampler(
        range(len(data.item_ids)), num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed
    )
    steps_per_epoch, total = _plan(len(sampler), cfg, d.world)
    global_batch = cfg.batch_size * d.world * cfg.grad_accum
    return _Run(
        paths=paths,
        cfg=cfg,
        d=d,
        data=data,
        model=model,
        optimizer=make_optimizer(model, cfg),
        sampler=sampler,
        steps_per_epoch=steps_per_epoch,
        total=total,
        global_batch=global_batch,
        resume_key=resume_key(cfg, global_batch),
    )


def _plan(n_per_rank: int, cfg: PretrainConfig, world: int) -> tuple[int, int]:
    """Optimizer steps per epoch and in all (``max_steps`` caps the latter)."""
    steps_per_epoch = (n_per_rank // cfg.batch_size) // cfg.grad_accum
    if steps_per_epoch < 1:
        msg = (
            f"{n_per_rank} items per process cannot fill one step of batch_size {cfg.batch_size} x "
            f"grad_accum {cfg.grad_accum} (x {world} processes); lower pretrain.batch_size"
        )
        raise UsageError(msg)
    total = steps_per_epoch * cfg.epochs
    return steps_per_epoch, min(total, cfg.max_steps) if cfg.max_steps > 0 else total


def _start(run: _Run) -> None:
    """Step, history and probe losses before training: from the resume checkpoint, or fresh."""
    if resume(run):
        if run.d.main:
            logger.info("resuming from %s at step %d of %d", run.resume_path, run.step, run.total)
    else:
        run.probe_before = probe_losses(run.model, run.data, run.cfg, run.d.device)


def _wrap_ddp(model: PretrainModel, d: Dist) -> nn.Module:
    """DDP around the model under torchrun; the model itself in one process."""
    if d.world == 1:
        return model
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[d.local_rank] if d.device.type == "cuda" else None,
        find_unused_parameters=True,  # text-only steps leave the vision experts unused
    )


def _micro_batches(run: _Run) -> tuple[int, bool, list[list[dict[str, Any]]]]:
    """Epoch, step kind and the masked micro-batches of this rank for the next optimizer step."""
    cfg, step = run.cfg, run.step
    epoch = step // run.steps_per_epoch
    run.sampler.set_epoch(epoch)
    order = list(run.sampler)
    micro = cfg.batch_size
    first = (step % run.steps_per_epoch) * cfg.grad_accum * micro
    batches = [order[first + a * micro : first + (a + 1) * micro] for a in range(cfg.grad_accum)]
    unimodal = cfg.unimodal_every > 0 and (step + 1) % cfg.unimodal_every == 0
    parts = [make_parts(run.data, b, epoch, unimodal, cfg, run.model.encoder.cfg) for b in batches]
    return epoch, unimodal, parts


def _train_step(run: _Run) -> tuple[dict[str, Any], float, float]:
    """The next optimizer step; returns its history record and the raw MLM and MIM losses.

    L = w_mlm * ce_sum / M_t + w_mim * sq_err_sum / M_p, with M_t, M_p the masked tokens and
    patches of the whole step over all processes.
    """
    cfg, d, step = run.cfg, run.d, run.step
    torch.manual_seed(cfg.seed * 1_000_003 + step * 7919 + d.rank)  # dropout RNG
    epoch, unimodal, micro_parts = _micro_batches(run)
    counts = zip(*(masked_counts(p) for p in micro_parts), strict=True)  # (texts, patches)
    totals = all_sum(torch.tensor([sum(c) for c in counts], dtype=torch.float64), d)
    n_text, n_patch = max(float(totals[0]), 1.0), max(float(totals[1]), 1.0)
    lr = lr_at(step, run.total, cfg)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    sums = _backward(run, micro_parts, n_text, n_patch)
    mlm, mim = float(sums[0]) / n_text, float(sums[2]) / n_patch
    if not (math.isfinite(mlm) and math.isfinite(mim)):
        msg = f"non-finite loss at step {step} (mlm {mlm}, mim {mim}); the run stops"
        raise NonFiniteLossError(msg, hint="lower pretrain.lr or check the inputs")
    _optimizer_step(run)
    record = {
        "step": step + 1,
        "epoch": epoch,
        "lr": lr,
        "kind": "unimodal" if unimodal else "joint",
        "mlm_loss": mlm if sums[1] else None,
        "mim_loss": mim if sums[3] else None,
        "loss": cfg.mlm_weight * (mlm if sums[1] else 0.0)
        + cfg.mim_weight * (mim if sums[3] else 0.0),
    }
    return record, mlm, mim


def _backward(
    run: _Run, micro_parts: list[list[dict[str, Any]]], n_text: float, n_patch: float
) -> torch.Tensor:
    """Accumulate the step's gradients; (4,) float64 loss sums and counts over all processes."""
    cfg, d, ddp = run.cfg, run.d, run.ddp
    sums = torch.zeros(4, dtype=torch.float64)
    for a, parts in enumerate(micro_parts):
        last = a == len(micro_parts) - 1  # gradients are synchronised there
        with ddp.no_sync() if d.world > 1 and not last else contextlib.nullcontext():
            with run.autocast:
                s = ddp([to_device(p, d.device) for p in parts]).sum(0)  # (4,)
            loss = cfg.mlm_weight * s[0] / n_text + cfg.mim_weight * s[2] / n_patch
            (loss * d.world).backward()  # DDP averages gradients over the world
        sums += s.detach().double().cpu()
    return all_sum(sums.to(torch.float64), d)


def _optimizer_step(run: _Run) -> None:
    """Clip and apply the gradients (heads only during ``head_warmup_steps``)."""
    cfg = run.cfg
    if run.step < cfg.head_warmup_steps:
        # Heads first (LP-FT): the randomly initialised heads' first gradients would
        # distort the pretrained encoder, so its weights wait (no update, no decay).
        for p in run.model.encoder.parameters():
            p.grad = None
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def probe_losses(
    model: PretrainModel, data: ItemData, cfg: PretrainConfig, device: torch.device
) -> dict[str, float]:
    """Masked losses on a fixed probe set with fixed masks (joint + text-only inputs)."""
    was_training = model.training
    model.eval()
    n = min(cfg.probe_items, len(data.item_ids)) if cfg.probe_items > 0 else 0
    sums = torch.zeros(4)
    for start in range(0, n, cfg.batch_size):
        idx = list(range(start, min(n, start + cfg.batch_size)))
        parts = make_parts(data, idx, -1, False, cfg, model.encoder.cfg)
        sums += model([to_device(p, device) for p in parts]).sum(0).cpu()
    model.train(was_training)
    return {
        "mlm_loss": float(sums[0] / sums[1]) if sums[1] else float("nan"),
        "mim_loss": float(sums[2] / sums[3]) if sums[3] else float("nan"),
    }


def _finish(run: _Run, steps_run: int, seconds: float) -> dict[str, Any]:
    """Probe after training, metrics; rank 0 writes the checkpoint, metrics and history."""
    cfg, d, paths = run.cfg, run.d, run.paths
    probe_after = probe_losses(run.model, run.data, cfg, d.device)
    in_sync = ranks_in_sync(run.model, d)
    if in_sync is False:
        logger.error("parameters differ between ranks after training")
    metrics = run_metrics(run, probe_after, steps_run, seconds)
    metrics["ranks_in_sync"] = in_sync
    if d.main:
        state = checkpoint_state(run)
        state["metrics"] = without_wall_time(metrics)  # same run, same checkpoint bytes
        save_checkpoint(paths.models / CHECKPOINT_FILE, state)
        write_json(paths.metrics / METRICS_FILE, metrics)
        write_history(paths.metrics / HISTORY_FILE, run.history)
        run.resume_path.unlink(missing_ok=True)
        logger.info("wrote %s and %s", paths.models / CHECKPOINT_FILE, paths.metrics / METRICS_FILE)
    barrier(d)
    return metrics
