"""``alignrec-data report DATASET``: the report page and the headline metrics of a dataset."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import data_dir_option, emit, format_option
from alignrec_data.errors import UsageError
from alignrec_data.paths import DatasetPaths

SUMMARY_FILE = "summary.json"


@click.command("report")
@click.argument("dataset")
@data_dir_option
@format_option
def command(dataset: str, data_dir: Path, fmt: str) -> None:
    """Write DATASET's report page and its headline metrics.

    Reads DATA_DIR/DATASET/metrics/*.json (train and evaluate results, pretraining history),
    features/ and prepared/items.parquet; writes DATA_DIR/DATASET/report/report.md with its
    figures (metrics table, training curves, pretraining losses, intermediate evaluations, a
    2-D map of each feature variant) and DATA_DIR/DATASET/summary.json: Recall@20 and NDCG@20
    of every run (valid, test) and evaluation, the file `dvc metrics show` compares. The
    release embeds the report in its dataset card.

    \b
    Examples:
      alignrec-data report amazon-mini
      alignrec-data report amazon-baby --format json
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.atomic import write_json
    from alignrec_model.report import build_report
    from alignrec_model.summary import headline_metrics

    paths = DatasetPaths.of(data_dir, dataset)
    if not paths.metrics.is_dir():
        msg = f"{paths.metrics} does not exist; run `alignrec-data train {dataset}` first"
        raise UsageError(msg)
    page = build_report(paths.root, paths.root / "report")
    summary = headline_metrics(paths.root)
    write_json(paths.root / SUMMARY_FILE, summary)
    lines = [f"report  {page}", f"summary {paths.root / SUMMARY_FILE}"]
    for run, m in summary["runs"].items():
        vals = "  ".join(f"test {k} {v:.4f}" for k, v in m.get("test", {}).items())
        lines.append(f"  {run:<28} {vals}")
    emit(fmt, {"report": str(page), "summary": summary}, lines)
