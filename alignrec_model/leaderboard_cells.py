"""Cells of the feature leaderboard: what to run, its cache key, and running one.

A cell is one (protocol, variant, seed): ``zero-shot``, ``item-cf``, ``itemknn`` and ``pop``
are deterministic (one cell, seed None); ``mask-modality``, ``alignrec``, ``freedom`` and
``lightgcn`` train, one cell per seed of ``leaderboard.seeds``. Each cell is cached as
``<ds>/leaderboard/cells/<protocol>__<variant>__<seed>.json`` (written atomically) together
with its key: the sha256 of everything the cell depends on (its params, the sha256 of its
feature file(s) and of ``prepared/interactions.parquet``). A cell whose file holds the same key
is done; any other cell is (re)computed, so a changed input recomputes only the cells that read
it and a killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignrec_data.atomic import write_json
from alignrec_data.config import check_ranges, to_dict
from alignrec_data.paths import DatasetPaths

logger = logging.getLogger(__name__)

#: Every protocol of the board, in the order of the table's tie-break.
PROTOCOLS: tuple[str, ...] = (
    "zero-shot",
    "item-cf",
    "itemknn",
    "mask-modality",
    "alignrec",
    "freedom",
    "lightgcn",
    "pop",
)
#: Protocols with nothing random in them: one cell, whatever the seeds.
DETERMINISTIC: tuple[str, ...] = ("zero-shot", "item-cf", "itemknn", "pop")
#: Protocols that read no feature file (the reference rows).
ID_ONLY: tuple[str, ...] = ("lightgcn", "pop")
#: Variant label of the ID-only rows.
IDS = "ids"
#: Cache key format: bump when a cell's JSON changes meaning.
CELL_FORMAT = 1


@dataclass(frozen=True)
class LeaderboardConfig:
    """The ``leaderboard`` section of ``params.yaml``.

    The training settings come from the ``train:`` section (and ``overrides.train.<ds>``),
    the evaluation ones from ``evaluate:``; only the seeds and the selection are set here.
    """

    seeds: tuple[int, ...] = (999,)  # seeds of the cells that train (train.seed is replaced)
    protocols: tuple[str, ...] = PROTOCOLS  # protocols to run (see PROTOCOLS)
    features: tuple[str, ...] = ()  # feature variants; () = every features/*.parquet
    pairs: tuple[tuple[str, str], ...] = ()  # FREEDOM (image, text) pairs; () = automatic
    max_pairs: int = 4  # automatic pairs: all when n_image * n_text <= this, else the best two
    epochs: int = 0  # > 0: caps train.epochs for every trained cell (0: the train section's)

    def __post_init__(self) -> None:
        """Reject values the board cannot run with."""
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        check_ranges(
            self,
            "leaderboard",
            {
                "seeds": (len(self.seeds) >= 1, "a non-empty list of integers"),
                "protocols": (
                    bool(self.protocols) and not unknown,
                    f"a non-empty list of {', '.join(PROTOCOLS)}",
                ),
                "pairs": (
                    all(len(p) == 2 for p in self.pairs),
                    "a list of [IMAGE_VARIANT, TEXT_VARIANT] pairs",
                ),
                "max_pairs": (self.max_pairs >= 1, ">= 1"),
                "epochs": (self.epochs >= 0, ">= 0 (0: train.epochs)"),
            },
        )


@dataclass(frozen=True)
class Cell:
    """One thing to compute.

    Attributes:
        protocol: One of :data:`PROTOCOLS`.
        variants: The feature variant(s) read (() for the ID-only rows; two for a FREEDOM pair).
        seed: Training seed, or None for a deterministic protocol.
        masked: mask-modality: the modality masked; else None.
        replacement: mask-modality: the variant holding the features without ``masked``.
    """

    protocol: str
    variants: tuple[str, ...]
    seed: int | None = None
    masked: str | None = None
    replacement: str | None = None

    @property
    def variant(self) -> str:
        """The label of the variant column (``a+b`` for a pair, ``ids`` for none)."""
        return "+".join(self.variants) or IDS

    @property
    def row(self) -> tuple[str, str, str | None]:
        """The table row the cell belongs to (seeds of one row are aggregated)."""
        return (self.protocol, self.variant, self.masked)

    @property
    def filename(self) -> str:
        """``<protocol>[-<masked>]__<variant>__<seed|det>.json``."""
        proto = self.protocol + (f"-{self.masked}" if self.masked else "")
        seed = "det" if self.seed is None else f"s{self.seed}"
        return f"{proto}__{self.variant}__{seed}.json"


def _train_keys(train: Any, model: str) -> dict[str, Any]:
    """The ``train`` keys ``model`` reads (from the registry), as plain values."""
    from alignrec_model.recommenders import param_keys

    values = to_dict(train)
    return {k: values[k.split(".", 1)[1]] for k in param_keys(model)}


def cell_settings(cell: Cell, train: Any, evaluate: Any) -> dict[str, Any]:
    """Everything ``cell`` reads from params (what it is keyed on)."""
    ev = to_dict(evaluate)
    if cell.protocol == "zero-shot":
        return {"evaluate": {k: ev[k] for k in ("topks", "batch_size")}}
    if cell.protocol == "item-cf":
        return {"evaluate": {k: ev[k] for k in ("topks", "batch_size", "knn_k", "knn_shrink")}}
    if cell.protocol == "mask-modality":
        return {"evaluate": ev, "train": _train_keys(train, evaluate.mask_model)}
    return {"train": _train_keys(train, cell.protocol)}


def cell_key(cell: Cell, settings: dict[str, Any], digests: dict[str, str]) -> str:
    """sha256 of the cell's identity, its settings and its input files' sha256."""
    doc = {
        "format": CELL_FORMAT,
        "cell": dataclasses.asdict(cell),
        "settings": settings,
        "inputs": digests,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def cell_inputs(cell: Cell, paths: DatasetPaths, digest: Callable[[Path], str]) -> dict[str, str]:
    """``{file name: digest(file)}`` of the interactions and every feature file the cell reads."""
    files = [paths.prepared / "interactions.parquet"]
    files += [paths.feature_file(v) for v in cell.variants]
    if cell.replacement:
        files.append(paths.feature_file(cell.replacement))
    return {f.name: digest(f) for f in files}


def read_cell(path: Path, key: str) -> dict[str, Any] | None:
    """The cached result in ``path`` when its key is ``key``; None when absent or stale."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("key") == key else None


def compute_cell(cell: Cell, data_dir: Path, ds: str, config: Any, evaluate: Any) -> dict[str, Any]:
    """Run one cell; ``{"valid", "test", "best_epoch", ...}`` (mask-modality adds the drop).

    ``config`` is the train section with the cell's seed and the board's epoch cap; the
    trained models are trained (or scored) the way ``alignrec-data train`` does, no files.
    """
    from alignrec_model import feature_eval

    if cell.protocol in feature_eval.PROTOCOLS:  # zero-shot, item-cf, mask-modality
        out = feature_eval.evaluate_features(
            data_dir,
            ds,
            cell.variants[0],
            cell.protocol,
            evaluate,
            config,
            modality=cell.masked,
            replacement=cell.replacement,
            progress=False,
            write=False,
        )
        if cell.protocol != "mask-modality":
            return {"valid": out["valid"], "test": out["test"], "best_epoch": 0}
        keep = ("valid", "test", "best_epoch", "unmasked", "drop", "n_masked", "model")
        return {k: out[k] for k in keep}
    from alignrec_model.runs import open_run
    from alignrec_model.train import fit_run

    run = open_run(data_dir, ds, config, cell.protocol, ",".join(cell.variants) or None)
    result = fit_run(run, config, cell.protocol, progress=False)
    scores = {f: getattr(result, f) for f in ("valid", "test", "best_epoch", "epochs")}
    return {**scores, "seconds": round(result.seconds, 3)}


def run_cell(
    cell: Cell,
    data_dir: Path,
    ds: str,
    configs: tuple[Any, Any, LeaderboardConfig],
    digest: Callable[[Path], str],
    force: bool = False,
) -> tuple[dict[str, Any], bool]:
    """The cell's result from the cache, or computed and cached.

    ``digest`` is the sha256 of a file (one run shares a cached one, so each file is hashed once).

    Returns:
        ``(result, computed)``; ``computed`` is False when the cache had it.
    """
    train, evaluate, board = configs
    paths = DatasetPaths.of(data_dir, ds)
    seed = train.seed if cell.seed is None else cell.seed
    epochs = min(train.epochs, board.epochs) if board.epochs else train.epochs
    config = dataclasses.replace(train, seed=seed, epochs=epochs)  # the board's epoch cap
    settings = cell_settings(cell, config, evaluate)
    inputs = cell_inputs(cell, paths, digest)
    key = cell_key(cell, settings, inputs)
    path = paths.root / "leaderboard" / "cells" / cell.filename
    cached = None if force else read_cell(path, key)
    if cached is not None:
        logger.debug("cell %s: cached", cell.filename)
        return cached, False
    logger.info("cell %s: computing", cell.filename)
    result = compute_cell(cell, data_dir, ds, config, evaluate)
    doc = {"key": key, **dataclasses.asdict(cell), "settings": settings, "inputs": inputs, **result}
    write_json(path, doc)
    return json.loads(json.dumps(doc)), True
