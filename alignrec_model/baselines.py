r"""Baselines in the same harness and evaluator as AlignRec.

- :class:`Popularity`: every user gets the items ranked by their number of train interactions.
- :class:`ItemKNNCBF`: content-based ItemKNN on a feature set,
  :math:`S_{ij} = f_i \cdot f_j / (\lVert f_i\rVert \lVert f_j\rVert + h)` with shrink h, the
  top-k neighbours of each item kept (the item itself excluded), score(u, .) = R_u S_knn.
  It is also the item-CF intermediate evaluation of :mod:`alignrec_model.feature_eval`.
- :class:`MFBPR`: matrix factorisation, :math:`\mathrm{score}(u, i) = \langle e_u, e_i \rangle`,
  trained with BPR + L2.
- :class:`LightGCN`: ID-only graph model (He et al., SIGIR 2020),
  :math:`X^l = \hat A X^{l-1}`, :math:`H = \frac{1}{L+1}\sum_{l=0}^{L} X^l`, trained with BPR +
  L2 on the layer-0 (ego) embeddings of the batch, as MMRec's ``LightGCN`` does.

Every model follows :class:`alignrec_model.base.Recommender`; the trainer samples, the evaluator
masks train items.
"""

from __future__ import annotations

import numpy as np
import torch

from alignrec_data.errors import UsageError
from alignrec_model.base import EmbeddingRecommender, Recommender
from alignrec_model.data import InteractionData
from alignrec_model.graph import knn_csr, knn_topk, lightgcn_propagate
from alignrec_model.losses import BPRLoss, EmbeddingL2

__all__ = ["LightGCN", "MFBPR", "ItemKNNCBF", "Popularity"]


class Popularity(Recommender):
    """Most-popular items: score(u, i) = number of train interactions of item i.

    Args:
        data: The interactions.
    """

    trainable = False

    def __init__(self, data: InteractionData) -> None:
        super().__init__()
        pop = np.asarray(data.train.sum(axis=0), dtype=np.float32).ravel()  # (I,) train counts
        self.register_buffer("popularity", torch.from_numpy(pop))

    def scores(self, users: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.popularity.unsqueeze(0).expand(len(users), -1)  # (B, I)


class ItemKNNCBF(Recommender):
    r"""Content-based ItemKNN: score(u, .) = R_u S_knn over the top-k shrunk cosines.

    .. math:: S_{ij} = \frac{f_i \cdot f_j}{\lVert f_i\rVert \lVert f_j\rVert + h}, \quad
              j \ne i \text{ among the } k \text{ largest of row } i

    Args:
        data: The interactions (R is the train matrix).
        features: (N_items, d) item features; a zero row has similarity 0 with every item.
        k: Neighbours per item (the item itself left out; ties broken by ``torch.topk``).
        shrink: h, the shrink term of the cosine (0: the plain cosine).
    """

    trainable = False

    def __init__(
        self, data: InteractionData, features: np.ndarray, k: int = 10, shrink: float = 10.0
    ) -> None:
        super().__init__()
        if features.shape[0] != data.n_items:
            msg = f"ItemKNN features have {features.shape[0]} rows, expected {data.n_items}"
            raise UsageError(msg)
        self.train_matrix = data.train
        values, indices = knn_topk(features, k, shrink=shrink, include_self=False)  # (I, k)
        self.knn = knn_csr(values, indices)  # (I, I) S_knn

    def scores(self, users: torch.Tensor) -> torch.Tensor:  # noqa: D102
        s = self.train_matrix[users.numpy()] @ self.knn  # (B, I) sparse
        return torch.from_numpy(np.asarray(s.todense(), dtype=np.float32))


class _EmbeddingModel(EmbeddingRecommender):
    """Shared parts of MF and LightGCN: tables, BPR + L2 loss, cached final embeddings."""

    def __init__(self, data: InteractionData, dim: int, reg_weight: float, seed: int) -> None:
        super().__init__()
        if dim < 1:
            msg = f"embedding dimension must be >= 1, found {dim}"
            raise UsageError(msg)
        self.reg_weight = reg_weight
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.init_embeddings(data, dim)
        self.bpr = BPRLoss()
        self.l2 = EmbeddingL2()

    def loss(self, users, pos, neg):  # noqa: D102
        self._cache = None
        u_all, i_all = self.propagate()
        zu, zp, zn = u_all[users], i_all[pos], i_all[neg]  # (B, d) each
        bpr = self.bpr((zu * zp).sum(-1), (zu * zn).sum(-1))
        l2 = self.reg_weight * self.l2(
            self.user_embedding(users), self.item_embedding(pos), self.item_embedding(neg)
        )
        parts = torch.stack([bpr.detach(), l2.detach()]).tolist()
        return bpr + l2, {"bpr": parts[0], "l2": parts[1]}


class MFBPR(_EmbeddingModel):
    """Matrix factorisation with BPR: score(u, i) = <E_u, E_i>; L2 on the batch's embeddings.

    Args:
        data: The interactions.
        dim: Embedding width.
        reg_weight: Weight of the L2 term (half the squared norms over the batch size).
        seed: Seed of the initialisation.
    """

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        return self.user_embedding.weight, self.item_embedding.weight


class LightGCN(_EmbeddingModel):
    r"""LightGCN on the normalised user-item graph (ID only).

    .. math:: X^0 = [E_u; E_i], \quad X^l = \hat A X^{l-1}, \quad
              H = \frac{1}{L+1} \sum_{l=0}^{L} X^l

    Args:
        data: The interactions (``normalized_adjacency()`` is A_hat).
        dim: Embedding width.
        n_layers: L.
        reg_weight: Weight of the L2 term on the batch's layer-0 embeddings.
        seed: Seed of the initialisation.
    """

    def __init__(
        self, data: InteractionData, dim: int, n_layers: int, reg_weight: float, seed: int
    ) -> None:
        super().__init__(data, dim, reg_weight, seed)
        if n_layers < 0:
            msg = f"LightGCN n_layers must be >= 0, found {n_layers}"
            raise UsageError(msg)
        self.n_layers = n_layers
        self.register_buffer("adj", data.normalized_adjacency(), persistent=False)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])  # (U+I, d)
        h = lightgcn_propagate(self.adj, x, self.n_layers)  # (U+I, d) layer mean
        return h[: self.n_users], h[self.n_users :]
