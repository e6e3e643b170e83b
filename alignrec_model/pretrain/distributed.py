"""The torchrun process group: rank, world size and device, and the collectives pretraining uses.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them this is one process
and every collective is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from alignrec_model.runtime import resolve_device


@dataclass(frozen=True)
class Dist:
    """Process-group facts: rank, world size, device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """True on rank 0 (the only process that logs and writes)."""
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device, "pretrain").type == "cuda"
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, device=dev)


def teardown_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: torch.Tensor, d: Dist) -> torch.Tensor:
    """``values`` summed over all ranks (a copy; ``values`` itself in a single process)."""
    if d.world > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(d: Dist) -> None:
    """Wait for every rank (no-op in a single process)."""
    if d.world > 1:
        dist.barrier()


def ranks_in_sync(model: nn.Module, d: Dist) -> bool | None:
    """Whether every rank holds the same parameters (None in a single process).

    Compares per-tensor float64 sums exactly across ranks (one all-gather).
    """
    if d.world == 1:
        return None
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()])  # (P,)
    gathered = [torch.zeros_like(sums) for _ in range(d.world)]
    dist.all_gather(gathered, sums)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])
