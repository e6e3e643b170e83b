"""Grid search over the train section's ``grid_*`` lists, chosen by VALID, and its resume.

A cell is one setting of ``lr`` (and, for the models whose registry entry has
``grid_weights``, i.e. AlignRec, ``alignrec.cl_weight`` x ``alignrec.sim_weight``); FREEDOM's cells
are MMRec's FREEDOM.yaml ``hyper_parameters``, ``freedom.grid_reg_weight`` x
``freedom.grid_dropout`` at the fixed ``lr`` (MMRec does not search its lr); every cell is
trained by :func:`alignrec_model.train.fit` and the chosen one is the first with the highest
VALID ``valid_metric`` (MMRec picks by test, a leak not copied).

:func:`run_grid` is the pure search (no files); :func:`grid_dataset` runs it on a prepared
dataset, writes the chosen checkpoint and ``metrics/grid-<run>.json``, and makes the search
resumable through :class:`GridProgress`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from alignrec_data.atomic import write_json
from alignrec_data.config import to_dict
from alignrec_data.errors import UsageError
from alignrec_data.integrity import sha256_file
from alignrec_model.data import InteractionData
from alignrec_model.recommenders import build_model, get_spec
from alignrec_model.runs import (
    RunInputs,
    encoder_top,
    load_checkpoint,
    open_run,
    save_checkpoint,
)
from alignrec_model.train import TrainConfig, TrainResult, fit, no_bar

logger = logging.getLogger(__name__)

#: The settings that name a cell (cl_weight and sim_weight are None for the other models).
SETTINGS: tuple[str, ...] = ("lr", "cl_weight", "sim_weight")
#: The settings that name a FREEDOM cell (its grid's axes at the fixed lr).
FREEDOM_SETTINGS: tuple[str, ...] = ("lr", "reg_weight", "dropout")

EMPTY_GRID = (
    "the grid is empty: train.grid_lr (and grid_cl, grid_sim for alignrec; "
    "freedom.grid_reg_weight, freedom.grid_dropout for freedom) need values"
)


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
        # every model but FREEDOM reports AlignRec's loss weights, searched or not
        chosen = "freedom" if self.best.model == "freedom" else "alignrec"
        out["chosen"] = cell_settings(self.best.config, chosen)
        return out


def grid_configs(config: TrainConfig, model: str) -> list[TrainConfig]:
    """The grid's cells: lr x cl x sim (AlignRec), reg_weight x dropout (FREEDOM), else lr."""
    if model == "freedom":
        f = config.freedom
        combos = itertools.product(f.grid_reg_weight, f.grid_dropout)
        return [replace(config, freedom=replace(f, reg_weight=r, dropout=d)) for r, d in combos]
    if get_spec(model).grid_weights:
        a = config.alignrec
        combos = itertools.product(config.grid_lr, config.grid_cl, config.grid_sim)
        return [
            replace(config, lr=lr, alignrec=replace(a, cl_weight=cl, sim_weight=sim))
            for lr, cl, sim in combos
        ]
    return [replace(config, lr=lr) for lr in config.grid_lr]


def cell_settings(cfg: TrainConfig, model: str) -> dict[str, Any]:
    """The :data:`SETTINGS` (FREEDOM: :data:`FREEDOM_SETTINGS`) of the cell ``cfg`` trains."""
    if model == "freedom":
        return {"lr": cfg.lr, "reg_weight": cfg.freedom.reg_weight, "dropout": cfg.freedom.dropout}
    weights = cfg.alignrec if get_spec(model).grid_weights else None
    return {"lr": cfg.lr, **{k: getattr(weights, k, None) for k in SETTINGS[1:]}}


def cell_key(record: dict[str, Any]) -> tuple:
    """A cell's identity: its :data:`SETTINGS` values (from a cell or result record)."""
    keys = FREEDOM_SETTINGS if "dropout" in record else SETTINGS
    return tuple(record[k] for k in keys)


def run_grid(
    data: InteractionData,
    config: TrainConfig,
    model: str = "alignrec",
    features: np.ndarray | None = None,
    variant: str | None = None,
    *,
    progress: bool | None = None,
    on_cell: Callable[[dict[str, Any], TrainResult, bool], None] | None = None,
    feature_fn: torch.nn.Module | None = None,
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
        feature_fn: The jointly fine-tuned encoder top, or None; every cell starts from its
            weights at the call.
        done: Records of cells finished earlier (resume): they are kept, not retrained.
        best: The best result among ``done`` (resume).

    Returns:
        The cells and the chosen run.

    Raises:
        UsageError: The grid is empty.
    """
    key = config.valid_metric
    finished = {cell_key(c) for c in done}
    cells: list[dict[str, Any]] = list(done)
    todo = [
        c for c in grid_configs(config, model) if cell_key(cell_settings(c, model)) not in finished
    ]
    if done:
        logger.info("grid %s: %d cells done earlier, %d to train", model, len(done), len(todo))
    if feature_fn is not None:
        initial = {k: v.detach().clone() for k, v in feature_fn.state_dict().items()}
    for cfg in tqdm(todo, desc=f"grid {model}", disable=no_bar(progress)):
        if feature_fn is not None:
            feature_fn.load_state_dict(initial)  # every cell starts from the stage-1 encoder
        net = build_model(model, data, cfg, features, feature_fn=feature_fn)
        result = fit(net, data, cfg, name=model, features=variant, progress=progress)
        scores = {f: getattr(result, f) for f in ("best_epoch", "epochs", "valid", "test")}
        cell = {**cell_settings(cfg, model), **scores}
        cells.append(cell)
        improved = best is None or result.valid[key] > best.valid[key]
        if improved:
            best = result
        if on_cell:
            on_cell(cell, result, improved)
        del result
    if best is None:
        raise UsageError(EMPTY_GRID)
    return GridResult(cells, best)


# ----------------------------------------------------------------------------- resume


class GridProgress:
    """The progress files of one grid on disk: finished cells and the best cell's checkpoint.

    After each cell, ``metrics/grid-<run>.partial.json`` holds ``{"fingerprint", "cells",
    "best"}`` and ``models/<run>.grid-best.pt`` the best cell's checkpoint (written first, so the
    record never points at a missing file). :meth:`load` returns them only when the fingerprint
    (settings, interactions, features) is the same; :meth:`clear` removes both files.

    Args:
        run: The grid's inputs (folders, run name, interactions for the checkpoint's counts).
        fingerprint: :func:`grid_fingerprint` of this grid.
    """

    def __init__(self, run: RunInputs, fingerprint: str) -> None:
        self.partial = run.paths.metrics / f"grid-{run.name}.partial.json"
        self.best_ckpt = run.paths.models / f"{run.name}.grid-best.pt"
        self.data = run.data
        self.state: dict[str, Any] = {"fingerprint": fingerprint, "cells": [], "best": None}

    def load(
        self, config: TrainConfig, model: str
    ) -> tuple[list[dict[str, Any]], TrainResult | None]:
        """Cells finished by an interrupted grid with the same fingerprint, and its best result.

        Cells no longer in the grid are dropped; if the best one left the grid, or a file is
        missing or unreadable, nothing is resumed (its result could not be compared fairly).
        """
        if not self.partial.is_file():
            return [], None
        try:
            saved = json.loads(self.partial.read_text())
        except (OSError, ValueError):
            logger.warning("ignoring unreadable grid progress file %s", self.partial)
            return [], None
        if saved.get("fingerprint") != self.state["fingerprint"]:
            logger.info(
                "grid progress %s is for other settings or data: starting over", self.partial
            )
            return [], None
        record = saved.get("best")
        if not saved.get("cells") or record is None or not self.best_ckpt.is_file():
            return [], None
        by_key = {cell_key(cell_settings(c, model)): c for c in grid_configs(config, model)}
        cfg = by_key.get(cell_key(record))
        if cfg is None:
            return [], None
        state = load_checkpoint(self.best_ckpt)["state_dict"]
        best = TrainResult(**{f: record[f] for f in _RECORDED}, best_state=state, config=cfg)
        cells = [c for c in saved["cells"] if cell_key(c) in by_key]
        logger.info("resuming the grid from %s (%d cells done)", self.partial, len(cells))
        self.state.update(cells=list(cells), best=_result_record(best))
        return cells, best

    def record(self, cell: dict[str, Any], result: TrainResult, improved: bool) -> None:
        """Add a trained cell (and the checkpoint of a new best) to the progress files."""
        self.state["cells"].append(cell)
        if improved:
            save_checkpoint(self.best_ckpt, result, self.data)  # before the record pointing at it
            self.state["best"] = _result_record(result)
        write_json(self.partial, self.state)

    def clear(self) -> None:
        """Remove the progress files (the grid completed)."""
        self.partial.unlink(missing_ok=True)
        self.best_ckpt.unlink(missing_ok=True)


#: The fields of the best cell's :class:`TrainResult` that the progress file records.
_RECORDED = ("model", "features", "best_epoch", "epochs", "valid", "test", "history", "seconds")


def _result_record(result: TrainResult) -> dict[str, Any]:
    """What a resumed grid needs of the best cell's result besides its checkpoint."""
    recorded = {f: getattr(result, f) for f in _RECORDED}
    return {**cell_settings(result.config, result.model), **recorded}


def grid_fingerprint(config: TrainConfig, model: str, run: RunInputs) -> str:
    """What a resumed grid must share with the interrupted one: settings, data and features."""
    settings = to_dict(config)
    for free in ("grid_lr", "grid_cl", "grid_sim", "device", "num_threads"):
        settings.pop(free, None)  # the grid may grow; where it runs does not change a cell
    for free in ("grid_reg_weight", "grid_dropout"):
        settings["freedom"].pop(free, None)
    files = [run.paths.prepared / "interactions.parquet", *run.files]
    hashes = [sha256_file(path) for path in files]
    doc = json.dumps([settings, model, run.variant, run.data.summary(), hashes], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()


def grid_dataset(
    data_dir: str | Path,
    dataset: str,
    config: TrainConfig,
    model: str = "alignrec",
    features: str | None = None,
) -> GridResult:
    """Run the grid on a prepared dataset; write the chosen checkpoint and ``grid-<run>.json``.

    The chosen cell's checkpoint and metrics are written as
    :func:`alignrec_model.train.train_dataset` writes them (``models/<run>.pt``,
    ``metrics/train-<run>.json``), and every cell to ``metrics/grid-<run>.json``.

    Resumable (:class:`GridProgress`): a later call with the same settings, interactions and
    features trains only the missing cells; with other settings the progress is ignored (and
    replaced). The progress files are removed when the grid completes.

    Raises:
        UsageError: The grid is empty, or a bad name / missing file (:func:`open_run`).
    """
    run = open_run(data_dir, dataset, config, model, features)
    if not grid_configs(config, model):
        raise UsageError(EMPTY_GRID)
    progress_files = GridProgress(run, grid_fingerprint(config, model, run))
    done, best = progress_files.load(config, model)
    result = run_grid(
        run.data,
        config,
        model,
        run.matrix,
        run.variant,
        on_cell=progress_files.record,
        feature_fn=encoder_top(run.paths, config, model, run.variant, run.matrix),
        done=done,
        best=best,
    )
    save_checkpoint(run.paths.models / f"{run.name}.pt", result.best, run.data)
    write_json(run.paths.metrics / f"train-{run.name}.json", result.best.to_json())
    write_json(run.paths.metrics / f"grid-{run.name}.json", result.to_json())
    progress_files.clear()
    return result
