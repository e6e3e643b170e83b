"""DVC stage ``extract``: models/mmenc.pt + items + images -> features/<variant>.parquet.

Reads only the ``extract`` section of the params file.

    python pipelines/extract.py --data-dir data --dataset amazon-mini --params params.yaml
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alignrec_data.config import load_section
from alignrec_data.failures import run_stage
from alignrec_model.extract import ExtractConfig, extract


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    extract(args.data_dir, args.dataset, load_section(args.params, "extract", ExtractConfig))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
