"""``alignrec-data evaluate DATASET --features VARIANT --protocol ...``: judge a feature set."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import common_options, emit
from alignrec_data.config import load_settings
from alignrec_data.paths import DatasetPaths
from alignrec_model.recommenders import FEATURE_MODELS  # torch-free: the registry's names


@click.command("evaluate")
@click.argument("dataset")
@click.option(
    "--features",
    "variant",
    required=True,
    metavar="VARIANT",
    help="Feature variant to evaluate (DATA_DIR/DATASET/features/VARIANT.parquet).",
)
@click.option(
    "--protocol",
    type=click.Choice(["zero-shot", "item-cf", "mask-modality"]),
    required=True,
    help="zero-shot: cosine to the mean train-item feature; item-cf: ItemKNN on the features; "
    "mask-modality: train with a modality masked for half the items and report the drop.",
)
@click.option(
    "--modality",
    type=click.Choice(["image", "text"]),
    default=None,
    help="mask-modality: modality to mask [default: evaluate.mask_modality].",
)
@click.option(
    "--model",
    type=click.Choice(FEATURE_MODELS),
    default=None,
    help="mask-modality: recommender to train [default: evaluate.mask_model].",
)
@common_options
def command(
    dataset: str,
    variant: str,
    protocol: str,
    modality: str | None,
    model: str | None,
    data_dir: Path,
    params: Path | None,
    fmt: str,
) -> None:
    """Evaluate the feature set VARIANT of DATASET without (or with a fixed) recommender.

    Same full-ranking evaluator as `train` (train items excluded; Recall, NDCG, Precision and
    MAP at 5/10/20/50 on valid and test). Writes DATA_DIR/DATASET/metrics/
    eval-PROTOCOL-VARIANT.json (this command's JSON result). Parameters: the `evaluate:` params
    section; mask-modality also trains with the `train:` section; each with
    `overrides.SECTION.DATASET` over it. The settings used are recorded under `settings`.

    \b
    Examples:
      alignrec-data evaluate amazon-mini --features minilm-text --protocol zero-shot
      alignrec-data evaluate amazon-baby --features alignrec --protocol item-cf --format json
      alignrec-data evaluate amazon-mini --features alignrec --protocol mask-modality
      alignrec-data evaluate amazon-mini --features alignrec \\
          --protocol mask-modality --modality text
      alignrec-data evaluate amazon-mini --features effnet-image \\
          --protocol mask-modality --model itemknn
    """  # noqa: D301 (click needs a real \b)
    from alignrec_model.feature_eval import EvaluateConfig, evaluate_features
    from alignrec_model.train import TrainConfig, metric_table

    config = load_settings(params, "evaluate", EvaluateConfig, dataset)
    train_config = (
        load_settings(params, "train", TrainConfig, dataset)
        if protocol == "mask-modality"
        else None
    )
    result = evaluate_features(
        data_dir, dataset, variant, protocol, config, train_config, modality=modality, model=model
    )
    path = DatasetPaths.of(data_dir, dataset).metrics / f"eval-{protocol}-{variant}.json"
    lines = [f"{protocol} of {variant} on {dataset}"]
    lines += metric_table({"valid": result["valid"], "test": result["test"]}, config.topks)
    if protocol == "mask-modality":
        lines.insert(1, f"masked {result['modality']} of {result['n_masked']} items; drop:")
        lines += ["unmasked:", *metric_table(result["unmasked"], config.topks)]
        for split in ("valid", "test"):
            d = result["drop"][split]
            lines.append(
                f"drop {split}: recall@20 {d['recall@20']:+.4f}, ndcg@20 {d['ndcg@20']:+.4f}"
            )
    lines.append(f"metrics {path}")
    emit(fmt, result, lines)
