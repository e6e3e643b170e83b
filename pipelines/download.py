"""DVC stage ``download``: fetch and verify one dataset's raw files into ``<data-dir>/<ds>/raw``.

Reads only the ``download`` section of the params file. Output: the raw folder (the registry's
files plus ``alignrec.lock.json``).

    python pipelines/download.py --data-dir data --dataset amazon-mini --params params.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from alignrec_data.config import load_section
from alignrec_data.download import DownloadConfig, download_dataset, raise_for_failures
from alignrec_data.failures import run_stage
from alignrec_data.paths import DatasetPaths
from alignrec_data.registry import get_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="Folder of all datasets.")
    parser.add_argument(
        "--dataset", required=True, help="Dataset id (see `alignrec-data datasets`)."
    )
    parser.add_argument("--params", type=Path, default=None, help="params.yaml to read.")
    parser.add_argument(
        "--mirror", default=None, help="Base URL or folder replacing the official one."
    )
    parser.add_argument("--out", type=Path, default=None, help="Default: DATA_DIR/DATASET/raw.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spec = get_dataset(args.dataset)
    config = load_section(args.params, "download", DownloadConfig)
    out = args.out or DatasetPaths.of(args.data_dir, spec.id).raw
    results = download_dataset(spec, out, mirror=args.mirror, config=config)
    for r in results:
        logging.getLogger("download").info("%s %s (%s)", r.status, r.path, r.trust)
    raise_for_failures(results)
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main))
