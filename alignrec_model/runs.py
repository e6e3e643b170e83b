"""The files of one training run: its inputs (interactions, features, encoder top), its checkpoint.

A run of model M on dataset D reads ``D/prepared/interactions.parquet`` and, for the models that
read features, ``D/features/<variant>.parquet``; it is named ``M`` or ``M-<variant>``
(:func:`run_name`), the stem of ``models/<run>.pt`` and ``metrics/*-<run>.json``. FREEDOM reads
one or two variants (``--features IMAGE,TEXT``): its variant is their names joined with ``+``
(``freedom-effnet-image+minilm-text``) and its matrix a tuple (:func:`variant_names`). Both the
single run (:func:`alignrec_model.train.train_dataset`) and the grid (:mod:`alignrec_model.grid`)
open their inputs with :func:`open_run` and write checkpoints with :func:`save_checkpoint`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from alignrec_data.atomic import atomic_path
from alignrec_data.config import to_dict
from alignrec_data.errors import UsageError
from alignrec_data.paths import DatasetPaths, check_name
from alignrec_model.data import InteractionData, load_interactions
from alignrec_model.recommenders import get_spec
from alignrec_model.runtime import resolve_device

if TYPE_CHECKING:
    from alignrec_model.train import TrainConfig, TrainResult

logger = logging.getLogger(__name__)


def run_name(model: str, variant: str | None) -> str:
    """``<model>`` or ``<model>-<variant>``: the stem of the checkpoint and metrics files."""
    return model if variant is None else f"{model}-{variant}"


#: Most variants a multi-feature model (FREEDOM) reads: an image one and a text one.
MAX_VARIANTS = 2


def variant_names(model: str, features: str) -> list[str]:
    """The variant names of ``--features``: a comma (or ``+``) list for FREEDOM, else one name.

    Args:
        model: A registered model.
        features: What ``--features`` (or ``train.features``) gives.

    Returns:
        The names, each checked by :func:`alignrec_data.paths.check_name`.

    Raises:
        UsageError: A list for a one-variant model, more than two variants, an empty or
            repeated name, or an invalid one.
    """
    if not get_spec(model).multi_features:
        if "," in features:
            msg = (
                f"model {model} reads one feature variant, found the list {features!r}; "
                "only freedom takes IMAGE,TEXT"
            )
            raise UsageError(msg)
        return [check_name(features, "feature variant")]
    names = [n.strip() for n in features.replace("+", ",").split(",")]
    if not 1 <= len(names) <= MAX_VARIANTS or len(set(names)) != len(names) or "" in names:
        msg = (
            f"--features for {model}: expected one or two distinct variants IMAGE,TEXT "
            f"(e.g. effnet-image,minilm-text), found {len(names)}: {features!r}"
        )
        raise UsageError(msg)
    return [check_name(n, "feature variant") for n in names]


@dataclass
class RunInputs:
    """What a run reads, loaded.

    Attributes:
        paths: The dataset's folders.
        variant: The feature variant (FREEDOM: the variants joined with ``+``), or None for the
            ID-only models.
        data: The interactions.
        matrix: (N_items, d) features of ``variant`` (FREEDOM: a tuple of one or two), or None.
        name: The run name (:func:`run_name`).
        files: The feature files read (none for the ID-only models).
    """

    paths: DatasetPaths
    variant: str | None
    data: InteractionData
    matrix: np.ndarray | tuple[np.ndarray, ...] | None
    name: str
    files: list[Path]


def open_run(
    data_dir: str | Path, dataset: str, config: TrainConfig, model: str, features: str | None
) -> RunInputs:
    """Check the names, then load the interactions and the feature variant of ``model``.

    Args:
        data_dir: The data directory.
        dataset: The dataset id.
        config: The train section (``features`` is the default variant).
        model: A registered model (:data:`alignrec_model.recommenders.MODELS`).
        features: The variant asked for (FREEDOM: ``IMAGE,TEXT`` or one variant); ignored
            (with a warning) by the ID-only models.

    Raises:
        UsageError: A bad name, an unknown model, or a missing file.
    """
    paths = DatasetPaths.of(data_dir, dataset)
    uses_features = get_spec(model).uses_features
    if features and not uses_features:
        logger.warning("model %s uses no features: --features %s is ignored", model, features)
    given = (features or config.features) if uses_features else None
    names = variant_names(model, given) if given else []  # checked before anything is read
    files = [paths.feature_file(name) for name in names]
    for path in files:
        if not path.is_file():
            msg = f"feature file {path} does not exist; run `alignrec-data extract` first"
            raise UsageError(msg)
    data = load_interactions(paths.prepared)
    matrices = tuple(load_feature_matrix(paths, name) for name in names)
    variant = "+".join(names) or None
    matrix = matrices if get_spec(model).multi_features else (matrices[0] if names else None)
    return RunInputs(paths, variant, data, matrix, run_name(model, variant), files)


def load_feature_matrix(paths: DatasetPaths, variant: str) -> np.ndarray:
    """Read ``features/<variant>.parquet`` as an (N_items, d) float32 matrix."""
    from alignrec_data.features import read_features

    return read_features(paths.feature_file(variant))[1]


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
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)  # a file object: no random temporary name inside the archive


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

    Built only for a model that fine-tunes the encoder (``alignrec``) with
    ``train.alignrec.finetune_encoder_layers > 0`` (see :mod:`alignrec_model.finetune`); its
    states are cached on ``train.device`` (bfloat16 on CUDA, float32 on the CPU) and it must
    reproduce ``matrix`` before training.
    """
    n_layers = config.alignrec.finetune_encoder_layers
    if not get_spec(model).finetunes_encoder or n_layers <= 0:
        return None
    from alignrec_model.finetune import encoder_top_for_dataset

    device = resolve_device(config.device, "train")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return encoder_top_for_dataset(
        paths, variant or config.features, n_layers, matrix, device, dtype
    )
