"""``alignrec-data leaderboard DATASET``: every feature variant x protocol, over seeds."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import common_options, emit


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None):
    try:
        return None if value is None else tuple(int(s) for s in _names(value))
    except ValueError as err:
        msg = f"expected integers separated by commas, found {value!r}"
        raise click.BadParameter(msg) from err


def _names(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(s.strip() for s in value.split(",") if s.strip())


@click.command("leaderboard")
@click.argument("dataset")
@click.option(
    "--seeds",
    callback=_int_list,
    default=None,
    metavar="S,S,...",
    help="Seeds of the trained cells [default: leaderboard.seeds].",
)
@click.option(
    "--features",
    default=None,
    metavar="V,V,...",
    help="Feature variants [default: leaderboard.features; empty: every features/*.parquet].",
)
@click.option(
    "--protocols",
    default=None,
    metavar="P,P,...",
    help="Protocols (zero-shot, item-cf, itemknn, mask-modality, alignrec, freedom, "
    "lightgcn, pop) [default: leaderboard.protocols].",
)
@click.option("--force", is_flag=True, help="Recompute every cell, even the cached ones.")
@common_options
def command(
    dataset: str,
    seeds: tuple[int, ...] | None,
    features: str | None,
    protocols: str | None,
    force: bool,
    data_dir: Path,
    params: Path | None,
    fmt: str,
) -> None:
    """Compare DATASET's feature variants: each protocol that applies, LightGCN as the line.

    Every variant of DATA_DIR/DATASET/features/*.parquet x the protocols that apply to its
    modality (zero-shot, item-cf, itemknn, mask-modality, alignrec, freedom when registered),
    with LightGCN on ids (the line to beat) and pop (the floor); trained cells run once per
    seed, deterministic ones once. Best epoch on VALID, numbers on TEST (mean, std, min, max
    over seeds; every cut-off in the JSON). Each cell is cached in
    DATA_DIR/DATASET/leaderboard/cells/ under a key of its params and input files' sha256: a
    rerun computes only missing or changed cells, an interrupted run resumes. Writes
    leaderboard/leaderboard.{json,md,png} and metrics/leaderboard.json (for the dataset card).
    Parameters: the `leaderboard:` params section; training and evaluation settings from the
    `train:` and `evaluate:` sections with `overrides.SECTION.DATASET` over them.

    \b
    Examples:
      alignrec-data leaderboard amazon-mini
      alignrec-data leaderboard amazon-mini --protocols zero-shot,item-cf,lightgcn,pop
      alignrec-data leaderboard amazon-mini --features minilm-text,effnet-image --seeds 1,2,3
      alignrec-data leaderboard amazon-baby --format json
      alignrec-data leaderboard amazon-mini --force
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.config import load_settings
    from alignrec_model.feature_eval import EvaluateConfig
    from alignrec_model.leaderboard import build_leaderboard
    from alignrec_model.leaderboard_cells import LeaderboardConfig
    from alignrec_model.train import TrainConfig

    given = {"seeds": seeds, "features": _names(features), "protocols": _names(protocols)}
    board = load_settings(params, "leaderboard", LeaderboardConfig, dataset, given=given)
    train = load_settings(params, "train", TrainConfig, dataset)
    evaluate = load_settings(params, "evaluate", EvaluateConfig, dataset)
    doc = build_leaderboard(data_dir, dataset, train, evaluate, board, force=force)
    out = Path(data_dir) / dataset / "leaderboard"
    lines = [doc["markdown"], "", *(f"note: {n}" for n in doc["notes"])]
    lines += [
        f"{doc['n_cells']} cells ({doc['computed']} computed, "
        f"{doc['n_cells'] - doc['computed']} cached)",
        f"table  {out / 'leaderboard.md'}",
        f"json   {out / 'leaderboard.json'}",
        f"figure {out / 'leaderboard.png'}",
    ]
    emit(fmt, doc, lines)
