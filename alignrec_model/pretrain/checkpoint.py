"""MMEnc checkpoints: what they hold, writing them atomically, loading and checking them.

``models/mmenc.pt`` (the result) and ``models/mmenc.resume.pt`` (every ``checkpoint_every``
steps) share one format: encoder config and weights, heads, params, step, history and the
probe losses before training; the resume file also holds the optimizer. On resume the
architecture and weights come from the checkpoint, which must have been written with the same
params except those that do not change the result (:data:`RESUME_FREE`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from alignrec_data.atomic import atomic_path
from alignrec_data.config import to_dict
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_model.encoder import MMEnc, MMEncConfig
from alignrec_model.pretrain.config import PretrainConfig

if TYPE_CHECKING:
    from alignrec_model.pretrain.loop import _Run

CHECKPOINT_FORMAT = "alignrec-mmenc/1"
CHECKPOINT_FILE = "mmenc.pt"
RESUME_FILE = "mmenc.resume.pt"
# Config keys that do not change the result (allowed to differ when resuming).
RESUME_FREE = ("checkpoint_every", "resume", "num_threads", "device", "log_every")
_MODULES = ("encoder", "mlm_head", "mim_head")  # the trained parts of a PretrainModel


def checkpoint_state(run: _Run, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """The checkpoint of ``run`` at its current step (tensors on CPU), ``optimizer`` included."""

    def cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}

    state = {
        "format": CHECKPOINT_FORMAT,
        "encoder_config": to_dict(run.model.encoder.cfg),
        "pretrain_config": to_dict(run.cfg),
        "resume_key": run.resume_key,
        **{name: cpu(getattr(run.model, name)) for name in _MODULES},
        "step": run.step,
        "history": run.history,
        "probe_before": run.probe_before,
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    return state


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename).

    Saved through a file object, so the archive's inner name is torch's fixed ``archive`` rather
    than the random temporary name: the same state gives the same bytes (and sha256).
    """
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load an MMEnc checkpoint written by :func:`pretrain` (``weights_only=True``).

    Raises:
        UsageError: The file is missing.
        DataFormatError: Not an alignrec MMEnc checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"checkpoint {path} does not exist"
        raise UsageError(msg, hint="run `alignrec-data pretrain` first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        msg = f"cannot load {path} as a weights-only checkpoint: {err}"
        raise DataFormatError(msg) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        msg = f"{path} is not an {CHECKPOINT_FORMAT} checkpoint (found {found!r})"
        raise DataFormatError(msg)
    return ckpt


def encoder_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> MMEnc:
    """Rebuild the encoder from a checkpoint (architecture from the checkpoint itself).

    Raises:
        DataFormatError: Unknown config keys or weights that do not fit the config.
    """
    names = {f.name for f in dataclasses.fields(MMEncConfig)}
    raw = dict(ckpt["encoder_config"])
    unknown = sorted(set(raw) - names)
    if unknown:
        msg = f"{source}: unknown encoder config key(s) {unknown}"
        raise DataFormatError(msg)
    model = MMEnc(MMEncConfig(**raw))  # checks the values fit together
    try:
        model.load_state_dict(ckpt["encoder"], strict=True)
    except RuntimeError as err:
        msg = f"{source}: weights do not fit its encoder config: {err}"
        raise DataFormatError(msg) from err
    return model


def resume_key(cfg: PretrainConfig, global_batch: int) -> dict[str, Any]:
    """The params a resume checkpoint must share with the run that continues it."""
    key = {k: v for k, v in to_dict(cfg).items() if k not in RESUME_FREE}
    key["global_batch"] = global_batch
    return key


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], source: str) -> None:
    """Refuse a resume checkpoint written with other params, naming every differing key."""
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diff:
        detail = ", ".join(
            f"{k} (checkpoint {saved.get(k)!r}, params {current.get(k)!r})" for k in diff
        )
        msg = f"{source} was written with other pretrain params: {detail}"
        raise UsageError(
            msg, hint=f"delete {source} to start afresh, or set pretrain.resume: false"
        )


def resume(run: _Run) -> bool:
    """Continue ``run`` from its resume checkpoint, if ``pretrain.resume`` and the file exist.

    Loads the encoder, heads and optimizer state, step, history and probe losses before
    training, after checking the checkpoint was written with the same params.

    Returns:
        Whether the run resumed.
    """
    path = run.resume_path
    if not (run.cfg.resume and path.is_file()):
        return False
    ckpt = load_checkpoint(path)
    check_resume_config(ckpt["resume_key"], run.resume_key, str(path))
    for name in _MODULES:
        getattr(run.model, name).load_state_dict(ckpt[name])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.step, run.history = int(ckpt["step"]), list(ckpt["history"])
    run.probe_before = ckpt["probe_before"]
    return True
