"""The feature leaderboard: every feature variant x every protocol that applies, over seeds.

:func:`build_leaderboard` plans the cells (:mod:`alignrec_model.leaderboard_cells`) of one
dataset, runs the ones not cached (one tqdm bar over the cells, on stderr), aggregates the seeds
of each row (mean, sample std, min, max of every valid and test metric; the best epoch picked
on VALID by the trainer, the numbers reported on TEST) and writes, under ``<ds>/leaderboard/``,

- ``leaderboard.json``: ``{"dataset", "rows": [...], "markdown", "notes", ...}``, rows sorted
  by mean test Recall@20 (then NDCG@20); also copied to ``<ds>/metrics/leaderboard.json``,
  where the release reads its metrics for the dataset card;
- ``leaderboard.md``: the Markdown table, the LightGCN line (ids only) marked as the line to
  beat and a "use for" column (best variant per modality and per consumer);
- ``leaderboard.png``: test Recall@20 bars with std error bars (matplotlib, Agg).

Which protocol applies to a variant is read from the file (:func:`feature_info`): mask-modality
masks each modality a joint variant names a replacement for (when that file exists), and the
modality a unimodal variant has; FREEDOM runs on each unimodal variant and on (image, text)
pairs.
"""

from __future__ import annotations

import functools
import logging
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from alignrec_data.atomic import write_json, write_text
from alignrec_data.errors import UsageError
from alignrec_data.feature_info import FeatureInfo, feature_info
from alignrec_data.integrity import sha256_file
from alignrec_data.markdown import markdown_table
from alignrec_data.paths import DatasetPaths
from alignrec_model.leaderboard_cells import (
    DETERMINISTIC,
    ID_ONLY,
    PROTOCOLS,
    Cell,
    LeaderboardConfig,
    run_cell,
)
from alignrec_model.train import no_bar

logger = logging.getLogger(__name__)

HEADLINE = ("recall@20", "ndcg@20")
#: Consumers named in the "use for" column, by protocol.
CONSUMERS = {
    "zero-shot": "retrieval / cold start (zero-shot)",
    "item-cf": "content kNN (item-cf)",
    "itemknn": "ItemKNN-CBF",
    "alignrec": "AlignRec input",
    "freedom": "FREEDOM input",
}


def discover_variants(paths: DatasetPaths, requested: tuple[str, ...]) -> dict[str, FeatureInfo]:
    """The variants of ``features/*.parquet`` (or ``requested``), described by their files.

    Raises:
        UsageError: A requested variant has no file (the message lists the ones found).
    """
    found = sorted(p.stem for p in paths.features.glob("*.parquet"))
    missing = [v for v in requested if v not in found]
    if missing:
        msg = (
            f"unknown feature variant(s) {', '.join(missing)} for {paths.root.name}; "
            f"found: {', '.join(found) or 'none'} (features/*.parquet)"
        )
        raise UsageError(msg, hint=f"run `alignrec-data extract {paths.root.name}` first")
    names = list(requested) or found
    return {v: feature_info(paths.feature_file(v)) for v in names}


def _mask_cells(v: str, info: FeatureInfo, seeds, paths: DatasetPaths, notes: list[str]):
    """mask-modality cells of one variant (nothing when no modality can be masked)."""
    if info.modality in ("image", "text"):
        return [Cell("mask-modality", (v,), s, info.modality) for s in seeds]
    cells = []
    for m, repl in sorted(info.without.items()):
        if paths.feature_file(repl).is_file():
            cells += [Cell("mask-modality", (v,), s, m, repl) for s in seeds]
        else:
            notes.append(f"mask-modality of {v} without {m}: {repl}.parquet is absent, skipped")
    if not cells:
        notes.append(f"mask-modality of {v}: no modality to mask (modality {info.modality})")
    return cells


def plan_cells(
    variants: dict[str, FeatureInfo],
    board: LeaderboardConfig,
    paths: DatasetPaths,
    pairs: list[tuple[str, str]],
    notes: list[str],
) -> list[Cell]:
    """Every cell of the board, in protocol order (deterministic protocols: one seed)."""
    cells: list[Cell] = []
    for proto in board.protocols:
        seeds = (None,) if proto in DETERMINISTIC else board.seeds
        if proto in ID_ONLY:
            cells += [Cell(proto, (), s) for s in seeds]
        elif proto == "mask-modality":
            for v, info in variants.items():
                cells += _mask_cells(v, info, seeds, paths, notes)
        elif proto == "freedom":
            uni = [v for v, i in variants.items() if i.modality in ("image", "text")]
            groups = [(v,) for v in uni] + [tuple(p) for p in pairs]
            cells += [Cell(proto, g, s) for g in groups for s in seeds]
        else:
            cells += [Cell(proto, (v,), s) for v in variants for s in seeds]
    return cells


def choose_pairs(variants, board, score) -> list[tuple[str, str]]:
    """FREEDOM's (image, text) pairs: ``board.pairs``, all pairs when few, else the best two.

    Args:
        variants: Variant -> FeatureInfo.
        board: The leaderboard section.
        score: Variant -> valid Recall@20 of its zero-shot cell (called only when needed).
    """
    images = [v for v, i in variants.items() if i.modality == "image"]
    texts = [v for v, i in variants.items() if i.modality == "text"]
    if board.pairs:
        bad = [p for p in board.pairs if p[0] not in images or p[1] not in texts]
        if bad:
            msg = (
                f"leaderboard.pairs {[list(p) for p in bad]}: each pair must be an image "
                f"variant ({', '.join(images) or 'none'}) then a text variant "
                f"({', '.join(texts) or 'none'})"
            )
            raise UsageError(msg)
        return [tuple(p) for p in board.pairs]
    if len(images) * len(texts) <= board.max_pairs:
        return list(product(images, texts))
    return [(max(images, key=score), max(texts, key=score))]


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "min": float(arr.min()), "max": float(arr.max())}


def aggregate(results: list[tuple[Cell, dict[str, Any]]], variants) -> list[dict[str, Any]]:
    """One row per (protocol, variant, masked modality), seeds aggregated, sorted by test R@20."""
    groups: dict[tuple, list[tuple[Cell, dict[str, Any]]]] = {}
    for cell, res in results:
        groups.setdefault(cell.row, []).append((cell, res))
    rows = []
    for (proto, label, masked), items in groups.items():
        first = items[0][0]
        mods = sorted({variants[v].modality or "unknown" for v in first.variants})
        row: dict[str, Any] = {
            "protocol": proto,
            "variant": label,
            "variants": list(first.variants),
            "modality": "+".join(mods) if mods else None,
            "masked": masked,
            "deterministic": proto in DETERMINISTIC,
            "n_seeds": len(items),
            "seeds": [c.seed for c, _ in items],
            "best_epochs": [r.get("best_epoch", 0) for _, r in items],
        }
        for split in ("valid", "test"):
            keys = sorted(items[0][1][split])
            row[split] = {k: _stats([r[split][k] for _, r in items]) for k in keys}
        if masked:
            row["drop"] = {k: _stats([r["drop"]["test"][k] for _, r in items]) for k in HEADLINE}
        rows.append(row)
    rows.sort(
        key=lambda r: (
            -r["test"]["recall@20"]["mean"],
            -r["test"]["ndcg@20"]["mean"],
            PROTOCOLS.index(r["protocol"]),
            r["variant"],
            r["masked"] or "",
        )
    )
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    _use_for(rows)
    return rows


def _use_for(rows: list[dict[str, Any]]) -> None:
    """Fill each row's ``use_for``: the line to beat, the floor, best per modality / consumer."""
    references = {"lightgcn": "line to beat (ids only)", "pop": "floor (most popular)"}
    for row in rows:
        row["use_for"] = [references[row["protocol"]]] if row["protocol"] in references else []
    single = [r for r in rows if r["protocol"] in CONSUMERS and len(r["variants"]) == 1]
    for modality in ("joint", "image", "text"):
        best = next((r for r in single if r["modality"] == modality), None)  # rows are sorted
        if best is not None:
            best["use_for"].append(f"best {modality} features")
    for proto, consumer in CONSUMERS.items():
        best = next((r for r in rows if r["protocol"] == proto), None)
        if best is not None:
            best["use_for"].append(consumer)
    masked = [r for r in rows if r["masked"]]
    for modality in sorted({r["masked"] for r in masked}):
        best = min(
            (r for r in masked if r["masked"] == modality),
            key=lambda r: r["drop"]["recall@20"]["mean"],
        )
        best["use_for"].append(f"most robust without {modality}")


def _pm(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The leaderboard as a Markdown table (the LightGCN row in bold: the line to beat)."""
    line = next((r for r in rows if r["protocol"] == "lightgcn"), None)
    header = [
        "#",
        "protocol",
        "variant",
        "modality",
        "seeds",
        "test R@20 mean ± std",
        "[min, max]",
        "test N@20 mean ± std",
        "valid R@20",
        "vs LightGCN",
        "best epoch",
        "use for",
    ]
    body = []
    for r in rows:
        proto = r["protocol"] + (f" (mask {r['masked']})" if r["masked"] else "")
        t = r["test"]["recall@20"]
        seeds = "1 (deterministic)" if r["deterministic"] else str(r["n_seeds"])
        vs = "" if line is None else f"{t['mean'] - line['test']['recall@20']['mean']:+.4f}"
        cells = [
            r["rank"],
            proto,
            r["variant"],
            r["modality"] or "-",
            seeds,
            _pm(t),
            f"[{t['min']:.4f}, {t['max']:.4f}]",
            _pm(r["test"]["ndcg@20"]),
            f"{r['valid']['recall@20']['mean']:.4f}",
            vs,
            ", ".join(str(e) for e in r["best_epochs"]),
            "; ".join(r["use_for"]),
        ]
        if r is line:
            cells = [f"**{c}**" if c != "" else c for c in cells]
        body.append(cells)
    return markdown_table(header, body, str)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Horizontal bars of mean test Recall@20 with std error bars; LightGCN and pop as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alignrec_model.report import save_figure

    labels = [
        f"{r['protocol']}{' -' + r['masked'] if r['masked'] else ''} | {r['variant']}" for r in rows
    ]
    means = [r["test"]["recall@20"]["mean"] for r in rows]
    stds = [r["test"]["recall@20"]["std"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.4))
    y = np.arange(len(rows))[::-1]
    colors = ["tab:red" if r["protocol"] == "lightgcn" else "tab:blue" for r in rows]
    ax.barh(y, means, xerr=stds, color=colors, capsize=3)
    for proto, style in (("lightgcn", "--"), ("pop", ":")):
        ref = next((r for r in rows if r["protocol"] == proto), None)
        if ref is not None:
            ax.axvline(ref["test"]["recall@20"]["mean"], color="k", ls=style, lw=1, label=proto)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("test Recall@20 (mean ± std over seeds)")
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    save_figure(fig, path)


def _write(paths: DatasetPaths, doc: dict[str, Any]) -> None:
    """Write ``leaderboard/leaderboard.{json,md,png}`` and the copy under ``metrics/``."""
    out = paths.root / "leaderboard"
    write_json(out / "leaderboard.json", doc)
    write_json(paths.metrics / "leaderboard.json", doc)
    write_text(out / "leaderboard.md", _page(doc))
    if doc["rows"]:
        plot(doc["rows"], out / "leaderboard.png", f"{doc['dataset']}: feature leaderboard")


def build_leaderboard(
    data_dir: str | Path,
    dataset: str,
    train: Any,
    evaluate: Any,
    board: LeaderboardConfig,
    *,
    force: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or read from the cache) every cell of the board and write its three outputs.

    Args:
        data_dir: The data directory.
        dataset: The dataset id.
        train: The ``train`` section for this dataset (``load_settings``).
        evaluate: The ``evaluate`` section for this dataset.
        board: The ``leaderboard`` section (seeds, protocols, features, pairs).
        force: Recompute every cell even when cached.
        progress: tqdm bar over the cells on stderr (None: on a terminal only).

    Returns:
        The ``leaderboard.json`` document.

    Raises:
        UsageError: An unknown variant, missing interactions.
    """
    paths = DatasetPaths.of(data_dir, dataset)
    inter = paths.prepared / "interactions.parquet"
    if not inter.is_file():
        msg = f"{inter} does not exist; run `alignrec-data prepare {dataset}` first"
        raise UsageError(msg)
    variants = discover_variants(paths, board.features)
    if not variants and any(p not in ID_ONLY for p in board.protocols):
        logger.warning("%s has no features/*.parquet: only the ID-only rows", dataset)
    notes: list[str] = []
    digest = functools.cache(sha256_file)  # each input file is hashed once per run
    configs = (train, evaluate, board)

    def zero_shot_valid(v: str) -> float:
        res, _ = run_cell(Cell("zero-shot", (v,)), data_dir, dataset, configs, digest, force)
        return res["valid"]["recall@20"]

    pairs = choose_pairs(variants, board, zero_shot_valid) if "freedom" in board.protocols else []
    cells = plan_cells(variants, board, paths, pairs, notes)
    for note in notes:
        logger.info("leaderboard %s: %s", dataset, note)
    results = []
    computed = 0
    bar = tqdm(cells, desc=f"leaderboard {dataset}", unit="cell", disable=no_bar(progress))
    for cell in bar:
        bar.set_postfix_str(cell.filename.removesuffix(".json"))
        res, fresh = run_cell(cell, data_dir, dataset, configs, digest, force)
        computed += fresh
        results.append((cell, res))
    rows = aggregate(results, variants)
    doc = {
        "dataset": dataset,
        "headline": list(HEADLINE),
        "selection": f"best epoch by valid {train.valid_metric}; numbers on test",
        "protocols": list(board.protocols),
        "seeds": list(board.seeds),
        "pairs": [list(p) for p in pairs],
        "n_cells": len(cells),
        "rows": rows,
        "markdown": markdown(rows),
        "notes": notes,
    }
    _write(paths, doc)
    logger.info(
        "leaderboard %s: %d cells, %d computed, %d cached",
        dataset,
        len(cells),
        computed,
        len(cells) - computed,
    )
    return {**doc, "computed": computed}


def _page(doc: dict[str, Any]) -> str:
    """``leaderboard.md``: title, how to read it, the table, the notes."""
    lines = [
        f"# Feature leaderboard: {doc['dataset']}",
        "",
        f"Sorted by mean test Recall@20 over seeds {doc['seeds']} ({doc['selection']}); "
        "std is the sample standard deviation. **Bold**: LightGCN on ids only, the line to "
        "beat; pop is the floor. Deterministic protocols run once.",
        "",
        doc["markdown"],
        "",
    ]
    lines += [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines).rstrip() + "\n"
