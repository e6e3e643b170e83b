r"""Training harness of stage 2: sampling, optimisation, early stopping, checkpoints, grid.

The loop is MMRec's (and so the public AlignRec code's):

- every epoch the train pairs (u, i+) are shuffled and each gets one negative i- drawn
  uniformly from all items, redrawn while it is one of u's train items;
- Adam without weight decay; the learning rate of epoch e (0-based) is
  :math:`lr \cdot 0.96^{e / 50}` (``LambdaLR``, stepped once per epoch);
- after every epoch the model is evaluated on valid and test (full ranking,
  :mod:`alignrec_model.evaluate`); the best epoch is the one with the highest VALID Recall@20
  (strictly higher than every earlier epoch); training stops once ``patience`` consecutive
  evaluations have not improved on it more than ``patience`` times (MMRec's rule: with
  patience 30, the 31st evaluation without improvement stops the run);
- the reported valid and test metrics are those of the best epoch, and its parameters are the
  checkpoint. A non-finite loss stops the run with an error.

:func:`fit` is the pure loop (no files); :func:`train_dataset` loads a prepared dataset and a
feature variant, trains, and writes ``models/<run>.pt``, ``metrics/train-<run>.json`` and
``metrics/history-<run>.json`` (rewritten after every epoch); :func:`run_grid` searches
lr x cl x sim and picks the cell by VALID Recall@20 (MMRec picks by test, a leak not copied).
"""

from __future__ import annotations

import dataclasses
import itertools
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

from alignrec_data.atomic import atomic_path, write_json
from alignrec_data.config import to_dict
from alignrec_data.errors import AlignrecError, DataFormatError, UsageError
from alignrec_data.paths import DatasetPaths, check_name
from alignrec_model.alignrec import AlignRec, AlignRecConfig
from alignrec_model.base import Recommender
from alignrec_model.baselines import MFBPR, ItemKNNCBF, LightGCN, Popularity
from alignrec_model.data import InteractionData, load_interactions
from alignrec_model.evaluate import METRICS, evaluate_model
from alignrec_model.runtime import DEVICES, resolve_device, torch_threads

logger = logging.getLogger(__name__)

#: Models the trainer builds by name.
MODELS: tuple[str, ...] = ("alignrec", "lightgcn", "mf", "itemknn", "pop")
#: Models that read a feature variant.
FEATURE_MODELS: frozenset[str] = frozenset({"alignrec", "itemknn"})


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

    def __post_init__(self) -> None:
        """Reject values the loop cannot run with."""
        checks = {  # key: (holds, what is expected)
            "epochs": (self.epochs >= 1, ">= 1 (a run trains at least one epoch)"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "lr": (self.lr > 0, "> 0"),
            "lr_decay": (self.lr_decay > 0, "> 0"),
            "lr_decay_epochs": (self.lr_decay_epochs > 0, "> 0"),
            "patience": (self.patience >= 0, ">= 0"),
            "eval_batch_size": (self.eval_batch_size >= 1, ">= 1"),
            "topks": (bool(self.topks) and min(self.topks) >= 1, "a non-empty list of K >= 1"),
            "embedding_dim": (self.embedding_dim >= 1, ">= 1"),
            "n_layers": (self.n_layers >= 0, ">= 0"),
            "reg_weight": (self.reg_weight >= 0, ">= 0"),
            "knn_k": (self.knn_k >= 1, ">= 1"),
            "knn_shrink": (self.knn_shrink >= 0, ">= 0"),
            "device": (self.device in DEVICES, f"one of {', '.join(DEVICES)}"),
            "num_threads": (self.num_threads >= 0, ">= 0"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                msg = (
                    f"train.{name} = {getattr(self, name)!r} is out of range: expected {expected}; "
                    "fix params.yaml or the command-line override"
                )
                raise UsageError(msg)
        check_name(self.features, "train.features")
        metric, _, k = self.valid_metric.partition("@")
        if metric not in METRICS or not k.isdigit() or int(k) not in self.topks:
            msg = (
                f"train.valid_metric = {self.valid_metric!r}: expected <metric>@<K> with metric "
                f"in {', '.join(METRICS)} and K in train.topks {list(self.topks)}"
            )
            raise UsageError(msg)


class NegativeSampler:
    """Uniform negatives that are never one of the user's train items.

    Each draw is uniform over all items; draws that hit a train item of their user are redrawn
    (vectorised rejection sampling, as MMRec's per-user loop).

    Args:
        data: The interactions (uses ``train_pairs`` and ``n_items``).
        rng: The generator (seeded by the caller).

    Raises:
        UsageError: A user has interacted with every item (no negative exists).
    """

    def __init__(self, data: InteractionData, rng: np.random.Generator) -> None:
        self.n_items = data.n_items
        self.rng = rng
        # train_pairs is sorted by (user, item), so the keys are sorted.
        self.keys = data.train_pairs[:, 0] * data.n_items + data.train_pairs[:, 1]  # (M,)
        full = np.flatnonzero(np.diff(data.train.indptr) >= data.n_items)
        if len(full):
            msg = f"user {full[0]} has interacted with all {data.n_items} items: no negative"
            raise UsageError(msg)

    def is_train(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(N,) bool: ``items[k]`` is a train item of ``users[k]``."""
        q = users.astype(np.int64) * self.n_items + items
        pos = np.searchsorted(self.keys, q)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == q

    def sample(self, users: np.ndarray) -> np.ndarray:
        """One negative item per entry of ``users``: (N,) int64."""
        neg = self.rng.integers(0, self.n_items, size=len(users), dtype=np.int64)
        bad = np.flatnonzero(self.is_train(users, neg))
        while len(bad):
            neg[bad] = self.rng.integers(0, self.n_items, size=len(bad), dtype=np.int64)
            bad = bad[self.is_train(users[bad], neg[bad])]
        return neg


def lr_factor(epoch: int, config: TrainConfig) -> float:
    """The learning-rate multiplier of (0-based) ``epoch``: ``lr_decay ** (epoch / step)``."""
    return config.lr_decay ** (epoch / config.lr_decay_epochs)


def run_name(model: str, variant: str | None) -> str:
    """``<model>`` or ``<model>-<variant>``: the stem of the checkpoint and metrics files."""
    return model if variant is None else f"{model}-{variant}"


def build_model(
    name: str,
    data: InteractionData,
    config: TrainConfig,
    features: np.ndarray | None = None,
    seed: int | None = None,
    feature_fn: torch.nn.Module | None = None,
) -> Recommender:
    """Build a recommender by name.

    Args:
        name: One of :data:`MODELS`.
        data: The interactions.
        config: The train config (model hyper-parameters).
        features: (N_items, d) features, required by ``alignrec`` and ``itemknn``.
        seed: Initialisation seed; default ``config.seed``.
        feature_fn: AlignRec's jointly fine-tuned encoder top
            (:func:`alignrec_model.finetune.encoder_top_for_dataset`), or None.

    Returns:
        The model.

    Raises:
        UsageError: Unknown name, or features missing / of the wrong shape.
    """
    seed = config.seed if seed is None else seed
    if name not in MODELS:
        msg = f"unknown model {name!r}; expected one of {', '.join(MODELS)}"
        raise UsageError(msg)
    if name in FEATURE_MODELS:
        if features is None:
            msg = f"model {name!r} needs item features (--features VARIANT)"
            raise UsageError(msg)
        if features.shape[0] != data.n_items:
            msg = (
                f"features have {features.shape[0]} rows but the dataset has {data.n_items} "
                "items; extract the features for this dataset again"
            )
            raise DataFormatError(msg)
    if name == "alignrec":
        return AlignRec(data, features, config.alignrec, seed=seed, feature_fn=feature_fn)
    if name == "lightgcn":
        return LightGCN(data, config.embedding_dim, config.n_layers, config.reg_weight, seed)
    if name == "mf":
        return MFBPR(data, config.embedding_dim, config.reg_weight, seed)
    if name == "itemknn":
        return ItemKNNCBF(data, features, k=config.knn_k, shrink=config.knn_shrink)
    return Popularity(data)


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
        trained = [h for h in self.history if "seconds_train" in h]
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
            "seconds_per_epoch": (
                round(sum(h["seconds_train"] for h in trained) / len(trained), 3)
                if trained
                else 0.0
            ),
            "seconds_per_evaluation": round(
                sum(h["seconds_eval"] for h in self.history) / max(len(self.history), 1), 3
            ),
        }


EpochCallback = Callable[[dict[str, float]], None]


def _no_bar(progress: bool | None) -> bool | None:
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
    groups = (
        model.param_groups(config.lr)
        if hasattr(model, "param_groups")
        else [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr}]
    )
    optimizer = torch.optim.Adam(groups, fused=True)  # one kernel per step on CPU and GPU
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: config.lr_decay ** (e / config.lr_decay_epochs)
    )
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
    on_epoch: EpochCallback | None = None,
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
    with torch_threads(config.num_threads):
        return _fit(
            model, data, config, name=name, features=features, on_epoch=on_epoch, progress=progress
        )


def _fit(
    model: Recommender,
    data: InteractionData,
    config: TrainConfig,
    *,
    name: str = "model",
    features: str | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """:func:`fit` with the thread setting applied."""
    t0 = time.perf_counter()
    history: list[dict[str, float]] = []
    key = config.valid_metric

    def evaluate() -> tuple[dict[str, dict[str, float]], float]:
        t = time.perf_counter()
        m = evaluate_model(model, data, ("valid", "test"), config.topks, config.eval_batch_size)
        return m, time.perf_counter() - t

    if not model.trainable:
        metrics, t_eval = evaluate()
        rec = _history_record(0, None, {}, 0, metrics, 0.0, t_eval)
        history.append(rec)
        if on_epoch:
            on_epoch(rec)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return TrainResult(
            name,
            features,
            0,
            0,
            metrics["valid"],
            metrics["test"],
            history,
            state,
            time.perf_counter() - t0,
            config,
        )

    device = resolve_device(config.device, "train")
    model.to(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    sampler = NegativeSampler(data, rng)
    optimizer, scheduler = make_optimizer(model, config)
    pairs = data.train_pairs
    n_batches = math.ceil(len(pairs) / config.batch_size)
    best_value, best_epoch, bad_evals = -math.inf, -1, 0
    best_metrics: dict[str, dict[str, float]] = {}
    best_state: dict[str, torch.Tensor] = {}
    epoch = -1
    bar = tqdm(range(config.epochs), desc=f"train {name}", unit="epoch", disable=_no_bar(progress))
    for epoch in bar:
        t = time.perf_counter()
        lr_now = optimizer.param_groups[0]["lr"]
        sums = train_one_epoch(
            model, optimizer, sampler, pairs, config.batch_size, rng, name, device
        )
        scheduler.step()
        t_train = time.perf_counter() - t
        metrics, t_eval = evaluate()
        rec = _history_record(epoch, lr_now, sums, n_batches, metrics, t_train, t_eval)
        history.append(rec)
        value = metrics["valid"][key]
        improved = value > best_value
        if improved:
            best_value, best_epoch, bad_evals = value, epoch, 0
            best_metrics = metrics
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            bad_evals += 1
        logger.info(
            "%s epoch %d: loss %.4f, valid %s %.4f, test %s %.4f%s (%.1fs + %.1fs eval)",
            name,
            epoch,
            rec["loss"],
            key,
            value,
            key,
            metrics["test"][key],
            " *" if improved else "",
            t_train,
            t_eval,
        )
        bar.set_postfix(loss=f"{rec['loss']:.4f}", valid=f"{value:.4f}", best=best_epoch)
        if on_epoch:
            on_epoch(rec)
        if bad_evals > config.patience:
            logger.info("%s: early stop at epoch %d, best epoch %d", name, epoch, best_epoch)
            break
    bar.close()
    return TrainResult(
        name,
        features,
        best_epoch,
        epoch + 1,
        best_metrics["valid"],
        best_metrics["test"],
        history,
        best_state,
        time.perf_counter() - t0,
        config,
    )


# ----------------------------------------------------------------------------- files


def load_feature_matrix(paths: DatasetPaths, variant: str) -> np.ndarray:
    """Read ``features/<variant>.parquet`` as an (N_items, d) float32 matrix."""
    from alignrec_data.features import read_features

    _, matrix, _ = read_features(paths.feature_file(variant))
    return matrix


def save_checkpoint(path: Path, result: TrainResult, data: InteractionData) -> None:
    """Atomically save the best state, the config and the counts.

    ``torch.load(path, weights_only=True)`` (see :func:`load_checkpoint`) reads it back.
    """
    payload = {
        "model": result.model,
        "features": result.features,
        "best_epoch": result.best_epoch,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "config": to_dict(result.config),
        "state_dict": result.best_state,
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors only, ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        msg = f"checkpoint {path} does not exist; run `alignrec-data train` first"
        raise UsageError(msg)
    return torch.load(path, map_location="cpu", weights_only=True)


def encoder_top(
    paths: DatasetPaths,
    config: TrainConfig,
    model: str,
    variant: str | None,
    matrix: np.ndarray | None,
) -> torch.nn.Module | None:
    """The jointly fine-tuned encoder top for AlignRec, or None (frozen features).

    Built only for ``model == "alignrec"`` with ``train.alignrec.finetune_encoder_layers > 0``
    (see :mod:`alignrec_model.finetune`); its states are cached on ``train.device`` (bfloat16
    on CUDA, float32 on the CPU) and it must reproduce ``matrix`` before training.
    """
    n_layers = config.alignrec.finetune_encoder_layers
    if model != "alignrec" or n_layers <= 0:
        return None
    from alignrec_model.finetune import encoder_top_for_dataset

    device = resolve_device(config.device, "train")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return encoder_top_for_dataset(
        paths, variant or config.features, n_layers, matrix, device, dtype
    )


def train_dataset(
    data_dir: str | Path,
    dataset: str,
    config: TrainConfig,
    model: str = "alignrec",
    features: str | None = None,
    *,
    progress: bool | None = None,
    write: bool = True,
) -> TrainResult:
    """Train one model on a prepared dataset and write its checkpoint and metrics.

    Args:
        data_dir: The data directory.
        dataset: The dataset id (``<data_dir>/<dataset>/prepared/interactions.parquet``).
        config: The train section.
        model: One of :data:`MODELS`.
        features: Feature variant for ``alignrec`` / ``itemknn`` (default ``config.features``);
            ignored by the ID-only models.
        progress: tqdm bar on stderr (None: on a terminal only).
        write: Write ``models/<run>.pt``, ``metrics/train-<run>.json`` and
            ``metrics/history-<run>.json`` (run = ``<model>[-<variant>]``).

    Returns:
        The result.
    """
    paths = DatasetPaths.of(data_dir, dataset)
    if features and model not in FEATURE_MODELS:
        logger.warning("model %s uses no features: --features %s is ignored", model, features)
    variant = (features or config.features) if model in FEATURE_MODELS else None
    if variant:
        paths.feature_file(variant)  # checks the name before anything is read
    data = load_interactions(paths.prepared)
    matrix = load_feature_matrix(paths, variant) if variant else None
    name = run_name(model, variant)
    history: list[dict[str, float]] = []

    def on_epoch(rec: dict[str, float]) -> None:
        history.append(rec)
        if write:
            write_json(paths.metrics / f"history-{name}.json", history)

    logger.info("train %s on %s: %s", name, dataset, data.summary())
    feature_fn = encoder_top(paths, config, model, variant, matrix)
    net = build_model(model, data, config, matrix, feature_fn=feature_fn)
    result = fit(
        net, data, config, name=model, features=variant, on_epoch=on_epoch, progress=progress
    )
    if write:
        save_checkpoint(paths.models / f"{name}.pt", result, data)
        write_json(paths.metrics / f"train-{name}.json", result.to_json())
    return result


# ----------------------------------------------------------------------------- grid


@dataclass
class GridResult:
    """All cells of a grid search and the chosen one.

    Attributes:
        cells: One record per cell: its settings, best epoch, valid and test metrics.
        best: The chosen cell's :class:`TrainResult` (highest valid metric; first on ties).
    """

    cells: list[dict[str, Any]]
    best: TrainResult

    def to_json(self) -> dict[str, Any]:
        """The chosen run's object plus ``grid`` (every cell) and ``chosen`` (its settings)."""
        out = self.best.to_json()
        out["grid"] = self.cells
        out["chosen"] = {
            "lr": self.best.config.lr,
            "cl_weight": self.best.config.alignrec.cl_weight,
            "sim_weight": self.best.config.alignrec.sim_weight,
        }
        return out


def grid_configs(config: TrainConfig, model: str) -> list[TrainConfig]:
    """The cells of the grid: lr x cl x sim for AlignRec, lr only for the other models."""
    if model == "alignrec":
        combos = itertools.product(config.grid_lr, config.grid_cl, config.grid_sim)
        return [
            dataclasses.replace(
                config,
                lr=lr,
                alignrec=dataclasses.replace(config.alignrec, cl_weight=cl, sim_weight=sim),
            )
            for lr, cl, sim in combos
        ]
    return [dataclasses.replace(config, lr=lr) for lr in config.grid_lr]


def run_grid(
    data: InteractionData,
    config: TrainConfig,
    model: str = "alignrec",
    features: np.ndarray | None = None,
    variant: str | None = None,
    *,
    progress: bool | None = None,
    on_cell: Callable[[dict[str, Any], TrainResult, bool], None] | None = None,
    feature_fn_factory: Callable[[], torch.nn.Module] | None = None,
    done: Sequence[dict[str, Any]] = (),
    best: TrainResult | None = None,
) -> GridResult:
    """Train every grid cell and choose by the VALID metric (``config.valid_metric``).

    Args:
        data: The interactions.
        config: The train section (``grid_lr``, ``grid_cl``, ``grid_sim``).
        model: Model name.
        features: Features for feature models.
        variant: Feature variant name for the results.
        progress: tqdm bars.
        on_cell: Called after each trained cell with its record, its result and whether it
            is the best so far.
        feature_fn_factory: Makes a fresh fine-tuned encoder top for each cell (joint
            fine-tuning), or None.
        done: Records of cells finished earlier (resume): they are kept, not retrained.
        best: The best result among ``done`` (resume).

    Returns:
        The cells and the chosen run.
    """
    key = config.valid_metric
    finished = {_cell_key(c) for c in done}
    cells: list[dict[str, Any]] = list(done)
    todo = [
        cfg for cfg in grid_configs(config, model) if _cell_key(_cell(cfg, model)) not in finished
    ]
    if done:
        logger.info("grid %s: %d cells done earlier, %d to train", model, len(done), len(todo))
    for cfg in tqdm(todo, desc=f"grid {model}", disable=_no_bar(progress)):
        feature_fn = feature_fn_factory() if feature_fn_factory else None
        net = build_model(model, data, cfg, features, feature_fn=feature_fn)
        result = fit(net, data, cfg, name=model, features=variant, progress=progress)
        cell = {
            **_cell(cfg, model),
            "best_epoch": result.best_epoch,
            "epochs": result.epochs,
            "valid": result.valid,
            "test": result.test,
        }
        cells.append(cell)
        improved = best is None or result.valid[key] > best.valid[key]
        if improved:
            best = result
        if on_cell:
            on_cell(cell, result, improved)
        del result
    if best is None:
        msg = "the grid is empty: train.grid_lr (and grid_cl, grid_sim for alignrec) need values"
        raise UsageError(msg)
    return GridResult(cells, best)


def _cell(cfg: TrainConfig, model: str) -> dict[str, Any]:
    """The settings that name a grid cell."""
    return {
        "lr": cfg.lr,
        "cl_weight": cfg.alignrec.cl_weight if model == "alignrec" else None,
        "sim_weight": cfg.alignrec.sim_weight if model == "alignrec" else None,
    }


def _cell_key(cell: dict[str, Any]) -> tuple:
    return (cell["lr"], cell["cl_weight"], cell["sim_weight"])


def _grid_fingerprint(
    config: TrainConfig, model: str, variant: str | None, data: InteractionData, paths
) -> str:
    """What a resumed grid must share with the interrupted one: settings, data and features."""
    import hashlib
    import json

    settings = to_dict(config)
    for free in ("grid_lr", "grid_cl", "grid_sim", "device", "num_threads"):
        settings.pop(free, None)  # the grid may grow; where it runs does not change a cell
    digest = hashlib.sha256(
        json.dumps([settings, model, variant, data.summary()], sort_keys=True).encode()
    )
    for path in [paths.prepared / "interactions.parquet"] + (
        [paths.feature_file(variant)] if variant else []
    ):
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def grid_dataset(
    data_dir: str | Path,
    dataset: str,
    config: TrainConfig,
    model: str = "alignrec",
    features: str | None = None,
    *,
    progress: bool | None = None,
) -> GridResult:
    """Run the grid on a prepared dataset; write the chosen checkpoint and ``grid-<run>.json``.

    The chosen cell's checkpoint and metrics are written as :func:`train_dataset` writes them
    (``models/<run>.pt``, ``metrics/train-<run>.json``), and every cell to
    ``metrics/grid-<run>.json``.

    Resumable: after each cell, ``metrics/grid-<run>.partial.json`` records the finished cells
    (and ``models/<run>.grid-best.pt`` the best one's checkpoint); a later call with the same
    settings, interactions and features trains only the missing cells. Both files are removed
    when the grid completes; with other settings they are ignored (and replaced).
    """
    paths = DatasetPaths.of(data_dir, dataset)
    variant = (features or config.features) if model in FEATURE_MODELS else None
    if variant:
        paths.feature_file(variant)  # checks the name before anything is read
    data = load_interactions(paths.prepared)
    matrix = load_feature_matrix(paths, variant) if variant else None
    name = run_name(model, variant)
    if not grid_configs(config, model):
        msg = "the grid is empty: train.grid_lr (and grid_cl, grid_sim for alignrec) need values"
        raise UsageError(msg)
    partial = paths.metrics / f"grid-{name}.partial.json"
    best_ckpt = paths.models / f"{name}.grid-best.pt"
    fingerprint = _grid_fingerprint(config, model, variant, data, paths)
    done, best = _resume_grid(partial, best_ckpt, fingerprint, config, model, variant)
    state: dict[str, Any] = {"fingerprint": fingerprint, "cells": list(done), "best": None}
    if best is not None:
        state["best"] = _result_record(best)

    def on_cell(cell: dict[str, Any], result: TrainResult, improved: bool) -> None:
        state["cells"].append(cell)
        if improved:
            save_checkpoint(best_ckpt, result, data)  # before the record that points at it
            state["best"] = _result_record(result)
        write_json(partial, state)

    top = encoder_top(paths, config, model, variant, matrix)
    factory = None
    if top is not None:
        initial = {k: v.detach().clone() for k, v in top.state_dict().items()}

        def factory() -> torch.nn.Module:
            top.load_state_dict(initial)  # every cell starts from the stage-1 encoder
            return top

    result = run_grid(
        data,
        config,
        model,
        matrix,
        variant,
        progress=progress,
        on_cell=on_cell,
        feature_fn_factory=factory,
        done=done,
        best=best,
    )
    save_checkpoint(paths.models / f"{name}.pt", result.best, data)
    write_json(paths.metrics / f"train-{name}.json", result.best.to_json())
    write_json(paths.metrics / f"grid-{name}.json", result.to_json())
    partial.unlink(missing_ok=True)
    best_ckpt.unlink(missing_ok=True)
    return result


def _result_record(result: TrainResult) -> dict[str, Any]:
    """What a resumed grid needs of the best cell's result besides its checkpoint."""
    return {
        **_cell(result.config, result.model),
        "model": result.model,
        "features": result.features,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "valid": result.valid,
        "test": result.test,
        "history": result.history,
        "seconds": result.seconds,
    }


def _resume_grid(
    partial: Path,
    best_ckpt: Path,
    fingerprint: str,
    config: TrainConfig,
    model: str,
    variant: str | None,
) -> tuple[list[dict[str, Any]], TrainResult | None]:
    """Cells finished by an interrupted grid with the same fingerprint, and its best result."""
    import json

    if not partial.is_file():
        return [], None
    try:
        state = json.loads(partial.read_text())
    except (OSError, ValueError):
        logger.warning("ignoring unreadable grid progress file %s", partial)
        return [], None
    if state.get("fingerprint") != fingerprint:
        logger.info("grid progress %s is for other settings or data: starting over", partial)
        return [], None
    record = state.get("best")
    if not state.get("cells") or record is None or not best_ckpt.is_file():
        return [], None
    cfg = next(
        (c for c in grid_configs(config, model) if _cell(c, model) == _cell_key_dict(record)),
        None,
    )
    if cfg is None:  # the best cell left the grid: its result cannot be compared fairly
        return [], None
    best = TrainResult(
        record["model"],
        record["features"],
        record["best_epoch"],
        record["epochs"],
        record["valid"],
        record["test"],
        record["history"],
        load_checkpoint(best_ckpt)["state_dict"],
        record["seconds"],
        cfg,
    )
    current = {_cell_key(_cell(c, model)) for c in grid_configs(config, model)}
    cells = [c for c in state["cells"] if _cell_key(c) in current]
    logger.info("resuming the grid from %s (%d cells done)", partial, len(cells))
    return cells, best


def _cell_key_dict(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("lr", "cl_weight", "sim_weight")}


def metric_table(metrics: dict[str, dict[str, float]], topks: Sequence[int]) -> list[str]:
    """Text lines ``split  metric@K ...`` for the CLI."""
    lines = []
    for split, values in metrics.items():
        keys = [f"{m}@{t}" for m in METRICS for t in topks]
        cells = [f"{k}={values[k]:.4f}" for k in keys if k in values]
        lines.append(f"{split:<5} " + " ".join(cells))
    return lines
