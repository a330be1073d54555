"""The audit gate: every check against its params.yaml threshold (`audit.gate`); the
unlearned model is promoted only when all applicable checks pass. No check needs a retrain:
production batches do not run one."""

from __future__ import annotations


def _check(name: str, description: str, value, threshold: float, op: str = "<=", note: str | None = None) -> dict:
    """`note`: why the check does not apply (value None, or a value too noisy to judge)."""
    if value is None or note:
        return {
            "name": name,
            "description": description,
            "value": None if value is None else round(float(value), 6),
            "threshold": threshold,
            "op": op,
            "passed": None,
            "note": note or "not applicable to this batch",
        }
    passed = value <= threshold if op == "<=" else value >= threshold
    return {
        "name": name,
        "description": description,
        "value": round(float(value), 6),
        "threshold": threshold,
        "op": op,
        "passed": bool(passed),
    }


def evaluate_gate(
    metrics: dict, mia_ba: float | None, backdoor_lift: float | None, gate, mia_pairs: int | None = None
) -> dict:
    """`metrics`: {"original": {...}, "unlearned": {...}} as in reports/<batch>/metrics.json;
    `mia_pairs`: forgotten pairs the attack saw (as many held-out ones). On fewer than
    `gate.min_mia_pairs` the attack's balanced accuracy is reported but not judged: on a
    handful of pairs a cross-validated attack scores anywhere from 0 to 1 by chance, and a
    batch of two users would be refused (or passed) by the draw, not by its erasure."""
    o, u = metrics["original"], metrics["unlearned"]
    o_ret, u_ret = o["retain"]["recall@20"], u["retain"]["recall@20"]
    drop = (o_ret - u_ret) / o_ret if o_ret > 0 else None
    o_f, u_f = o["forget"]["recall@20"], u["forget"]["recall@20"]
    ratio = u_f / o_f if o["forget"].get("n_rows", 1) and o_f > 0 else None
    checks = [
        _check(
            "retain_recall_drop",
            "relative drop of retain test Recall@20 from the original model",
            drop,
            gate.max_retain_drop,
        ),
        _check(
            "mia_balanced_accuracy",
            "best membership attack (forgotten vs held-out pairs) on the unlearned model",
            mia_ba,
            gate.max_mia_balanced_accuracy,
            note=(
                f"too few pairs to judge: {mia_pairs} forgotten and {mia_pairs} held-out, the check needs "
                f"{gate.min_mia_pairs} of each (audit.gate.min_mia_pairs)"
            )
            if mia_ba is not None and mia_pairs is not None and mia_pairs < gate.min_mia_pairs
            else None,
        ),
        _check(
            "forget_recall_ratio",
            "forget Recall@20 of the unlearned model / of the original",
            ratio,
            gate.max_forget_recall_ratio,
        ),
        _check(
            "backdoor_lift",
            "backdoor canary: the target's attack success rate after the erasure minus the top-20 "
            "share of items of its real popularity (batches that delete the canary)",
            backdoor_lift,
            gate.max_backdoor_lift,
        ),
    ]
    failed = [c["name"] for c in checks if c["passed"] is False]
    return {"verdict": "fail" if failed else "pass", "checks": checks, "failed": failed}


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
    retrain refused by the gate would leave the queue with no way out."""
    checks = []
    for c in result["checks"]:
        if c["passed"] is False:
            c = {
                **c,
                "passed": None,
                "note": f"would fail its limit ({c['op']} {c['threshold']}); not judged: an exact retrain "
                "never trained on the erased data (a false alarm of the check, not residue)",
            }
        checks.append(c)
    return {**result, "verdict": "pass", "checks": checks, "failed": [], "basis": EXACT_RETRAIN_BASIS}


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
