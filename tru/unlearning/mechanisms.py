"""TRU's three mechanisms, each a pure function of the model and probe numbers.

1. Branch-wise modality scaling: s_b = clip((r_b / geomean r)^gamma, s_min, s_max) with
   r_b = E_f(b) / E_r(b). A branch that still carries forget-side influence (high ratio) gets
   a stronger reverse step, one that has forgotten a weaker one. The geometric mean (not
   the arithmetic one of our design notes) centres the scales: ratios span orders of
   magnitude and an arithmetic mean is set by the largest alone.
2. Capacity-aware selection: modules sorted by sensitivity E_f/E_r, taken until they cover
   at least rho of the trainable parameters; reverse gradients elsewhere are zeroed.
3. Ranking gate: for forget pairs (u, i) whose item is still in u's top-K (retained training
   items masked), g(u, i) = sigmoid((s(u,i) - s_K(u)) / T) and 0 outside the top-K; the
   penalty lambda * mean g * softplus(s(u,i) - s_K(u)) pushes only items that still surface.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from tru.unlearning.energy import EPS


def branch_scales(
    branch_energy: dict[str, dict[str, float]], gamma: float, s_min: float, s_max: float
) -> dict[str, float]:
    """Reverse step scale per branch (mechanism 1 above) from `Energies.group` numbers."""
    ratios = {b: max(v["ratio"], EPS) for b, v in branch_energy.items() if v["forget_energy"] > 0}
    if not ratios:
        return {b: 1.0 for b in branch_energy}
    log_mean = sum(math.log(r) for r in ratios.values()) / len(ratios)
    out = {}
    for b in branch_energy:
        if b not in ratios:
            out[b] = s_min  # no forget-side gradient at all: nothing left to reverse here
            continue
        out[b] = float(min(s_max, max(s_min, math.exp(gamma * (math.log(ratios[b]) - log_mean)))))
    return out


def uniform_scales(scales: dict[str, float], branch_energy: dict[str, dict[str, float]]) -> dict[str, float]:
    """One scale for every branch: the parameter-weighted mean of `scales` (weights: each
    branch's parameter count in `branch_energy`). The control of mechanism 1: as large a
    reverse step overall, but not directed at the branches that still carry the deletion."""
    weights = {b: float(branch_energy[b]["params"]) if b in branch_energy else 0.0 for b in scales}
    total = sum(weights.values())
    if total <= 0:
        return dict(scales)
    mean = sum(scales[b] * w for b, w in weights.items()) / total
    return {b: mean for b in scales}


def select_modules(module_energy: dict[str, dict[str, float]], rho: float) -> tuple[list[str], float]:
    """Most deletion-sensitive modules first, until they cover >= rho of the parameters.

    Returns the selected module names and the share of parameters they cover."""
    total = sum(v["params"] for v in module_energy.values())
    order = sorted(module_energy, key=lambda m: (-module_energy[m]["ratio"], m))
    chosen: list[str] = []
    covered: float = 0
    for m in order:
        if covered >= rho * total:
            break
        chosen.append(m)
        covered += module_energy[m]["params"]
    return chosen, covered / max(total, 1)


def kth_scores(scores: torch.Tensor, exclude_mask: torch.Tensor, k: int) -> torch.Tensor:
    """s_K(u): each row's K-th best score over eligible items (excluded ones masked)."""
    masked = scores.masked_fill(exclude_mask, float("-inf"))
    k = min(k, masked.shape[1])
    return torch.topk(masked, k, dim=1).values[:, -1]


def ranking_gate(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    users: torch.Tensor,
    items: torch.Tensor,
    exclude_mask: torch.Tensor,
    k: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gate values and margins of forget pairs.

    `exclude_mask` is [len(unique users), n_items]: each user's retained training items (and
    deleted items), masked from the ranking; row j belongs to torch.unique(users)[j].
    Returns (gate [n_pairs] detached, margin s(u,i) - s_K(u) [n_pairs] with grad, in_top_k).
    """
    uniq, inverse = torch.unique(users, return_inverse=True)
    with torch.no_grad():
        scores = user_emb[uniq] @ item_emb.T
        s_k = kth_scores(scores, exclude_mask, k)[inverse]
        s_ui = scores[inverse, items]
        in_top = s_ui >= s_k
    margin = (user_emb[users] * item_emb[items]).sum(1) - s_k
    gate = torch.where(in_top, torch.sigmoid(margin.detach() / temperature), torch.zeros_like(margin))
    return gate, margin, in_top


def gate_penalty(gate: torch.Tensor, margin: torch.Tensor, lam: float) -> torch.Tensor:
    """lambda * mean gate * softplus(margin): the push on pairs still in their user's top-K."""
    return lam * (gate * F.softplus(margin)).mean()


def exclusion_mask(
    users: np.ndarray, per_user_retained: list[np.ndarray], deleted_items: np.ndarray, n_items: int
) -> torch.Tensor:
    """[len(users), n_items] boolean mask: each user's retained training items and every
    deleted item (what the ranking gate leaves out of the ranking)."""
    mask = torch.zeros(len(users), n_items, dtype=torch.bool)
    for j, u in enumerate(users):
        mask[j, torch.as_tensor(per_user_retained[u], dtype=torch.long)] = True
    if len(deleted_items):
        mask[:, torch.as_tensor(deleted_items, dtype=torch.long)] = True
    return mask
