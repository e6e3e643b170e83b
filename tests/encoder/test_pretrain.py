"""Pretraining: DDP through torchrun (gloo, 2 CPU processes) equals one process with the same
global batch; a SIGKILLed run resumes to the same parameters; bad resumes and non-finite
losses stop with clear errors; the command-line entry reports errors in one line. Tiny encoder,
16 synthetic items, real image store and parquet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from alignrec_data.config import load_section
from alignrec_data.errors import UsageError
from alignrec_model.pretrain import (
    CHECKPOINT_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    RESUME_FILE,
    NonFiniteLossError,
    PretrainConfig,
    load_checkpoint,
    pretrain,
)
from tests.conftest import REPO
from tests.encoder._data import synthetic_dataset

# 16 items (3 without image), 4 optimizer steps of global batch 16 = 8 x 1 process x 2
# micro-batches, or 4 x 2 processes x 2; every 3rd step unimodal; resume checkpoint every 2.
TINY = dict(
    init="scratch",
    size="tiny",
    image_size=32,
    max_text_len=32,
    epochs=4,
    batch_size=8,
    grad_accum=2,
    dropout=0.0,
    lr=1e-3,
    warmup_steps=1,
    checkpoint_every=2,
    probe_items=8,
    unimodal_every=3,
    num_threads=1,
    seed=3,
)


def _params(path: Path, **over) -> Path:
    path.write_text(yaml.safe_dump({"pretrain": {**TINY, **over}}))
    return path


# Pretrains through the library with an on_step callback that SIGKILLs the process right after
# optimizer step 3: a hard crash, no cleanup (argv: data dir, params file).
_KILLED_AFTER_STEP_3 = """
import os, signal, sys
from alignrec_data.config import load_section
from alignrec_model.pretrain import PretrainConfig, pretrain

def on_step(record):
    if record["step"] == 3:
        os.kill(os.getpid(), signal.SIGKILL)

cfg = load_section(sys.argv[2], "pretrain", PretrainConfig)
pretrain(sys.argv[1], "synth", cfg, on_step=on_step)
"""


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _encoder(data_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(data_dir / "synth" / "models" / CHECKPOINT_FILE)["encoder"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One uninterrupted, one-process run."""
    root = tmp_path_factory.mktemp("ref")
    synthetic_dataset(root / "data", n=16)
    params = _params(root / "params.yaml")
    metrics = pretrain(root / "data", "synth", load_section(params, "pretrain", PretrainConfig))
    return root / "data", metrics


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(reference, tmp_path: Path) -> None:
    ref_dir, ref_metrics = reference
    synthetic_dataset(tmp_path / "data", n=16)
    params = _params(tmp_path / "params.yaml", batch_size=4)  # x 2 processes = same global batch
    proc = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "alignrec_model.pretrain",
            "--data-dir",
            str(tmp_path / "data"),
            "--dataset",
            "synth",
            "--params",
            str(params),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "data/synth/metrics" / METRICS_FILE).read_text())
    assert (
        metrics["world_size"] == 2 and metrics["global_batch"] == ref_metrics["global_batch"] == 16
    )
    assert metrics["train"]["steps"] == ref_metrics["train"]["steps"] == 4
    ours, ref = _encoder(tmp_path / "data"), _encoder(ref_dir)
    worst = max(float((ours[k] - ref[k]).abs().max()) for k in ref)
    print(f"DDP(2) vs 1 process: max abs parameter difference {worst:.2e}")
    assert worst < 1e-5
    # Only rank 0 wrote: one history with one row per step; losses are the global ones.
    rows = (tmp_path / "data/synth/metrics" / HISTORY_FILE).read_text().splitlines()
    assert len(rows) == 1 + 4
    assert metrics["train"]["first_mlm_loss"] == pytest.approx(
        ref_metrics["train"]["first_mlm_loss"], rel=1e-5
    )


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_parameters(reference, tmp_path: Path) -> None:
    ref_dir, _ = reference
    data = tmp_path / "data"
    synthetic_dataset(data, n=16)
    params = _params(tmp_path / "params.yaml")
    cmd = [
        sys.executable,
        "-m",
        "alignrec_model.pretrain",
        "--data-dir",
        str(data),
        "--dataset",
        "synth",
        "--params",
        str(params),
    ]
    killed = _run([sys.executable, "-c", _KILLED_AFTER_STEP_3, str(data), str(params)])
    # SIGKILLed after step 3; the last resume checkpoint is step 2's.
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    models = data / "synth" / "models"
    assert not (models / CHECKPOINT_FILE).exists()
    assert load_checkpoint(models / RESUME_FILE)["step"] == 2
    assert not [p for p in models.iterdir() if p.name.endswith(".tmp")]  # atomic writes

    # Resuming with other params is refused, naming each differing key.
    other = _params(tmp_path / "other.yaml", lr=5e-4, image_mask_ratio=0.5)
    with pytest.raises(
        UsageError,
        match=r"other pretrain params: image_mask_ratio \(checkpoint 0.4, params 0.5\), lr",
    ):
        pretrain(data, "synth", load_section(other, "pretrain", PretrainConfig))

    resumed = _run(cmd)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr
    ours, ref = _encoder(data), _encoder(ref_dir)
    assert all(torch.equal(ours[k], ref[k]) for k in ref)
    assert not (models / RESUME_FILE).exists()
    ref_hist = (ref_dir / "synth/metrics" / HISTORY_FILE).read_text()
    assert (data / "synth/metrics" / HISTORY_FILE).read_text() == ref_hist


def test_metrics_and_checkpoint_contents(reference) -> None:
    ref_dir, metrics = reference
    ckpt = load_checkpoint(ref_dir / "synth/models" / CHECKPOINT_FILE)
    assert ckpt["encoder_config"]["size"] == "tiny" and "optimizer" not in ckpt
    assert set(metrics["probe_before"]) == {"mlm_loss", "mim_loss"}
    assert metrics["train"]["samples_per_s"] > 0
    written = json.loads((ref_dir / "synth/metrics" / METRICS_FILE).read_text())
    assert written["train"]["steps"] == 4
    header = (ref_dir / "synth/metrics" / HISTORY_FILE).read_text().splitlines()[0]
    assert header == "step,epoch,kind,lr,loss,mlm_loss,mim_loss"


def test_same_params_write_a_byte_identical_checkpoint(reference, tmp_path: Path) -> None:
    # Feature files and releases record mmenc.pt's sha256: it must repeat with the params, so
    # the checkpoint holds no wall time and no random temporary name.
    ref_dir, ref_metrics = reference
    synthetic_dataset(tmp_path / "data", n=16)
    params = _params(tmp_path / "params.yaml")
    pretrain(tmp_path / "data", "synth", load_section(params, "pretrain", PretrainConfig))
    ours = (tmp_path / "data/synth/models" / CHECKPOINT_FILE).read_bytes()
    assert ours == (ref_dir / "synth/models" / CHECKPOINT_FILE).read_bytes()
    stored = load_checkpoint(tmp_path / "data/synth/models" / CHECKPOINT_FILE)["metrics"]
    assert "seconds" not in stored["train"] and "samples_per_s" not in stored["train"]
    assert stored["train"]["last_mlm_loss"] == ref_metrics["train"]["last_mlm_loss"]


def test_head_warmup_keeps_the_encoder_and_trains_the_heads(reference, tmp_path: Path) -> None:
    """head_warmup_steps: the first steps update the heads only; the encoder waits."""
    from alignrec_model.pretrain import build_encoder

    ref_dir, _ = reference
    synthetic_dataset(tmp_path / "data", n=16)
    cfg = load_section(
        _params(tmp_path / "p.yaml", head_warmup_steps=4), "pretrain", PretrainConfig
    )
    pretrain(tmp_path / "data", "synth", cfg)
    ckpt = load_checkpoint(tmp_path / "data/synth/models" / CHECKPOINT_FILE)
    initial = build_encoder(cfg).state_dict()
    # All 4 steps are warm-up: the encoder is exactly its seeded initialisation ...
    assert all(torch.equal(v, initial[k]) for k, v in ckpt["encoder"].items())
    # ... while the run without warm-up moved the encoder, and the heads trained differently.
    ref = load_checkpoint(ref_dir / "synth/models" / CHECKPOINT_FILE)
    assert any(not torch.equal(v, ref["mlm_head"][k]) for k, v in ckpt["mlm_head"].items())
    assert not all(torch.equal(v, initial[k]) for k, v in ref["encoder"].items())
    with pytest.raises(
        UsageError, match=r"pretrain.head_warmup_steps = -1 is out of range: expected >= 0"
    ):
        PretrainConfig(head_warmup_steps=-1)


def test_non_finite_loss_stops_the_run(tmp_path: Path) -> None:
    synthetic_dataset(tmp_path / "data", n=16)
    params = _params(
        tmp_path / "p.yaml", lr=1e30, grad_clip=0.0, epochs=2, checkpoint_every=0, probe_items=0
    )
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 1"):
        pretrain(tmp_path / "data", "synth", load_section(params, "pretrain", PretrainConfig))
    assert not (tmp_path / "data/synth/models" / CHECKPOINT_FILE).exists()


def test_bad_params_and_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="init hybrid needs size hybrid-minilm"):
        pretrain(tmp_path, "x", PretrainConfig(size="tiny"))
    with pytest.raises(UsageError, match="items table .*items.parquet does not exist"):
        pretrain(tmp_path, "absent", PretrainConfig(init="scratch", size="tiny", max_text_len=32))
    synthetic_dataset(tmp_path / "data", n=16)
    with pytest.raises(UsageError, match="cannot fill one step of batch_size 64"):
        pretrain(tmp_path / "data", "synth", PretrainConfig(**{**TINY, "batch_size": 64}))


def test_on_step_reports_every_step_and_the_entry_reports_errors_in_one_line(
    reference, tmp_path: Path
) -> None:
    ref_dir, _ = reference
    synthetic_dataset(tmp_path / "data", n=16)
    params = _params(tmp_path / "p.yaml", checkpoint_every=0)
    records: list[dict] = []
    pretrain(
        tmp_path / "data",
        "synth",
        load_section(params, "pretrain", PretrainConfig),
        on_step=records.append,
    )
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r["kind"] for r in records] == ["joint", "joint", "unimodal", "joint"]
    rows = (ref_dir / "synth/metrics" / HISTORY_FILE).read_text().splitlines()[1:]
    assert [float(row.split(",")[4]) for row in rows] == [r["loss"] for r in records]

    proc = _run(
        [sys.executable, "-m", "alignrec_model.pretrain", "--data-dir", str(tmp_path / "data")]
        + ["--dataset", "absent", "--params", str(params)]
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert (
        errors
        and errors[-1].startswith("Error: items table ")
        and "Hint: run `alignrec-data prepare" in (proc.stderr)
    )
