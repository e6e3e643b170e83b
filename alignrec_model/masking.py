"""Masks for mask-then-predict pretraining: block-wise image masks and BERT-style text masks.

Masks are drawn per sample from a generator seeded by ``(seed, epoch, item, kind)``
(:func:`sample_generator`), so a sample gets the same mask whatever the number of processes,
the batch it lands in or whether the run was resumed.
"""

from __future__ import annotations

import math

import torch

_MIX = 0x9E3779B97F4A7C15  # 64-bit golden-ratio constant for mixing seeds


def sample_generator(seed: int, epoch: int, item: int, kind: int) -> torch.Generator:
    """A CPU generator seeded by ``(seed, epoch, item, kind)`` (a splitmix-style hash)."""
    h = seed & 0xFFFFFFFFFFFFFFFF
    for v in (epoch, item, kind):
        h = ((h ^ (v & 0xFFFFFFFFFFFFFFFF)) * _MIX + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    g = torch.Generator()
    g.manual_seed(h & 0x7FFFFFFFFFFFFFFF)
    return g


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """Integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (), generator=g))


def block_mask(
    grid: int, num_masked: int, g: torch.Generator, min_block: int = 4, min_aspect: float = 0.3
) -> torch.Tensor:
    """Block-wise image mask (BEiT's ``MaskingGenerator``), exactly ``num_masked`` patches.

    Rectangles of area >= ``min_block`` patches and aspect ratio in [min_aspect, 1/min_aspect]
    are added until ``num_masked`` patches are covered; BEiT stops a little short when no
    block fits, we top up with single random patches so every sample masks the same count.

    Args:
        grid: Patches per side (the mask is grid x grid).
        num_masked: Patches to mask.
        g: Random generator.
        min_block: Smallest block area (BEiT: 16 on a 14x14 grid; smaller grids clamp it).
        min_aspect: Smallest aspect ratio of a block.

    Returns:
        (grid * grid,) bool, True = masked, in row-major patch order.
    """
    mask = torch.zeros(grid, grid, dtype=torch.bool)
    count = 0
    log_lo, log_hi = math.log(min_aspect), math.log(1 / min_aspect)
    while count < num_masked:
        budget = num_masked - count
        for _ in range(10):
            lo = min(min_block, budget)
            area = _uniform(g, lo, budget)
            aspect = math.exp(_uniform(g, log_lo, log_hi))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if 1 <= h <= grid and 1 <= w <= grid:
                top, left = _randint(g, 0, grid - h), _randint(g, 0, grid - w)
                block = mask[top : top + h, left : left + w]
                new = int((~block).sum())
                if 0 < new <= budget:
                    block[:] = True
                    count += new
                    break
        else:  # no block fits in 10 tries
            break
    if count < num_masked:  # top up with single patches
        free = (~mask.view(-1)).nonzero().squeeze(1)
        pick = free[torch.randperm(len(free), generator=g)[: num_masked - count]]
        mask.view(-1)[pick] = True
    return mask.view(-1)


def mask_text(
    input_ids: torch.Tensor,
    valid: torch.Tensor,
    prob: float,
    mask_id: int,
    vocab_size: int,
    g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of one text: ``round(prob * n)`` of its n maskable tokens (at least 1).

    Of the chosen tokens 80% become ``[MASK]``, 10% a random token, 10% stay.

    Args:
        input_ids: (T,) token ids.
        valid: (T,) bool, True for maskable tokens (not padding or special tokens).
        prob: Share of maskable tokens to predict.
        mask_id: The ``[MASK]`` id.
        vocab_size: Size of the vocabulary (random replacements).
        g: Random generator.

    Returns:
        ``(masked_ids, labels)``: (T,) ids with replacements, (T,) labels (-100 = not predicted).
    """
    ids = input_ids.clone()
    labels = torch.full_like(ids, -100)
    candidates = valid.nonzero().squeeze(1)
    n = len(candidates)
    if n == 0:
        return ids, labels
    k = max(1, int(round(prob * n)))
    chosen = candidates[torch.randperm(n, generator=g)[:k]]
    labels[chosen] = input_ids[chosen]
    action = torch.rand(k, generator=g)
    random_tokens = torch.randint(0, vocab_size, (k,), generator=g)
    ids[chosen] = torch.where(action < 0.8, torch.full_like(random_tokens, mask_id), ids[chosen])
    use_random = (action >= 0.8) & (action < 0.9)
    ids[chosen[use_random]] = random_tokens[use_random]
    return ids, labels
