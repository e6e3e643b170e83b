r"""Graph maths of the recommenders: normalisation, sparse operator, propagation, kNN.

AlignRec, LightGCN and ItemKNN-CBF build their graphs and propagate with these functions.

Symmetric normalisation (PyG ``gcn_norm`` without self loops; isolated nodes get
:math:`d^{-1/2} = 0`):

.. math::
    \hat A_{ij} = d_i^{-1/2} \, A_{ij} \, d_j^{-1/2}

LightGCN propagation (He et al., SIGIR 2020; PyG ``LightGCN`` with ``alpha = 1/(L+1)``):

.. math::
    X^0 = [E_u; E_i], \qquad X^l = \hat A X^{l-1}, \qquad H = \frac{1}{L+1} \sum_{l=0}^{L} X^l

Item-item kNN (the AlignRec graph with ``shrink = 0`` and the item itself kept; ItemKNN-CBF
with ``shrink = h`` and the item itself left out):

.. math::
    S_{ij} = \frac{f_i \cdot f_j}{\lVert f_i\rVert \lVert f_j\rVert + h}, \qquad
    \tilde S_{ij} = S_{ij} \text{ if } j \in \mathrm{topk}_k(S_{i\cdot}) \text{ else } 0

FREEDOM's frozen item-item graph (Zhou and Shen, MM 2023; :func:`knn_binary_graph`,
:func:`combine_graphs`) keeps the top-k as 0/1 edges, normalises them symmetrically and mixes the
modalities, and its degree-sensitive edge pruning (:func:`degree_edge_weights`,
:func:`sample_edges`) keeps each user-item edge with a probability proportional to
:math:`1/\sqrt{d_u d_i}`.

The dense ``N x N`` similarity matrix is never held in memory: the top-k is taken over blocks of
``chunk_size`` rows (63k items x 2048 rows x 4 bytes = 0.5 GB per block instead of 16 GB).
Graphs are torch sparse CSR float32 tensors, constant during training (no gradient to ``A``).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from alignrec_data.errors import UsageError

logger = logging.getLogger(__name__)

__all__ = [
    "bipartite_graph",
    "build_item_graph",
    "combine_graphs",
    "degree_edge_weights",
    "csr_transpose",
    "knn_binary_graph",
    "knn_csr",
    "knn_topk",
    "lightgcn_propagate",
    "sample_edges",
    "spmm",
    "sym_norm",
    "to_torch_csr",
]


# ----------------------------------------------------------------- normalisation
def sym_norm(
    row: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, deg: torch.Tensor
) -> torch.Tensor:
    r"""Edge weights :math:`d_i^{-1/2} w_{ij} d_j^{-1/2}` (``gcn_norm``'s formula and order).

    Args:
        row: (E,) or any shape: row node ``i`` of each edge.
        col: Same shape as ``row``: column node ``j``.
        weight: Same shape: ``w_ij``.
        deg: (N,) node degrees ``d``; a node of degree 0 gets ``d^-1/2 = 0``.

    Returns:
        The normalised weights, shaped like ``weight``.
    """
    d_inv_sqrt = deg.pow(-0.5)  # (N,)
    d_inv_sqrt.masked_fill_(torch.isinf(d_inv_sqrt), 0.0)  # isolated nodes
    return d_inv_sqrt[row] * weight * d_inv_sqrt[col]


def bipartite_graph(
    pairs: np.ndarray, n_users: int, n_items: int
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The normalised user-item graph :math:`\hat A` and its user-item block :math:`\hat R`.

    .. math::
        A = \begin{bmatrix} 0 & R \\ R^\top & 0 \end{bmatrix}, \quad
        \hat A = D^{-1/2} A D^{-1/2}, \quad \hat R = D_u^{-1/2} R D_i^{-1/2}

    Users are nodes ``0..U-1`` and items nodes ``U..U+I-1``; no self loops. The weights are
    torch-geometric's ``gcn_norm`` (PyG's LightGCN normalisation), so ``A_hat @ X`` equals one
    PyG ``LGConv`` propagation of ``X``; ``A_hat`` is symmetric.

    Args:
        pairs: (M, 2) distinct (user, item) train pairs.
        n_users: U.
        n_items: I.

    Returns:
        ``(A_hat, R_hat)``: (U+I, U+I) and (U, I) torch sparse CSR float32 tensors.
    """
    from torch_geometric.nn.conv.gcn_conv import gcn_norm  # PyG's LightGCN normalisation

    u = torch.from_numpy(pairs[:, 0])  # (M,)
    i = torch.from_numpy(pairs[:, 1]) + n_users  # (M,) item node ids
    n = n_users + n_items
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])  # (2, 2M) both directions
    _, w = gcn_norm(edge_index, None, n, add_self_loops=False)  # (2M,) d_u^-1/2 d_i^-1/2
    adj = sp.coo_matrix((w.numpy(), tuple(edge_index.numpy())), shape=(n, n))
    # the first M edges are the user -> item ones, in the order of pairs
    r_hat = sp.coo_matrix((w[: len(u)].numpy(), tuple(pairs.T)), shape=(n_users, n_items))
    return to_torch_csr(adj), to_torch_csr(r_hat)


# ----------------------------------------------------------------- sparse operator
def to_torch_csr(m: sp.spmatrix) -> torch.Tensor:
    """A scipy sparse matrix as a torch sparse CSR float32 tensor (columns sorted per row)."""
    m = m.tocsr()
    m.sort_indices()
    # int32 indices when they fit: torch's CPU kernel converts int64 ones at every product
    index_dtype = np.int32 if m.nnz < np.iinfo(np.int32).max else np.int64
    crow, col = (torch.from_numpy(a.astype(index_dtype)) for a in (m.indptr, m.indices))
    values = torch.from_numpy(m.data.astype(np.float32))
    # "sparse CSR support is in beta": known, not actionable; a sorted scipy CSR is valid
    with warnings.catch_warnings(action="ignore", category=UserWarning):
        return torch.sparse_csr_tensor(crow, col, values, size=m.shape, check_invariants=False)


def csr_transpose(m: torch.Tensor) -> torch.Tensor:
    """The transpose of a torch sparse CSR matrix, as a sparse CSR matrix."""
    with warnings.catch_warnings(action="ignore", category=UserWarning):
        return m.t().to_sparse_coo().coalesce().to_sparse_csr()


class _SparseMM(torch.autograd.Function):
    """``A @ X`` for a constant sparse ``A`` whose transpose is given.

    ``torch.sparse.mm`` transposes a CSR matrix (a sort of all its entries) at every backward;
    here the backward is ``A^T @ grad`` with the stored ``A^T``.
    """

    @staticmethod
    def forward(ctx, a, a_t, x):  # noqa: D102
        ctx.a_t = a_t
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return None, None, torch.sparse.mm(ctx.a_t, grad)


def spmm(a: torch.Tensor, x: torch.Tensor, a_t: torch.Tensor | None = None) -> torch.Tensor:
    """``A @ X`` with gradient to ``X`` only (``A`` is a constant graph).

    Args:
        a: (N, M) sparse CSR matrix.
        x: (M, d) dense matrix.
        a_t: (M, N) ``A^T`` (see :func:`csr_transpose`); None when ``A`` is symmetric.

    Returns:
        (N, d) ``A @ X``.
    """
    return _SparseMM.apply(a, a if a_t is None else a_t, x)


def lightgcn_propagate(adj: torch.Tensor, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    r"""LightGCN: the mean of :math:`X^0 .. X^L` with :math:`X^l = \hat A X^{l-1}`.

    Args:
        adj: (N, N) symmetric normalised adjacency ``A_hat`` (sparse CSR).
        x: (N, d) layer-0 embeddings ``X^0``.
        n_layers: L >= 0.

    Returns:
        (N, d) ``H = (X^0 + .. + X^L) / (L + 1)``.
    """
    total = x
    for _ in range(n_layers):
        x = spmm(adj, x)  # (N, d) X^l = A_hat X^{l-1}
        total = total + x
    return total / (n_layers + 1)  # (N, d) layer mean


# ----------------------------------------------------------------- item-item kNN
def knn_topk(
    features: torch.Tensor | np.ndarray,
    k: int = 10,
    chunk_size: int = 2048,
    shrink: float = 0.0,
    include_self: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (shrunk) cosine neighbours of every item, computed in row blocks.

    Args:
        features: (N, d_f) item features. A zero row has similarity 0 with every item.
        k: Neighbours kept per item.
        chunk_size: Rows of the similarity matrix computed at once.
        shrink: h; 0 is the plain cosine (of unit rows).
        include_self: Item i may be its own neighbour (False: ``S_ii = -inf``).

    Returns:
        ``(values, indices)``, both (N, k): the ``S_ij`` and the column ids ``j`` of each row,
        in decreasing order of similarity (``torch.topk`` order, so equal to the top-k of the
        dense matrix).

    Raises:
        UsageError: ``k`` is not in [1, N] ([1, N - 1] without self), ``chunk_size`` is not
            positive or ``shrink`` is negative.
    """
    f = torch.as_tensor(features).detach().to(torch.float32)
    if f.ndim != 2:
        msg = f"item features must be a 2-D (N_items, d_f) matrix, found shape {tuple(f.shape)}"
        raise UsageError(msg)
    n = f.shape[0]
    bound = f"N_items={n}" if include_self else f"N_items-1={n - 1}"
    if not 1 <= k <= (n if include_self else n - 1):
        msg = f"knn_k must be in [1, {bound}], found {k}; lower the knn_k parameter"
        raise UsageError(msg)
    if chunk_size <= 0 or shrink < 0:
        msg = f"knn chunk size must be > 0 and shrink >= 0, found {chunk_size} and {shrink}"
        raise UsageError(msg)
    unit = F.normalize(f, dim=1) if shrink == 0 else f  # (N, d_f), zero rows stay zero
    norms = f.norm(dim=1) if shrink else None  # (N,)
    values = torch.empty(n, k, dtype=torch.float32, device=f.device)
    indices = torch.empty(n, k, dtype=torch.long, device=f.device)
    starts = range(0, n, chunk_size)
    for start in tqdm(starts, desc="item-item top-k", unit="block", disable=None, leave=False):
        stop = min(start + chunk_size, n)
        sim = unit[start:stop] @ unit.T  # (chunk, N)
        if shrink:
            sim /= norms[start:stop, None] * norms[None, :] + shrink
        if not include_self:
            local = torch.arange(stop - start, device=f.device)
            sim[local, local + start] = -torch.inf
        values[start:stop], indices[start:stop] = torch.topk(sim, k, dim=1)
    return values, indices


def knn_csr(values: torch.Tensor, indices: torch.Tensor) -> sp.csr_matrix:
    """The (N, k) output of :func:`knn_topk` as an (N, N) scipy CSR, columns sorted per row."""
    n, k = values.shape
    indptr = np.arange(0, n * k + 1, k)
    m = sp.csr_matrix(
        (values.cpu().numpy().ravel(), indices.cpu().numpy().ravel(), indptr), shape=(n, n)
    )
    m.sort_indices()
    return m


def build_item_graph(
    features: torch.Tensor | np.ndarray, k: int = 10, chunk_size: int = 2048
) -> torch.Tensor:
    r"""AlignRec's item-item graph :math:`A_{mm}`, built once from the raw item features.

    .. math::
        d_i = \sum_j \tilde S_{ij}, \qquad A_{mm}[i, j] = d_i^{-1/2} \, \tilde S_{ij} \, d_j^{-1/2}

    with :math:`\tilde S` the top-k cosines (:func:`knn_topk`, ``shrink = 0``). The kept weights
    are the cosines themselves (not binarised), each row keeps ``k`` entries (item ``i`` itself
    among them, its cosine 1 being the largest), the graph is directed (not symmetrised) and it is
    never rebuilt during training. This is the public code's
    ``build_knn_normalized_graph(build_sim(F), topk=10, is_sparse=True, norm_type='sym')``, whose
    degree is the row sum of the kept entries; there, ``d_j`` is also the row sum of row ``j``.

    Args:
        features: (N, d_f) raw item features (stage-1 output).
        k: Neighbours kept per item, itself included (``knn_k``, 10 in the paper).
        chunk_size: Rows of the similarity matrix computed at once (memory bound).

    Returns:
        (N, N) CPU ``torch.sparse_csr`` float32 tensor with ``k`` stored entries per row (columns
        sorted within each row). Rows of items whose kept similarities sum to 0 (zero feature
        vectors) are all zero.

    Raises:
        UsageError: Bad ``k``/``chunk_size``, or an item whose kept similarities sum to a
            negative number (its normalisation would be undefined).
    """
    values, indices = knn_topk(features, k=k, chunk_size=chunk_size)  # (N, k) each
    n = values.shape[0]
    deg = values.sum(dim=1)  # (N,) d_i over the kept row
    bad = torch.nonzero(deg < 0).flatten()
    if bad.numel():
        msg = (
            f"item-item graph: the top-{k} cosine similarities of {bad.numel()} item(s) sum to a "
            f"negative number (first item id {int(bad[0])}, sum {float(deg[bad[0]]):.4f}); "
            "d^-1/2 is undefined. Check the features (are they constant or nearly opposite?)"
        )
        raise UsageError(msg)
    rows = torch.arange(n, device=values.device)[:, None]  # (N, 1)
    weights = sym_norm(rows, indices, values, deg)  # (N, k)
    n_zero = int((deg == 0).sum())
    if n_zero:
        logger.warning("item-item graph: %d item(s) have zero features and no edges", n_zero)
    logger.info("item-item graph: %d items, top-%d, %d edges", n, k, n * k)
    return to_torch_csr(knn_csr(weights, indices))


# ----------------------------------------------------------------- FREEDOM's graphs
def knn_binary_graph(
    features: torch.Tensor | np.ndarray, k: int = 10, chunk_size: int = 2048
) -> sp.csr_matrix:
    r"""FREEDOM's item-item graph of one modality: 0/1 top-k cosine edges, normalised.

    .. math::
        B_{ij} = 1 \text{ if } j \in \mathrm{topk}_k(\cos(f_i, f_\cdot)) \text{ else } 0,
        \qquad d_i = \sum_j B_{ij} = k, \qquad S_{ij} = d_i^{-1/2} B_{ij} d_j^{-1/2}

    MMRec's ``FREEDOM.get_knn_adj_mat`` + ``compute_normalized_laplacian``: the item itself is
    among its neighbours (cosine 1), both degrees are row sums, so every kept edge weighs
    ``1/k`` (MMRec adds 1e-7 to the degree: ``1/(k + 1e-7)``, a 1e-8 relative difference).

    Args:
        features: (N, d_f) item features of one modality (a zero row: cosine 0 with all).
        k: Neighbours per item, itself included (``knn_k``).
        chunk_size: Rows of the cosine matrix computed at once.

    Returns:
        (N, N) scipy CSR float32 with ``k`` entries per row, columns sorted.
    """
    _, indices = knn_topk(features, k=k, chunk_size=chunk_size)  # (N, k)
    indices = indices.cpu()
    ones = torch.ones(indices.shape, dtype=torch.float32)  # (N, k) B_ij
    rows = torch.arange(len(indices))[:, None]  # (N, 1)
    return knn_csr(sym_norm(rows, indices, ones, ones.sum(dim=1)), indices)  # d_i = k


def combine_graphs(graphs: list[sp.spmatrix], weights: list[float]) -> torch.Tensor:
    r"""The weighted sum :math:`\sum_m w_m S_m` of graphs (FREEDOM's modality mix).

    With an image and a text graph MMRec's FREEDOM uses
    :math:`S = w_v S_v + (1 - w_v) S_t` (``mm_image_weight`` :math:`w_v`); an edge in both graphs
    gets the sum of its two weighted values.

    Args:
        graphs: (N, N) scipy sparse matrices.
        weights: One weight per graph.

    Returns:
        (N, N) torch sparse CSR float32.
    """
    if not graphs or len(graphs) != len(weights):
        msg = f"combine_graphs needs one weight per graph, found {len(graphs)} and {len(weights)}"
        raise UsageError(msg)
    total = sum(w * g.tocsr() for w, g in zip(weights, graphs, strict=True))
    return to_torch_csr(sp.csr_matrix(total))


def degree_edge_weights(pairs: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    r"""FREEDOM's sampling weights of the user-item edges, :math:`1/\sqrt{d_u d_i}`.

    .. math:: p_{(u,i)} \propto \frac{1}{\sqrt{d_u}\sqrt{d_i}}

    with :math:`d_u`, :math:`d_i` the train degrees (MMRec's ``get_edge_info``: the normalised
    values of the full graph; MMRec adds 1e-7 to each degree, which no train node needs).

    Args:
        pairs: (M, 2) distinct (user, item) train pairs.
        n_users: U.
        n_items: I.

    Returns:
        (M,) float32 weights, in the order of ``pairs`` (not summing to 1).
    """
    d_u = np.bincount(pairs[:, 0], minlength=n_users).astype(np.float64)  # (U,)
    d_i = np.bincount(pairs[:, 1], minlength=n_items).astype(np.float64)  # (I,)
    w = 1.0 / np.sqrt(d_u[pairs[:, 0]] * d_i[pairs[:, 1]])  # (M,) every train node has d >= 1
    return torch.from_numpy(w.astype(np.float32))


def sample_edges(weights: torch.Tensor, n_keep: int, generator: torch.Generator) -> np.ndarray:
    """Draw ``n_keep`` distinct edges with probabilities proportional to ``weights``.

    ``torch.multinomial`` without replacement, as MMRec's ``pre_epoch_processing`` (there on
    the global generator; here on the model's own, seeded from params).

    Args:
        weights: (M,) non-negative edge weights (:func:`degree_edge_weights`).
        n_keep: Edges to keep, in [0, M].
        generator: The CPU generator of the draw.

    Returns:
        (n_keep,) int64 edge indices, in the order drawn.
    """
    if not 0 <= n_keep <= weights.numel():
        msg = f"edges to keep must be in [0, {weights.numel()}], found {n_keep}"
        raise UsageError(msg)
    if n_keep == 0:
        return np.empty(0, dtype=np.int64)
    return torch.multinomial(weights, n_keep, replacement=False, generator=generator).numpy()
