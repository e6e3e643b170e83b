"""``alignrec-data pretrain DATASET``: mask-then-predict pretraining of the MMEnc encoder."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import common_options, emit


def summary_lines(dataset: str, m: dict) -> list[str]:
    """Human-readable result: losses before/after on the probe set, speed, outputs."""

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    b, a, t = m["probe_before"], m["probe_after"], m["train"]
    return [
        f"{dataset}: pretrained MMEnc ({m['init']}, {m['size']}, "
        f"{m['parameters']:,} parameters) for {t['steps']} steps on "
        f"{m['world_size']} process(es), global batch {m['global_batch']}",
        f"probe masked-LM loss {fmt(b['mlm_loss'])} -> {fmt(a['mlm_loss'])}; "
        f"masked-image loss {fmt(b['mim_loss'])} -> {fmt(a['mim_loss'])}",
        f"{t['seconds']:.1f} s, {t['samples_per_s'] or 0:.1f} samples/s on {m['device']}",
        "wrote models/mmenc.pt, metrics/pretrain.json, metrics/pretrain_history.csv",
    ]


@click.command("pretrain")
@click.argument("dataset")
@common_options
def command(dataset: str, data_dir: Path, params: Path | None, fmt: str) -> None:
    """Pretrain the MMEnc encoder of DATASET with masked text and image modelling.

    Reads DATA_DIR/DATASET/prepared/items.parquet and the packed images in
    DATA_DIR/DATASET/images/; writes DATA_DIR/DATASET/models/mmenc.pt,
    metrics/pretrain.json and metrics/pretrain_history.csv. Settings come from the
    `pretrain:` section of the params file (default start: the offline hybrid of
    EfficientNet-Lite0 and all-MiniLM-L6-v2). A killed run resumes from
    models/mmenc.resume.pt. For many GPUs run the same stage with torchrun (see below).

    \b
    Examples:
      alignrec-data pretrain amazon-mini
      alignrec-data pretrain amazon-baby --params my-params.yaml --format json
      torchrun --nproc_per_node 8 -m alignrec_model.pretrain \\
          --data-dir data --dataset amazon-baby --params params.yaml
    """  # noqa: D301 (click needs a real \b)
    from alignrec_model.pretrain.entry import run_pretrain

    metrics = run_pretrain(data_dir, dataset, params)
    emit(fmt, metrics, summary_lines(dataset, metrics))
