"""Loss modules of the recommenders (AlignRec and the MF / LightGCN baselines).

Each module computes one unweighted term from its formula; the model multiplies by its weight
(``AlignRecConfig.uia_weight``, ``reg_weight``, ``cl_weight``, ``sim_weight``). The formulas are
those of the public AlignRec code (github sjtulyf123/AlignRec_CIKM24, ``models/alignrec.py``);
docs/alignrec.md lists where we differ and which switch restores the code's behaviour.

Index convention: every batch tensor is row-aligned, row ``k`` of ``users``, ``pos`` and ``neg``
belongs to the ``k``-th (user, positive item, negative item) triple of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BPRLoss(nn.Module):
    r"""Bayesian personalised ranking loss.

    .. math:: L_{BPR} = -\frac{1}{B} \sum_k \log \sigma(s^+_k - s^-_k)
    """

    def forward(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        """Mean negative log-sigmoid of the score margins.

        Args:
            pos_scores: (B,) scores of the positive items, e.g. ``<z_u, z_i+>``.
            neg_scores: (B,) scores of the negative items.

        Returns:
            The scalar loss.
        """
        return -F.logsigmoid(pos_scores - neg_scores).mean()


class EmbeddingL2(nn.Module):
    r"""Squared L2 norm of the batch's embeddings, as the AlignRec / LightGCN code computes it.

    .. math:: L_{2} = \frac{1}{2 D} \sum_{e} \lVert e \rVert_F^2

    summed over the given embedding matrices (the code passes ``Z_u``, ``Z_{i+}``, ``Z_{i-}`` of
    the batch). Multiply by ``reg_weight`` (1e-4 in the code) yourself.

    Args:
        divisor: ``D``. ``None`` (default) divides by the batch size (rows of the first matrix).
            The code divides by the configured train batch size (2048) even for the last,
            smaller batch of an epoch; pass that number to reproduce it exactly.
    """

    def __init__(self, divisor: int | None = None) -> None:
        super().__init__()
        if divisor is not None and divisor <= 0:
            msg = f"EmbeddingL2 divisor must be a positive int or None, found {divisor}"
            raise ValueError(msg)
        self.divisor = divisor

    def forward(self, *embeddings: torch.Tensor) -> torch.Tensor:
        """Half the summed squared entries of ``embeddings`` over the divisor.

        Args:
            *embeddings: (B, d) matrices.

        Returns:
            The scalar regulariser.
        """
        if not embeddings:
            msg = "EmbeddingL2 needs at least one embedding matrix"
            raise ValueError(msg)
        divisor = self.divisor if self.divisor is not None else embeddings[0].shape[0]
        return 0.5 * sum(e.pow(2).sum() for e in embeddings) / divisor


class UIACosineLoss(nn.Module):
    r"""User-item alignment: one minus the mean cosine between a user and its positive item.

    .. math:: L_{UIA} = 1 - \frac{1}{B} \sum_k \cos(z_{u_k}, z_{i^+_k})
    """

    def forward(self, user_emb: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """One minus the mean row-wise cosine similarity.

        Args:
            user_emb: (B, d) user embeddings.
            pos_emb: (B, d) embeddings of their positive items.

        Returns:
            The scalar loss, in [0, 2].
        """
        return 1.0 - F.cosine_similarity(user_emb, pos_emb, dim=-1).mean()


class InfoNCE(nn.Module):
    r"""One-directional InfoNCE with in-batch negatives (the CCA term of AlignRec).

    With :math:`a`, :math:`b` row-wise L2-normalised and temperature :math:`\tau`:

    .. math::
        L = \frac{1}{B} \sum_k -\log
            \frac{\exp(a_k \cdot b_k / \tau)}{\sum_j \exp(a_k \cdot b_j / \tau)}

    Args:
        temperature: :math:`\tau` (0.2 in the code).
        mask_duplicates: The code keeps every other row ``j`` of the batch as a negative, even
            when it is the same id as row ``k`` (a user or item drawn twice in the batch), so the
            positive also appears among the negatives (faithful default: False). True removes
            the rows ``j != k`` whose id equals ``ids[k]`` from the denominator; it then needs
            ``ids`` in :meth:`forward`.
    """

    def __init__(self, temperature: float = 0.2, mask_duplicates: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            msg = f"InfoNCE temperature must be > 0, found {temperature}"
            raise ValueError(msg)
        self.temperature = temperature
        self.mask_duplicates = mask_duplicates

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """InfoNCE of ``a`` against ``b``: row ``k`` of ``b`` is the positive of row ``k`` of ``a``.

        Args:
            a: (B, d) anchors (the content view).
            b: (B, d) positives and in-batch negatives (the ID view).
            ids: (B,) ids of the rows; required when ``mask_duplicates`` is True.

        Returns:
            The scalar loss.
        """
        a = F.normalize(a, dim=-1) / self.temperature  # 1/tau folded into the (B, d) side
        b = F.normalize(b, dim=-1)
        logits = a @ b.T  # (B, B) = a_k.b_j / tau; the diagonal holds the positives
        if self.mask_duplicates:
            if ids is None:
                msg = "InfoNCE(mask_duplicates=True) needs the batch ids"
                raise ValueError(msg)
            same = ids.unsqueeze(0) == ids.unsqueeze(1)  # (B, B)
            same.fill_diagonal_(False)
            logits = logits.masked_fill(same, float("-inf"))
        # -log softmax at the diagonal, fused (cheaper than logsumexp minus the diagonal)
        target = torch.arange(logits.shape[0], device=logits.device)
        return F.cross_entropy(logits, target)


class SimilarityPreservationLoss(nn.Module):
    r"""Keeps the item-item inner products of the content view close to the feature similarity.

    .. math::
        L_{sim} = \frac{1}{B} \lVert H H^\top - \mathrm{sg}(\cos(F_B, F_B)) \rVert_F

    with :math:`H` the (B, d) content-view embeddings of the batch's positive items, not
    normalised, and :math:`F_B` their raw features. The Frobenius norm is not squared (the code's
    ``EmbLoss``: ``torch.norm(x, p=2) / x.shape[0]``). A zero feature vector has cosine 0 with
    every item here (the code would produce NaN).

    Speed: building the (B, B) cosine matrix costs B^2 d_f multiply-adds (6.4 GFLOP for
    B = 2048, d_f = 768), half of an AlignRec step on a CPU. With unit rows :math:`\hat F`,
    :math:`T = \hat F \hat F^\top` and

    .. math::
        \lVert H H^\top - T \rVert_F^2 = \lVert H^\top H \rVert_F^2
            - 2 \lVert \hat F^\top H \rVert_F^2 + \lVert \hat F^\top \hat F \rVert_F^2

    costs B d_f^2 + B d_f d instead; ``method="auto"`` uses it when d_f < B (the three terms
    summed in float64). Its gradient is exact; only the scalar value carries the rounding of
    the three (large) terms, which matters only when the loss is tiny against ``||T||_F``.

    Args:
        method: ``"auto"``, ``"direct"`` (the formula as written) or ``"gram"`` (the expansion).
    """

    def __init__(self, method: str = "auto") -> None:
        super().__init__()
        if method not in ("auto", "direct", "gram"):
            msg = (
                f"SimilarityPreservationLoss method must be auto, direct or gram, found {method!r}"
            )
            raise ValueError(msg)
        self.method = method

    def forward(self, emb: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Frobenius distance between ``emb @ emb.T`` and the features' cosine matrix, over B.

        Args:
            emb: (B, d) content-view embeddings.
            features: (B, d_f) features of the same items (detached here).

        Returns:
            The scalar loss.
        """
        b, d_f = features.shape
        f = F.normalize(features.detach(), dim=-1)  # (B, d_f) unit rows, no gradient
        method = self.method if self.method != "auto" else ("gram" if d_f < b else "direct")
        if method == "direct":
            target = f @ f.T  # (B, B) cosine similarities
            return torch.linalg.matrix_norm(emb @ emb.T - target) / b
        hh = (emb.T @ emb).double().pow(2).sum()  # ||H^T H||^2 = ||H H^T||^2
        fh = (f.T @ emb).double().pow(2).sum()  # ||F^T H||^2 = tr(H^T T H)
        ff = (f.T @ f).double().pow(2).sum()  # ||F^T F||^2 = ||T||^2
        sq = (hh - 2 * fh + ff).clamp_min(0.0)
        return (sq.sqrt() / b).to(emb.dtype)


__all__ = ["BPRLoss", "EmbeddingL2", "InfoNCE", "SimilarityPreservationLoss", "UIACosineLoss"]
