"""DVC stage ``evaluate``: one intermediate evaluation of a feature variant -> metrics JSON.

Reads the ``evaluate`` section of the params file; ``mask-modality`` also reads ``train`` (the
recommender it trains on masked and unmasked features).

    python pipelines/evaluate.py --data-dir data --dataset amazon-mini --params params.yaml \
        --features alignrec --protocol zero-shot

Writes ``<data-dir>/<dataset>/metrics/eval-<protocol>-<variant>.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alignrec_data.config import load_section
from alignrec_data.failures import run_stage
from alignrec_model.feature_eval import PROTOCOLS, EvaluateConfig, evaluate_features
from alignrec_model.train import TrainConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--features", required=True, help="Feature variant to evaluate.")
    parser.add_argument("--protocol", choices=PROTOCOLS, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_section(args.params, "evaluate", EvaluateConfig)
    train_config = (
        load_section(args.params, "train", TrainConfig)
        if args.protocol == "mask-modality"
        else None
    )
    evaluate_features(
        args.data_dir, args.dataset, args.features, args.protocol, config, train_config
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
