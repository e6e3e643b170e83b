"""Print where each dataset's release is and its headline metrics (run after `dvc repro`).

Not a DVC stage: `make run` calls it so that the main command ends with the numbers a user
looks for first. Reads ``datasets`` from the params file and each dataset's metrics JSONs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alignrec_data.config import load_params, resolve_params_path
from alignrec_data.failures import run_stage
from alignrec_model.summary import headline_metrics


def summarize(data_dir: Path, datasets: list[str]) -> list[str]:
    """Lines describing each dataset's release and test metrics of every trained run."""
    lines: list[str] = []
    for ds in datasets:
        root = data_dir / ds
        release = root / "release"
        lines.append(f"{ds}: release folder {release.resolve()}")
        lines.append(f'  load it: datasets.load_dataset("{release}", "features-alignrec")')
        runs = headline_metrics(root)["runs"]
        if not runs:
            lines.append("  no trained runs found under metrics/")
        for run, m in runs.items():
            vals = "  ".join(f"test {k} {v:.4f}" for k, v in m["test"].items())
            lines.append(f"  {run:<28} {vals}")
        report = root / "report" / "report.md"
        if report.is_file():
            lines.append(f"  report: {report.resolve()}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--params", type=Path, default=None, help="Default: ./params.yaml.")
    args = parser.parse_args(argv)
    params = load_params(resolve_params_path(args.params))
    print("\n".join(summarize(args.data_dir, list(params.get("datasets", [])))))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
