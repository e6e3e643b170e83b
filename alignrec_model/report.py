"""The pipeline report: a Markdown page with PNG figures, built from metrics and features.

Inputs (all under ``<data-dir>/<dataset>/``): ``metrics/train-*.json`` (one recommender run
each), ``metrics/history-*.json`` (per-epoch rows), ``metrics/eval-*.json`` (intermediate
feature evaluations), ``metrics/pretrain_history.csv`` (pretraining losses, optional),
``features/*.parquet`` and ``prepared/items.parquet`` (for the 2-D feature maps),
``leaderboard/leaderboard.json`` and ``leaderboard.png`` (the feature leaderboard, optional).

Output: ``<out>/report.md`` and ``<out>/figures/*.png``. The dataset card embeds the page.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from alignrec_data.atomic import atomic_path, write_text
from alignrec_data.features import read_features
from alignrec_data.markdown import markdown_table

logger = logging.getLogger(__name__)

HEADLINE = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return "" if v is None else str(v)


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure to ``path`` as PNG (atomically, no timestamp) and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def pca_2d(matrix: np.ndarray) -> np.ndarray:
    """Project rows of ``matrix`` on their first two principal components (sign-fixed).

    Args:
        matrix: (N, d) features.

    Returns:
        (N, 2) coordinates; deterministic (each component's largest loading is positive).
    """
    x = matrix.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    out = x @ (comps * signs[:, None]).T
    if out.shape[1] < 2:
        out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    return out


def item_categories(items_path: Path) -> np.ndarray:
    """The first category below the root of each item (``categories[1]``), by item_id.

    Amazon category paths start with the store's root ("Baby", "Clothing, Shoes & Jewelry");
    the level below it is the coarse product family, few enough classes to tell apart by colour.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(items_path, columns=["item_id", "categories"])
    ids = table.column("item_id").to_numpy()
    cats = table.column("categories").to_pylist()
    out = np.empty(len(ids), dtype=object)
    for i, c in zip(ids, cats, strict=True):
        out[i] = c[1] if len(c) > 1 else (c[0] if c else "(none)")
    return out


def build_report(dataset_root: Path, out_dir: Path) -> Path:
    """Write ``report.md`` and its figures for one dataset.

    Args:
        dataset_root: ``<data-dir>/<dataset>``.
        out_dir: Folder for ``report.md`` and ``figures/``.

    Returns:
        The path of ``report.md``.
    """
    import matplotlib

    matplotlib.use("Agg")  # before any pyplot import in the sections below

    metrics_dir = dataset_root / "metrics"
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    sections = [f"# Report: {dataset_root.name}", ""]
    sections += _recommendation_section(metrics_dir, fig_dir)
    sections += _curves_section(metrics_dir, fig_dir)
    sections += _pretraining_section(metrics_dir, fig_dir)
    sections += _evaluations_section(metrics_dir)
    sections += _leaderboard_section(dataset_root, fig_dir)
    sections += _feature_maps_section(dataset_root, fig_dir)
    report = out_dir / "report.md"
    write_text(report, "\n".join(sections).rstrip() + "\n")
    return report


def _recommendation_section(metrics_dir: Path, fig_dir: Path) -> list[str]:
    """1. Recommender metrics (best epoch chosen by validation Recall@20) and Recall@K bars."""
    paths = sorted(metrics_dir.glob("train-*.json"))
    runs = [(path.stem.removeprefix("train-"), _read_json(path)) for path in paths]
    if not runs:
        return []
    rows = [
        [name, r.get("best_epoch"), r.get("valid", {}).get("recall@20")]
        + [r.get("test", {}).get(k) for k in HEADLINE]
        for name, r in runs
    ]
    return [
        "## Recommendation (full ranking, test split; best epoch by valid Recall@20)",
        "",
        markdown_table(
            ["run", "best epoch", "valid R@20", *[f"test {k}" for k in HEADLINE]], rows, _fmt
        ),
        "",
        *_recall_figure(runs, fig_dir),
    ]


def _recall_figure(runs: list[tuple[str, Any]], fig_dir: Path) -> list[str]:
    """Test Recall@K bars of every run (nothing when no run has a ``recall@K``)."""
    import matplotlib.pyplot as plt

    tested = [k for _, r in runs for k in r.get("test", {})]
    ks = sorted({int(k.removeprefix("recall@")) for k in tested if k.startswith("recall@")})
    if not ks:
        return []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(runs)
    for j, (name, r) in enumerate(runs):
        vals = [r.get("test", {}).get(f"recall@{k}", 0.0) for k in ks]
        ax.bar(np.arange(len(ks)) + j * width, vals, width, label=name)
    ax.set_xticks(np.arange(len(ks)) + 0.4 - width / 2, [f"R@{k}" for k in ks])
    ax.set_ylabel("test recall")
    ax.legend(fontsize=7)
    save_figure(fig, fig_dir / "recall_at_k.png")
    return ["![Recall@K per model](figures/recall_at_k.png)", ""]


def _curves_section(metrics_dir: Path, fig_dir: Path) -> list[str]:
    """2. Training curves: validation Recall@20 per epoch of every run with a history."""
    histories = sorted(metrics_dir.glob("history-*.json"))
    if not histories:
        return []
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for path in histories:
        rows = _read_json(path)
        if isinstance(rows, dict):
            rows = rows.get("history", [])
        key = next(
            (k for k in ("valid_recall@20", "valid/recall@20") if rows and k in rows[0]), None
        )
        if key is None:
            continue
        ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], label=path.stem[8:])
    ax.set(xlabel="epoch", ylabel="valid Recall@20")
    ax.legend(fontsize=7)
    save_figure(fig, fig_dir / "valid_curves.png")
    return ["## Training curves", "", "![validation curves](figures/valid_curves.png)", ""]


def _pretraining_section(metrics_dir: Path, fig_dir: Path) -> list[str]:
    """3. Pretraining losses (metrics/pretrain_history.csv: step, ..., mlm_loss, mim_loss)."""
    pre = metrics_dir / "pretrain_history.csv"
    if not pre.is_file():
        return []
    import csv

    import matplotlib.pyplot as plt

    with pre.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    loss_keys = [k for k in ("mlm_loss", "mim_loss") if rows and k in rows[0]]
    if not loss_keys:
        return []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for k in loss_keys:
        pts = [(int(r["step"]), float(r[k])) for r in rows if r.get(k) not in ("", None)]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=k)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    save_figure(fig, fig_dir / "pretrain_losses.png")
    return ["## Pretraining", "", "![pretraining losses](figures/pretrain_losses.png)", ""]


def _evaluations_section(metrics_dir: Path) -> list[str]:
    """4. Intermediate evaluations of features (``metrics/eval-*.json``), as a table."""
    evals = sorted(metrics_dir.glob("eval-*.json"))
    if not evals:
        return []
    rows = []
    for path in evals:
        r = _read_json(path)
        test = r.get("test", {}) if isinstance(r.get("test"), dict) else {}
        drop = r.get("drop", {}) if isinstance(r.get("drop"), dict) else {}
        drop = drop.get("test", drop)  # mask-modality: {"test": {...}, "valid": {...}}
        rows.append(
            [r.get("protocol", path.stem), r.get("features", "")]
            + [test.get(k) for k in ("recall@20", "ndcg@20")]
            + [drop.get("recall@20") if isinstance(drop, dict) else None]
        )
    return [
        "## Intermediate evaluations of features",
        "",
        markdown_table(["protocol", "features", "test R@20", "test N@20", "drop R@20"], rows, _fmt),
        "",
    ]


def _leaderboard_section(dataset_root: Path, fig_dir: Path) -> list[str]:
    """4b. The feature leaderboard (``leaderboard/leaderboard.json``), its figure copied."""
    path = dataset_root / "leaderboard" / "leaderboard.json"
    if not path.is_file():
        return []
    doc = _read_json(path)
    lines = [
        "## Feature leaderboard",
        "",
        f"Every feature variant x protocol, seeds {doc.get('seeds')}: mean ± std of test "
        "Recall@20 (best epoch by valid); **bold**: LightGCN on ids, the line to beat "
        "(`alignrec-data leaderboard`).",
        "",
        doc.get("markdown", ""),
        "",
    ]
    png = path.with_name("leaderboard.png")
    if png.is_file():
        with atomic_path(fig_dir / "leaderboard.png", suffix=".png") as tmp:
            tmp.write_bytes(png.read_bytes())
        lines += ["![feature leaderboard](figures/leaderboard.png)", ""]
    return lines


def _feature_maps_section(dataset_root: Path, fig_dir: Path) -> list[str]:
    """5. 2-D maps of item features, coloured by category (one figure per feature file)."""
    items_path = dataset_root / "prepared" / "items.parquet"
    feats = sorted((dataset_root / "features").glob("*.parquet"))
    if not feats or not items_path.is_file():
        return []
    import matplotlib.pyplot as plt

    cats = item_categories(items_path)
    names = sorted(set(cats))
    cmap = plt.get_cmap("tab20", max(len(names), 1))
    color = np.array([names.index(c) for c in cats])
    lines = ["## Item features (PCA, coloured by second-level category)", ""]
    for path in feats:
        _, matrix, _ = read_features(path)
        if len(matrix) != len(cats):
            logger.warning("skipping %s: %d rows for %d items", path, len(matrix), len(cats))
            continue
        xy = pca_2d(matrix)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(xy[:, 0], xy[:, 1], c=color, cmap=cmap, s=6, vmin=0, vmax=max(len(names) - 1, 1))
        ax.set(title=path.stem, xticks=[], yticks=[])
        png = f"features_{path.stem}.png"
        save_figure(fig, fig_dir / png)
        lines += [f"![{path.stem}](figures/{png})", ""]
    return lines
