"""The contract every recommender (AlignRec and the baselines) follows.

Models compute embeddings, scores and their own loss; sampling, masking, metrics and the
training loop live in :mod:`alignrec_model.train` and :mod:`alignrec_model.evaluate`
(the PyG LightGCN habit: the model does not sample or evaluate).
"""

from __future__ import annotations

import torch
from torch import nn


class Recommender(nn.Module):
    """Base class of trainable and non-trainable recommenders.

    A trainable model implements :meth:`loss`; every model implements :meth:`prepare_eval`
    and :meth:`scores`. The trainer calls ``prepare_eval()`` once (under ``torch.no_grad()``,
    in eval mode) before scoring batches of users for an evaluation.
    """

    #: False for models with nothing to train (popularity, ItemKNN): the trainer skips epochs.
    trainable: bool = True

    def loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of a batch of (user, positive item, negative item) triples.

        Args:
            users: (B,) user ids.
            pos: (B,) positive item ids (train interactions).
            neg: (B,) sampled negative item ids.

        Returns:
            The scalar loss to minimise and its named parts as floats (for the metrics JSON).
        """
        raise NotImplementedError

    def prepare_eval(self) -> None:
        """Compute and cache whatever :meth:`scores` needs (e.g. final embeddings)."""

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for a batch of users.

        Args:
            users: (B,) user ids.

        Returns:
            (B, N_items) float scores; higher is better. The evaluator masks train items.
        """
        raise NotImplementedError
