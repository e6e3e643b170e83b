"""The run's summary (``metrics/pretrain.json``) and per-step history (``pretrain_history.csv``)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alignrec_data.atomic import write_text

if TYPE_CHECKING:
    from alignrec_model.pretrain.loop import _Run

METRICS_FILE = "pretrain.json"
HISTORY_FILE = "pretrain_history.csv"
HISTORY_COLUMNS = ["step", "epoch", "kind", "lr", "loss", "mlm_loss", "mim_loss"]


def _mean_last(history: list[dict[str, Any]], key: str, n: int = 10) -> float | None:
    vals = [h[key] for h in history if h.get(key) is not None and h["kind"] == "joint"][-n:]
    return float(np.mean(vals)) if vals else None


def _finite(x: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in x.items()}


def run_metrics(
    run: _Run, after: dict[str, float], steps_run: int, seconds: float
) -> dict[str, Any]:
    """Probe losses before/after, first and last training losses, speed and run shape.

    Args:
        run: The run (its history of every step, resumed ones included, the probe losses
            before training, process group, params, global batch, model).
        after: Probe losses after training.
        steps_run: Steps run by this process (not resumed ones), for the speed.
        seconds: Wall time of those steps.
    """
    samples = steps_run * run.global_batch  # over all processes
    history = run.history
    return {
        "probe_before": _finite(run.probe_before),
        "probe_after": _finite(after),
        "train": {
            "steps": len(history),
            "first_mlm_loss": history[0]["mlm_loss"] if history else None,
            "first_mim_loss": history[0]["mim_loss"] if history else None,
            "last_mlm_loss": _mean_last(history, "mlm_loss"),
            "last_mim_loss": _mean_last(history, "mim_loss"),
            "seconds": round(seconds, 3),
            "samples_per_s": round(samples / seconds, 3) if seconds > 0 and steps_run else None,
        },
        "world_size": run.d.world,
        "global_batch": run.global_batch,
        "device": run.d.device.type,
        "parameters": sum(p.numel() for p in run.model.encoder.parameters()),
        "init": run.cfg.init,
        "size": run.cfg.size,
    }


WALL_TIME_KEYS = ("seconds", "samples_per_s")  # of metrics["train"]: differ from run to run


def without_wall_time(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` without the wall-time fields, as stored in the checkpoint.

    The same params then give a byte-identical ``mmenc.pt``, so the sha256 that feature files and
    releases record for it repeats too; the times stay in ``pretrain.json``.
    """
    train = {k: v for k, v in metrics["train"].items() if k not in WALL_TIME_KEYS}
    return {**metrics, "train": train}


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Per-step losses as CSV (``step,epoch,kind,lr,loss,mlm_loss,mim_loss``) for DVC plots."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(history)  # csv writes None (no loss of that kind in the step) as ""
    write_text(path, buf.getvalue())
