"""DVC stage ``pretrain``: prepared items + images -> models/mmenc.pt and pretrain metrics.

Reads only the ``pretrain`` section of the params file. Also runs under torchrun (every
process runs this script; rank 0 writes):

    python pipelines/pretrain.py --data-dir data --dataset amazon-mini --params params.yaml
    torchrun --nproc_per_node 4 pipelines/pretrain.py --data-dir data --dataset amazon-mini
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from alignrec_data.config import load_section
from alignrec_data.failures import run_stage
from alignrec_model.pretrain import PretrainConfig, pretrain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    rank0 = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(
        level=logging.INFO if rank0 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    pretrain(args.data_dir, args.dataset, load_section(args.params, "pretrain", PretrainConfig))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
