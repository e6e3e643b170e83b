"""Where torch runs: the `device` and `num_threads` keys of pretrain, extract and train."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from alignrec_data.errors import UsageError

#: Values of every ``<section>.device`` key.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(name: str, section: str) -> torch.device:
    """``<section>.device`` -> a torch device (``auto``: CUDA when available, else CPU).

    Raises:
        UsageError: An unknown value, or ``cuda`` without a CUDA device (the message names the key).
    """
    if name not in DEVICES:
        msg = f"{section}.device = {name!r}: expected one of {', '.join(DEVICES)}"
        raise UsageError(msg)
    if name == "cuda" and not torch.cuda.is_available():
        msg = f"{section}.device is cuda but no CUDA device is available; use auto or cpu"
        raise UsageError(msg)
    use_cuda = name == "cuda" or (name == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (0: leave torch's setting); restore it after."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
