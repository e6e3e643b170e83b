"""DVC stage ``report``: metrics + features -> ``<data-dir>/<ds>/report/report.md`` + ``figures/``.

The report (metrics table, training curves, pretraining losses, intermediate evaluations and a
2-D map of each feature variant coloured by category) is also embedded in the dataset card.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alignrec_data.failures import run_stage
from alignrec_data.paths import DatasetPaths
from alignrec_model.report import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", type=Path, default=None, help="Default: DATA_DIR/DATASET/report.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = DatasetPaths.of(args.data_dir, args.dataset)
    report = build_report(paths.root, args.out or paths.root / "report")
    logging.getLogger(__name__).info("wrote %s", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
