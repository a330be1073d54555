"""The audit gate: every check against its params.yaml threshold (`audit.gate`), each judged
or not (and why), each erasure check with or without power on the batch. No check needs a
retrain (production batches do not run one) and none reads a valid or test row: the
comparisons are shadow pairs, never trained on (tru/data/split.py)."""

from __future__ import annotations

import numpy as np

UTILITY, ERASURE = "utility", "erasure"


def retain_drop_interval(original_rows, unlearned_rows, confidence: float, resamples: int, seed: int = 0) -> dict:
    """The relative drop of Recall@20 on retained users' shadow pairs, 1 - mean(unlearned) /
    mean(original), with its one-sided `confidence` lower bound and the matching upper bound
    (percentile bootstrap over users, paired: each resample draws the same users for both
    models). `*_rows`: each retained user's Recall@20, in the same order for both models.

    The shadow pairs are a small sample (2% of each user's interactions), so two models of the
    same quality differ on them by chance; the gate judges the lower bound, so that a drop the
    sample cannot tell from that chance is not called a loss, while a drop beyond the limit
    with the sample's confidence is."""
    o, u = np.asarray(original_rows, np.float64), np.asarray(unlearned_rows, np.float64)
    if len(o) != len(u):
        raise ValueError(f"paired rows differ in length: {len(o)} original, {len(u)} unlearned")
    if len(o) == 0 or o.sum() == 0:
        return {"drop": None, "low": None, "high": None, "confidence": confidence, "users": int(len(o))}
    idx = np.random.default_rng(seed).integers(0, len(o), size=(resamples, len(o)))
    ob = o[idx].mean(1)
    drops = 1 - u[idx].mean(1) / np.where(ob > 0, ob, np.nan)
    low, high = np.nanquantile(drops, [1 - confidence, confidence])
    return {
        "drop": round(float(1 - u.mean() / o.mean()), 6),
        "low": round(float(low), 6),
        "high": round(float(high), 6),
        "confidence": confidence,
        "users": int(len(o)),
    }


def _check(
    name: str,
    kind: str,
    description: str,
    value,
    threshold: float | None,
    op: str = "<=",
    *,
    judged: bool = True,
    power: bool | None = None,
    note: str | None = None,
    original=None,
    judged_on=None,
) -> dict:
    """One check: `judged` False (with `note`: why) when it cannot be judged on this batch;
    `power`: whether it fails the original model (erasure checks), `original` its value there;
    `judged_on`: the value compared with the threshold when it is not `value` itself (a
    confidence bound of it)."""
    out = {
        "name": name,
        "kind": kind,
        "description": description,
        "value": None if value is None else round(float(value), 6),
        "threshold": threshold,
        "op": op,
        "judged": bool(judged and value is not None),
    }
    if original is not None:
        out["original"] = round(float(original), 6)
    if out["judged"]:
        v = value if judged_on is None else judged_on
        out["passed"] = bool(v <= threshold if op == "<=" else v >= threshold)
    else:
        out["passed"] = None
    if kind == ERASURE:
        out["power"] = bool(power) if out["judged"] else None
    if note:
        out["note"] = note
    elif not out["judged"]:
        out["note"] = "not applicable to this batch"
    elif kind == ERASURE and not out["power"]:
        out["note"] = (
            "no power on this batch: the original model, which trained on everything erased, passes it too, "
            "so passing it proves nothing"
        )
    return out


def evaluate_gate(
    metrics: dict,
    membership: dict | None,
    residue: dict | None,
    backdoor: tuple[float, float] | None,
    gate,
) -> dict:
    """The verdict on the unlearned model (module docstring of tru.audit.shadow for the
    membership test, tru.audit.residue for the item-side check).

    `metrics`: {"original": {...}, "unlearned": {...}} as in reports/<batch>/metrics.json (their
    `retain_shadow` and `forget` rankings); `membership`: tru.audit.shadow.membership_test of the
    unlearned model with the original as reference; `residue`: {"original": ..., "unlearned": ...}
    of tru.audit.residue.item_residue, or None; `backdoor`: the canary's lift (unlearned,
    original) when the batch deletes it.

    FAIL when a judged check fails; PASS when none fails and at least one erasure check with
    power passed; INCONCLUSIVE otherwise (nothing that could have failed was judged)."""
    o, u = metrics["original"], metrics["unlearned"]
    checks = [_retain_check(o, u, gate)]
    m = membership or {}
    if m.get("auc") is None:
        why = "no forgotten pair has a shadow pair of the same user or item to compare with"
        if m.get("members") == 0:
            why = "no forgotten pair to test (an item-only batch whose items had no shadow pair, or none at all)"
        checks.append(_check("membership_vs_shadow", ERASURE, _MEMBERSHIP, None, None, ">", judged=False, note=why))
    else:
        checks.append(
            _check(
                "membership_vs_shadow",
                ERASURE,
                _MEMBERSHIP,
                m["auc"],
                m["threshold"],
                power=m.get("power"),
                original=m.get("original_auc"),
            )
        )
    if residue is None or residue["unlearned"]["checked"] == 0:
        checks.append(
            _check(
                "item_residue",
                ERASURE,
                _RESIDUE,
                None,
                0,
                judged=False,
                note=f"no item lost {gate.residue_min_removed_share:.0%} of its training interactions to this batch "
                "and no backdoor target was declared",
            )
        )
    elif residue["unlearned"].get("threshold") is None:
        checks.append(
            _check("item_residue", ERASURE, _RESIDUE, None, 0, judged=False, note="too few reference items for peers")
        )
    else:
        u_res = residue["unlearned"]
        check = _check(
            "item_residue",
            ERASURE,
            _RESIDUE,
            u_res["flagged"],
            0,
            power=residue["original"]["flagged"] > 0,
            original=residue["original"]["flagged"],
        )
        if u_res.get("above") and not u_res["flagged"]:
            check["note"] = (
                f"{u_res['above']} of {u_res['checked']} items above every untouched item, no more than chance "
                f"puts there in {u_res['alpha']:.0%} of exact erasures (up to {u_res['allowed_above']}): none flagged"
            ) + (f"; {check['note']}" if check.get("note") else "")
        checks.append(check)
    checks.append(
        _check(
            "backdoor_lift",
            ERASURE,
            "backdoor canary: the target's attack success rate after the erasure minus the top-20 "
            "share of items of its real popularity (batches that delete the canary)",
            None if backdoor is None else backdoor[0],
            gate.max_backdoor_lift,
            power=backdoor is not None and backdoor[1] > gate.max_backdoor_lift,
            original=None if backdoor is None else backdoor[1],
            note=None if backdoor is not None else "the batch does not delete the built-in canary",
        )
    )
    ratio = None
    if o["forget"].get("n_rows", 1) and o["forget"]["recall@20"] > 0:
        ratio = u["forget"]["recall@20"] / o["forget"]["recall@20"]
    checks.append(
        _check(
            "forget_recall_ratio",
            ERASURE,
            "forget Recall@20 of the unlearned model / of the original",
            ratio,
            None,
            judged=False,
            note="reported, not judged: a user's remaining data predicts some removed items, so an exact retrain "
            "keeps a share of forget Recall@20 that no fixed limit separates from residue (ML-100k, interaction "
            "level: 0.8 of the original's); the membership test compares with never-trained pairs instead",
        )
    )
    failed = [c["name"] for c in checks if c["passed"] is False]
    with_power = [c["name"] for c in checks if c["kind"] == ERASURE and c["passed"] and c.get("power")]
    if failed:
        verdict, basis = "fail", None
    elif with_power:
        verdict, basis = "pass", "passed with power: " + ", ".join(with_power)
    else:
        verdict = "inconclusive"
        basis = (
            "no erasure check that could have failed was judged on this batch (each is either not applicable "
            "or passes the original model too); audit.gate.inconclusive: " + gate.inconclusive
        )
    return {"verdict": verdict, "checks": checks, "failed": failed, "basis": basis, "policy": gate.inconclusive}


def _retain_check(o: dict, u: dict, gate) -> dict:
    """retain_recall_drop: judged on the drop's one-sided lower bound when the metrics carry its
    interval (`retain_shadow_drop`, tru.stages.context.with_retain_drop), else on the drop."""
    o_ret, u_ret = o["retain_shadow"]["recall@20"], u["retain_shadow"]["recall@20"]
    drop = (o_ret - u_ret) / o_ret if o_ret > 0 else None
    ci = u.get("retain_shadow_drop") or {}
    description = (
        "relative drop of Recall@20 on retained users' shadow pairs (never trained on) from the original model"
    )
    if drop is None:
        return _check(
            "retain_recall_drop", UTILITY, description, None, gate.max_retain_drop,
            note="no retained user has a shadow pair (split.shadow_share 0?)",
        )  # fmt: skip
    if ci.get("low") is None:
        return _check("retain_recall_drop", UTILITY, description, drop, gate.max_retain_drop)
    conf = ci["confidence"]
    check = _check(
        "retain_recall_drop",
        UTILITY,
        description + f"; judged on its one-sided {conf:.0%} lower bound (paired bootstrap over retained users)",
        drop,
        gate.max_retain_drop,
        judged_on=ci["low"],
        note=(
            f"drop {drop:.3f}, one-sided {conf:.0%} bounds {ci['low']:.3f} to {ci['high']:.3f} over {ci['users']} "
            "retained users' shadow pairs: "
            + (
                "a loss beyond the limit at this confidence"
                if ci["low"] > gate.max_retain_drop
                else "not shown to exceed the limit"
                if drop > gate.max_retain_drop
                else "within the limit"
            )
        ),
    )
    check["interval"] = [ci["low"], ci["high"]]
    return check


def promoted(result: dict) -> bool:
    """Whether the gate's result promotes the model: PASS, or INCONCLUSIVE under the policy
    `inconclusive: pass` (the verdict itself stays INCONCLUSIVE in the evidence)."""
    return result["verdict"] == "pass" or (result["verdict"] == "inconclusive" and result.get("policy") == "pass")


_MEMBERSHIP = (
    "membership test: stratified AUC of forgotten pairs against shadow pairs (never trained on) of the same "
    "users or items; above the threshold (its null's quantile under exchangeability) they still rank like "
    "trained pairs"
)
_RESIDUE = (
    "item-side residue: items that lost a share of their interactions ranked further above items of the same "
    "retained popularity than any item the batch did not touch, more of them than chance gives in "
    "audit.gate.residue_alpha of exact erasures; declared backdoor targets ranked above all but "
    "audit.gate.residue_declared_alpha of those items"
)


# why a batch erased by an exact retrain passes whatever its checks measure
EXACT_RETRAIN_BASIS = (
    "exact retrain: the model was trained from scratch without the erased data, so none of its "
    "influence can remain; the checks are measured and shown, not judged"
)


def exact_retrain_verdict(result: dict) -> dict:
    """The gate's verdict for a batch erased by an exact retrain (its `method: retrain`, the way
    out of a refusal): pass, by construction. Its checks keep their values; a check that would
    have failed says so in its note, as a measure of the check's own false alarms (a user's
    remaining data still predicts some removed items, so forget Recall@20 stays above zero). A
    retrain refused by the gate would leave the queue with no way out. `tru bench gate` measures
    how often the checks would refuse one (their false alarms)."""
    checks = []
    for c in result["checks"]:
        if c["passed"] is False:
            c = {
                **c,
                "passed": None,
                "judged": False,
                "note": f"would fail its limit ({c['op']} {c['threshold']}); not judged: an exact retrain "
                "never trained on the erased data (a false alarm of the check, not residue)",
            }
        checks.append(c)
    return {**result, "verdict": "pass", "checks": checks, "failed": [], "basis": EXACT_RETRAIN_BASIS}


def inconclusive_message(batch_id: str, result: dict) -> str:
    """The message of an INCONCLUSIVE gate held for review (`audit.gate.inconclusive: review`)."""
    return (
        f"audit gate inconclusive for batch {batch_id}: {result['basis']}. The model is not promoted and the "
        f"batch's requests are needs_review; clear it with `tru review --batch {batch_id}` (an exact retrain of "
        "the batch)."
    )


def failure_message(batch_id: str, result: dict) -> str:
    """The message of a failed gate: `result` (from `evaluate_gate`) in, one line naming each
    failed check with its value and threshold, and how to clear the batch, out."""
    parts = [
        f"{c['name']} = {c['value']} (allowed {c['op']} {c['threshold']})"
        for c in result["checks"]
        if c["passed"] is False
    ]
    return (
        f"audit gate failed for batch {batch_id}: "
        + "; ".join(parts)
        + f". The model is not promoted and the batch's requests are needs_review; clear it with "
        f"`tru review --batch {batch_id}` (an exact retrain of the batch)."
    )
