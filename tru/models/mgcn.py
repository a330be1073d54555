"""MGCN (Yu, Tan, Lu, Bao; ACM MM 2023) in plain PyTorch, for any number of modalities.

1. Behaviour-guided purifier: per modality m, item_m = item_id ⊙ sigmoid(W_g (W_t feat_m)).
2. User-item view: LightGCN over the normalised bipartite graph, mean of layers 0..L.
3. Item-item views: item_m propagated over the modality's fixed kNN graph; users get R item_m.
4. Behaviour-aware fuser: attention over the modality views gives a common part; each
   view minus the common part is gated by a preference gate on the user-item view;
   side = (sum of specific parts + common) / (M + 1); final = content + side.
5. Loss: BPR + reg_weight * L2 of the batch's final embeddings / batch + cl_weight *
   (InfoNCE(side, content) for the batch's items and users, temperature cl_temperature).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tru.models.base import Recommender, register_backbone
from tru.models.graph import SparseOp, knn_graph, normalized_bipartite, user_item_block
from tru.models.losses import bpr_l2_loss


def _info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE between two views of the same nodes (row j of `a` and of `b`), the other rows
    as negatives. Callers pass each node once: a node repeated in a batch would otherwise
    count its own copies as negatives (SimGCL de-duplicates the same way)."""
    a = F.normalize(a, dim=1) * (1.0 / temperature)
    b = F.normalize(b, dim=1)
    return F.cross_entropy(a @ b.T, torch.arange(a.shape[0]))


class ModalityBranch(nn.Module):
    """One modality's parameters: its (trainable) feature table, the projection to the
    embedding size, the purifier gate and the preference gate."""

    def __init__(self, features: np.ndarray, dim: int):
        super().__init__()
        feats = torch.as_tensor(np.asarray(features), dtype=torch.float32).clone()
        self.feat = nn.Parameter(feats)  # trainable, as in MGCN (from_pretrained, freeze=False)
        self.trs = nn.Linear(feats.shape[1], dim)
        self.gate = nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid())
        self.prefer = nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid())


@register_backbone("mgcn")
class MGCN(Recommender):
    """MGCN (module docstring) behind the Recommender contract; `params`: the model.mgcn section."""

    def __init__(self, params: dict, n_users: int, n_items: int, features: dict[str, np.ndarray]):
        super().__init__(n_users, n_items, params, features)
        d = int(params["embedding_dim"])
        self.n_ui_layers = int(params["n_ui_layers"])
        self.n_mm_layers = int(params["n_mm_layers"])
        self.knn_k = int(params["knn_k"])
        self.reg_weight = float(params["reg_weight"])
        self.cl_weight = float(params["cl_weight"])
        self.cl_temperature = float(params["cl_temperature"])
        self._raw_features = {m: np.asarray(f, dtype=np.float32) for m, f in features.items()}

        self.user_embedding = nn.Parameter(torch.empty(n_users, d))
        self.item_embedding = nn.Parameter(torch.empty(n_items, d))
        nn.init.xavier_uniform_(self.user_embedding)
        nn.init.xavier_uniform_(self.item_embedding)
        self.modal = nn.ModuleDict({m: ModalityBranch(f, d) for m, f in features.items()})
        self.query_common = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))

        self.norm_adj: SparseOp | None = None
        self.R: SparseOp | None = None
        self.knn: dict[str, SparseOp] = {}
        self._knn_key: tuple | None = None

    def _branches(self) -> Iterator[tuple[str, ModalityBranch]]:
        """(modality, its branch) in order; typed (nn.ModuleDict yields plain Modules)."""
        return cast("Iterator[tuple[str, ModalityBranch]]", iter(self.modal.items()))

    # --- derived structures ---------------------------------------------------------
    def set_graph(self, pairs: np.ndarray, active_items: np.ndarray | None = None) -> None:
        """See Recommender.set_graph: the bipartite graph and its user->item block; the kNN graphs
        only when `knn_k` or the active items changed (they do not depend on the pairs)."""
        self.norm_adj = normalized_bipartite(pairs, self.n_users, self.n_items)
        self.R = user_item_block(pairs, self.n_users, self.n_items)
        key = (self.knn_k, None if active_items is None else np.asarray(active_items, dtype=bool).tobytes())
        if key != self._knn_key:  # the cache key holds every input of the kNN graphs
            self.knn = {m: knn_graph(f, self.knn_k, active_items) for m, f in self._raw_features.items()}
            self._knn_key = key

    # --- forward ----------------------------------------------------------------------
    def _forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        final, side, content, _ = self._forward_views()
        return final, side, content

    def modality_views(self) -> dict[str, torch.Tensor]:
        """ "id": the user-item (content) view; each modality: its item-item view with the
        users' aggregate (before the fuser)."""
        return self.views_and_embeddings()[0]

    def views_and_embeddings(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """See Recommender.views_and_embeddings (one forward pass)."""
        final, _, content, views = self._forward_views()
        return {"id": content, **dict(zip(self.modal, views))}, final

    def _forward_views(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        if self.norm_adj is None or self.R is None:
            raise RuntimeError("call set_graph(train_pairs) before using the model")
        item_id = self.item_embedding
        ego = torch.cat([self.user_embedding, item_id], dim=0)
        layers = [ego]
        for _ in range(self.n_ui_layers):
            ego = self.norm_adj @ ego
            layers.append(ego)
        content = torch.stack(layers, dim=1).mean(dim=1)

        views = []
        for m, branch in self._branches():
            item_m = item_id * branch.gate(branch.trs(branch.feat))
            for _ in range(self.n_mm_layers):
                item_m = self.knn[m] @ item_m
            user_m = self.R @ item_m
            views.append(torch.cat([user_m, item_m], dim=0))
        att = torch.softmax(torch.cat([self.query_common(v) for v in views], dim=-1), dim=-1)
        # sum() starts from the int 0: a tensor for any number of views
        common = cast(torch.Tensor, sum(att[:, j : j + 1] * v for j, v in enumerate(views)))
        side = common
        for (_, branch), v in zip(self._branches(), views):
            side = side + branch.prefer(content) * (v - common)
        side = side / (len(views) + 1)
        return content + side, side, content, views

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """See Recommender.embeddings."""
        final, _, _ = self._forward()
        return final[: self.n_users], final[self.n_users :]

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """See Recommender.loss: BPR + L2 (+ the contrastive term); parts `bpr`, `reg`, `cl`."""
        final, side, content = self._forward()
        u_all, i_all = final[: self.n_users], final[self.n_users :]
        u, p, n = u_all[users], i_all[pos], i_all[neg]
        bpr, reg = bpr_l2_loss(u, p, n, self.reg_weight, users.shape[0])
        total = bpr + reg
        cl = torch.zeros(())
        if self.cl_weight > 0:
            s_u, s_i = side[: self.n_users], side[self.n_users :]
            c_u, c_i = content[: self.n_users], content[self.n_users :]
            items, batch_users = torch.unique(pos), torch.unique(users)
            cl = _info_nce(s_i[items], c_i[items], self.cl_temperature) + _info_nce(
                s_u[batch_users], c_u[batch_users], self.cl_temperature
            )
            total = total + self.cl_weight * cl
        return total, {"bpr": float(bpr.detach()), "reg": float(reg.detach()), "cl": float(cl.detach())}

    def user_rows_loss(
        self, users: np.ndarray, approximate: bool = False
    ) -> Callable[..., tuple[torch.Tensor, dict[str, float]]] | None:
        """See Recommender.user_rows_loss (exact, whatever `approximate` says). The user-item view is
        linear in the ID rows: with X the rows of `users`, content = C + M X, where C is the propagation
        with those rows at zero and M = mean_k A^k P the propagation of their unit rows (P), both
        computed once. The modality views and their attention do not read user rows, and the preference
        gates act row by row, so the loss of a batch needs the rows of its users and items only. Per
        step: a few hundred rows instead of the whole graph (ML-100k, MGCN: a user re-fit's 100 steps
        took 20 s through `loss`). None when M would hold more than 50 million numbers."""
        if self.norm_adj is None or self.R is None:
            raise RuntimeError("call set_graph(train_pairs) before using the model")
        rows = torch.as_tensor(np.unique(np.asarray(users, dtype=np.int64)))
        if len(rows) == 0 or (self.n_users + self.n_items) * len(rows) > 50_000_000:
            return None
        with torch.no_grad():
            base, spread = self._content_split(rows)
            _, _, _, views = self._forward_views()
            att = torch.softmax(torch.cat([self.query_common(v) for v in views], dim=-1), dim=-1)
            common = cast(torch.Tensor, sum(att[:, j : j + 1] * v for j, v in enumerate(views)))
        return self._local_loss(lambda nodes: base[nodes] + spread[nodes] @ self.user_embedding[rows], views, common)

    def item_rows_loss(self, items: np.ndarray) -> Callable[..., tuple[torch.Tensor, dict[str, float]]] | None:
        """See Recommender.item_rows_loss. Every view is linear in the item ID rows X (those of
        `items`): content = C + M X as for users (user_rows_loss); a modality's view reads
        them as X * g (its purifier gate of the item features, fixed here), then the kNN
        graph and the users' aggregate, so view = V + N (X * g) with V the view with those
        rows at zero and N the propagation of their unit rows, both computed once. The
        attention, the preference gates and the loss act row by row, so a batch needs the
        rows of its users and items only. (Baby-scale, 1,000 users deleted: the item re-fit's
        30 steps through `loss` were most of the erasure's time.) None when one of the
        propagations would hold more than 50 million numbers."""
        if self.norm_adj is None or self.R is None:
            raise RuntimeError("call set_graph(train_pairs) before using the model")
        rows = torch.as_tensor(np.unique(np.asarray(items, dtype=np.int64)))
        if len(rows) == 0 or (self.n_users + self.n_items) * len(rows) > 50_000_000:
            return None
        with torch.no_grad():
            base, spread = self._content_split(self.n_users + rows)
            item_id = self.item_embedding.detach().clone()
            item_id[rows] = 0
            fixed, moving, gates = [], [], []
            for m, branch in self._branches():
                g = branch.gate(branch.trs(branch.feat))
                item_m, unit_m = item_id * g, torch.zeros(self.n_items, len(rows))
                unit_m[rows, torch.arange(len(rows))] = 1.0
                for _ in range(self.n_mm_layers):
                    item_m, unit_m = self.knn[m] @ item_m, self.knn[m] @ unit_m
                fixed.append(torch.cat([self.R @ item_m, item_m], dim=0))
                moving.append(torch.cat([self.R @ unit_m, unit_m], dim=0))
                gates.append(g[rows])

        def views(nodes: torch.Tensor) -> list[torch.Tensor]:
            x = self.item_embedding[rows]
            return [v[nodes] + n_[nodes] @ (x * g) for v, n_, g in zip(fixed, moving, gates, strict=True)]

        return self._local_loss(lambda nodes: base[nodes] + spread[nodes] @ self.item_embedding[rows], views, None)

    def _content_split(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The content view as C + M X in the ID rows X of `nodes` (graph node indices): C, the
        propagation with those rows at zero, and M, that of their unit rows ([all nodes,
        len(nodes)]); no gradient."""
        adj = self.norm_adj
        assert adj is not None  # the callers checked set_graph
        n = self.n_users + self.n_items
        ego = torch.cat([self.user_embedding, self.item_embedding], dim=0).detach().clone()
        ego[nodes] = 0
        unit = torch.zeros(n, len(nodes))
        unit[nodes, torch.arange(len(nodes))] = 1.0
        base_layers, unit_layers = [ego], [unit]
        for _ in range(self.n_ui_layers):
            base_layers.append(adj @ base_layers[-1])
            unit_layers.append(adj @ unit_layers[-1])
        return torch.stack(base_layers, dim=1).mean(dim=1), torch.stack(unit_layers, dim=1).mean(dim=1)

    def _local_loss(self, content_at, views, common) -> Callable[..., tuple[torch.Tensor, dict[str, float]]]:
        """`loss` of a batch from its nodes' rows alone: `content_at(nodes)`, the content view of
        those nodes; `views`, the modality views (a list of [nodes, d] tables, or a function of
        the nodes); `common`, their attention-weighted sum ([nodes, d]; None: computed from the
        nodes' views)."""
        branches = list(self._branches())

        def loss(users_: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
            nodes, where = torch.unique(
                torch.cat([users_, self.n_users + pos, self.n_users + neg]), return_inverse=True
            )
            content = content_at(nodes)
            vs = views(nodes) if callable(views) else [v[nodes] for v in views]
            if common is None:
                att = torch.softmax(torch.cat([self.query_common(v) for v in vs], dim=-1), dim=-1)
                shared = cast(torch.Tensor, sum(att[:, j : j + 1] * v for j, v in enumerate(vs)))
            else:
                shared = common[nodes]
            side = shared
            for (_, branch), v in zip(branches, vs):
                side = side + branch.prefer(content) * (v - shared)
            side = side / (len(vs) + 1)
            final = content + side
            b = users_.shape[0]
            u, p, ng = final[where[:b]], final[where[b : 2 * b]], final[where[2 * b :]]
            bpr, reg = bpr_l2_loss(u, p, ng, self.reg_weight, b)
            total = bpr + reg
            cl = torch.zeros(())
            if self.cl_weight > 0:
                items = torch.searchsorted(nodes, self.n_users + torch.unique(pos))  # nodes are sorted
                batch_users = torch.searchsorted(nodes, torch.unique(users_))
                cl = _info_nce(side[items], content[items], self.cl_temperature) + _info_nce(
                    side[batch_users], content[batch_users], self.cl_temperature
                )
                total = total + self.cl_weight * cl
            return total, {"bpr": float(bpr.detach()), "reg": float(reg.detach()), "cl": float(cl.detach())}

        return loss

    # --- structure for unlearning ---------------------------------------------------------
    def branches(self) -> dict[str, list[str]]:
        """See Recommender.branches: id = the ID tables; per modality its branch; fusion = the
        common-part attention."""
        out = {"id": ["user_embedding", "item_embedding"]}
        for m in self.modal:
            out[m] = [n for n, _ in self.named_parameters() if n.startswith(f"modal.{m}.")]
        out["fusion"] = [n for n, _ in self.named_parameters() if n.startswith("query_common.")]
        return out

    def selection_modules(self) -> dict[str, list[str]]:
        """See Recommender.selection_modules: each ID table, each part of each modality branch,
        the fusion attention."""
        out = {"user_embedding": ["user_embedding"], "item_embedding": ["item_embedding"]}
        for m in self.modal:
            for part in ("feat", "trs", "gate", "prefer"):
                prefix = f"modal.{m}.{part}"
                out[f"{m}.{part}"] = [
                    n for n, _ in self.named_parameters() if n == prefix or n.startswith(prefix + ".")
                ]
        out["fusion.query_common"] = [n for n, _ in self.named_parameters() if n.startswith("query_common.")]
        return out

    def linear_parameters(self) -> list[str]:
        """See Recommender.linear_parameters: the user and item ID tables."""
        # LightGCN propagates [users; items] ID rows, and each item-item graph propagates the
        # ID rows times a gate that is constant in them
        return ["user_embedding", "item_embedding"]

    def item_tables(self) -> list[str]:
        """See Recommender.item_tables: the item ID table."""
        return ["item_embedding"]

    @torch.no_grad()
    def erase_rows(self, users: np.ndarray, items: np.ndarray, generator: torch.Generator) -> list[str]:
        """See Recommender.erase_rows: the ID rows re-drawn from the initialisation, a deleted
        item's feature rows back to the raw features."""
        user_rows = torch.as_tensor(np.asarray(users, dtype=np.int64))
        item_rows = torch.as_tensor(np.asarray(items, dtype=np.int64))
        changed = []
        for name, table, rows in (
            ("user_embedding", self.user_embedding, user_rows),
            ("item_embedding", self.item_embedding, item_rows),
        ):
            if len(rows):
                # xavier_uniform over the whole table, as at construction: U(-b, b)
                bound = (6.0 / (table.shape[0] + table.shape[1])) ** 0.5
                table[rows] = (torch.rand(len(rows), table.shape[1], generator=generator) * 2 - 1) * bound
                changed.append(name)
        if len(item_rows):
            for m, branch in self._branches():
                # a deleted item's feature rows get no gradient in a retrain: they stay raw
                branch.feat[item_rows] = torch.as_tensor(self._raw_features[m][item_rows.numpy()])
                changed.append(f"modal.{m}.feat")
        return changed
