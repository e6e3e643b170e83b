r"""FREEDOM (Zhou and Shen, ACM MM 2023): frozen item-item graphs, denoised user-item graph.

"A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal Recommendation",
written from MMRec's ``src/models/freedom.py`` and ``src/configs/model/FREEDOM.yaml``
(github enoche/MMRec @ a75d89ae807813ee4bbfc747e3316b449d52e11f), read, not copied.

Graphs (users are rows ``0..U-1`` and items rows ``U..U+I-1`` of the user-item graphs; item ids
are ``0..I-1`` everywhere else):

.. math::
    S_m &= D_m^{-1/2} B_m D_m^{-1/2}, \quad B_m[i, j] = 1 \iff
        j \in \mathrm{topk}_k \cos(f^m_i, f^m_\cdot) && \text{frozen, per modality } m \\
    S &= w_v S_v + (1 - w_v) S_t && \text{one modality: } S = S_m \\
    p_{(u,i)} &\propto 1/\sqrt{d_u d_i}, \quad
        \tilde A = \mathrm{norm}(\text{$\lfloor (1-\rho) M\rfloor$ edges drawn by } p)
        && \text{pruned each epoch}

Embeddings (``A`` is the pruned :math:`\tilde A` in training, the full :math:`\hat A` in
evaluation):

.. math::
    H^{i} = S^{L_{mm}} E_i, \qquad X^0 = [E_u; E_i], \ X^l = A X^{l-1}, \
        H = \tfrac{1}{L+1}\sum_{l=0}^{L} X^l, \qquad Z_u = H_u, \ Z_i = H_i + H^{i}

Loss of a batch of B triples (u, i+, i-), with the projected features
:math:`P^m = W_m F^m + b_m` (``F^m`` trainable, initialised with the features):

.. math::
    L = L_{BPR}(Z_u, Z_{i+}, Z_{i-}) + \lambda \sum_m L_{BPR}(Z_u, P^m_{i+}, P^m_{i-})

Config values of MMRec's FREEDOM.yaml (taken as defaults): ``embedding_size: 64``,
``feat_embed_dim: 64``, ``weight_size: [64, 64]`` (unused), ``lambda_coeff: 0.9``,
``reg_weight: [0.0, 1e-05, 1e-04, 1e-03]``, ``n_mm_layers: 1``, ``n_ui_layers: 2``,
``knn_k: 10``, ``mm_image_weight: 0.1``, ``dropout: [0.8, 0.9]``,
``hyper_parameters: ["dropout", "reg_weight"]`` (the grid); MMRec's overall.yaml gives
lr 0.001 (not searched), and the loop (Adam, lr decay, early stop on valid Recall@20) is
this project's, which follows MMRec's trainer.

Where this differs from MMRec, and why:

- ``lambda_coeff`` and ``weight_size`` are read by MMRec's FREEDOM but used nowhere in it: they
  are not keys here. ``feat_embed_dim`` is not a key either: the modality BPR takes the dot
  product of ``Z_u`` (``embedding_dim``) with ``P^m``, so both widths must be equal (MMRec
  fails otherwise); ``P^m`` has ``embedding_dim`` columns.
- The modality-specific BPR projects only the batch's positives and negatives
  (``W_m F^m_{i+} + b_m``) where MMRec projects all items and indexes: same loss and gradients,
  less work.
- One variant (``--features VARIANT``) gives one graph ``S = S_m`` and one modality BPR term,
  as MMRec with only ``v_feat`` or only ``t_feat``; with two, the first is the image one
  (``w_v`` = ``mm_image_weight``) and the second the text one.
- The edge draw uses the model's own ``torch.Generator`` seeded from ``train.seed`` (MMRec: the
  global generator); the pruned graph is drawn at the start of every epoch
  (:meth:`Freedom.start_epoch`, MMRec's ``pre_epoch_processing``) and evaluation uses the full
  graph, as MMRec's ``full_sort_predict``.
- Degrees: MMRec adds 1e-7 to every degree before ``d^{-1/2}``; here a node of degree 0 gets
  0 (:func:`alignrec_model.graph.sym_norm`), the same values up to 1e-8 relative.
- A zero feature row (e.g. the 78 items of amazon-mini without an image in ``effnet-image``) has
  cosine 0 with every item here, so its k neighbours are ``torch.topk``'s choice among ties
  (MMRec divides by a zero norm: NaN similarities).
- MMRec caches the item-item graph in ``mm_adj_freedomdsp_<k>_<w>.pt`` next to the data; here it
  is rebuilt at construction (seconds for Baby) and never saved.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from alignrec_data.config import check_ranges
from alignrec_data.errors import UsageError
from alignrec_model.base import EmbeddingRecommender
from alignrec_model.graph import (
    bipartite_graph,
    combine_graphs,
    csr_transpose,
    degree_edge_weights,
    knn_binary_graph,
    lightgcn_propagate,
    sample_edges,
    spmm,
)
from alignrec_model.losses import BPRLoss

__all__ = ["Freedom", "FreedomConfig"]


@dataclasses.dataclass(frozen=True)
class FreedomConfig:
    """Hyper-parameters of FREEDOM, the ``train.freedom`` section of ``params.yaml``.

    Defaults are MMRec's FREEDOM.yaml; ``reg_weight`` and ``dropout`` are its grid's axes
    (``--grid`` searches ``grid_reg_weight`` x ``grid_dropout`` at ``train.lr``).
    """

    embedding_dim: int = 64  # d: width of E_u, E_i and of the projected features P^m
    n_ui_layers: int = 2  # LightGCN layers over the (pruned) user-item graph
    n_mm_layers: int = 1  # item-item layers over the frozen S
    knn_k: int = 10  # neighbours per item in each S_m, the item itself included
    knn_chunk_size: int = 2048  # rows of the N x N cosine matrix held at once (memory bound)
    mm_image_weight: float = 0.1  # w_v: S = w_v S_image + (1 - w_v) S_text (two variants)
    dropout: float = 0.8  # rho: share of user-item edges pruned each epoch (0: no pruning)
    reg_weight: float = 1e-4  # lambda: weight of the modality-specific BPR terms
    grid_reg_weight: tuple[float, ...] = (0.0, 1e-5, 1e-4, 1e-3)  # grid: reg_weight
    grid_dropout: tuple[float, ...] = (0.8, 0.9)  # grid: dropout

    def __post_init__(self) -> None:
        """Reject values the model cannot run with."""
        check_ranges(
            self,
            "train.freedom",
            {
                "embedding_dim": (self.embedding_dim >= 1, ">= 1"),
                "n_ui_layers": (self.n_ui_layers >= 0, ">= 0"),
                "n_mm_layers": (self.n_mm_layers >= 0, ">= 0"),
                "knn_k": (self.knn_k >= 1, ">= 1"),
                "knn_chunk_size": (self.knn_chunk_size >= 1, ">= 1"),
                "mm_image_weight": (0 <= self.mm_image_weight <= 1, "in [0, 1]"),
                "dropout": (0 <= self.dropout < 1, "in [0, 1) (the share of edges pruned)"),
                "reg_weight": (self.reg_weight >= 0, ">= 0"),
                "grid_reg_weight": (all(v >= 0 for v in self.grid_reg_weight), "values >= 0"),
                "grid_dropout": (all(0 <= v < 1 for v in self.grid_dropout), "values in [0, 1)"),
            },
        )


def _check_features(features, n_items: int) -> list[torch.Tensor]:
    """The one or two (I, d_m) feature matrices as float32 tensors, checked."""
    mats = [torch.as_tensor(np.asarray(f), dtype=torch.float32).clone() for f in features]
    if len(mats) not in (1, 2):
        msg = f"FREEDOM takes one or two feature matrices (image, text), found {len(mats)}"
        raise UsageError(msg)
    for m, f in enumerate(mats):
        if f.ndim != 2 or f.shape[0] != n_items:
            msg = (
                f"FREEDOM features #{m + 1}: expected shape ({n_items}, d) (one row per item), "
                f"found {tuple(f.shape)}; were the features extracted for this dataset?"
            )
            raise UsageError(msg)
        if not torch.isfinite(f).all():
            msg = f"FREEDOM features #{m + 1} contain NaN or inf values; re-extract them"
            raise UsageError(msg)
    return mats


class Freedom(EmbeddingRecommender):
    """The FREEDOM recommender; see the module docstring for the equations.

    Args:
        data: Interactions (``alignrec_model.data.InteractionData``): ``n_users``,
            ``n_items``, ``train_pairs`` and ``normalized_adjacency()``.
        features: One or two (N_items, d_m) item feature matrices: (image, text) or one
            modality. They build the frozen graph and initialise the trainable tables ``F^m``.
        config: Hyper-parameters.
        seed: Seed of the initialisation (global RNG untouched) and of the edge draws.

    Raises:
        UsageError: Not one or two matrices, a matrix without one row per item, or non-finite
            values.
    """

    def __init__(
        self, data, features, config: FreedomConfig | None = None, seed: int = 999
    ) -> None:
        super().__init__()
        config = config or FreedomConfig()
        self.config = config
        mats = _check_features(features, data.n_items)
        d = config.embedding_dim

        # Frozen item-item graph S (built once from the raw features, never rebuilt or saved).
        graphs = [knn_binary_graph(f, config.knn_k, config.knn_chunk_size) for f in mats]
        w_v = config.mm_image_weight
        item_adj = combine_graphs(graphs, [w_v, 1.0 - w_v] if len(graphs) == 2 else [1.0])
        self.register_buffer("item_adj", item_adj, persistent=False)  # (I, I) S
        self.register_buffer("item_adj_t", csr_transpose(item_adj), persistent=False)
        self.register_buffer("adj", data.normalized_adjacency(), persistent=False)  # A_hat
        # Degree-sensitive pruning: the train edges, their weights and the draw's generator.
        self.pairs = np.asarray(data.train_pairs)  # (M, 2)
        self.edge_weights = degree_edge_weights(self.pairs, data.n_users, data.n_items)  # (M,)
        self.generator = torch.Generator().manual_seed(seed)
        self.masked_adj: torch.Tensor | None = None  # A~ of the current epoch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.init_embeddings(data, d)
            # MMRec: nn.Embedding.from_pretrained(feat, freeze=False) then nn.Linear(d_m, d).
            self.features = nn.ParameterList([nn.Parameter(f) for f in mats])  # F^m
            self.projections = nn.ModuleList([nn.Linear(f.shape[1], d) for f in mats])
        self.bpr = BPRLoss()

    # ------------------------------------------------------------------ graphs
    def start_epoch(self) -> None:
        r"""Draw this epoch's pruned user-item graph :math:`\tilde A` (the trainer calls it).

        :math:`\lfloor (1 - \rho) M \rfloor` distinct edges are drawn with probabilities
        :math:`\propto 1/\sqrt{d_u d_i}` (:func:`~alignrec_model.graph.sample_edges`) and
        normalised with their degrees in the kept graph (``D^{-1/2} A D^{-1/2}``).
        """
        rho = self.config.dropout
        if rho <= 0:
            self.masked_adj = self.adj
            return
        n_keep = int(len(self.pairs) * (1.0 - rho))
        kept = sample_edges(self.edge_weights, n_keep, self.generator)  # (n_keep,)
        adj, _ = bipartite_graph(self.pairs[kept], self.n_users, self.n_items)
        self.masked_adj = adj.to(self.adj.device)

    # ------------------------------------------------------------------ forward
    def forward(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Z_u, Z_i)``: (U, d) users and (I, d) items over the user-item graph ``adj``."""
        h = self.item_embedding.weight  # (I, d)
        for _ in range(self.config.n_mm_layers):
            h = spmm(self.item_adj, h, self.item_adj_t)  # (I, d) S h
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])  # (U+I, d)
        x = lightgcn_propagate(adj, x, self.config.n_ui_layers)  # (U+I, d) layer mean
        return x[: self.n_users], x[self.n_users :] + h

    def loss(self, users, pos, neg):  # noqa: D102
        self._cache = None
        if self.masked_adj is None:  # a caller that does not start epochs
            self.start_epoch()
        z_u, z_i = self.forward(self.masked_adj)
        zu = z_u[users]  # (B, d)
        bpr = self.bpr((zu * z_i[pos]).sum(-1), (zu * z_i[neg]).sum(-1))
        modal = bpr.new_zeros(())
        for f, proj in zip(self.features, self.projections, strict=True):
            p_pos, p_neg = proj(f[pos]), proj(f[neg])  # (B, d) P^m of the batch's items
            modal = modal + self.bpr((zu * p_pos).sum(-1), (zu * p_neg).sum(-1))
        modal = self.config.reg_weight * modal
        parts = torch.stack([bpr.detach(), modal.detach()]).tolist()
        return bpr + modal, {"bpr": parts[0], "modal_bpr": parts[1]}

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        return self.forward(self.adj)  # the full graph, never pruned
