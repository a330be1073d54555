"""Full-ranking metrics with MMRec semantics.

Recall@K = hits in the top K / |positives| per row; NDCG@K = DCG / ideal DCG, the ideal
placing min(|positives|, K) hits first. Rows without a positive are skipped; the result
is the mean over the rest. Excluded items (a row's training items, say) are masked before
ranking, so they can neither be recommended nor counted: a positive that is also excluded
is dropped from that row's positives. Ties in score are broken by the lower item index
(a stable sort), so the result never depends on the sort kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

Rows = Sequence[Sequence[int] | np.ndarray]


def _row_index(rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [len(r) for r in rows]
    row_ids = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor(lengths, dtype=torch.long))
    cols = torch.as_tensor(
        np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if rows else np.zeros(0, np.int64)
    )
    return row_ids, cols.long()


def top_k_order(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The first k columns of each row's stable descending sort (ties: lower index first),
    without sorting whole rows. Top-(k+1) finds each row's k-th score: where the next one is
    strictly lower, the row's top k are exactly those k items, put in order by score, then
    index. Only rows with a tie at the k-th score (rare with real-valued scores; every masked
    row with fewer than k unmasked items) take the slower path: every item at or above it,
    sorted stably."""
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    if n_rows == 0 or k == 0:
        return torch.zeros(n_rows, k, dtype=torch.long)
    if k < n_items:
        top = torch.topk(scores, k + 1, dim=1)
        vals, idx = top.values[:, :k], top.indices[:, :k]
        tied = ~(top.values[:, k] < top.values[:, k - 1])  # NaN counts as a tie: the slow path
    else:
        vals, idx = scores, torch.arange(n_items).expand(n_rows, -1)
        tied = torch.zeros(n_rows, dtype=torch.bool)
    # by index, then stably by score: descending score, ties by the lower index
    by_index = torch.sort(idx, dim=1).indices
    vals, idx = torch.gather(vals, 1, by_index), torch.gather(idx, 1, by_index)
    out = torch.gather(idx, 1, torch.sort(vals, dim=1, descending=True, stable=True).indices)
    if bool(tied.any()):
        rows = torch.nonzero(tied).squeeze(1)
        out[rows] = _top_k_with_ties(scores[rows], k)
    return out


def _top_k_with_ties(scores: torch.Tensor, k: int) -> torch.Tensor:
    """top_k_order of rows that have a tie at their k-th score: every item at or above it,
    sorted stably (k of them unless there are ties)."""
    n_rows, _ = scores.shape
    threshold = torch.topk(scores, k, dim=1).values[:, -1:]
    cand = scores >= threshold
    counts = cand.sum(1)
    at = torch.nonzero(cand)  # row-major: each row's candidates in ascending item order
    slot = torch.arange(len(at)) - (torch.cumsum(counts, 0) - counts)[at[:, 0]]
    width = int(counts.max())
    cols = torch.zeros(n_rows, width, dtype=torch.long)
    vals = torch.full((n_rows, width), float("-inf"), dtype=scores.dtype)
    cols[at[:, 0], slot] = at[:, 1]
    vals[at[:, 0], slot] = scores[at[:, 0], at[:, 1]]
    # padding sits after each row's candidates, so a stable sort never puts it before them
    return torch.gather(cols, 1, torch.sort(vals, dim=1, descending=True, stable=True).indices[:, :k])


class RankAccumulator:
    """Sums per-row Recall/NDCG over batches of rows; `result()` gives the means."""

    def __init__(self, ks: Sequence[int], keep_rows: bool = False):
        if not ks or min(ks) < 1:
            raise ValueError("ks must be positive cut-offs")
        self.ks = sorted(set(int(k) for k in ks))
        self.sums = {f"{m}@{k}": 0.0 for k in self.ks for m in ("recall", "ndcg")}
        self.rows = 0
        # keep_rows: each counted row's values too (`row_values`), in the order the rows came
        self.kept: dict[str, list[np.ndarray]] | None = {key: [] for key in self.sums} if keep_rows else None

    def add(self, scores: torch.Tensor, positives: Rows, exclude: Rows | None = None) -> None:
        """Add a batch: `scores` [rows, items], each row's positive items and (optionally) the
        items masked for it; rows left without a positive are skipped."""
        if scores.dim() != 2 or scores.shape[0] != len(positives):
            raise ValueError(
                "scores must be [rows, items] with one positives list per row; "
                f"got {tuple(scores.shape)} and {len(positives)}"
            )
        n_rows, n_items = scores.shape
        scores = scores.detach().to(torch.float32).clone()
        pos_mask = torch.zeros(n_rows, n_items, dtype=torch.bool)
        rp, cp = _row_index(positives)
        pos_mask[rp, cp] = True
        if exclude is not None:
            if len(exclude) != n_rows:
                raise ValueError("exclude needs one list per row")
            r, c = _row_index(exclude)
            scores[r, c] = float("-inf")
            pos_mask[r, c] = False
        # each row's positives left after the mask, counted at their own cells (not over the
        # whole [rows, items] mask: on a large catalogue that reduction was most of the time)
        cells = torch.unique(rp * n_items + cp)
        n_pos = torch.zeros(n_rows, dtype=torch.long).index_add_(0, cells // n_items, pos_mask.view(-1)[cells].long())
        keep = n_pos > 0
        if not bool(keep.any()):
            return
        n_pos = n_pos.to(torch.float64)
        if not bool(keep.all()):
            scores, pos_mask, n_pos = scores[keep], pos_mask[keep], n_pos[keep]
        k_max = min(max(self.ks), n_items)
        order = top_k_order(scores, k_max)
        hits = torch.gather(pos_mask, 1, order).to(torch.float64)
        discount = 1.0 / torch.log2(torch.arange(2, k_max + 2, dtype=torch.float64))
        cum_disc = torch.cumsum(discount, 0)
        for k in self.ks:
            kk = min(k, k_max)
            h = hits[:, :kk]
            recall = h.sum(1) / n_pos
            ndcg = (h * discount[:kk]).sum(1) / cum_disc[(torch.clamp(n_pos, max=kk) - 1).long()]
            self.sums[f"recall@{k}"] += float(recall.sum())
            self.sums[f"ndcg@{k}"] += float(ndcg.sum())
            if self.kept is not None:
                self.kept[f"recall@{k}"].append(recall.numpy())
                self.kept[f"ndcg@{k}"].append(ndcg.numpy())
        self.rows += int(keep.sum())

    def row_values(self, key: str) -> np.ndarray:
        """Each counted row's value of metric `key` ("recall@20"), in the order the rows were added
        (rows without a positive are not counted); needs keep_rows."""
        if self.kept is None:
            raise ValueError("row_values needs RankAccumulator(..., keep_rows=True)")
        return np.concatenate(self.kept[key]) if self.kept[key] else np.zeros(0)

    def result(self) -> dict[str, float]:
        """The mean of each metric over the rows added ({"recall@k": ..., "ndcg@k": ..., "n_rows": n})."""
        out = {key: (val / self.rows if self.rows else 0.0) for key, val in self.sums.items()}
        out["n_rows"] = self.rows
        return out


def rank_metrics(
    scores: torch.Tensor, positives: Rows, exclude: Rows | None = None, ks: Sequence[int] = (10, 20)
) -> dict:
    """Recall@K and NDCG@K for a full score matrix [n_users, n_items]; keys 'recall@10', 'ndcg@20', ..."""
    acc = RankAccumulator(ks)
    acc.add(scores, positives, exclude)
    return acc.result()


def ranked_metrics_batched(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    users: np.ndarray,
    positives: Rows,
    exclude: Rows | None,
    ks: Sequence[int] = (10, 20),
    batch_users: int = 4096,
    rows: str | None = None,
) -> dict:
    """rank_metrics over `users` in batches: score_fn(user_ids) -> [batch, n_items].

    `positives[j]` / `exclude[j]` belong to `users[j]`; memory is bounded by the batch size.
    `rows`: a metric ("recall@20") whose per-user values are returned too, under "rows" (one per
    user with a positive, in `users`' order): what a paired interval between two models needs.
    """
    acc = RankAccumulator(ks, keep_rows=rows is not None)
    for start in range(0, len(users), batch_users):
        idx = slice(start, start + batch_users)
        batch = torch.as_tensor(np.asarray(users[idx]), dtype=torch.long)
        with torch.no_grad():
            scores = score_fn(batch)
        acc.add(scores, positives[idx], exclude[idx] if exclude is not None else None)
    return acc.result() | ({"rows": acc.row_values(rows)} if rows is not None else {})


def popularity_scores(train: np.ndarray, n_items: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """users -> [batch, n_items]: every user's row is the items' counts in `train` ((user,
    item) pairs). The ranking of a recommender that knows nothing about the user: the
    reference a user without data (an erased one) is judged against."""
    counts = torch.as_tensor(np.bincount(np.asarray(train)[:, 1], minlength=n_items), dtype=torch.float32)
    return lambda users: counts.expand(len(users), -1)
