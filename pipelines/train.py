"""DVC stage ``train``: prepared interactions (+ a feature variant) -> best checkpoint + metrics.

Reads only the ``train`` section of the params file.

    python pipelines/train.py --data-dir data --dataset amazon-mini --params params.yaml \
        --model alignrec --features alignrec

Writes ``<data-dir>/<dataset>/models/<run>.pt``, ``metrics/train-<run>.json`` and
``metrics/history-<run>.json`` with run = ``<model>`` or ``<model>-<variant>`` (alignrec and
itemknn); with ``--grid`` also ``metrics/grid-<run>.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alignrec_data.config import load_section
from alignrec_data.failures import run_stage
from alignrec_model.grid import grid_dataset
from alignrec_model.recommenders import MODELS
from alignrec_model.train import TrainConfig, train_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", choices=MODELS, default="alignrec")
    parser.add_argument("--features", default=None, help="Feature variant [train.features].")
    parser.add_argument("--grid", action="store_true", help="Search the grid of train.grid_*.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_section(args.params, "train", TrainConfig)
    if args.grid:
        grid_dataset(args.data_dir, args.dataset, config, args.model, args.features)
    else:
        train_dataset(args.data_dir, args.dataset, config, args.model, args.features)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
