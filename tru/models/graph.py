"""Derived structures rebuilt from an interaction set: the normalised user-item graph and
per-modality item kNN graphs. Parameter-free; every unlearning step rebuilds them from the
retain set so that forgotten edges stop flowing through message passing.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


class SparseOp:
    """A fixed sparse matrix with its transpose precomputed, for `A @ x` with autograd.

    torch's own backward for a CSR product transposes A on every call (a sort); the graphs
    never change during training, so the transpose is built once here.
    """

    def __init__(self, matrix: torch.Tensor, transpose: torch.Tensor | None = None):
        self.matrix = matrix
        self.transpose = matrix.to_sparse_coo().t().coalesce().to_sparse_csr() if transpose is None else transpose
        self.shape = tuple(matrix.shape)
        self._transpose_order: torch.Tensor | None = None

    def __deepcopy__(self, memo) -> SparseOp:
        return self  # immutable: a copied model shares its graphs until set_graph replaces them

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return _SpMM.apply(self.matrix, self.transpose, x)

    def scaled_edges(self, scale: torch.Tensor) -> SparseOp:
        """The same sparsity pattern with each stored value multiplied by `scale` (one entry per
        stored value, in CSR order): edge dropout without rebuilding or re-sorting the graph."""
        if self._transpose_order is None:
            # which entry of the matrix's value array each entry of the transpose's holds
            ids = torch.arange(self.matrix._nnz(), dtype=torch.float64)
            m = self.matrix
            tagged = torch.sparse_csr_tensor(m.crow_indices(), m.col_indices(), ids, m.shape, check_invariants=False)
            self._transpose_order = tagged.to_sparse_coo().t().coalesce().values().round().long()
        vals = self.matrix.values() * scale
        m, t = self.matrix, self.transpose
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            a = torch.sparse_csr_tensor(m.crow_indices(), m.col_indices(), vals, m.shape, check_invariants=False)
            a_t = torch.sparse_csr_tensor(
                t.crow_indices(), t.col_indices(), vals[self._transpose_order], t.shape, check_invariants=False
            )
        return SparseOp(a, a_t)

    def to_dense(self) -> torch.Tensor:
        """The matrix as a dense tensor."""
        return self.matrix.to_dense()

    def _nnz(self) -> int:
        return int(self.matrix._nnz())


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.a_t = a_t
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, torch.sparse.mm(ctx.a_t, grad)


def _csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]) -> SparseOp:
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, shape, check_invariants=False).coalesce()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return SparseOp(coo.to_sparse_csr())


def normalized_bipartite(pairs: np.ndarray, n_users: int, n_items: int, self_loops: bool = False) -> SparseOp:
    """Symmetric-normalised adjacency D^-1/2 A D^-1/2 of the (users + items) bipartite graph, CSR.

    Isolated nodes (a user with no retained interactions, a deleted item) get no edges and
    stay finite: their degree is treated as 1.
    """
    pairs = np.unique(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=0)
    u = torch.as_tensor(pairs[:, 0])
    i = torch.as_tensor(pairs[:, 1]) + n_users
    rows = torch.cat([u, i])
    cols = torch.cat([i, u])
    n = n_users + n_items
    if self_loops:
        loop = torch.arange(n)
        rows, cols = torch.cat([rows, loop]), torch.cat([cols, loop])
    deg = torch.bincount(rows, minlength=n).to(torch.float32).clamp(min=1.0)
    dinv = deg.pow(-0.5)
    vals = dinv[rows] * dinv[cols]
    return _csr(rows, cols, vals, (n, n))


def user_item_block(pairs: np.ndarray, n_users: int, n_items: int) -> SparseOp:
    """The user->item block R of the symmetric-normalised bipartite adjacency, CSR [n_users, n_items]."""
    pairs = np.unique(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=0)
    u = torch.as_tensor(pairs[:, 0])
    i = torch.as_tensor(pairs[:, 1])
    du = torch.bincount(u, minlength=n_users).to(torch.float32).clamp(min=1.0)
    di = torch.bincount(i, minlength=n_items).to(torch.float32).clamp(min=1.0)
    vals = du[u].pow(-0.5) * di[i].pow(-0.5)
    return _csr(u, i, vals, (n_users, n_items))


def knn_graph(
    features: np.ndarray | torch.Tensor, k: int, active: np.ndarray | None = None, block: int = 2048
) -> SparseOp:
    """Item-item kNN graph on cosine similarity of raw features, row-normalised as in MGCN
    (D^-1/2 A D^-1/2 with row degrees), CSR [n_items, n_items].

    Each row keeps its k most similar items (itself included, as MMRec does). Ties go to the
    lower index. An item with an all-zero feature row has no meaningful neighbour: it keeps
    only its self-loop, so its item-item view is its own embedding and nothing turns NaN.
    Items outside `active` (deleted items) neither have nor are neighbours.
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    n = x.shape[0]
    norms = x.norm(dim=1, keepdim=True)
    zero = norms.squeeze(1) <= 1e-12
    xn = x / norms.clamp(min=1e-12)
    act = torch.ones(n, dtype=torch.bool) if active is None else torch.as_tensor(active, dtype=torch.bool)
    usable = act & ~zero
    k_eff = max(1, min(k, int(usable.sum())))
    rows_l, cols_l = [], []
    idx = torch.arange(n)
    for start in range(0, n, block):
        stop = min(n, start + block)
        sim = xn[start:stop] @ xn.T
        sim[:, ~usable] = float("-inf")
        # self first: the row always keeps itself, as a top-k over cosine would
        sim[torch.arange(stop - start), idx[start:stop]] = float("inf")
        top = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :k_eff]
        r = idx[start:stop].unsqueeze(1).expand_as(top)
        valid = torch.isfinite(torch.gather(sim, 1, top)) | (top == r)
        rows_l.append(r[valid])
        cols_l.append(top[valid])
    rows = torch.cat(rows_l)
    cols = torch.cat(cols_l)
    only_self = (~usable)[rows]
    keep = ~only_self | (rows == cols)
    keep &= act[rows]
    rows, cols = rows[keep], cols[keep]
    deg = torch.bincount(rows, minlength=n).to(torch.float32).clamp(min=1.0)
    dinv = deg.pow(-0.5)
    return _csr(rows, cols, dinv[rows] * dinv[cols], (n, n))
