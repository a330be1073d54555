"""MultiDelete (Cheng & Amiri, ECCV 2024) in the setting of a multimodal graph recommender.

The paper unlearns image-text pairs from a vision-language model with three losses:
modality decoupling (the deleted pairs' unimodal embeddings stop matching each other),
multimodal knowledge retention and unimodal knowledge retention (on retained data the
unlearned model's fused and per-modality embeddings stay where the original model had them).

Our adaptation, where a deleted "pair" is a forgotten interaction (u, i):
- decoupling: for every branch b the backbone declares in `modality_views()` ("id" and each
  modality), the user's and the item's view stop scoring each other:
  mean over b of mean softplus(<v_b(u), v_b(i)>) on the forget batch (the binary
  cross-entropy of "no match" on the branch's own score);
- multimodal retention: mean squared distance between the model's fused embeddings and
  theta_0's, over the users and items of a sample of retained pairs;
- unimodal retention: the same for every branch's view.
Total = decouple_weight * decoupling + multimodal_retention * MKR + unimodal_retention * UKR,
Adam at `unlearn.lr` on every parameter, `multidelete.epochs` passes over D_f; then the common
final repair (tru/unlearning/repair.py), as for every approximate method. The steps run
in eval mode (no dropout), so that the retention terms compare like with like. As everywhere, rows
private to deleted entities are first erased exactly and the graphs rebuilt from D_r
(`prepare`); the erased rows are held where the exact erasure put them.

What does not carry over: the paper's encoders see the raw image and text of a pair; here a
user has no content of its own, so a user's modality view is what the graph gives it (MGCN:
the aggregate of its items' views; MIG-GT: the propagated branch), and a deleted user's
views are already empty once the graph is rebuilt: decoupling matters for item- and
interaction-level deletion.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from tru.config import Params
from tru.train import seed_everything
from tru.unlearning.registry import UnlearnContext, UnlearnResult, register_method
from tru.unlearning.steps import erased_row_guard, prepare, probe_metrics


def decoupling_loss(
    views: dict[str, torch.Tensor], users: torch.Tensor, items: torch.Tensor, n_users: int
) -> torch.Tensor:
    """Mean over branches of mean softplus(<user view, item view>) of the given pairs."""
    terms = [F.softplus((v[users] * v[items + n_users]).sum(1)).mean() for v in views.values()]
    return torch.stack(terms).mean()


def retention_loss(current: torch.Tensor, reference: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the nodes' rows from the reference's."""
    return (current[nodes] - reference[nodes]).pow(2).sum(1).mean()


@register_method("multidelete")
def multidelete(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    """`unlearn.multidelete.epochs` passes over D_f of the weighted decoupling and retention
    losses (module docstring); the log holds each epoch's mean terms and probe metrics."""
    up, md = params.unlearn, params.unlearn.multidelete
    seed_everything(ctx.seed, params.train.threads)
    model, log = prepare(ctx, params)
    guard = erased_row_guard(model, ctx.base)
    n_users = model.n_users
    was_training = ctx.base.training
    ctx.base.eval()
    with torch.no_grad():
        views, final = ctx.base.views_and_embeddings()
        ref_views = {b: v.detach().clone() for b, v in views.items()}
        ref_final = final.detach().clone()
    ctx.base.train(was_training)
    rng = np.random.default_rng(ctx.seed)
    opt = torch.optim.Adam(model.parameters(), lr=up.lr)
    retain = ctx.data.train
    log.update(
        {
            "method": "multidelete",
            "weights": md.model_dump(),
            "probe_before": probe_metrics(model, ctx, params.audit.gate),
        }
    )
    epochs = []
    for epoch in range(1, md.epochs + 1):
        e0 = time.perf_counter()
        # eval mode: no dropout, MIG-GT's fixed inference sample, batch norm on its running
        # statistics; the retention terms then compare like with like (theta_0's reference
        # embeddings are eval-mode ones) and are exactly zero until the decoupling moves something
        model.eval()
        order = rng.permutation(len(ctx.forget))
        sums = {"decoupling": 0.0, "multimodal_retention": 0.0, "unimodal_retention": 0.0}
        steps = 0
        for s in range(0, len(order), up.forget_batch_size):
            b = ctx.forget[order[s : s + up.forget_batch_size]]
            r = (
                retain[rng.integers(0, len(retain), size=min(md.retain_batch_size, len(retain)))]
                if len(retain)
                else retain
            )
            nodes = torch.as_tensor(np.unique(np.concatenate([r[:, 0], r[:, 1] + n_users])))
            views, final = model.views_and_embeddings()
            dec = decoupling_loss(views, torch.as_tensor(b[:, 0]), torch.as_tensor(b[:, 1]), n_users)
            mkr = retention_loss(final, ref_final, nodes) if len(nodes) else final.new_zeros(())
            ukr = (
                torch.stack([retention_loss(v, ref_views[k], nodes) for k, v in views.items()]).mean()
                if len(nodes)
                else final.new_zeros(())
            )
            loss = md.decouple_weight * dec + md.multimodal_retention * mkr + md.unimodal_retention * ukr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            guard()
            for k, v in (("decoupling", dec), ("multimodal_retention", mkr), ("unimodal_retention", ukr)):
                sums[k] += float(v.detach())
            steps += 1
        row = {
            "epoch": epoch,
            **{k: v / max(steps, 1) for k, v in sums.items()},
            **probe_metrics(model, ctx, params.audit.gate),
            "seconds": time.perf_counter() - e0,
        }
        epochs.append(row)
    log["epochs"] = epochs
    model.eval()
    return UnlearnResult(model, log)
