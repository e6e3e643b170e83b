r"""Training harness of stage 2: sampling, optimisation, early stopping, one run on a dataset.

The loop is MMRec's (and so the public AlignRec code's):

- every epoch the train pairs (u, i+) are shuffled and each gets one negative i- drawn
  uniformly from all items, redrawn while it is one of u's train items;
- Adam without weight decay; the learning rate of epoch e (0-based) is
  :math:`lr \cdot 0.96^{e / 50}` (:func:`lr_factor`, stepped once per epoch by ``LambdaLR``);
- after every epoch the model is evaluated on valid and test (full ranking,
  :mod:`alignrec_model.evaluate`); the best epoch is the one with the highest VALID Recall@20
  (strictly higher than every earlier epoch); training stops once ``patience`` consecutive
  evaluations have not improved on it more than ``patience`` times (MMRec's rule: with
  patience 30, the 31st evaluation without improvement stops the run);
- the reported valid and test metrics are those of the best epoch, and its parameters are the
  checkpoint. A non-finite loss stops the run with an error.

:func:`fit` is the pure loop (no files); :func:`train_dataset` loads a prepared dataset and a
feature variant (:mod:`alignrec_model.runs`), trains, and writes ``models/<run>.pt``,
``metrics/train-<run>.json`` and ``metrics/history-<run>.json`` (rewritten after every epoch).
The models are built by name from :mod:`alignrec_model.recommenders`; the grid search is
:mod:`alignrec_model.grid`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

# `X as X`: re-exported for callers of the one-module layout (benchmarks, tests).
from alignrec_data.atomic import write_json
from alignrec_data.config import check_ranges, to_dict
from alignrec_data.errors import AlignrecError
from alignrec_data.paths import check_name
from alignrec_model.alignrec import AlignRecConfig
from alignrec_model.base import Recommender
from alignrec_model.data import InteractionData
from alignrec_model.evaluate import METRICS, evaluate_model
from alignrec_model.freedom import FreedomConfig
from alignrec_model.recommenders import build_model
from alignrec_model.runs import RunInputs, encoder_top, open_run, save_checkpoint
from alignrec_model.runs import load_checkpoint as load_checkpoint
from alignrec_model.runs import load_feature_matrix as load_feature_matrix
from alignrec_model.runtime import DEVICES, resolve_device, torch_threads
from alignrec_model.sampling import NegativeSampler

logger = logging.getLogger(__name__)


class TrainingError(AlignrecError):
    """Training diverged (non-finite loss) or cannot proceed."""


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section of ``params.yaml``.

    The loop's defaults are the public AlignRec / MMRec code's; ``grid_*`` are its public grid.
    """

    features: str = "alignrec"  # feature variant of features/<variant>.parquet (alignrec, itemknn)
    seed: int = 999  # seeds initialisation, shuffling and negative sampling
    epochs: int = 1000  # maximum number of epochs
    batch_size: int = 2048  # (u, i+, i-) triples per step
    lr: float = 1e-3  # Adam learning rate of epoch 0
    lr_decay: float = 0.96  # lr of epoch e = lr * lr_decay ** (e / lr_decay_epochs)
    lr_decay_epochs: float = 50.0  # see lr_decay
    patience: int = 30  # stop after more than this many evaluations without improvement
    valid_metric: str = "recall@20"  # selects the best epoch (on valid) and the grid cell
    topks: tuple[int, ...] = (5, 10, 20, 50)  # cut-offs K of the reported metrics
    eval_batch_size: int = 1024  # users scored at once during evaluation (memory bound)
    embedding_dim: int = 64  # MF / LightGCN embedding width
    n_layers: int = 2  # LightGCN propagation layers
    reg_weight: float = 1e-4  # MF / LightGCN L2 weight on the batch's layer-0 embeddings
    knn_k: int = 10  # ItemKNN-CBF neighbours per item
    knn_shrink: float = 10.0  # ItemKNN-CBF cosine shrink
    grid_lr: tuple[float, ...] = (5e-3, 3e-3, 1e-3, 7e-4, 5e-4, 3e-4, 1e-4)  # grid: lr
    grid_cl: tuple[float, ...] = (1e-4, 1e-3, 5e-3, 1e-2, 0.1)  # grid: alignrec.cl_weight
    grid_sim: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)  # grid: alignrec.sim_weight
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda
    num_threads: int = 0  # torch CPU threads (0: torch's default)
    alignrec: AlignRecConfig = field(default_factory=AlignRecConfig)  # AlignRec's own keys
    freedom: FreedomConfig = field(default_factory=FreedomConfig)  # FREEDOM's own keys

    def __post_init__(self) -> None:
        """Reject values the loop cannot run with."""
        metric, _, k = self.valid_metric.partition("@")
        check_ranges(
            self,
            "train",
            {
                "epochs": (self.epochs >= 1, ">= 1 (a run trains at least one epoch)"),
                "batch_size": (self.batch_size >= 1, ">= 1"),
                "lr": (self.lr > 0, "> 0"),
                "lr_decay": (self.lr_decay > 0, "> 0"),
                "lr_decay_epochs": (self.lr_decay_epochs > 0, "> 0"),
                "patience": (self.patience >= 0, ">= 0"),
                "eval_batch_size": (self.eval_batch_size >= 1, ">= 1"),
                "topks": (bool(self.topks) and min(self.topks) >= 1, "a non-empty list of K >= 1"),
                "valid_metric": (
                    metric in METRICS and k.isdigit() and int(k) in self.topks,
                    f"<metric>@<K> with metric in {', '.join(METRICS)} and K in train.topks "
                    f"{list(self.topks)}",
                ),
                "embedding_dim": (self.embedding_dim >= 1, ">= 1"),
                "n_layers": (self.n_layers >= 0, ">= 0"),
                "reg_weight": (self.reg_weight >= 0, ">= 0"),
                "knn_k": (self.knn_k >= 1, ">= 1"),
                "knn_shrink": (self.knn_shrink >= 0, ">= 0"),
                "device": (self.device in DEVICES, f"one of {', '.join(DEVICES)}"),
                "num_threads": (self.num_threads >= 0, ">= 0"),
            },
        )
        check_name(self.features, "train.features")


def lr_factor(epoch: int, config: TrainConfig) -> float:
    """The learning-rate multiplier of (0-based) ``epoch``: ``lr_decay ** (epoch / step)``."""
    return config.lr_decay ** (epoch / config.lr_decay_epochs)


@dataclass
class TrainResult:
    """Outcome of one training run.

    Attributes:
        model: Model name.
        features: Feature variant, or None for ID-only models.
        best_epoch: 0-based epoch with the best valid metric (0 for untrainable models).
        epochs: Number of epochs trained.
        valid: Valid metrics of the best epoch.
        test: Test metrics of the best epoch.
        history: One record per epoch (epoch, lr, loss parts, valid/test headline metrics).
        best_state: ``state_dict`` of the best epoch (tensors cloned).
        seconds: Wall time of the run.
        config: The train config used.
    """

    model: str
    features: str | None
    best_epoch: int
    epochs: int
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, float]]
    best_state: dict[str, torch.Tensor]
    seconds: float
    config: TrainConfig

    def to_json(self) -> dict[str, Any]:
        """The documented result object (what ``train --format json`` prints)."""
        trained = [h["seconds_train"] for h in self.history if "seconds_train" in h]
        return {
            "model": self.model,
            "features": self.features,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "seed": self.config.seed,
            "lr": self.config.lr,
            "valid_metric": self.config.valid_metric,
            "valid": self.valid,
            "test": self.test,
            "seconds": round(self.seconds, 3),
            "seconds_per_epoch": _mean_seconds(trained),
            "seconds_per_evaluation": _mean_seconds([h["seconds_eval"] for h in self.history]),
            "settings": to_dict(self.config),  # the resolved train settings of this run
        }


def _mean_seconds(seconds: list[float]) -> float:
    return round(sum(seconds) / len(seconds), 3) if seconds else 0.0


def no_bar(progress: bool | None) -> bool | None:
    """The ``disable`` flag of tqdm (None: tqdm hides the bar when stderr is not a terminal)."""
    return None if progress is None else not progress


def _history_record(epoch, lr, parts, n_batches, metrics, t_train, t_eval) -> dict[str, float]:
    rec: dict[str, float] = {"epoch": epoch}
    if lr is not None:
        rec["lr"] = lr
        rec["loss"] = sum(parts.values()) / max(n_batches, 1)
        rec.update({f"loss_{k}": v / max(n_batches, 1) for k, v in parts.items()})
        rec["seconds_train"] = round(t_train, 3)
    rec["seconds_eval"] = round(t_eval, 3)
    for split, values in metrics.items():
        for key in ("recall@20", "ndcg@20", "recall@10", "ndcg@10"):
            if key in values:
                rec[f"{split}_{key}"] = values[key]
    return rec


def make_optimizer(
    model: Recommender, config: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam (no weight decay) over the model's parameter groups and the per-epoch decay."""
    # one kernel per step on CPU and GPU
    optimizer = torch.optim.Adam(model.param_groups(config.lr), fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, config))
    return optimizer, scheduler


def train_one_epoch(
    model: Recommender,
    optimizer: torch.optim.Optimizer,
    sampler: NegativeSampler,
    pairs: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    name: str = "model",
    device: torch.device | None = None,
) -> dict[str, float]:
    """One pass over the shuffled train pairs, one sampled negative per pair.

    Args:
        model: The recommender (put in train mode).
        optimizer: Its optimizer.
        sampler: Negative sampler.
        pairs: (M, 2) train (user, item) pairs.
        batch_size: Triples per step.
        rng: Generator of the shuffle.
        name: Model name for the error message.
        device: Where the model is (the batch's ids are moved there); default CPU.

    Returns:
        The loss parts summed over the batches (divide by the number of batches for means).

    Raises:
        TrainingError: The loss became NaN or infinite.
    """
    model.train()
    model.start_epoch()  # per-epoch graph (FREEDOM's pruning)
    perm = rng.permutation(len(pairs))
    users_all = pairs[perm, 0]  # (M,)
    pos_all = pairs[perm, 1]  # (M,)
    neg_all = sampler.sample(users_all)  # (M,)
    sums: dict[str, float] = {}
    for b, start in enumerate(range(0, len(pairs), batch_size)):
        sl = slice(start, start + batch_size)
        loss, parts = model.loss(
            *(torch.from_numpy(a[sl]).to(device) for a in (users_all, pos_all, neg_all))
        )
        if not torch.isfinite(loss):
            msg = (
                f"{name}: the loss is {loss.item()} at batch {b} (parts {parts}); "
                "lower train.lr or the loss weights"
            )
            raise TrainingError(msg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
    return sums


def fit(
    model: Recommender,
    data: InteractionData,
    config: TrainConfig,
    *,
    name: str = "model",
    features: str | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``model`` with early stopping on the valid metric (see the module docstring).

    Args:
        model: A :class:`~alignrec_model.base.Recommender`; untrainable models are evaluated once.
        data: The interactions.
        config: Loop settings (seed, epochs, batch size, lr schedule, patience, metrics).
        name: Model name for the result and logs.
        features: Feature variant for the result, or None.
        on_epoch: Called with each epoch's history record (e.g. to write it to disk).
        progress: Show a tqdm bar on stderr (None: only on a terminal).

    Returns:
        The result; ``best_state`` holds the best epoch's parameters.

    Raises:
        TrainingError: The loss became NaN or infinite.
    """
    t0 = time.perf_counter()
    with torch_threads(config.num_threads):
        if model.trainable:
            best, history = _train(model, data, config, name, on_epoch, progress)
        else:  # nothing to train: one evaluation, epoch 0 of 0
            metrics, t_eval = _evaluate(model, data, config)
            history = [_history_record(0, None, {}, 0, metrics, 0.0, t_eval)]
            if on_epoch:
                on_epoch(history[0])
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = _Best(epoch=0, metrics=metrics, state=state)
    epochs = len(history) if model.trainable else 0
    valid, test, seconds = best.metrics["valid"], best.metrics["test"], time.perf_counter() - t0
    return TrainResult(
        name, features, best.epoch, epochs, valid, test, history, best.state, seconds, config
    )


def _evaluate(
    model: Recommender, data: InteractionData, config: TrainConfig
) -> tuple[dict[str, dict[str, float]], float]:
    """Valid and test metrics of ``model`` now, and the seconds they took."""
    t = time.perf_counter()
    m = evaluate_model(model, data, ("valid", "test"), config.topks, config.eval_batch_size)
    return m, time.perf_counter() - t


@dataclass
class _Best:
    """The best epoch so far by the valid metric, and the evaluations since it."""

    value: float = -math.inf
    epoch: int = -1
    bad_evals: int = 0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    state: dict[str, torch.Tensor] = field(default_factory=dict)

    def update(self, epoch: int, metrics: dict[str, dict[str, float]], model, key: str) -> bool:
        """Keep ``epoch`` (its metrics and a CPU copy of the parameters) if it is better."""
        value = metrics["valid"][key]
        if not value > self.value:
            self.bad_evals += 1
            return False
        self.value, self.epoch, self.bad_evals, self.metrics = value, epoch, 0, metrics
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return True


def _train(model, data, config, name, on_epoch, progress) -> tuple[_Best, list[dict[str, float]]]:
    """The epochs of :func:`fit` for a trainable model: the best one and one record per epoch."""
    history: list[dict[str, float]] = []
    key = config.valid_metric
    device = resolve_device(config.device, "train")
    model.to(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    sampler = NegativeSampler(data, rng)
    optimizer, scheduler = make_optimizer(model, config)
    n_batches = math.ceil(len(data.train_pairs) / config.batch_size)
    best = _Best()
    bar = tqdm(range(config.epochs), desc=f"train {name}", unit="epoch", disable=no_bar(progress))
    for epoch in bar:
        t = time.perf_counter()
        lr_now = optimizer.param_groups[0]["lr"]
        sums = train_one_epoch(
            model, optimizer, sampler, data.train_pairs, config.batch_size, rng, name, device
        )
        scheduler.step()
        t_train = time.perf_counter() - t
        metrics, t_eval = _evaluate(model, data, config)
        rec = _history_record(epoch, lr_now, sums, n_batches, metrics, t_train, t_eval)
        history.append(rec)
        improved = best.update(epoch, metrics, model, key)
        logger.info(
            "%s epoch %d: loss %.4f, valid %s %.4f, test %s %.4f%s (%.1fs + %.1fs eval)",
            *(name, epoch, rec["loss"], key, metrics["valid"][key], key, metrics["test"][key]),
            *(" *" if improved else "", t_train, t_eval),
        )
        bar.set_postfix(
            loss=f"{rec['loss']:.4f}", valid=f"{metrics['valid'][key]:.4f}", best=best.epoch
        )
        if on_epoch:
            on_epoch(rec)
        if best.bad_evals > config.patience:
            logger.info("%s: early stop at epoch %d, best epoch %d", name, epoch, best.epoch)
            break
    bar.close()
    return best, history


# ----------------------------------------------------------------------------- one run


def train_dataset(
    data_dir: str | Path,
    dataset: str,
    config: TrainConfig,
    model: str = "alignrec",
    features: str | None = None,
    *,
    write: bool = True,
) -> TrainResult:
    """Train one model on a prepared dataset and write its checkpoint and metrics.

    Args:
        data_dir: The data directory.
        dataset: The dataset id (``<data_dir>/<dataset>/prepared/interactions.parquet``).
        config: The train section.
        model: One of :data:`~alignrec_model.recommenders.MODELS`.
        features: Feature variant of the models that read features (default
            ``config.features``); ignored by the ID-only models.
        write: Write ``models/<run>.pt``, ``metrics/train-<run>.json`` and
            ``metrics/history-<run>.json`` (run = ``<model>[-<variant>]``).

    Returns:
        The result.
    """
    run = open_run(data_dir, dataset, config, model, features)
    history: list[dict[str, float]] = []

    def on_epoch(rec: dict[str, float]) -> None:
        history.append(rec)
        if write:
            write_json(run.paths.metrics / f"history-{run.name}.json", history)

    logger.info("train %s on %s: %s", run.name, dataset, run.data.summary())
    result = fit_run(run, config, model, on_epoch=on_epoch)
    if write:
        save_checkpoint(run.paths.models / f"{run.name}.pt", result, run.data)
        write_json(run.paths.metrics / f"train-{run.name}.json", result.to_json())
    return result


def fit_run(
    run: RunInputs,
    config: TrainConfig,
    model: str,
    *,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Build ``model`` on a run's inputs (with its encoder top, if any) and :func:`fit` it."""
    feature_fn = encoder_top(run.paths, config, model, run.variant, run.matrix)
    net = build_model(model, run.data, config, run.matrix, feature_fn=feature_fn)
    return fit(
        net,
        run.data,
        config,
        name=model,
        features=run.variant,
        on_epoch=on_epoch,
        progress=progress,
    )


def metric_table(metrics: dict[str, dict[str, float]], topks: Sequence[int]) -> list[str]:
    """Text lines ``split  metric@K ...`` for the CLI."""
    keys = [f"{m}@{t}" for m in METRICS for t in topks]
    return [
        f"{split:<5} " + " ".join(f"{k}={values[k]:.4f}" for k in keys if k in values)
        for split, values in metrics.items()
    ]
