"""All the audits of one batch, for the original, the unlearned and (when run) the
retrained model; the gate's verdict on the unlearned one. Returns audit.json's content."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tru.audit import canary as canary_mod
from tru.audit.gate import evaluate_gate
from tru.audit.measures import exposure, parameter_shift
from tru.audit.mia import membership_audit
from tru.audit.residue import item_residue, residue_items

if TYPE_CHECKING:  # annotations only: the audit needs no unlearning code to run
    from tru.config import MIAParams
    from tru.unlearning import UnlearnContext


def context_membership(models: dict, ctx: UnlearnContext, mia: MIAParams) -> dict:
    """The membership attack on each of `models` for a deletion context: its forgotten pairs
    (members) against shadow pairs of the same users (non-members, never trained on), theta_0
    as the reference model. Reported, not judged: the gate judges the calibrated test
    (tru.audit.shadow)."""
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


def audit_batch(ctx, models: dict, metrics: dict, params, canary: dict | None, declared: dict | None = None) -> dict:
    """`models`: {"original": theta_0, "unlearned": ..., "retrain": ... (optional)}, graphs set;
    `metrics`: batch_metrics of the same models (reports/<batch>/metrics.json); `declared`: the
    batch's declared backdoors (tru.requests.backdoors), whose targets the item-side check
    always looks at, like the built-in canary's target when the batch deletes it."""
    from tru.unlearning.probes import shadow_membership  # why: the audit package imports no unlearning code at load

    ap = params.audit
    data = ctx.data
    mia = context_membership(models, ctx, ap.mia)

    fake = np.asarray((canary or {}).get("fake_users", []), np.int64)
    normal = ctx.normal_users
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

    # the calibrated membership test (each model, with the original as the power reference)
    shadow = {
        name: shadow_membership(model, ctx, ap.gate, reference=None if name == "original" else ctx.base)
        for name, model in models.items()
    }
    # the item-side residue check: items the batch took engagement from, declared targets, and
    # the canary's target when this batch deletes the canary
    targets = list((declared or {}).get("targets", []))
    lifts = None
    if canary and backdoor["deleted_by_this_batch"]:
        targets.append(int(canary["target_item"]))
        lifts = (backdoor["models"]["unlearned"]["lift"], backdoor["models"]["original"]["lift"])
    checked, declared_items = residue_items(ctx, ap.gate, targets)
    residue = {
        "min_removed_share": ap.gate.residue_min_removed_share,
        "models": {
            name: item_residue(
                model,
                data.train,
                normal,
                data.candidates,
                checked,
                declared_items,
                n_peers=ap.gate.residue_peers,
                declared_alpha=ap.gate.residue_declared_alpha,
                alpha=ap.gate.residue_alpha,
            )
            for name, model in models.items()
        },
    }
    gate = evaluate_gate(
        metrics,
        shadow["unlearned"],
        residue["models"],
        lifts,
        ap.gate,
    )
    return {
        **gate,
        "shadow_membership": shadow,
        "item_residue": residue,
        "membership": mia,
        "backdoor": backdoor,
        "exposure": expo,
        "parameter_shift": shift,
    }
