r"""AlignRec stage 2: the recommender (Liu et al., CIKM 2024), faithful to its public code.

Two views of users and items are computed over ALL users and items at every step and summed:

.. math::
    M &= \mathrm{mm\_proj}(F), \qquad H^{mm}_i = E_i \odot \sigma(W_g M + b_g)
        && \text{content gate} \\
    X^0 &= [E_u; E_i], \quad X^l = \hat A X^{l-1}, \quad H^{id} = \tfrac{1}{L+1}\sum_{l=0}^{L} X^l
        && \text{LightGCN, } L = 2 \\
    H^{mm}_i &\leftarrow A_{mm} H^{mm}_i, \qquad H^{mm}_u = \hat R H^{mm}_i
        && \text{item-item layer, user view} \\
    Z &= H^{id} + [H^{mm}_u; H^{mm}_i], \qquad \mathrm{score}(u, i) = \langle Z_u, Z_i \rangle
        && \text{fusion}

and the loss of a batch of B triples (u, i+, i-) is

.. math::
    L = L_{BPR}(Z) + \lambda_{uia} (1 - \overline{\cos}(Z_u, Z_{i+}))
        + \lambda_{reg} \tfrac{1}{2D} (\lVert Z_u\rVert^2 + \lVert Z_{i+}\rVert^2
        + \lVert Z_{i-}\rVert^2)
        + \lambda_{cl} [\mathrm{NCE}(H^{mm}_{i+}, H^{id}_{i+}) + \mathrm{NCE}(H^{mm}_u, H^{id}_u)]
        + \lambda_{sim} \tfrac{1}{B} \lVert H^{mm}_{i+} H^{mm\top}_{i+}
        - \mathrm{sg}(\cos(F_{i+}, F_{i+})) \rVert_F

(UIA, L2 as in the code, CCA, similarity preservation). ``F`` in the last term is the raw
stage-1 features; the ``F`` of the gate is a trainable copy (faithful; ``freeze_features``) or the
output of a jointly fine-tuned encoder (``feature_fn``). docs/alignrec.md lists every switch.

Index conventions: users are rows ``0..U-1`` and items rows ``U..U+I-1`` of ``A_hat``, ``X^l``,
``H^{id}`` and ``Z``; item ids everywhere else are ``0..I-1``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from alignrec_data.config import check_ranges
from alignrec_data.errors import UsageError
from alignrec_model.base import EmbeddingRecommender
from alignrec_model.graph import build_item_graph, csr_transpose, lightgcn_propagate, spmm
from alignrec_model.losses import (
    BPRLoss,
    EmbeddingL2,
    InfoNCE,
    SimilarityPreservationLoss,
    UIACosineLoss,
)

__all__ = ["AlignRec", "AlignRecConfig", "AlignRecOutput"]


@dataclasses.dataclass(frozen=True)
class AlignRecConfig:
    """Hyper-parameters of AlignRec, the ``train.alignrec`` section of ``params.yaml``.

    Defaults are the public code's (``configs/model/ALIGNREC.yaml`` and ``main.py``); ``cl_weight``
    and ``sim_weight`` are searched over grids ({1e-4, 1e-3, 5e-3, 1e-2, 0.1} and {0.1 .. 0.5}).
    """

    embedding_dim: int = 64  # d: width of E_u, E_i and of mm_proj's output
    n_ui_layers: int = 2  # LightGCN layers over A_hat (code: n_ui_layers)
    n_mm_layers: int = 1  # item-item layers over A_mm (code: n_layers)
    knn_k: int = 10  # neighbours per item in A_mm, the item itself included (code: knn_k)
    knn_chunk_size: int = 2048  # rows of the N x N cosine matrix held at once (memory bound)
    uia_weight: float = 0.1  # UIA weight (code: ui_cosine_loss_weight, on with --ui_cosine_loss)
    reg_weight: float = 1e-4  # L2 weight on the batch's Z_u, Z_i+, Z_i- (code: reg_weight)
    l2_divisor: int = 0  # L2 divided by this; 0 = the batch's size (code: train batch size 2048)
    cl_weight: float = 0.01  # CCA InfoNCE weight (code: cl_loss, grid 1e-4 .. 0.1)
    sim_weight: float = 0.1  # similarity-preservation weight (code: sim_weight, grid 0.1 .. 0.5)
    temperature: float = 0.2  # InfoNCE temperature (code: 0.2)
    mask_duplicate_negatives: bool = False  # True: in-batch duplicates of the anchor's id are
    #   not negatives in the InfoNCE (the code keeps them, so the default is False)
    freeze_features: bool = False  # True: F is fixed; the code trains it (nn.Embedding,
    #   freeze=False)
    feature_layer_norm: bool = False  # LayerNorm on F before mm_proj (code: --use_ln, off)
    finetune_encoder_layers: int = 0  # >0: the pipeline fine-tunes the encoder's top layers
    #   jointly and passes it as ``feature_fn`` (0 = frozen stage-1 features, the paper's default)
    encoder_lr: float = 1e-5  # learning rate of the fine-tuned encoder layers' param group

    def __post_init__(self) -> None:
        """Reject values the model cannot run with."""
        check_ranges(
            self,
            "train.alignrec",
            {
                "embedding_dim": (self.embedding_dim > 0, ">= 1"),
                "n_ui_layers": (self.n_ui_layers >= 0, ">= 0"),
                "n_mm_layers": (self.n_mm_layers >= 0, ">= 0"),
                "knn_k": (self.knn_k >= 1, ">= 1"),
                "knn_chunk_size": (self.knn_chunk_size >= 1, ">= 1"),
                "l2_divisor": (self.l2_divisor >= 0, ">= 0 (0: the batch's size)"),
                "temperature": (self.temperature > 0, "> 0"),
                "finetune_encoder_layers": (self.finetune_encoder_layers >= 0, ">= 0"),
                "encoder_lr": (self.encoder_lr > 0, "> 0"),
                **{
                    name: (getattr(self, name) >= 0, ">= 0")
                    for name in ("uia_weight", "reg_weight", "cl_weight", "sim_weight")
                },
            },
        )


class AlignRecOutput(NamedTuple):
    """Embeddings of one forward pass (all users and items)."""

    z_users: torch.Tensor  # (U, d) fused user embeddings Z_u
    z_items: torch.Tensor  # (I, d) fused item embeddings Z_i
    id_users: torch.Tensor  # (U, d) H_id of users (LightGCN)
    id_items: torch.Tensor  # (I, d) H_id of items
    mm_users: torch.Tensor  # (U, d) Hmm_u = R_hat Hmm_i
    mm_items: torch.Tensor  # (I, d) Hmm_i after the item-item layer(s)


class AlignRec(EmbeddingRecommender):
    """The AlignRec recommender (stage 2); see the module docstring for the equations.

    Args:
        data: Interactions (``alignrec_model.data.InteractionData``); uses ``n_users``,
            ``n_items``, ``normalized_adjacency()`` and ``normalized_user_item()``.
        features: (N_items, d_f) stage-1 item features F (row i = item i). The item-item graph
            and the similarity-preservation target always use these raw values.
        config: Hyper-parameters.
        seed: Seed of the parameter initialisation (the global RNG is left untouched).
        feature_fn: Optional joint fine-tuning: a module mapping (n,) item ids to their (n, d_f)
            features (e.g. the top encoder layers over cached lower-layer states). It replaces the
            trainable feature table: at each step the features of the batch's items (positives
            and negatives) are recomputed with gradient and written over a cache of all items'
            features, which :meth:`refresh_features` recomputes in full (``prepare_eval`` does).
            Its parameters form the second group of :meth:`param_groups`.

    Raises:
        UsageError: ``features`` do not have one row per item, or ``finetune_encoder_layers > 0``
            without a ``feature_fn``.
    """

    def __init__(
        self,
        data,
        features: np.ndarray | torch.Tensor,
        config: AlignRecConfig | None = None,
        seed: int = 999,
        feature_fn: nn.Module | None = None,
    ) -> None:
        super().__init__()
        config = config or AlignRecConfig()
        self.config = config
        f0 = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
        f0 = f0.detach().to(torch.float32).clone()  # (I, d_f)
        if f0.ndim != 2 or f0.shape[0] != data.n_items:
            msg = (
                f"AlignRec features: expected shape ({data.n_items}, d_f) (one row per item), "
                f"found {tuple(f0.shape)}; were the features extracted for this dataset?"
            )
            raise UsageError(msg)
        if not torch.isfinite(f0).all():
            msg = "AlignRec features contain NaN or inf values; re-extract the features"
            raise UsageError(msg)
        if config.finetune_encoder_layers > 0 and feature_fn is None:
            msg = (
                f"train.alignrec.finetune_encoder_layers = {config.finetune_encoder_layers} needs "
                "an encoder (feature_fn); set it to 0 to train on fixed stage-1 features"
            )
            raise UsageError(msg)
        d, d_f = config.embedding_dim, f0.shape[1]

        # Constant graphs, built once (never rebuilt); not saved in checkpoints.
        adj = data.normalized_adjacency()  # (U+I, U+I), symmetric
        r_hat = data.normalized_user_item()  # (U, I)
        item_adj = build_item_graph(f0, k=config.knn_k, chunk_size=config.knn_chunk_size)
        self.register_buffer("adj", adj, persistent=False)
        self.register_buffer("r_hat", r_hat, persistent=False)
        self.register_buffer("r_hat_t", csr_transpose(r_hat), persistent=False)
        self.register_buffer("item_adj", item_adj, persistent=False)
        self.register_buffer("item_adj_t", csr_transpose(item_adj), persistent=False)
        self.register_buffer("raw_features", f0, persistent=False)  # (I, d_f) for the sim term

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.init_embeddings(data, d)
            self.feature_norm = nn.LayerNorm(d_f) if config.feature_layer_norm else nn.Identity()
            self.mm_proj = nn.Linear(d_f, d)
            self.gate = nn.Sequential(nn.Linear(d, d), nn.Sigmoid())

        self.feature_fn = feature_fn
        if feature_fn is None:
            # The code's nn.Embedding.from_pretrained(v_feat, freeze=False).
            self.features = nn.Parameter(f0.clone(), requires_grad=not config.freeze_features)
        else:
            self.features = None
            self.register_buffer("feature_cache", f0.clone(), persistent=False)

        self.bpr = BPRLoss()
        self.uia = UIACosineLoss()
        self.l2 = EmbeddingL2(config.l2_divisor or None)
        self.info_nce = InfoNCE(config.temperature, config.mask_duplicate_negatives)
        self.sim = SimilarityPreservationLoss()

    # ----------------------------------------------------------------- features
    def item_features(self, grad_items: torch.Tensor | None = None) -> torch.Tensor:
        """The (I, d_f) features F that feed the content gate.

        Args:
            grad_items: With a ``feature_fn``: the item ids whose features are recomputed with
                gradient (the others come from the cache). Ignored without ``feature_fn``.

        Returns:
            (I, d_f) features.
        """
        if self.feature_fn is None:
            return self.features
        if grad_items is None:
            return self.feature_cache
        fresh = self.feature_fn(grad_items)  # (n, d_f), with gradient to the encoder
        with torch.no_grad():
            self.feature_cache[grad_items] = fresh.detach().to(self.feature_cache.dtype)
        return self.feature_cache.index_put((grad_items,), fresh)  # out of place

    @torch.no_grad()
    def refresh_features(self, batch_size: int = 1024) -> None:
        """Recompute the cached features of all items with ``feature_fn`` (no-op without it)."""
        if self.feature_fn is None:
            return
        device = self.feature_cache.device
        for start in range(0, self.n_items, batch_size):
            ids = torch.arange(start, min(start + batch_size, self.n_items), device=device)
            self.feature_cache[ids] = self.feature_fn(ids).to(self.feature_cache.dtype)

    # ----------------------------------------------------------------- forward
    def forward_id(self) -> torch.Tensor:
        """LightGCN view: H_id = mean(X0, .., XL) with X_l = A_hat X_{l-1}. Returns (U+I, d)."""
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])  # (U+I, d)
        return lightgcn_propagate(self.adj, x, self.config.n_ui_layers)  # (U+I, d)

    def forward_content(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Content view: gate, item-item layer(s), user aggregation.

        Args:
            features: (I, d_f) item features F.

        Returns:
            ``(Hmm_u, Hmm_i)``: (U, d) and (I, d).
        """
        m = self.mm_proj(self.feature_norm(features))  # (I, d)
        h = self.item_embedding.weight * self.gate(m)  # (I, d) E_i gated by content
        for _ in range(self.config.n_mm_layers):
            h = spmm(self.item_adj, h, self.item_adj_t)  # (I, d) A_mm h
        h_users = spmm(self.r_hat, h, self.r_hat_t)  # (U, d) R_hat Hmm_i
        return h_users, h

    def forward(self, grad_items: torch.Tensor | None = None) -> AlignRecOutput:
        """Embeddings of all users and items (one propagation over each graph).

        Args:
            grad_items: Item ids whose features ``feature_fn`` recomputes (joint fine-tuning).

        Returns:
            The fused embeddings Z and both views.
        """
        h_id = self.forward_id()  # (U+I, d)
        mm_users, mm_items = self.forward_content(self.item_features(grad_items))
        id_users, id_items = torch.split(h_id, [self.n_users, self.n_items])
        z_users, z_items = id_users + mm_users, id_items + mm_items
        return AlignRecOutput(z_users, z_items, id_users, id_items, mm_users, mm_items)

    # ----------------------------------------------------------------- loss
    def loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """AlignRec loss of a batch (see the module docstring).

        Args:
            users: (B,) user ids.
            pos: (B,) positive item ids.
            neg: (B,) negative item ids.

        Returns:
            The scalar loss and its weighted parts ``bpr, uia, l2, cca_item, cca_user, sim``
            (they sum to the loss).
        """
        self._cache = None  # parameters are about to change
        cfg = self.config
        grad_items = torch.unique(torch.cat([pos, neg])) if self.feature_fn is not None else None
        out = self.forward(grad_items)
        zu, zp, zn = out.z_users[users], out.z_items[pos], out.z_items[neg]  # (B, d) each
        mm_pos, mm_u, id_u = out.mm_items[pos], out.mm_users[users], out.id_users[users]
        weighted = {  # name: (weight, unweighted term); a term of weight 0 is not computed
            "uia": (cfg.uia_weight, lambda: self.uia(zu, zp)),
            "l2": (cfg.reg_weight, lambda: self.l2(zu, zp, zn)),
            "cca_item": (cfg.cl_weight, lambda: self.info_nce(mm_pos, out.id_items[pos], pos)),
            "cca_user": (cfg.cl_weight, lambda: self.info_nce(mm_u, id_u, users)),
            "sim": (cfg.sim_weight, lambda: self.sim(mm_pos, self.raw_features[pos])),
        }
        zero = zu.new_zeros(())
        parts = {"bpr": self.bpr((zu * zp).sum(-1), (zu * zn).sum(-1))}
        parts |= {k: w * term() if w else zero for k, (w, term) in weighted.items()}
        total = torch.stack(list(parts.values())).sum()
        values = torch.stack([v.detach() for v in parts.values()]).tolist()  # one sync
        return total, dict(zip(parts, values, strict=True))

    # ----------------------------------------------------------------- scoring
    def prepare_eval(self) -> None:
        """Refresh fine-tuned features (if any) and cache Z of all users and items."""
        self.refresh_features()
        super().prepare_eval()

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Z_u, Z_i)``: the fused (U, d) user and (I, d) item embeddings."""
        return self.forward()[:2]

    # ----------------------------------------------------------------- optimiser
    def param_groups(self, lr: float, encoder_lr: float | None = None) -> list[dict]:
        """Optimizer parameter groups: the recommender at ``lr``, the encoder at ``encoder_lr``.

        Args:
            lr: Learning rate of the recommender's parameters (E_u, E_i, F, mm_proj, gate).
            encoder_lr: Learning rate of ``feature_fn``'s trainable parameters; default
                ``config.encoder_lr``.

        Returns:
            One group without ``feature_fn`` (or when it has no trainable parameter), two with
            it; frozen parameters (``requires_grad=False``) are left out.
        """
        encoder = [] if self.feature_fn is None else list(self.feature_fn.parameters())
        encoder_ids = {id(p) for p in encoder}
        own = [p for p in self.parameters() if p.requires_grad and id(p) not in encoder_ids]
        groups = [{"params": own, "lr": lr, "name": "recommender"}]
        encoder = [p for p in encoder if p.requires_grad]
        encoder_lr = self.config.encoder_lr if encoder_lr is None else encoder_lr
        if encoder:
            groups.append({"params": encoder, "lr": encoder_lr, "name": "encoder"})
        return groups
