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

    def start_epoch(self) -> None:
        """Called by the trainer before each epoch (FREEDOM draws its pruned graph here)."""

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups: every trainable parameter at ``lr``."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

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


class EmbeddingRecommender(Recommender):
    """A recommender that scores ``<Z_u, Z_i>`` over final embeddings, cached for evaluation.

    Subclasses implement :meth:`propagate`; :meth:`loss` must reset ``_cache`` to None (the
    parameters are about to change).
    """

    _cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def init_embeddings(self, data, dim: int) -> None:
        """``n_users``, ``n_items`` of ``data`` and the Xavier-uniform ID tables E_u and E_i."""
        self.n_users, self.n_items = int(data.n_users), int(data.n_items)
        self.user_embedding = nn.Embedding(self.n_users, dim)  # (U, d)
        self.item_embedding = nn.Embedding(self.n_items, dim)  # (I, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (U, d) user and (I, d) item embeddings of the current parameters."""
        raise NotImplementedError

    def prepare_eval(self) -> None:
        """Cache :meth:`propagate` for :meth:`scores`."""
        with torch.no_grad():
            self._cache = self.propagate()

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores ``<Z_u, Z_i>`` of every item for a batch of (B,) users: (B, I)."""
        if self._cache is None:
            self.prepare_eval()
        z_users, z_items = self._cache
        return z_users[users.to(z_users.device)] @ z_items.T  # (B, I)
