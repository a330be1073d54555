"""Loss terms the backbones (and UltraRE's aggregator) share."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_l2_loss(
    u: torch.Tensor, p: torch.Tensor, n: torch.Tensor, reg_weight: float, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """BPR of (user, positive item, negative item) embedding rows [batch, dim] and their L2
    penalty reg_weight * 1/2 (||u||^2 + ||p||^2 + ||n||^2) / batch. Returns (bpr, l2)."""
    bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    reg = reg_weight * 0.5 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / batch
    return bpr, reg
