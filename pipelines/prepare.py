"""DVC stage ``prepare``: raw/ -> prepared/ (interactions, items, users, stats.json).

Reads only the ``prepare`` section of the params file.

    python pipelines/prepare.py --data-dir data --dataset amazon-mini --params params.yaml \
        --metrics data/amazon-mini/metrics/prepare.json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alignrec_data.atomic import write_json
from alignrec_data.config import load_section
from alignrec_data.failures import run_stage
from alignrec_data.prepare import PrepareConfig, prepare_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--strict", action="store_true", help="Stop at the first bad raw line.")
    parser.add_argument(
        "--no-verify", action="store_true", help="Do not check the raw files' sha256 first."
    )
    parser.add_argument(
        "--metrics", type=Path, default=None, help="Also write stats.json here (a DVC metric)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_section(args.params, "prepare", PrepareConfig)
    stats = prepare_dataset(
        args.dataset, args.data_dir, config, strict=args.strict, verify=not args.no_verify
    )
    if args.metrics is not None:
        write_json(args.metrics, stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
