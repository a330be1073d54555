"""ScaleGUN (Yi et al., "Scalable and Certifiable Graph Unlearning", 2025) in the setting of a
multimodal graph recommender.

What ScaleGUN does: a decoupled GNN propagates fixed node features once (Z = sum_l w_l P^l X)
and trains a linear model on Z with a noise term b^T theta in its loss. On an edge or node
deletion it (1) updates Z for the changed graph by lazy local propagation, with a bounded
approximation error; (2) updates the linear model by one Newton step on what remains,
theta' = theta* - H^-1 grad L(theta*; D_r, G_r), where the gradient is that of the removed samples and
of the rows whose propagated features changed; and (3) certifies (epsilon, delta)-unlearning while the
norm of the gradient left over stays under a budget that the training noise b pays for
(retraining once it does not).

Adaptation here (one step, no epochs):
1. Propagation: the graphs are rebuilt exactly from the retain set (`prepare`, cheap at these
   sizes), so step (1)'s approximation error is zero; rows private to deleted entities are
   erased exactly, as for every method here.
2. The Newton step is taken on the parameters the backbone's propagation acts on linearly,
   `Recommender.linear_parameters()` (MGCN: the user and item ID tables, propagated by
   LightGCN and the item-item graphs; MIG-GT: the user table, the only table its linear MGDCF
   propagation reads; its item side comes from non-linear encoders, where ScaleGUN's analysis
   has nothing to say, so they stay as they are). The gradient at theta* is estimated without a
   sum over all of D: with grad L(theta*; D, G) ~ 0 at convergence,
       grad L(theta*; D_r, G_r) = [grad L(S; G_r) - grad L(S; G)] * |S| / |D_r|  -  grad L(D_f; G) * |D_f| / |D_r|
   (S: the retain pairs near the deletion, `sample` at most, with one fixed negative each;
   per-pair mean losses; dropout off). H is the Hessian of that estimate (the first term's),
   damped by `damping` (these losses are not convex: the damping plays the strong-convexity
   constant lambda of ScaleGUN's analysis); H^-1 g by conjugate gradient, `cg_iters` products.
3. The certificate: the gradient left over after the step, r = ||grad L(theta'; D_r, G_r)|| (the
   same estimate at theta'), would
   bound ||theta' - theta_r*|| by r / lambda for a lambda-strongly convex loss, and training with ScaleGUN's
   loss noise of scale sigma = (r / lambda) sqrt(2 ln(1.25 / delta)) / epsilon would make that
   (epsilon, delta)-certified. Neither holds here (a non-convex loss, a base model trained without the
   noise): the log records r, the bound and that sigma, and the certificate is stated as not
   holding. No noise is added at unlearning time (ScaleGUN adds none there either).
The common final repair follows, as for every approximate method.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import torch

from tru.config import Params
from tru.models.base import Recommender
from tru.train import NegativeSampler, seed_everything
from tru.unlearning.registry import UnlearnContext, UnlearnResult, register_method
from tru.unlearning.steps import (
    erased_row_guard,
    gradients_only_for,
    neighbourhood_sample,
    prepare,
    probe_metrics,
)


def _mean_loss(model: Recommender, pairs: np.ndarray, negs: np.ndarray) -> torch.Tensor:
    """The model's training loss on (user, item) `pairs` with one negative each."""
    loss, _ = model.loss(torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1]), torch.as_tensor(negs))
    return loss


def _grad(
    model: Recommender,
    params: Sequence[torch.Tensor],
    pairs: np.ndarray,
    negs: np.ndarray,
    create_graph: bool = False,
) -> tuple[torch.Tensor, ...]:
    """The gradient of `_mean_loss` with respect to `params`."""
    return torch.autograd.grad(_mean_loss(model, pairs, negs), params, create_graph=create_graph)


def _norm(ts: Sequence[torch.Tensor]) -> float:
    """The Euclidean norm of a list of tensors taken as one vector."""
    return math.sqrt(sum(float((t * t).sum()) for t in ts))


def conjugate_gradient(
    hvp: Callable[[list[torch.Tensor]], Sequence[torch.Tensor]],
    b: Sequence[torch.Tensor],
    iters: int,
    tol: float = 1e-6,
) -> tuple[list[torch.Tensor], dict]:
    """Solve H x = b for symmetric positive definite H given as the product function `hvp`, at
    most `iters` products; returns x and {"iterations", "relative_residual"}."""
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    p = [t.clone() for t in b]
    rs = sum(float((t * t).sum()) for t in r)
    b_norm = math.sqrt(rs)
    done = 0  # the iterations started (the last one may stop early)
    for it in range(1, iters + 1):
        done = it
        hp = hvp(p)
        php = sum(float((a * c).sum()) for a, c in zip(p, hp))
        if php <= 0:  # not positive definite along p: stop where we are
            break
        alpha = rs / php
        x = [a + alpha * c for a, c in zip(x, p)]
        r = [a - alpha * c for a, c in zip(r, hp)]
        rs_new = sum(float((t * t).sum()) for t in r)
        if math.sqrt(rs_new) <= tol * max(b_norm, 1e-30):
            rs = rs_new
            break
        p = [a + (rs_new / rs) * c for a, c in zip(r, p)]
        rs = rs_new
    return x, {"iterations": done, "relative_residual": math.sqrt(rs) / max(b_norm, 1e-30)}


@register_method("scalegun")
def scalegun(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    """One damped Newton step on `linear_parameters()` (module docstring); the log holds the
    step, the conjugate-gradient solve and the certificate's numbers."""
    sp = params.unlearn.scalegun
    seed_everything(ctx.seed, params.train.threads)
    rng = np.random.default_rng(ctx.seed)
    model, log = prepare(ctx, params)  # exact erasure + graphs rebuilt from D_r
    guard = erased_row_guard(model, ctx.base)
    names = model.linear_parameters()
    log.update({"method": "scalegun", "newton_parameters": names, "damping": sp.damping})
    log["probe_before"] = probe_metrics(model, ctx, params.audit.gate)

    # theta* under the old graph G: the reference of the gradient difference
    old = copy.deepcopy(ctx.base)
    old.set_graph(ctx.prior.train, ctx.prior.active_items)
    old.eval()
    model.eval()
    theta_old = [dict(old.named_parameters())[n] for n in names]
    theta = [dict(model.named_parameters())[n] for n in names]
    with gradients_only_for(model, names):  # theta moves; every other parameter is a constant
        near = neighbourhood_sample(ctx, sp.sample, rng)
        near_negs = NegativeSampler(ctx.data.train, model.n_items, ctx.data.candidates).sample(near[:, 0], rng)
        n_r, n_f = max(len(ctx.data.train), 1), len(ctx.forget)
        zeros = [torch.zeros_like(t) for t in theta]
        # the constant part of the retain objective's gradient estimate: theta*'s gradient on S
        # under G, and the forgotten pairs' (theta*'s own rows, before the exact erasure)
        const = [-c * (len(near) / n_r) for c in _grad(old, theta_old, near, near_negs)] if len(near) else zeros
        if n_f:
            f_negs = NegativeSampler(ctx.prior.train, model.n_items, ctx.data.candidates).sample(ctx.forget[:, 0], rng)
            const = [a - c * (n_f / n_r) for a, c in zip(const, _grad(old, theta_old, ctx.forget, f_negs))]

        def retain_gradient() -> list[torch.Tensor]:
            """grad L(theta; D_r, G_r), estimated as in the module docstring, at the current theta."""
            if not len(near):
                return const
            return [a * (len(near) / n_r) + c for a, c in zip(_grad(model, theta, near, near_negs), const)]

        grad = retain_gradient()
        grad_norm = _norm(grad)

        def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
            """(H + damping I) v, H the Hessian of the retain objective (the estimate above)."""
            g = _grad(model, theta, near, near_negs, create_graph=True)
            gv = cast(torch.Tensor, sum((a * c).sum() for a, c in zip(g, v)))  # a tensor: theta is not empty
            hv = torch.autograd.grad(gv, theta)
            return [h * (len(near) / n_r) + sp.damping * a for h, a in zip(hv, v)]

        step, cg = (
            conjugate_gradient(hvp, grad, sp.cg_iters)
            if len(near) and grad_norm > 0
            else (zeros, {"iterations": 0, "relative_residual": 0.0})
        )
        with torch.no_grad():
            for t, s in zip(theta, step):
                t.sub_(s)
        guard()
        residual = _norm(retain_gradient())
        bound = residual / sp.damping
        sigma = bound * math.sqrt(2 * math.log(1.25 / sp.delta)) / sp.epsilon
    log.update(
        {
            "retain_pairs_in_hessian": int(len(near)),
            "gradient_norm": grad_norm,
            "step_norm": _norm(step),
            "conjugate_gradient": cg,
            "certificate": {
                "gradient_residual_norm": residual,
                "distance_bound": bound,
                "epsilon": sp.epsilon,
                "delta": sp.delta,
                "training_noise_sigma_needed": sigma,
                "holds": False,
                "why_not": "the loss is not strongly convex and theta_0 was not trained "
                "with ScaleGUN's loss perturbation",
            },
        }
    )
    log["epochs"] = [{"epoch": 1, **probe_metrics(model, ctx, params.audit.gate)}]
    model.eval()
    return UnlearnResult(model, log)
