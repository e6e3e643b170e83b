r"""The three intermediate evaluations of a feature set (spec: "Intermediate evaluations").

- **zero-shot** (no training): a user's vector is the mean of the features of its train items,
  items are ranked by cosine to it,
  :math:`\mathrm{score}(u, j) = \cos(\frac{1}{|R_u|}\sum_{i \in R_u} f_i, f_j)`.
- **item-cf** (no training): ItemKNN on the features, cosine with shrink 10, top-10
  neighbours per item, :math:`\mathrm{score}(u, \cdot) = R_u S_{knn}`
  (:class:`alignrec_model.baselines.ItemKNNCBF`).
- **mask-modality**: a fixed seeded permutation picks 50% of the items; their features are
  recomputed without one modality (the image or the text), the recommender is trained and
  evaluated on the masked features as usual, and the drop against the unmasked features is
  reported. "Recomputed without the modality" for precomputed feature files:

  ============================  ================================  =============================
  variant                       masked image                      masked text
  ============================  ================================  =============================
  ``alignrec`` (joint CLS)      row of ``mmenc-text`` (text only)  row of ``mmenc-image``
  ``mmenc-image``               zero row                          unchanged (error)
  ``mmenc-text``                unchanged (error)                 zero row
  ``effnet-image``              zero row                          unchanged (error)
  ``minilm-text``               unchanged (error)                 zero row
  ============================  ================================  =============================

  The table is read from each feature file's metadata
  (:func:`~alignrec_data.feature_info.feature_info`): a joint feature's ``without`` names the
  replacement per masked modality, a unimodal feature's ``modality`` the one it uses (files
  without metadata: by name, see :data:`~alignrec_data.feature_info.LEGACY_VARIANTS`). A
  feature of unknown modality is zeroed, unless ``replacement`` names the feature file that
  holds the item features without that modality.

All three use the evaluator of :mod:`alignrec_model.evaluate` (full ranking, train items
excluded, Recall/NDCG/Precision/MAP at 5/10/20/50).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alignrec_data.atomic import write_json
from alignrec_data.config import check_ranges, to_dict
from alignrec_data.errors import UsageError
from alignrec_data.feature_info import LEGACY_VARIANTS, feature_info
from alignrec_data.features import read_features
from alignrec_data.paths import DatasetPaths, check_name
from alignrec_model.base import Recommender
from alignrec_model.baselines import ItemKNNCBF
from alignrec_model.data import InteractionData, load_interactions
from alignrec_model.evaluate import EVAL_BATCH_SIZE, TOPKS, evaluate_model
from alignrec_model.recommenders import FEATURE_MODELS, build_model
from alignrec_model.train import TrainConfig, fit

logger = logging.getLogger(__name__)

PROTOCOLS: tuple[str, ...] = ("zero-shot", "item-cf", "mask-modality")
MODALITIES: tuple[str, ...] = ("image", "text")

#: Unimodal variants and the modality they are computed from, for files without metadata.
UNIMODAL_VARIANTS: dict[str, str] = {
    v: d["modality"] for v, d in LEGACY_VARIANTS.items() if d["modality"] != "joint"
}


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section of ``params.yaml`` (the intermediate feature evaluations)."""

    topks: tuple[int, ...] = (5, 10, 20, 50)  # cut-offs K of the reported metrics
    batch_size: int = 1024  # users scored at once (memory bound)
    knn_k: int = 10  # item-cf: neighbours per item
    knn_shrink: float = 10.0  # item-cf: cosine shrink
    mask_fraction: float = 0.5  # mask-modality: share of items whose modality is masked
    mask_seed: int = 999  # mask-modality: seed of the fixed permutation of the items
    mask_modality: str = "image"  # mask-modality: modality to mask (image or text)
    mask_model: str = "alignrec"  # mask-modality: recommender trained (train section's loop)

    def __post_init__(self) -> None:
        """Reject values the evaluations cannot run with."""
        check_ranges(
            self,
            "evaluate",
            {
                "topks": (bool(self.topks) and min(self.topks) >= 1, "a non-empty list of K >= 1"),
                "batch_size": (self.batch_size >= 1, ">= 1"),
                "knn_k": (self.knn_k >= 1, ">= 1"),
                "knn_shrink": (self.knn_shrink >= 0, ">= 0"),
                "mask_fraction": (0.0 <= self.mask_fraction <= 1.0, "between 0 and 1"),
                "mask_modality": (
                    self.mask_modality in MODALITIES,
                    f"one of {', '.join(MODALITIES)}",
                ),
                "mask_model": (
                    self.mask_model in FEATURE_MODELS,
                    f"one of {', '.join(FEATURE_MODELS)} (a recommender that reads features)",
                ),
            },
        )


class ZeroShot(Recommender):
    """Zero-shot ranking: cosine between the mean train-item feature of a user and each item.

    Args:
        data: The interactions (R is the train matrix).
        features: (N_items, d) features; zero rows have cosine 0 with everything.
    """

    trainable = False

    def __init__(self, data: InteractionData, features: np.ndarray) -> None:
        super().__init__()
        if features.shape[0] != data.n_items:
            msg = f"features have {features.shape[0]} rows, expected {data.n_items} (one per item)"
            raise UsageError(msg)
        self.train_matrix = data.train
        self.features = np.asarray(features, dtype=np.float32)  # (I, d)
        self.register_buffer("unit", F.normalize(torch.from_numpy(self.features), dim=1))

    def scores(self, users: torch.Tensor) -> torch.Tensor:  # noqa: D102
        r = self.train_matrix[users.numpy()]  # (B, I) sparse
        counts = np.maximum(np.asarray(r.sum(axis=1)).ravel(), 1.0)  # (B,)
        mean = np.asarray(r @ self.features, dtype=np.float32) / counts[:, None]  # (B, d)
        user_unit = F.normalize(torch.from_numpy(mean.astype(np.float32)), dim=1)
        return user_unit @ self.unit.T  # (B, I) cosines


def _feature_path(features_dir: str | Path, variant: str) -> Path:
    """``features_dir/<variant>.parquet``, the variant checked by :func:`check_name`."""
    return Path(features_dir) / f"{check_name(variant, 'feature variant')}.parquet"


def zero_shot(
    data: InteractionData,
    features: np.ndarray,
    topks: Sequence[int] = TOPKS,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, dict[str, float]]:
    """Zero-shot metrics of a feature set on valid and test (see the module docstring)."""
    return evaluate_model(ZeroShot(data, features), data, ("valid", "test"), topks, batch_size)


def item_cf(
    data: InteractionData,
    features: np.ndarray,
    k: int = 10,
    shrink: float = 10.0,
    topks: Sequence[int] = TOPKS,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, dict[str, float]]:
    """Item-CF (ItemKNN on the features) metrics on valid and test."""
    model = ItemKNNCBF(data, features, k=k, shrink=shrink)
    return evaluate_model(model, data, ("valid", "test"), topks, batch_size)


def masked_items(n_items: int, fraction: float = 0.5, seed: int = 999) -> np.ndarray:
    """The items whose modality is masked, fixed by the seed.

    They are the first ``round(fraction * n)`` entries of a seeded permutation of ``0..n-1``,
    so the same items are masked for every variant and modality.

    Returns:
        Sorted (m,) int64 item ids.
    """
    perm = np.random.default_rng(seed).permutation(n_items)
    return np.sort(perm[: int(round(fraction * n_items))]).astype(np.int64)


def mask_modality_features(
    variant: str,
    modality: str,
    features_dir: str | Path,
    fraction: float = 0.5,
    seed: int = 999,
    replacement: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``variant`` with ``modality`` masked for a seeded ``fraction`` of the items.

    Args:
        variant: The feature variant (``features_dir/<variant>.parquet``).
        modality: ``"image"`` or ``"text"``.
        features_dir: ``<data-dir>/<dataset>/features``.
        fraction: Share of items masked.
        seed: Seed of the permutation.
        replacement: Variant holding the features without ``modality`` (overrides the table in
            the module docstring); None uses the table, zero rows for unimodal variants.

    Returns:
        ``(features, masked_ids)``: the (N_items, d) masked copy and the masked item ids.

    Raises:
        UsageError: Unknown modality, masking the modality a unimodal variant does not use,
            or a replacement file of another shape.
    """
    if modality not in MODALITIES:
        msg = f"modality must be image or text, found {modality!r}"
        raise UsageError(msg)
    path = _feature_path(features_dir, variant)
    _, matrix, _ = read_features(path)
    ids = masked_items(matrix.shape[0], fraction, seed)
    out = matrix.copy()
    info = feature_info(path)
    source = replacement or info.without.get(modality)
    if source is not None:
        source_path = _feature_path(features_dir, source)
        _, other, _ = read_features(source_path)
        if other.shape != matrix.shape:
            msg = (
                f"{source_path} has shape {other.shape}, expected "
                f"{matrix.shape} like {variant}: both must come from the same encoder and items"
            )
            raise UsageError(msg)
        out[ids] = other[ids]
        logger.info(
            "masked %s of %d items of %s with rows of %s", modality, len(ids), variant, source
        )
        return out, ids
    if info.modality in MODALITIES and info.modality != modality:
        msg = (
            f"feature variant {variant!r} is computed from the {info.modality} only: masking "
            f"its {modality} changes nothing; mask {info.modality} instead"
        )
        raise UsageError(msg)
    out[ids] = 0.0
    logger.info("zeroed %d of %d rows of %s (%s masked)", len(ids), len(out), variant, modality)
    return out, ids


def mask_modality(
    data: InteractionData,
    variant: str,
    features_dir: str | Path,
    config: EvaluateConfig,
    train_config: Any | None = None,
    *,
    modality: str | None = None,
    model: str | None = None,
    replacement: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train the recommender on unmasked and on masked features and report the drop.

    Args:
        data: The interactions.
        variant: Feature variant.
        features_dir: Folder of the feature files.
        config: The evaluate section (fraction, seed, modality, model, metrics).
        train_config: The train section (:class:`alignrec_model.train.TrainConfig`) used for both
            runs; None for its defaults.
        modality: Overrides ``config.mask_modality``.
        model: Overrides ``config.mask_model`` (any model of the trainer that reads features:
            ``alignrec`` or ``itemknn``).
        replacement: See :func:`mask_modality_features`.
        progress: tqdm bars.

    Returns:
        ``{"valid", "test"}`` of the masked run, ``"unmasked"`` (its valid/test), ``"drop"``
        (unmasked minus masked, per split and metric), ``"relative_drop"`` (drop / unmasked),
        and the settings (``modality``, ``fraction``, ``seed``, ``model``, ``n_masked``,
        best epochs).
    """
    modality = modality or config.mask_modality
    model = model or config.mask_model
    if model not in FEATURE_MODELS:
        msg = f"mask-modality needs a model that reads features ({', '.join(FEATURE_MODELS)})"
        raise UsageError(msg)
    tcfg = train_config or TrainConfig()
    tcfg = replace(tcfg, topks=tuple(config.topks), eval_batch_size=config.batch_size)
    if tcfg.alignrec.finetune_encoder_layers:
        # The masked features are fixed vectors: there is no encoder input to fine-tune on.
        logger.info("mask-modality trains on fixed features (finetune_encoder_layers ignored)")
        tcfg = replace(tcfg, alignrec=replace(tcfg.alignrec, finetune_encoder_layers=0))
    _, full, _ = read_features(_feature_path(features_dir, variant))
    masked, ids = mask_modality_features(
        variant, modality, features_dir, config.mask_fraction, config.mask_seed, replacement
    )
    runs = {}
    for label, feats in (("unmasked", full), ("masked", masked)):
        logger.info("mask-modality: training %s on %s features (%s)", model, label, variant)
        net = build_model(model, data, tcfg, feats)
        runs[label] = fit(
            net, data, tcfg, name=f"{model}-{label}", features=variant, progress=progress
        )
    before, after = ({"valid": r.valid, "test": r.test} for r in runs.values())
    drop = {s: {k: before[s][k] - after[s][k] for k in before[s]} for s in before}  # > 0: hurt
    relative = {
        s: {k: (v / before[s][k] if before[s][k] else 0.0) for k, v in drop[s].items()}
        for s in drop
    }
    return {
        "modality": modality,
        "fraction": config.mask_fraction,
        "seed": config.mask_seed,
        "model": model,
        "n_masked": int(len(ids)),
        "best_epoch": runs["masked"].best_epoch,
        "unmasked_best_epoch": runs["unmasked"].best_epoch,
        **after,  # valid and test
        "unmasked": before,
        "drop": drop,
        "relative_drop": relative,
        "settings": {"train": to_dict(tcfg)},  # as trained: topks and batch from evaluate
    }


def evaluate_features(
    data_dir: str | Path,
    dataset: str,
    variant: str,
    protocol: str,
    config: EvaluateConfig,
    train_config: Any | None = None,
    *,
    modality: str | None = None,
    model: str | None = None,
    replacement: str | None = None,
    progress: bool | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Run one intermediate evaluation on a prepared dataset and write its metrics.

    Args:
        data_dir: The data directory.
        dataset: The dataset id.
        variant: Feature variant (``features/<variant>.parquet``).
        protocol: ``zero-shot``, ``item-cf`` or ``mask-modality``.
        config: The evaluate section.
        train_config: The train section (mask-modality only).
        modality: Mask-modality: overrides ``config.mask_modality``.
        model: Mask-modality: overrides ``config.mask_model``.
        replacement: Mask-modality: see :func:`mask_modality_features`.
        progress: tqdm bars (mask-modality).
        write: Write ``metrics/eval-<protocol>-<variant>.json``.

    Returns:
        ``{"protocol", "features", "valid": {...}, "test": {...}, "settings": {...}}`` (plus the
        mask-modality keys); ``settings`` holds the evaluate section used and, for
        mask-modality, the train section it trained with.

    Raises:
        UsageError: Unknown protocol, missing files.
    """
    if protocol not in PROTOCOLS:
        msg = f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}"
        raise UsageError(msg)
    paths = DatasetPaths.of(data_dir, dataset)
    check_name(variant, "feature variant")  # before anything is read or written
    data = load_interactions(paths.prepared)
    used = to_dict(config)
    if protocol == "mask-modality":
        result = mask_modality(
            data,
            variant,
            paths.features,
            config,
            train_config,
            modality=modality,
            model=model,
            replacement=replacement,
            progress=progress,
        )
        # --modality / --model replace the section's values
        used.update(mask_modality=result["modality"], mask_model=result["model"])
    else:
        _, feats, _ = read_features(paths.feature_file(variant))
        if feats.shape[0] != data.n_items:
            msg = (
                f"{paths.feature_file(variant)} has {feats.shape[0]} rows but "
                f"{dataset} has {data.n_items} items; extract the features again"
            )
            raise UsageError(msg)
        if protocol == "zero-shot":
            result = zero_shot(data, feats, config.topks, config.batch_size)
        else:
            result = item_cf(
                data, feats, config.knn_k, config.knn_shrink, config.topks, config.batch_size
            )
    out = {"protocol": protocol, "features": variant, "dataset": dataset, **result}
    out["settings"] = {"evaluate": used, **result.get("settings", {})}
    if write:
        write_json(paths.metrics / f"eval-{protocol}-{variant}.json", out)
    return out
