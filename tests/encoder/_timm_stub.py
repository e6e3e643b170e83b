"""A stand-in for ``timm.models.layers.drop_path``, installed only inside the tests.

torchscale 0.3.0 imports exactly ``from timm.models.layers import drop_path`` (in
``torchscale/component/droppath.py``), but timm cannot be installed here (it pulls
torchvision, which breaks ``transformers``). The equivalence test runs with drop-path 0, so
this stub is never called with a non-zero probability; it implements stochastic depth anyway.
"""

from __future__ import annotations

import sys
import types

import torch


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    if drop_prob == 0.0 or not training:
        return x
    keep = 1 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def install() -> None:
    """Register ``timm``, ``timm.models`` and ``timm.models.layers`` unless timm is real."""
    if "timm.models.layers" in sys.modules:
        return
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    layers.drop_path = drop_path
    timm.models = models
    models.layers = layers
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})
