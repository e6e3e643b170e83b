"""DVC stage ``release``: build the Hugging Face dataset folder of one dataset.

    python pipelines/release.py --data-dir data --dataset amazon-mini --params params.yaml \
        [--out data/amazon-mini/release]

Reads the ``release:`` params (and, for the card's provenance only, the sections listed in
``alignrec_data.release.PROVENANCE_SECTIONS``); writes only the release folder.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alignrec_data.failures import run_stage
from alignrec_data.release import build_release, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--out", type=Path, default=None, help="default: <data-dir>/<dataset>/release"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = args.params if args.params.is_file() else None
    build_release(args.data_dir, args.dataset, args.out, load_config(params), params_path=params)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
