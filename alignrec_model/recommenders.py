"""The recommender registry: one table maps a ``--model`` name to everything that depends on it.

Each :class:`RecommenderSpec` holds the name, a one-line summary, the builder, the ``train:`` keys
the model reads and what it takes besides interactions (a feature variant, a fine-tuned encoder
top, the loss-weight axes of the grid). Derived from :data:`RECOMMENDERS`:

- :data:`MODELS` and :data:`FEATURE_MODELS`, the ``--model`` choices of ``alignrec-data train``,
  ``alignrec-data evaluate`` (mask-modality), and the mask-modality
  check of ``evaluate.mask_model``;
- :func:`build_model` (the trainer, the grid, mask-modality);
- :func:`param_keys`, the ``train.*`` keys each run's DVC stage lists (tests/pipeline);
- the model table of docs/recommender.md (:func:`models_table`) and the model keys of
  ``TrainConfig`` (both checked against this table by ``tests/model_train/test_recommenders.py``).

Adding a recommender: write its class, add its entry below (and its keys, if any, to
``TrainConfig``). This module imports neither torch nor numpy, so the CLI's ``--help`` stays fast;
a builder imports its class when it is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alignrec_data.errors import DataFormatError, UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from alignrec_model.base import Recommender
    from alignrec_model.data import InteractionData
    from alignrec_model.train import TrainConfig


@dataclass(frozen=True)
class RecommenderSpec:
    """One registered recommender.

    Attributes:
        name: The ``--model`` name (also the stem of its run: ``<name>[-<variant>]``).
        summary: One line for the docs.
        build: ``(data, config, features, feature_fn) -> Recommender``.
        keys: The ``train:`` keys it reads besides the loop's (``alignrec`` is a sub-section).
        uses_features: Reads a feature variant (``features/<variant>.parquet``).
        finetunes_encoder: Accepts a jointly fine-tuned encoder top (``feature_fn``).
        grid_weights: ``--grid`` also searches ``grid_cl`` x ``grid_sim`` (its loss weights).
        multi_features: Reads one or two variants (``--features IMAGE,TEXT``): its features
            are a tuple of matrices, its run is ``<name>-<IMAGE>+<TEXT>``.
        trains: Has parameters to train (reads the loop's keys); False: only scores.
    """

    name: str
    summary: str
    build: Callable[..., Recommender]
    keys: tuple[str, ...] = ()
    uses_features: bool = False
    finetunes_encoder: bool = False
    grid_weights: bool = False
    multi_features: bool = False
    trains: bool = True


def _alignrec(data, config, features, feature_fn):
    from alignrec_model.alignrec import AlignRec

    return AlignRec(data, features, config.alignrec, seed=config.seed, feature_fn=feature_fn)


def _freedom(data, config, features, feature_fn):
    from alignrec_model.freedom import Freedom

    return Freedom(data, features, config.freedom, seed=config.seed)


def _lightgcn(data, config, features, feature_fn):
    from alignrec_model.baselines import LightGCN

    return LightGCN(data, config.embedding_dim, config.n_layers, config.reg_weight, config.seed)


def _mf(data, config, features, feature_fn):
    from alignrec_model.baselines import MFBPR

    return MFBPR(data, config.embedding_dim, config.reg_weight, config.seed)


def _itemknn(data, config, features, feature_fn):
    from alignrec_model.baselines import ItemKNNCBF

    return ItemKNNCBF(data, features, k=config.knn_k, shrink=config.knn_shrink)


def _pop(data, config, features, feature_fn):
    from alignrec_model.baselines import Popularity

    return Popularity(data)


#: Every recommender the trainer builds, by name, in the order the CLI lists them.
RECOMMENDERS: dict[str, RecommenderSpec] = {
    spec.name: spec
    for spec in (
        RecommenderSpec(
            "alignrec",
            "AlignRec (`alignrec_model.alignrec.AlignRec`, `train.alignrec` params)",
            _alignrec,
            keys=("alignrec",),
            uses_features=True,
            finetunes_encoder=True,
            grid_weights=True,
        ),
        RecommenderSpec(
            "freedom",
            "FREEDOM (Zhou and Shen, MM 2023; `alignrec_model.freedom.Freedom`, `train.freedom` "
            "params): frozen top-k item-item graphs of one or two variants (`--features "
            "IMAGE,TEXT`), degree-sensitive user-item edge pruning, BPR + modality BPR",
            _freedom,
            keys=("freedom",),
            uses_features=True,
            multi_features=True,
        ),
        RecommenderSpec(
            "lightgcn",
            "LightGCN, ID only: mean of X0..XL with X_l = A_hat X_{l-1}; BPR + `reg_weight` x L2 "
            "of the batch's layer-0 embeddings",
            _lightgcn,
            keys=("embedding_dim", "n_layers", "reg_weight"),
        ),
        RecommenderSpec(
            "mf", "MF-BPR: <e_u, e_i>, BPR + L2", _mf, keys=("embedding_dim", "reg_weight")
        ),
        RecommenderSpec(
            "itemknn",
            "ItemKNN-CBF: shrunk cosine (shrink `knn_shrink`), top-`knn_k` neighbours per item "
            "(itself excluded), score = R_u S_knn; nothing to train",
            _itemknn,
            keys=("knn_k", "knn_shrink"),
            uses_features=True,
            trains=False,
        ),
        RecommenderSpec("pop", "most popular train items; nothing to train", _pop, trains=False),
    )
}

#: Models the trainer builds by name.
MODELS: tuple[str, ...] = tuple(RECOMMENDERS)
#: Models that read one feature variant (mask-modality's choices). FREEDOM, which reads one or
#: two (a tuple of matrices), is not among them: mask-modality masks a single matrix.
FEATURE_MODELS: tuple[str, ...] = tuple(
    n for n, s in RECOMMENDERS.items() if s.uses_features and not s.multi_features
)


#: ``train:`` keys every recommender's evaluation reads (best epoch, cut-offs, batch).
EVAL_KEYS: tuple[str, ...] = ("valid_metric", "topks", "eval_batch_size")
#: ``train:`` keys the training loop reads besides those (recommenders that train).
LOOP_KEYS: tuple[str, ...] = (
    "seed",
    "epochs",
    "batch_size",
    "lr",
    "lr_decay",
    "lr_decay_epochs",
    "patience",
    "device",
    "num_threads",
)


def param_keys(*names: str) -> list[str]:
    """The ``train.*`` params the runs of these models read (what their DVC stages list).

    Args:
        names: Registered model names.

    Returns:
        Sorted ``train.<key>`` strings: the evaluation keys, the loop keys for models that
        train, and each model's own keys.
    """
    keys = set(EVAL_KEYS)
    for name in names:
        spec = get_spec(name)
        keys |= set(spec.keys) | (set(LOOP_KEYS) if spec.trains else set())
    return sorted(f"train.{k}" for k in keys)


def models_table() -> list[str]:
    """The Markdown table of the recommenders (docs/recommender.md holds it verbatim)."""
    lines = ["| `--model` | what | reads features | `train:` keys |", "| --- | --- | --- | --- |"]
    for spec in RECOMMENDERS.values():
        keys = ", ".join(f"`{k}`" for k in spec.keys) or "-"
        uses = "yes" if spec.uses_features else "no"
        lines.append(f"| `{spec.name}` | {spec.summary} | {uses} | {keys} |")
    return lines


def get_spec(name: str) -> RecommenderSpec:
    """The registry entry of ``name``.

    Raises:
        UsageError: ``name`` is not registered.
    """
    if name not in RECOMMENDERS:
        msg = f"unknown model {name!r}; expected one of {', '.join(MODELS)}"
        raise UsageError(msg)
    return RECOMMENDERS[name]


def build_model(
    name: str,
    data: InteractionData,
    config: TrainConfig,
    features: np.ndarray | None = None,
    feature_fn: torch.nn.Module | None = None,
) -> Recommender:
    """Build a recommender by name.

    Args:
        name: One of :data:`MODELS`.
        data: The interactions.
        config: The train config (model hyper-parameters; ``seed`` seeds the initialisation).
        features: (N_items, d) features, required by the models of :data:`FEATURE_MODELS`;
            a tuple of one or two such matrices for the ``multi_features`` models (FREEDOM).
        feature_fn: AlignRec's jointly fine-tuned encoder top
            (:func:`alignrec_model.finetune.encoder_top_for_dataset`), or None.

    Returns:
        The model.

    Raises:
        UsageError: Unknown name, or features missing.
        DataFormatError: Features of the wrong shape.
    """
    spec = get_spec(name)
    if spec.uses_features:
        if features is None:
            msg = f"model {name!r} needs item features (--features VARIANT)"
            raise UsageError(msg)
        matrices = tuple(features) if spec.multi_features else (features,)
        for matrix in matrices:
            if matrix.shape[0] != data.n_items:
                msg = (
                    f"features have {matrix.shape[0]} rows but the dataset has {data.n_items} "
                    "items; extract the features for this dataset again"
                )
                raise DataFormatError(msg)
    return spec.build(data, config, features, feature_fn)
