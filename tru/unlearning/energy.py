"""Gradient energies on probe batches: how strongly each module (and branch) is pulled by the
forget objective versus the retain objective.

E_f(m) = mean squared gradient of the reverse loss on forget pairs over module m's entries;
E_r(m) = the same for the training loss on retain pairs; ratio r = E_f / (E_r + eps).
A high ratio means the module still carries forget-side influence. The component map
(the deletion heat map) and TRU's scaling and selection all read these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tru.models.base import Recommender
from tru.train import NegativeSampler

EPS = 1e-12


def reverse_bpr_from(
    u_emb: torch.Tensor,
    i_emb: torch.Tensor,
    users: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    original_users: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """L_rev = -mean log sigmoid(s(u, j) - s(u, i)): push each forgotten item i below a sampled j.

    `original_users` = (theta_0's user representations, mask of deleted users): a deleted
    user's pairs are reversed against the representation that pushed the items in training
    (fixed), not against the fresh row the exact erasure drew. Reversing against the fresh
    row would push the items away from a vector that never saw them: "anti-memory" that a
    membership attack reads as easily as memory."""
    u = u_emb[users]
    if original_users is not None:
        ref, deleted = original_users
        u = torch.where(deleted[users].unsqueeze(1), ref[users], u)
    return -F.logsigmoid((u * i_emb[neg]).sum(1) - (u * i_emb[pos]).sum(1)).mean()


def reverse_bpr(
    model: Recommender,
    users: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    original_users: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """`reverse_bpr_from` on the model's current embeddings."""
    return reverse_bpr_from(*model.embeddings(), users, pos, neg, original_users)


def probe(pairs: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded sample of at most `size` pairs (all of them if fewer)."""
    if len(pairs) <= size:
        return np.array(pairs)  # a writable copy (parquet-backed arrays are read-only)
    return pairs[np.sort(rng.choice(len(pairs), size=size, replace=False))]


def _grad_sq(model: Recommender, loss: torch.Tensor) -> dict[str, tuple[float, int]]:
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {
        n: (0.0 if g is None else float(g.detach().pow(2).sum()), p.numel()) for n, p, g in zip(names, params, grads)
    }


@dataclass
class Energies:
    """Per parameter tensor: sum of squared gradients and entry count, forget and retain side."""

    forget: dict[str, tuple[float, int]]
    retain: dict[str, tuple[float, int]]

    def group(self, groups: dict[str, list[str]]) -> dict[str, dict[str, float]]:
        """Per group of parameter names: mean forget and retain energy per entry, their ratio
        and the entry count."""
        out = {}
        for name, members in groups.items():
            n = sum(self.forget[m][1] for m in members) or 1
            ef = sum(self.forget[m][0] for m in members) / n
            er = sum(self.retain[m][0] for m in members) / n
            out[name] = {"forget_energy": ef, "retain_energy": er, "ratio": ef / (er + EPS), "params": n}
        return out


def gradient_energies(
    model: Recommender,
    forget_pairs: np.ndarray,
    retain_pairs: np.ndarray,
    sampler: NegativeSampler,
    rng: np.random.Generator,
    probe_size: int = 2048,
    original_users: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Energies:
    """E_f and E_r of every parameter tensor on one seeded probe batch per side.

    The model's graph must already be set. One forward/backward per side: the cost of two
    training steps, a small fraction of an epoch.
    """
    was = model.training
    model.train()
    try:
        f = probe(forget_pairs, probe_size, rng)
        r = probe(retain_pairs, probe_size, rng)
        fu, fi = torch.as_tensor(f[:, 0]), torch.as_tensor(f[:, 1])
        fn = torch.as_tensor(sampler.sample(f[:, 0], rng))
        ru, ri = torch.as_tensor(r[:, 0]), torch.as_tensor(r[:, 1])
        rn = torch.as_tensor(sampler.sample(r[:, 0], rng))
        forget = _grad_sq(model, reverse_bpr(model, fu, fi, fn, original_users))
        retain_loss, _ = model.loss(ru, ri, rn)
        retain = _grad_sq(model, retain_loss)
    finally:
        model.train(was)
    return Energies(forget, retain)
