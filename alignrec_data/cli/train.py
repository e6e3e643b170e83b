"""``alignrec-data train DATASET --model ...``: train a recommender, keep the best valid epoch."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import common_options, emit
from alignrec_data.config import load_settings
from alignrec_data.paths import DatasetPaths
from alignrec_model.recommenders import MODELS  # torch-free: the registry's names


@click.command("train")
@click.argument("dataset")
@click.option(
    "--model",
    type=click.Choice(MODELS),
    default="alignrec",
    show_default=True,
    help="Recommender: AlignRec, or a baseline in the same harness and evaluator.",
)
@click.option(
    "--features",
    "variant",
    default=None,
    metavar="VARIANT",
    help="Feature variant (features/VARIANT.parquet) for alignrec and itemknn; for freedom "
    "one or two variants IMAGE,TEXT (e.g. effnet-image,minilm-text) "
    "[default: train.features of the params file].",
)
@click.option("--seed", type=int, default=None, help="Override train.seed.")
@click.option("--epochs", type=int, default=None, help="Override train.epochs (maximum).")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="Override train.device (auto: CUDA when available).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=None,
    help="Override train.num_threads (torch CPU threads; 0: torch's default).",
)
@click.option(
    "--grid",
    is_flag=True,
    help="Search train.grid_lr x grid_cl x grid_sim (lr only for baselines; freedom: "
    "train.freedom.grid_reg_weight x grid_dropout); choose by valid. "
    "Resumable: run it again after an interruption and only the missing cells train.",
)
@common_options
def command(
    dataset: str,
    model: str,
    variant: str | None,
    seed: int | None,
    epochs: int | None,
    device: str | None,
    threads: int | None,
    grid: bool,
    data_dir: Path,
    params: Path | None,
    fmt: str,
) -> None:
    """Train MODEL on DATASET's prepared interactions; evaluate valid and test every epoch.

    Uniform negatives (never a train item of the user), Adam with lr * 0.96^(epoch/50), the
    best epoch by VALID Recall@20, early stop after train.patience evaluations without
    improvement. Writes DATA_DIR/DATASET/models/RUN.pt (the best epoch),
    metrics/train-RUN.json (this command's JSON result) and metrics/history-RUN.json (one
    record per epoch), RUN being MODEL or MODEL-VARIANT for the feature models (freedom:
    MODEL-IMAGE+TEXT, e.g. freedom-effnet-image+minilm-text). With --grid,
    also metrics/grid-RUN.json with every cell. Parameters: the `train:` params section with
    `overrides.train.DATASET` over it (real data: the spec's lr 1e-3, at most 1000 epochs,
    patience 30; amazon-mini: short CPU runs); options win. The settings used are logged and
    recorded under `settings` in the JSON result.

    \b
    Examples:
      alignrec-data train amazon-mini --model pop
      alignrec-data train amazon-baby --model lightgcn --format json
      alignrec-data train amazon-baby --model alignrec --features alignrec
      alignrec-data train amazon-baby --model itemknn --features minilm-text
      alignrec-data train amazon-mini --model freedom --features effnet-image,minilm-text
      alignrec-data train amazon-baby --model alignrec --grid
      alignrec-data train amazon-baby --model lightgcn --threads 1

    Joint fine-tuning of the top MMEnc layers (train.alignrec.finetune_encoder_layers > 0,
    features alignrec or mmenc-text, models/mmenc.pt and images/ present) is meant for a GPU:
    --device cuda.
    """  # noqa: D301 (click needs a real \b)
    from alignrec_model.grid import grid_dataset
    from alignrec_model.runs import run_name
    from alignrec_model.train import TrainConfig, metric_table, train_dataset

    given = {"seed": seed, "epochs": epochs, "device": device, "num_threads": threads}
    config = load_settings(params, "train", TrainConfig, dataset, given=given)
    if grid:
        result = grid_dataset(data_dir, dataset, config, model, variant).best
    else:
        result = train_dataset(data_dir, dataset, config, model, variant)
    name = run_name(model, result.features)  # features is None for the ID-only models
    paths = DatasetPaths.of(data_dir, dataset)
    lines = [
        f"trained {name} on {dataset}: best epoch {result.best_epoch} of {result.epochs}",
        *metric_table({"valid": result.valid, "test": result.test}, config.topks),
        f"checkpoint {paths.models / (name + '.pt')}",
        f"metrics    {paths.metrics / ('train-' + name + '.json')}",
    ]
    emit(fmt, result.to_json(), lines)
