"""Derived structures rebuilt from an interaction set: the normalised user-item graph and
per-modality item kNN graphs. Parameter-free; every unlearning step rebuilds them from the
retain set so that forgotten edges stop flowing through message passing.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict

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


def unique_pairs(pairs: np.ndarray, n_items: int) -> np.ndarray:
    """The distinct (user, item) rows of `pairs`, sorted by user then item: np.unique(axis=0)'s
    result, through one integer key per pair (axis=0 sorts structured rows, several times
    slower: on ML-100k a fifth of a nightly erasure's graph rebuild)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) and (pairs.min() < 0 or pairs[:, 1].max() >= n_items):
        raise ValueError(f"pairs outside the {n_items} items (or a negative id)")
    key = np.unique(pairs[:, 0] * n_items + pairs[:, 1])
    return np.stack([key // n_items, key % n_items], axis=1)


def normalized_bipartite(pairs: np.ndarray, n_users: int, n_items: int, self_loops: bool = False) -> SparseOp:
    """Symmetric-normalised adjacency D^-1/2 A D^-1/2 of the (users + items) bipartite graph, CSR.

    Isolated nodes (a user with no retained interactions, a deleted item) get no edges and
    stay finite: their degree is treated as 1.
    """
    pairs = unique_pairs(pairs, n_items)
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
    pairs = unique_pairs(pairs, n_items)
    u = torch.as_tensor(pairs[:, 0])
    i = torch.as_tensor(pairs[:, 1])
    du = torch.bincount(u, minlength=n_users).to(torch.float32).clamp(min=1.0)
    di = torch.bincount(i, minlength=n_items).to(torch.float32).clamp(min=1.0)
    vals = du[u].pow(-0.5) * di[i].pow(-0.5)
    return _csr(u, i, vals, (n_users, n_items))


# kNN graphs by their inputs (knn_graph): every model a batch stage loads builds the same few
_KNN_GRAPHS: OrderedDict[tuple, SparseOp] = OrderedDict()
_KNN_GRAPHS_KEPT = 16
_KNN_LOCK = threading.Lock()  # the bench flow runs cells from a thread pool (flows/bench.py)


def clear_graph_cache() -> None:
    """Forget the kNN graphs built so far (knn_graph): the next model builds its own, as a
    fresh process would. The stream benchmark clears it every night, so that a night's seconds
    are those of a nightly run in a process of its own."""
    with _KNN_LOCK:
        _KNN_GRAPHS.clear()


def knn_graph(
    features: np.ndarray | torch.Tensor, k: int, active: np.ndarray | None = None, block: int = 2048
) -> SparseOp:
    """Item-item kNN graph on cosine similarity of raw features, row-normalised as in MGCN
    (D^-1/2 A D^-1/2 with row degrees), CSR [n_items, n_items].

    Each row keeps its k most similar items (itself included, as MMRec does). Ties go to the
    lower index. An item with an all-zero feature row has no meaningful neighbour: it keeps
    only its self-loop, so its item-item view is its own embedding and nothing turns NaN.
    Items outside `active` (deleted items) neither have nor are neighbours.

    The graph depends on the features, k and the active items only, and a SparseOp is never
    changed in place, so a graph built once is handed to every later caller with the same
    inputs (the features' bytes are the key): a nightly erasure loads theta_0, the chain's
    start and the repaired model, each on the same items (ML-100k: four builds of three
    graphs were a third of a night's erase and repair)."""
    x_np = np.ascontiguousarray(np.asarray(features), dtype=np.float32)
    act_key = None if active is None else np.asarray(active, dtype=bool).tobytes()
    key = (hashlib.blake2b(x_np.tobytes(), digest_size=16).digest(), x_np.shape, k, act_key)
    with _KNN_LOCK:
        if key in _KNN_GRAPHS:
            _KNN_GRAPHS.move_to_end(key)
            return _KNN_GRAPHS[key]
    graph = _knn_graph(torch.as_tensor(x_np), k, active, block)
    with _KNN_LOCK:
        _KNN_GRAPHS[key] = graph
        while len(_KNN_GRAPHS) > _KNN_GRAPHS_KEPT:
            _KNN_GRAPHS.popitem(last=False)
    return graph


def _knn_graph(x: torch.Tensor, k: int, active: np.ndarray | None, block: int) -> SparseOp:
    """knn_graph's build (`x`: the features, float32)."""
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
        # the k most similar, ties to the lower index: everything above the k-th value, then the
        # first columns equal to it (a stable sort's first k; topk alone breaks ties arbitrarily,
        # and the whole sort was most of a nightly erasure's graph rebuild)
        kth = torch.topk(sim, k_eff, dim=1).values[:, -1:]
        above, tie = sim > kth, sim == kth
        chosen = above | (tie & (torch.cumsum(tie, dim=1) <= k_eff - above.sum(dim=1, keepdim=True)))
        r, top = chosen.nonzero(as_tuple=True)
        valid = torch.isfinite(sim[r, top]) | (top == r + start)
        rows_l.append(r[valid] + start)
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
