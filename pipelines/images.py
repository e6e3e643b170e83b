"""DVC stage ``images``: prepared/items.parquet -> images/ (shards, index, stats).

Reads only the ``images`` section of the params file. Mirrors come from
``$ALIGNREC_IMAGE_MIRROR`` (and the registry default for datasets with an image_base_url).

    python pipelines/images.py --data-dir data --dataset amazon-mini --params params.yaml \
        --metrics data/amazon-mini/metrics/images.json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alignrec_data.atomic import write_json
from alignrec_data.config import load_section
from alignrec_data.failures import run_stage
from alignrec_data.images import ImagesConfig, fetch_images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--metrics", type=Path, default=None, help="Also write stats.json here (a DVC metric)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_section(args.params, "images", ImagesConfig)
    result = fetch_images(args.data_dir, args.dataset, config)
    if args.metrics is not None:
        write_json(args.metrics, result.stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
