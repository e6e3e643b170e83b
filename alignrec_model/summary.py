"""The headline numbers of a dataset: what ``dvc metrics show`` / ``dvc exp show`` compare.

Every ``train`` run and feature evaluation writes its full result (every metric at every K,
timings, the settings) to ``metrics/*.json``; those are plain outputs. The one DVC metrics file
per dataset, ``<data-dir>/<dataset>/summary.json``, holds only the headline: Recall@20 and
NDCG@20 on valid and test for each run, on test for each evaluation (the drop for
mask-modality), so that two experiments fit side by side in a terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HEADLINE = ("recall@20", "ndcg@20")


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _pick(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {k: metrics[k] for k in HEADLINE if isinstance(metrics, dict) and k in metrics}


def headline_metrics(dataset_root: str | Path) -> dict[str, Any]:
    """``{"runs": {run: {"valid", "test"}}, "evaluations": {protocol-variant: {...}}}``.

    Args:
        dataset_root: ``<data-dir>/<dataset>``.

    Returns:
        The headline numbers found under ``metrics/`` (empty sections when none).
    """
    metrics = Path(dataset_root) / "metrics"
    runs = {p.stem.removeprefix("train-"): _read(p) for p in sorted(metrics.glob("train-*.json"))}
    evals = {p.stem.removeprefix("eval-"): _read(p) for p in sorted(metrics.glob("eval-*.json"))}
    return {
        "runs": {run: {s: _pick(r.get(s)) for s in ("valid", "test")} for run, r in runs.items()},
        "evaluations": {  # mask-modality: the drop
            key: {"test_drop": _pick(r["drop"].get("test"))}
            if "drop" in r
            else {"test": _pick(r.get("test"))}
            for key, r in evals.items()
        },
    }
