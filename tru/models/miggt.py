"""MIG-GT (Hu, Hooi, He, Wei; AAAI 2025) in plain PyTorch, for any number of modalities.

1. Modality-independent receptive fields: one parameter-free MGDCF propagation per branch
   over the user-item graph with self-loops (symmetric normalisation), each with its own
   depth k_b: h <- beta * A h + alpha * h0, k_b times, then h / gamma_k with
   gamma_k = beta^k + alpha * sum_{i<k} beta^i.
   - id branch: input [user embeddings; 0] (no item ID embeddings, as the reference runs);
   - modality m: input [0; encoder_m(features_m)], an MLP feature dim -> hidden -> dim with
     batch norm and PReLU; users get their modality-m view from propagation alone.
   The branches are summed: the local embedding.
2. Sampling-based global transformer: every node attends, single-head, over itself and
   `num_samples` items drawn uniformly from the catalogue (active items); queries and keys are
   Linear(dim -> attention_dim), values the local embeddings themselves;
   output = w * attention + (1 - w) * local, w = attention_weight.
3. Loss: BPR + reg_weight * 1/2 ||the batch's final embeddings||^2 / batch + unsmooth_weight
   * "unsmooth": cross-entropy that makes u prefer the transformed slot of its positive item
   over the transformed slots of that item's sampled memory. The reference sums per-pair
   terms over a batch; ours is that sum divided by the batch size (the scale Adam ignores),
   so that the train recipe shared with MGCN applies.
   The reference's L2 covers every node's final embedding at every step. Ours covers the
   batch's rows, as MGCN's: under Adam the all-node form moves every user row at every
   step, so a retrain would drive a user without interactions towards 0, and re-drawing a
   deleted user's row from the initialisation (`erase_rows`) would no longer be exactly what
   a retrain leaves.

Sampling is drawn from the model's own torch.Generator, never from torch's global one:
- the generator's seed (`sample_seed`, a buffer saved with the weights) is drawn from
  torch's global generator at construction, so the run's seed fixes it like it fixes the
  weight initialisation;
- training: the generator restarts from that seed at every `set_graph`, so a fit (or an
  unlearning run, which rebuilds the graph first) sees the same samples on every run, and
  a resumed fit restores its state from the snapshot (`generator_states`);
- evaluation (eval mode): every call draws the same fixed sample (a second stream of the
  same seed), so rankings do not change from one call to the next and a reloaded checkpoint
  ranks exactly as the saved model did. (The reference code draws a fresh sample at
  inference as in training, so its rankings vary from call to call.)
Dropout, edge dropout included, uses torch's global generator, which `seed_everything` seeds.

Not kept from the reference code: the random projection of image features (`use_rp`; the
encoders take any input dimension), its built-but-unused transformers and frozen memory
tensors, the key bias (softmax over keys is blind to it) and the encoders' linear biases (the
batch norm after each subtracts them): parameters that never get a gradient would look like
untouched modules to layer selection.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tru.errors import ConfigError
from tru.models.base import Recommender, register_backbone
from tru.models.graph import SparseOp, normalized_bipartite
from tru.models.losses import bpr_l2_loss

ID_BRANCH = "id"


def mgdcf_gamma(alpha: float, beta: float, k: int) -> float:
    """The normaliser that keeps MGDCF's output on the scale of its input."""
    return beta**k + alpha * sum(beta**i for i in range(k))


def _linear(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, bias=bias)
    nn.init.xavier_uniform_(layer.weight)  # the reference's initialisation
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class ModalityEncoder(nn.Module):
    """Raw item features (a fixed, non-trainable input) -> item embedding of one modality."""

    features: torch.Tensor  # a buffer (register_buffer below)

    def __init__(self, features: np.ndarray, hidden: int, dim: int, feature_dropout: float, hidden_dropout: float):
        super().__init__()
        feats = torch.as_tensor(np.asarray(features), dtype=torch.float32).clone()
        self.register_buffer("features", feats, persistent=False)  # rebuilt from the dataset on load
        self.input_dropout = nn.Dropout(feature_dropout)
        # no bias before a batch norm: the norm subtracts it again, so it would never learn
        self.hidden = nn.Sequential(
            _linear(feats.shape[1], hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.PReLU(init=0.25),
            nn.Dropout(hidden_dropout),
        )
        self.output = nn.Sequential(_linear(hidden, dim, bias=False), nn.BatchNorm1d(dim), nn.PReLU(init=0.25))

    def forward(self) -> torch.Tensor:
        """The item embeddings of this modality [n_items, dim]."""
        return self.output(self.hidden(self.input_dropout(self.features)))


class GlobalTransformer(nn.Module):
    """One attention step of each node over a memory of sampled items (MIG-GT's z_transformer)."""

    def __init__(self, dim: int, attention_dim: int, weight: float):
        super().__init__()
        self.query = _linear(dim, attention_dim)
        self.key = _linear(dim, attention_dim, bias=False)
        self.weight = weight
        self.scale = attention_dim**-0.5

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, memory_keys: torch.Tensor) -> torch.Tensor:
        """queries [n, q, dim] attend over memory [n, s, dim] (keys [n, s, a]) -> [n, q, dim]."""
        att = torch.softmax(self.query(queries) @ memory_keys.transpose(1, 2) * self.scale, dim=-1)
        return self.weight * (att @ memory) + (1 - self.weight) * queries


@register_backbone("miggt")
class MIGGT(Recommender):
    """MIG-GT (module docstring) behind the Recommender contract; `params`: the model.miggt section."""

    sample_seed: torch.Tensor  # a buffer (register_buffer below)

    def __init__(self, params: dict, n_users: int, n_items: int, features: dict[str, np.ndarray]):
        super().__init__(n_users, n_items, params, features)
        d = int(params["embedding_dim"])
        self.hops = self._hop_counts(params)
        self.alpha = float(params["alpha"])
        self.beta = float(params["beta"])
        self.num_samples = int(params["num_samples"])
        self.reg_weight = float(params["reg_weight"])
        self.unsmooth_weight = float(params["unsmooth_weight"])
        drop = params["dropout"]
        self.edge_dropout = float(drop["edges"])

        self.user_embedding = nn.Parameter(torch.randn(n_users, d) / d**0.5)  # N(0, 1/d), as the reference
        self.user_dropout = nn.Dropout(float(drop["users"]))
        self.modal = nn.ModuleDict(
            {
                m: ModalityEncoder(f, int(params["hidden_dim"]), d, float(drop["features"]), float(drop["hidden"]))
                for m, f in features.items()
            }
        )
        self.item_dropout = nn.Dropout(float(drop["items"]))
        self.fused_dropout = nn.Dropout(float(drop["fused"]))
        self.transformer = GlobalTransformer(d, int(params["attention_dim"]), float(params["attention_weight"]))
        seed = int(torch.randint(0, 2**62, (1,)))
        self.register_buffer("sample_seed", torch.tensor([seed], dtype=torch.int64))

        self.norm_adj: SparseOp | None = None
        self.sample_pool: torch.Tensor | None = None
        self._train_generator = torch.Generator()

    def _hop_counts(self, params: dict) -> dict[str, int]:
        branches = [ID_BRANCH, *self.modality_names]
        unknown = sorted(set(params["hops"]) - set(branches))
        if unknown:
            raise ConfigError(
                f"model.miggt.hops names {', '.join(map(repr, unknown))}: not a branch of this dataset "
                f"(its branches: {', '.join(branches)})"
            )
        return {b: int(params["hops"].get(b, params["default_hops"])) for b in branches}

    # --- derived structures ---------------------------------------------------------
    def set_graph(self, pairs: np.ndarray, active_items: np.ndarray | None = None) -> None:
        """The self-looped normalised user-item graph, and the items the transformer samples
        (active ones only: a deleted item is nobody's memory). Restarts the training sampler."""
        self.norm_adj = normalized_bipartite(pairs, self.n_users, self.n_items, self_loops=True)
        if active_items is None:
            pool = torch.arange(self.n_items)
        else:
            mask = np.asarray(active_items)
            if mask.dtype != bool or mask.shape != (self.n_items,):
                raise ValueError(f"active_items must be a boolean mask of {self.n_items} items")
            pool = torch.as_tensor(np.flatnonzero(mask))
        if len(pool) == 0:
            raise ValueError("MIG-GT needs at least one active item to sample from")
        self.sample_pool = pool
        self._train_generator.manual_seed(int(self.sample_seed))

    def generator_states(self) -> dict[str, torch.Tensor]:
        """See Recommender.generator_states: the training sampler's state."""
        return {"train_sampler": self._train_generator.get_state()}

    def set_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        """See Recommender.set_generator_states."""
        self._train_generator.set_state(states["train_sampler"])

    def _samples(self) -> torch.Tensor:
        """[n_users + n_items, num_samples] item indices: each node's memory."""
        if self.training:
            gen = self._train_generator
        else:
            gen = torch.Generator().manual_seed(int(self.sample_seed) ^ 0x5EED)
        assert self.sample_pool is not None  # set_graph sets it with the graph
        n = self.n_users + self.n_items
        pick = torch.randint(0, len(self.sample_pool), (n, self.num_samples), generator=gen)
        return self.sample_pool[pick]

    # --- forward ----------------------------------------------------------------------
    def _propagate(self, x: torch.Tensor, k: int) -> torch.Tensor:
        adj = self.norm_adj
        assert adj is not None  # branch_outputs checks it
        if self.training and self.edge_dropout > 0 and k > 0:
            # one mask per branch and forward pass, shared by its hops (as the reference)
            keep = F.dropout(torch.ones(adj._nnz()), self.edge_dropout)
            adj = adj.scaled_edges(keep)
        h = x
        for _ in range(k):
            h = self.beta * (adj @ h) + self.alpha * x
        return h / mgdcf_gamma(self.alpha, self.beta, k)

    def branch_outputs(self) -> dict[str, torch.Tensor]:
        """Each branch's propagated view [n_users + n_items, dim], before the sum."""
        if self.norm_adj is None:
            raise RuntimeError("call set_graph(train_pairs) before using the model")
        users = self.user_dropout(self.user_embedding)
        out = {
            ID_BRANCH: self._propagate(
                torch.cat([users, users.new_zeros(self.n_items, users.shape[1])]), self.hops[ID_BRANCH]
            )
        }
        for m, encoder in self.modal.items():
            items = self.item_dropout(encoder())
            out[m] = self._propagate(torch.cat([items.new_zeros(self.n_users, items.shape[1]), items]), self.hops[m])
        return out

    def modality_views(self) -> dict[str, torch.Tensor]:
        """See Recommender.modality_views: the branch outputs."""
        return self.branch_outputs()

    def views_and_embeddings(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """See Recommender.views_and_embeddings (one forward pass)."""
        views = self.branch_outputs()
        return views, self._forward(views)[0]

    def _forward(
        self, views: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Final embeddings of all nodes, and what the unsmooth loss needs: the local
        embeddings, their keys and each node's memory (sampled item indices). `views`: the
        branch outputs when the caller has them already."""
        return self._transform(self.fused_dropout(sum((self.branch_outputs() if views is None else views).values())))

    def _transform(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The global transformer over the local embeddings of all nodes (their fused sum, after
        its dropout): _forward's result."""
        keys = self.transformer.key(local)
        memory_idx = self._samples() + self.n_users
        memory = torch.cat([local.unsqueeze(1), local[memory_idx]], dim=1)
        memory_keys = torch.cat([keys.unsqueeze(1), keys[memory_idx]], dim=1)
        final = self.transformer(local.unsqueeze(1), memory, memory_keys).squeeze(1)
        return final, local, keys, memory_idx

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """See Recommender.embeddings."""
        final = self._forward()[0]
        return final[: self.n_users], final[self.n_users :]

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """See Recommender.loss: BPR + L2 (+ the unsmooth term); parts `bpr`, `reg`, `unsmooth`."""
        return self._loss_of(self._forward(), users, pos, neg)

    def _loss_of(
        self,
        forward: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        users: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """`loss` of a batch given _forward's result."""
        final, local, keys, memory_idx = forward
        u_all, i_all = final[: self.n_users], final[self.n_users :]
        u, p, n = u_all[users], i_all[pos], i_all[neg]
        bpr, reg = bpr_l2_loss(u, p, n, self.reg_weight, users.shape[0])
        total = bpr + reg
        unsmooth = torch.zeros(())
        if self.unsmooth_weight > 0:
            # every slot of the positive item's memory, transformed: slot 0 is the item itself
            nodes = pos + self.n_users
            slots_idx = torch.cat([nodes.unsqueeze(1), memory_idx[nodes]], dim=1)
            slots = self.transformer(local[slots_idx], local[slots_idx], keys[slots_idx])
            logits = (slots @ u.unsqueeze(2)).squeeze(2)
            unsmooth = F.cross_entropy(logits, torch.zeros(len(users), dtype=torch.long))
            total = total + self.unsmooth_weight * unsmooth
        return total, {"bpr": float(bpr.detach()), "reg": float(reg.detach()), "unsmooth": float(unsmooth.detach())}

    def user_rows_loss(
        self, users: np.ndarray, approximate: bool = False
    ) -> Callable[..., tuple[torch.Tensor, dict[str, float]]] | None:
        """See Recommender.user_rows_loss. MIG-GT has no exact shortcut: its training-mode loss
        draws dropout over every user row, every edge and the encoders at each step, so the part
        the re-fitted rows do not move changes from step to step. With `approximate`: that
        part taken at its expectation, once (eval mode: no dropout, the whole graph, the
        encoders' running batch-norm statistics), while the re-fitted rows keep their own
        dropout, the fused dropout and the transformer's memory samples at every step, as in
        training. The id branch is linear in the user rows X, so local = C + M X (C: every
        branch with those rows at zero; M: the id propagation of their unit rows), and a step
        costs a few small products instead of a forward pass through the encoders (ML-100k: a
        user re-fit's 100 steps through `loss` took about 7 s). In eval mode it equals `loss`.
        None without `approximate`, or when M would hold more than 50 million numbers."""
        if self.norm_adj is None:
            raise RuntimeError("call set_graph(train_pairs) before using the model")
        rows = torch.as_tensor(np.unique(np.asarray(users, dtype=np.int64)))
        n = self.n_users + self.n_items
        if not approximate or len(rows) == 0 or n * len(rows) > 50_000_000:
            return None
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                views = self.branch_outputs()
                users_at_zero = self.user_embedding.detach().clone()
                users_at_zero[rows] = 0
                ego = torch.cat([users_at_zero, users_at_zero.new_zeros(self.n_items, users_at_zero.shape[1])])
                fixed = self._propagate(ego, self.hops[ID_BRANCH]) + sum(v for b, v in views.items() if b != ID_BRANCH)
                unit = torch.zeros(n, len(rows))
                unit[rows, torch.arange(len(rows))] = 1.0
                spread = self._propagate(unit, self.hops[ID_BRANCH])
        finally:
            self.train(was_training)

        def local_loss(u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
            x = self.user_dropout(self.user_embedding[rows])
            return self._loss_of(self._transform(self.fused_dropout(fixed + spread @ x)), u, pos, neg)

        return local_loss

    # --- structure for unlearning ---------------------------------------------------------
    def branches(self) -> dict[str, list[str]]:
        """id: the user embeddings; one per modality: its encoder; fusion: the global transformer
        (the one part that mixes nodes after the branches are summed)."""
        out = {ID_BRANCH: ["user_embedding"]}
        for m in self.modal:
            out[m] = [n for n, _ in self.named_parameters() if n.startswith(f"modal.{m}.")]
        out["fusion"] = [n for n, _ in self.named_parameters() if n.startswith("transformer.")]
        return out

    def selection_modules(self) -> dict[str, list[str]]:
        """See Recommender.selection_modules: the user table, each encoder's hidden and output
        layers, the transformer's query and key."""
        out = {"user_embedding": ["user_embedding"]}
        for m in self.modal:
            for part in ("hidden", "output"):
                out[f"{m}.{part}"] = [n for n, _ in self.named_parameters() if n.startswith(f"modal.{m}.{part}.")]
        for part in ("query", "key"):
            out[f"fusion.{part}"] = [n for n, _ in self.named_parameters() if n.startswith(f"transformer.{part}.")]
        return out

    def linear_parameters(self) -> list[str]:
        """See Recommender.linear_parameters: the user table."""
        # MGDCF propagates the user table linearly; items come out of non-linear encoders
        return ["user_embedding"]

    @torch.no_grad()
    def erase_rows(self, users: np.ndarray, items: np.ndarray, generator: torch.Generator) -> list[str]:
        """Deleted users' embedding rows are re-drawn from the initialisation, N(0, 1/dim).

        Items own no parameter rows: the encoders read the raw item features, a fixed input
        (not a trainable table), and there are no item ID embeddings. A deleted item leaves
        the graph and the transformer's sample pool when `set_graph` gets the retain set; its
        features stay an input, as they do for a retrain on the same catalogue."""
        rows = torch.as_tensor(np.asarray(users, dtype=np.int64))
        if not len(rows):
            return []
        d = self.user_embedding.shape[1]
        self.user_embedding[rows] = torch.randn(len(rows), d, generator=generator) / d**0.5
        return ["user_embedding"]
