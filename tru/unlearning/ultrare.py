"""UltraRE (Li et al., NeurIPS 2023: RecEraser enhanced via error decomposition) in the setting
of a multimodal graph recommender: exact unlearning by partition.

The paper: users are grouped into balanced, collaboration-preserving shards by optimal-transport
clustering of pre-trained user embeddings; one sub-model is trained per shard (SISA's
isolation); the sub-models' predictions are combined by a learned aggregator; a deletion
retrains only the shards whose data it touches. Exact by construction: no trace of the deleted
data survives in a retrained shard, and the untouched shards never saw it.

Here:
- partition: theta_0's final user embeddings (RecEraser and UltraRE cluster pre-trained ones
  too), centroids from k-means, then entropic optimal transport (Sinkhorn, uniform marginals)
  of users to centroids and a capacity-bounded assignment (at most ceil(n / K) users per
  shard), `partition_iters` rounds;
- sub-models: the backbone (with its own graphs) trained per shard on that shard's users'
  interactions, with the training recipe counted in optimizer steps (a shard with a fifth of
  the batches runs five times the epochs between validations, at most and between
  learning-rate decays; early stopping on the shard users' validation rows);
- aggregation (`combiner`): `attention` is RecEraser's learned aggregator, which UltraRE keeps:
  each shard's final embeddings are mapped into one space by a learned transfer matrix W_k; an
  item is the attention-weighted sum of its mapped embeddings over all shards (every shard
  learned the item, from its own users); a user is its own shard's mapped embedding (the other
  sub-models hold an untrained row for it, which a user partition cannot avoid). It is trained
  with BPR, the sub-models fixed, on each deletion's retained pairs (an aggregator of theta_0's
  data would have seen the deleted ones; the benchmarks score theta_0 itself, so none is kept).
  `own_shard`: each user ranked by its own shard's sub-model alone, for comparison;
- the ensemble of theta_0's data is base training, not erasure: it is trained once per
  (interaction set, backbone params, recipe, shards, seed, partition) and cached under
  `cache_dir` (the partition keys it because theta_0 decides it: another base model of the same
  data gets its own ensemble); its time (the partition's alone when cached) is logged as
  `setup_seconds` and left out of the method's seconds;
- a deletion retrains, from scratch on its retained interactions, every shard holding a deleted
  user or a forgotten interaction; random deletions touch most shards (the known weakness of
  partition-based unlearning), item deletions every shard that rated the item.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from tru.checkpoint import load_checkpoint, save_checkpoint
from tru.config import Params, TrainParams
from tru.io import read_json, write_json
from tru.models import backbone_for
from tru.models.base import Recommender
from tru.models.losses import bpr_l2_loss
from tru.train import EvalSet, NegativeSampler, Resume, fit, seed_everything
from tru.unlearning.registry import UnlearnContext, UnlearnResult, register_method


class Aggregator(nn.Module):
    """RecEraser's attention aggregation over K shards' fixed embeddings [K, n, d]: a transfer
    matrix per shard (identity at the start), attention over shards for items, the own shard
    for users."""

    def __init__(self, shards: int, dim: int):
        super().__init__()
        self.transfer = nn.Parameter(torch.eye(dim).expand(shards, dim, dim).clone())
        self.attention = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))

    def items(self, item_emb: torch.Tensor) -> torch.Tensor:
        """Combined item embeddings [n_items, dim] from the shards' [K, n_items, dim]."""
        z = torch.einsum("knd,kde->kne", item_emb, self.transfer)
        weight = torch.softmax(self.attention(z).squeeze(-1), dim=0)
        return (weight.unsqueeze(-1) * z).sum(0)

    def users(self, user_emb: torch.Tensor, users: torch.Tensor, shard: torch.Tensor) -> torch.Tensor:
        """Embeddings [len(users), dim] of `users`, each from its own shard `shard` (transferred)."""
        out = torch.empty(len(users), user_emb.shape[-1])
        for k in torch.unique(shard).tolist():
            sel = torch.nonzero(shard == k).squeeze(1)
            out = out.index_copy(0, sel, user_emb[k, users[sel]] @ self.transfer[k])
        return out


def shard_embeddings(shards) -> tuple[torch.Tensor, torch.Tensor]:
    """Every shard's final user and item embeddings, stacked [K, n, d] (no gradient)."""
    with torch.no_grad():
        embs = [m.embeddings() for m in shards]
    return torch.stack([u for u, _ in embs]), torch.stack([i for _, i in embs])


def fit_aggregator(
    shards,
    user_shard: np.ndarray,
    pairs: np.ndarray,
    candidates,
    epochs: int,
    lr: float,
    batch_size: int,
    reg_weight: float,
    seed: int,
) -> tuple[Aggregator, list[float]]:
    """Train the aggregator with BPR on `pairs`, the sub-models fixed; returns it (in eval mode)
    and each epoch's summed loss."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    user_emb, item_emb = shard_embeddings(shards)
    agg = Aggregator(len(shards), user_emb.shape[-1])
    opt = torch.optim.Adam(agg.parameters(), lr=lr)
    sampler = NegativeSampler(pairs, item_emb.shape[1], candidates)
    owner = torch.as_tensor(np.asarray(user_shard, dtype=np.int64))
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(pairs))
        total = 0.0
        for s in range(0, len(order), batch_size):
            b = pairs[order[s : s + batch_size]]
            u, i = torch.as_tensor(b[:, 0]), torch.as_tensor(b[:, 1])
            n = torch.as_tensor(sampler.sample(b[:, 0], rng))
            items = agg.items(item_emb)
            eu, ei, en = agg.users(user_emb, u, owner[u]), items[i], items[n]
            bpr, reg = bpr_l2_loss(eu, ei, en, reg_weight, len(b))
            loss = bpr + reg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        losses.append(total)
    agg.eval()
    return agg, losses


class ShardEnsemble(Recommender):
    """K sub-models; user u is scored by the sub-model of its shard, or through the learned
    aggregator when there is one."""

    backbone_name = "ultrare"

    def __init__(self, shards: list[Recommender], user_shard: np.ndarray, aggregator: Aggregator | None = None):
        nn.Module.__init__(self)
        self.shards = nn.ModuleList(shards)
        self.user_shard = torch.as_tensor(np.asarray(user_shard, dtype=np.int64))
        self.n_users, self.n_items = shards[0].n_users, shards[0].n_items
        self.aggregator = aggregator

    def _models(self) -> list[Recommender]:
        """The sub-models in shard order; typed (nn.ModuleList yields plain Modules)."""
        return cast("list[Recommender]", list(self.shards))

    def set_graph(self, pairs: np.ndarray, active_items: np.ndarray | None = None) -> None:
        """Each sub-model's graphs from its own shard's users' pairs."""
        owner = self.user_shard.numpy()[pairs[:, 0]]
        for k, model in enumerate(self._models()):
            model.set_graph(pairs[owner == k], active_items)

    def score_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """users -> score rows [batch, n_items]: the aggregator's, else each user's own shard's."""
        aggregator = self.aggregator
        if aggregator is not None:
            user_emb, item_emb = shard_embeddings(self.shards)
            with torch.no_grad():
                items_t = aggregator.items(item_emb).T.contiguous()

            def combined(users: torch.Tensor) -> torch.Tensor:
                users = torch.as_tensor(users)
                with torch.no_grad():
                    return aggregator.users(user_emb, users, self.user_shard[users]) @ items_t

            return combined
        fns = [m.score_fn() for m in self._models()]

        def score(users: torch.Tensor) -> torch.Tensor:
            users = torch.as_tensor(users)
            out = torch.empty(len(users), self.n_items)
            shard = self.user_shard[users]
            for k, fn in enumerate(fns):
                sel = torch.nonzero(shard == k).squeeze(1)
                if len(sel):
                    out[sel] = fn(users[sel])
            return out

        return score


def balanced_partition(emb: np.ndarray, k: int, seed: int, iters: int = 3) -> np.ndarray:
    """Shard of each row: k-means centroids, then Sinkhorn transport to them with uniform
    marginals and a greedy assignment capped at ceil(n / k) rows per shard."""
    from sklearn.cluster import KMeans  # ~0.3 s to import; only this partition needs it

    n = len(emb)
    k = max(1, min(k, n))
    x = np.asarray(emb, dtype=np.float64)
    centres = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x).cluster_centers_
    cap = math.ceil(n / k)
    assign = np.zeros(n, dtype=np.int64)
    for _ in range(max(1, iters)):
        cost = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        eps = 0.05 * float(np.median(cost)) or 1.0
        kern = np.exp(-(cost - cost.min(1, keepdims=True)) / eps)
        a, b = np.full(n, 1.0 / n), np.full(k, 1.0 / k)
        v = np.ones(k)
        for _ in range(200):  # Sinkhorn
            u = a / np.maximum(kern @ v, 1e-300)
            v = b / np.maximum(kern.T @ u, 1e-300)
        plan = u[:, None] * kern * v[None]
        order = np.argsort(-plan, axis=None, kind="stable")
        assign[:] = -1
        count = np.zeros(k, dtype=np.int64)
        for flat in order:
            i, j = divmod(int(flat), k)
            if assign[i] < 0 and count[j] < cap:
                assign[i], count[j] = j, count[j] + 1
            if count.sum() == n:
                break
        centres = np.stack([x[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)])
    return assign


# the recipe's epoch counts a shard scales to steps (shard_recipe)
STEP_COUNTED = ("eval_every", "max_epochs", "lr_decay_every", "checkpoint_every")


def shard_recipe(train: TrainParams, n_pairs: int, n_shard: int) -> TrainParams:
    """The training recipe for a shard of `n_shard` of the data's `n_pairs` pairs, counted in
    optimizer steps: the epochs between validations (so `patience`, counted in validations, too),
    max_epochs, lr_decay_every and checkpoint_every scaled by the data's batches per epoch over
    the shard's, so a sub-model gets the steps, the learning rate at each step and the
    validations that a model of all the data gets. Counted in epochs, a small shard's patience
    ran out while its loss still sat at the starting plateau (MGCN leaves it after hundreds of
    steps, a few of the full data's epochs but tens of a small shard's), at a noise peak of its
    validation: a sub-model that ranked below popularity, and an unfair baseline."""
    ratio = math.ceil(n_pairs / train.batch_size) / max(1, math.ceil(n_shard / train.batch_size))
    return train.model_copy(update={k: math.ceil(getattr(train, k) * ratio) for k in STEP_COUNTED})


def train_shard(
    params: Params,
    data,
    pairs_k: np.ndarray,
    users_k: np.ndarray,
    seed: int,
    candidates,
    desc: str,
    resume: Path | None = None,
) -> tuple[Recommender, int, float]:
    """A shard's sub-model trained on `pairs_k` (validation on the shard's users `users_k`) with
    the training recipe counted in steps of `data`'s (shard_recipe); with `resume`, fit
    snapshots it there (a finished shard's last snapshot replays at most checkpoint_every
    epochs). Progress as the training recipe's (a bar on a terminal, else a line every
    checkpoint_every epochs), named by `desc`. Returns (model, best epoch, the training seconds
    earlier processes had recorded)."""
    seed_everything(seed, params.train.threads)
    model = backbone_for(params.model, data)
    valid = data.valid[np.isin(data.valid[:, 0], users_k)]
    res = fit(
        model,
        pairs_k,
        EvalSet.build(valid, pairs_k, data.n_users),
        shard_recipe(params.train, len(data.train), len(pairs_k)),
        seed,
        candidates=candidates,
        desc=desc,
        resume=resume,
    )
    return res.model, res.best_epoch, res.resumed_seconds


def _ensemble_key(ctx: UnlearnContext, params: Params, assign: np.ndarray) -> str:
    """The cache key of theta_0's ensemble: its data, recipe and seed, and its partition (which
    theta_0's user embeddings decide: another base model of the same data is another key)."""
    up = params.unlearn.ultrare
    h = hashlib.sha256(np.ascontiguousarray(ctx.prior.train).tobytes())
    h.update(np.ascontiguousarray(assign, dtype=np.int64).tobytes())
    h.update(
        json.dumps(
            {
                "backbone": params.model.backbone,
                "model": getattr(params.model, params.model.backbone).model_dump(),
                "train": params.train.recipe(),
                "step_counted": STEP_COUNTED,  # shard_recipe's (an ensemble from epoch counts is another)
                "shards": up.shards,
                "iters": up.partition_iters,
                "seed": params.seed,
            },
            sort_keys=True,
        ).encode()
    )
    return h.hexdigest()[:16]


def original_ensemble(ctx: UnlearnContext, params: Params) -> tuple[ShardEnsemble, dict]:
    """The shard ensemble of theta_0's data: from the cache, or trained (and cached) now."""
    up = params.unlearn.ultrare
    t0 = time.perf_counter()
    with torch.no_grad():
        user_emb = ctx.base.embeddings()[0].detach().numpy()
    assign = balanced_partition(user_emb, up.shards, params.seed, up.partition_iters)
    folder = Path(up.cache_dir) / _ensemble_key(ctx, params, assign)
    info = folder / "ensemble.json"
    if info.is_file():
        meta = read_json(info)
        shards = [load_checkpoint(folder / f"shard-{k}", ctx.prior.features)[0] for k in range(meta["shards"])]
        ens = ShardEnsemble(shards, np.asarray(meta["user_shard"], dtype=np.int64))
        return ens, {"cached": True, "setup_seconds": time.perf_counter() - t0, "folder": str(folder)}
    n_shards = int(assign.max()) + 1
    print(f"ultrare: training the original data's ensemble of {n_shards} shards once (cached in {folder})", flush=True)
    shards = []
    for k in range(n_shards):
        users_k = np.flatnonzero(assign == k)
        pairs_k = ctx.prior.train[np.isin(ctx.prior.train[:, 0], users_k)]
        if (folder / f"shard-{k}" / "checkpoint.json").is_file():  # a killed run had trained it
            shards.append(load_checkpoint(folder / f"shard-{k}", ctx.prior.features)[0])
            continue
        resume = folder / f"shard-{k}.resume"
        desc = f"ultrare shard {k} ({k + 1} of {n_shards})"
        model, _, _ = train_shard(params, ctx.prior, pairs_k, users_k, params.seed + k, None, desc, resume)
        save_checkpoint(folder / f"shard-{k}", model, {"shard": k, "users": int(len(users_k))})
        Resume(resume).clear()
        shards.append(model)
    write_json(info, {"shards": len(shards), "user_shard": assign.tolist()})
    return ShardEnsemble(shards, assign), {
        "cached": False,
        "setup_seconds": time.perf_counter() - t0,
        "folder": str(folder),
    }


@register_method("ultrare")
def ultrare(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    """Retrain from scratch every shard the batch touches, reuse the others, and (combiner
    `attention`) train the aggregator again on D_r; the log names the touched shards."""
    up = params.unlearn.ultrare
    ens, setup = original_ensemble(ctx, params)
    assign = ens.user_shard.numpy()
    touched = sorted(set(assign[ctx.forget[:, 0]].tolist()) | set(assign[np.asarray(ctx.new_users, np.int64)].tolist()))
    shards, best, resumed = ens._models(), {}, 0.0
    print(f"ultrare: retraining the {len(touched)} of {len(shards)} shards the deletion touches", flush=True)
    for i, k in enumerate(touched, 1):
        users_k = np.flatnonzero(assign == k)
        pairs_k = ctx.data.train[np.isin(ctx.data.train[:, 0], users_k)]
        shards[k], best[k], before = train_shard(
            params,
            ctx.data,
            pairs_k,
            users_k,
            params.seed + k,
            ctx.data.candidates,
            f"ultrare retrain shard {k} ({i} of {len(touched)})",
            ctx.resume_folder(f"ultrare-shard-{k}"),
        )
        resumed += before
    model = ShardEnsemble(shards, assign)
    model.set_graph(ctx.data.train, ctx.data.active_items)
    agg_log: dict[str, object] = {"combiner": up.combiner}
    if up.combiner == "attention":
        # trained again on the retained pairs: it saw the deleted data
        model.aggregator, losses = fit_aggregator(
            shards,
            assign,
            ctx.data.train,
            ctx.data.candidates,
            up.combiner_epochs,
            up.combiner_lr,
            params.train.batch_size,
            getattr(params.model, params.model.backbone).reg_weight,
            params.seed,
        )
        agg_log["losses"] = losses
    model.eval()
    log = {
        "method": "ultrare",
        "shards": len(shards),
        "touched_shards": touched,
        "aggregator": agg_log,
        "shard_users": np.bincount(assign, minlength=len(shards)).tolist(),
        "best_epoch": max(best.values()) if best else 0,
        "shard_best_epochs": {str(k): v for k, v in best.items()},
        "ensemble": setup,
        "setup_seconds": setup["setup_seconds"],
        "resumed_seconds": resumed,
    }
    return UnlearnResult(model, log)
