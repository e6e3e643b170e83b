"""The one way into pretraining from outside Python: the CLI, the DVC stage and torchrun.

``alignrec-data pretrain`` (also what the DVC stage runs) calls :func:`run_pretrain`;
``python -m alignrec_model.pretrain`` (also under ``torchrun``) calls :func:`main`, which parses
the same three options and calls :func:`run_pretrain`.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from alignrec_data.config import load_settings, resolve_params_path
from alignrec_model.pretrain.config import PretrainConfig
from alignrec_model.pretrain.distributed import teardown_distributed
from alignrec_model.pretrain.loop import pretrain

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  python -m alignrec_model.pretrain --data-dir data --dataset amazon-mini --params params.yaml
  torchrun --nproc_per_node 8 -m alignrec_model.pretrain \\
      --data-dir data --dataset amazon-baby --params params.yaml
"""


def run_pretrain(data_dir: str | Path, dataset: str, params: str | Path | None) -> dict[str, Any]:
    """Pretrain with ``dataset``'s ``pretrain`` settings, then leave the process group.

    Args:
        data_dir: The data directory.
        dataset: Dataset id (folder under ``data_dir``).
        params: The params file, or None for ``./params.yaml`` when present, else the defaults.

    Returns:
        The metrics written to ``metrics/pretrain.json``.
    """
    cfg = load_settings(resolve_params_path(params), "pretrain", PretrainConfig, dataset)
    try:
        return pretrain(data_dir, dataset, cfg)
    finally:
        teardown_distributed()


def main(argv: list[str] | None = None) -> int:
    """``python -m alignrec_model.pretrain`` (also under ``torchrun``) and the DVC stage.

    Errors propagate; wrap with :func:`alignrec_data.failures.run_stage` for one ``Error:`` line.
    """
    parser = argparse.ArgumentParser(
        prog="python -m alignrec_model.pretrain",
        description="Stage 1 pretraining of MMEnc: masked language and masked image modelling.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--dataset", required=True)
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="params YAML, section pretrain [default: ./params.yaml when present, else defaults]",
    )
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    metrics = run_pretrain(args.data_dir, args.dataset, args.params)
    if rank == 0:
        logger.info("pretrain done: %s", metrics["probe_after"])
    return 0
