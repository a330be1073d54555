"""All the audits of one batch, for the original, the unlearned and (when run) the
retrained model; the gate's verdict on the unlearned one. Returns audit.json's content."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tru.audit import canary as canary_mod
from tru.audit.gate import evaluate_gate
from tru.audit.measures import exposure, parameter_shift
from tru.audit.mia import best_balanced_accuracy, membership_audit

if TYPE_CHECKING:  # annotations only: the audit needs no unlearning code to run
    from tru.config import MIAParams
    from tru.unlearning import UnlearnContext


def context_membership(models: dict, ctx: UnlearnContext, mia: MIAParams) -> dict:
    """The membership attack on each of `models` for a deletion context: its forgotten pairs
    (members) against its held-out pairs (non-members), theta_0 as the reference model."""
    members, non_members = ctx.membership_pairs()
    return membership_audit(
        models,
        ctx.base,
        members,
        non_members,
        ctx.data.train,
        ctx.data.n_users,
        ctx.data.candidates,
        ctx.seed,
        mia.folds,
        mia.bootstrap,
        mia.max_per_class,
    )


def audit_batch(ctx, models: dict, metrics: dict, params, canary: dict | None) -> dict:
    """`models`: {"original": theta_0, "unlearned": ..., "retrain": ... (optional)}, graphs set;
    `metrics`: batch_metrics of the same models (reports/<batch>/metrics.json)."""
    ap = params.audit
    data = ctx.data
    mia = context_membership(models, ctx, ap.mia)

    fake = np.asarray((canary or {}).get("fake_users", []), np.int64)
    normal = np.setdiff1d(np.unique(data.train[:, 0]), fake)
    if canary:
        deleted_now = bool(len(fake)) and np.isin(fake, ctx.new_users).all()
        backdoor = {
            "enabled": True,
            "target_item": canary["target_item"],
            "trigger_items": canary["trigger_items"],
            "fake_users": int(len(fake)),
            "deleted_by_this_batch": bool(deleted_now),
            "models": {},
        }
        for name, model in models.items():
            backdoor["models"][name] = canary_mod.backdoor_metrics(
                model, canary, normal, data.train, data.n_users, ap.k, candidates=data.candidates
            )
    else:
        backdoor = {"enabled": False}

    # target items: recommendable items that lost at least `exposure_min_removed_share` of
    # their training interactions (a 5% user deletion touches nearly every popular item a
    # little; exposure is about the items the batch really took engagement from)
    targets = ctx.items_losing(ap.exposure_min_removed_share)
    expo = {
        "target_items": int(len(targets)),
        "min_removed_share": ap.exposure_min_removed_share,
        "touched_items": int(len(np.unique(ctx.forget[:, 1]))),
        "k": ap.k,
        "models": {
            name: exposure(model, targets, normal, data.train, data.n_users, data.candidates, ap.k)
            for name, model in models.items()
        },
    }

    shift = parameter_shift(models["unlearned"], ctx.base, models.get("retrain"), ap.shift_flag_ratio)

    lift = backdoor["models"]["unlearned"]["lift"] if canary and backdoor["deleted_by_this_batch"] else None
    gate = evaluate_gate(
        metrics,
        best_balanced_accuracy(mia["models"].get("unlearned")),
        lift,
        ap.gate,
        mia_pairs=mia.get("sample_per_class"),
    )
    return {**gate, "membership": mia, "backdoor": backdoor, "exposure": expo, "parameter_shift": shift}
