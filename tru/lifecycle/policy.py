"""When the nightly flow starts a consolidation by itself (`lifecycle.consolidate_when` in
params.yaml): after a batch it finished and recorded, the flow asks `consolidation_due`, and
when one of the triggers holds it runs the consolidation (tru.lifecycle.runs) at once, under
its own run lock. A trigger set to 0 (or false) is off; all off: consolidations only run when
started (`tru consolidate`, the `data-consolidation/weekly` deployment).

The triggers, over the batches since the last consolidation whose gate passed:

- `batches`: that many batches;
- `erased_user_share`: the real users erased (the canary's fake accounts left out) as a share
  of the users of the data in service;
- `retain_drop`: the served model's drift, read without a retrain: the product over those
  batches of each batch's Recall@20 on its retained users' validation rows, unlearned over
  original (metrics.json, `retain_valid`), fallen below 1 - `retain_drop`;
- `interaction_residue` (on or off): the chain's membership check (tru.audit.chain) on the
  model in service, as the last of those batches' audit recorded it (audit.json, `chain`),
  flags residue on the interactions erased since the generation began;
- `erased_items` (per backbone): that many items erased, for the backbone in service. On a
  backbone whose items own no parameter row (MIG-GT: the shared encoders score an item from
  its features), no chain puts a deleted item where an exact retrain does (the many-nights
  benchmark, docs: Data lifecycle), so params.yaml consolidates after each night that erased
  one there.

Each is a reason in plain words (logged, and returned with the flow's result)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tru import batches, paths
from tru.audit.canary import RAW_PREFIX
from tru.config import Params


def _erased(batch_ids: list[str], root: Path, kind: str) -> set[str]:
    """The raw ids the batches erased of one `kind` ("user" or "item"): their ledger's accepted
    requests of that kind."""
    from tru.requests.ledger import read_ledger

    if not batch_ids or not (root / paths.LEDGER).is_dir():
        return set()
    column = f"{kind}_id"
    led = read_ledger(root / paths.LEDGER, columns=["batch_id", "kind", column, "status"])
    led = led[led["batch_id"].isin(batch_ids) & (led["kind"] == kind) & (led["status"] != "rejected")]
    return set(led[column].dropna().astype(str))


def _erased_users(batch_ids: list[str], root: Path) -> set[str]:
    """The raw ids of the real users the batches erased (the canary's fake accounts left out)."""
    return {u for u in _erased(batch_ids, root, "user") if not u.startswith(RAW_PREFIX)}


def _users_in_service(params: Params, root: Path) -> int:
    user_map = root / params.data.dataset_dir / "user_map.tsv"
    if not user_map.is_file():
        return 0
    users = pd.read_csv(user_map, sep="\t", dtype=str, usecols=["raw_id"])["raw_id"]
    return int((~users.str.startswith(RAW_PREFIX)).sum())


def batch_retain_ratio(metrics: dict) -> float | None:
    """A batch's Recall@20 on retained users' validation rows, unlearned over original, from
    its metrics.json; None when either is missing."""
    before = ((metrics.get("original") or {}).get("retain_valid") or {}).get("recall@20")
    after = ((metrics.get("unlearned") or {}).get("retain_valid") or {}).get("recall@20")
    return float(after) / float(before) if before and after is not None else None


def retain_ratio(batch_ids: list[str], root: Path) -> float | None:
    """The product of the batches' `batch_retain_ratio`s; None when no batch has one."""
    ratio, seen = 1.0, False
    for b in batch_ids:
        path = root / paths.report_dir(b) / "metrics.json"
        r = batch_retain_ratio(json.loads(path.read_text())) if path.is_file() else None
        if r is not None:
            ratio, seen = ratio * r, True
    return ratio if seen else None


def last_chain_check(batch_ids: list[str], root: Path) -> dict | None:
    """The chain's membership check (tru.audit.chain) the last of the batches' audits
    recorded (audit.json, `chain`); None when it recorded none."""
    if not batch_ids:
        return None
    path = root / paths.report_dir(batch_ids[-1]) / "audit.json"
    return json.loads(path.read_text()).get("chain") if path.is_file() else None


def chain_state(params: Params, root: Path = Path(".")) -> dict:
    """Where the batches since the last consolidation stand on each trigger: `batches` (those
    whose gate passed), `erased_users`, `users` (real ones in service), `erased_items`,
    `retain_ratio` (None without metrics) and `chain_check` (None when the last batch's audit
    has none)."""
    done = [
        b["id"]
        for b in batches.read_batches(root / batches.BATCHES_FILE)
        if batches.gate_verdict(b["id"], root) == "pass"
    ]
    return {
        "batches": len(done),
        "erased_users": len(_erased_users(done, root)),
        "users": _users_in_service(params, root),
        "erased_items": len(_erased(done, root, "item")),
        "retain_ratio": retain_ratio(done, root),
        "chain_check": last_chain_check(done, root),
    }


def _check_words(check: dict) -> str:
    """The chain check's reading in words (its AUC, threshold and the base model's AUC)."""
    if check.get("auc") is None:
        return str(check.get("verdict", "nothing to test"))
    return (
        f"{check['verdict']}: AUC {check['auc']:.3f} against the threshold {check['threshold']:.3f} "
        f"on {check['members']} interactions erased since the last consolidation "
        f"(the base model's {check.get('original_auc') or 0:.3f})"
    )


def consolidation_due(params: Params, root: Path = Path(".")) -> list[str]:
    """Why a consolidation is due now (an empty list: it is not); see the module docstring."""
    when = params.lifecycle.consolidate_when
    st = chain_state(params, root)
    if not st["batches"]:
        return []
    reasons = []
    if when.batches and st["batches"] >= when.batches:
        reasons.append(
            f"{st['batches']} batch(es) since the last consolidation "
            f"(lifecycle.consolidate_when.batches: {when.batches})"
        )
    erased, users = st["erased_users"], st["users"]
    if when.erased_user_share and users and erased / users >= when.erased_user_share:
        reasons.append(
            f"{erased} of {users} users ({erased / users:.1%}) erased since the last consolidation "
            f"(lifecycle.consolidate_when.erased_user_share: {when.erased_user_share:.1%})"
        )
    ratio = st["retain_ratio"]
    if when.retain_drop and ratio is not None and ratio <= 1 - when.retain_drop:
        reasons.append(
            f"the served model's Recall@20 on retained users is {ratio:.1%} of the last consolidated "
            f"model's, chained over the batches (lifecycle.consolidate_when.retain_drop: {when.retain_drop:.1%})"
        )
    check = st["chain_check"]
    if when.interaction_residue and check is not None and check.get("flagged"):
        reasons.append(
            "the chain's membership check flags residue on the interactions erased since the last "
            f"consolidation ({_check_words(check)}; lifecycle.consolidate_when.interaction_residue)"
        )
    backbone = params.model.backbone
    items = when.erased_items.get(backbone, 0)
    if items and st["erased_items"] >= items:
        reasons.append(
            f"{st['erased_items']} item(s) erased since the last consolidation "
            f"(lifecycle.consolidate_when.erased_items.{backbone}: {items})"
        )
    return reasons


def policy_line(params: Params, root: Path = Path(".")) -> str:
    """`tru status`'s line: each trigger that is on, and where the chain stands on it."""
    when = params.lifecycle.consolidate_when
    st = chain_state(params, root)
    parts = []
    if when.batches:
        parts.append(f"{when.batches} batches (now {st['batches']})")
    if when.erased_user_share:
        share = st["erased_users"] / st["users"] if st["users"] else 0.0
        parts.append(f"{when.erased_user_share:.1%} of users erased (now {share:.1%})")
    if when.retain_drop:
        now = "no metrics yet" if st["retain_ratio"] is None else f"{1 - st['retain_ratio']:.1%}"
        parts.append(f"retained users' Recall@20 down {when.retain_drop:.1%} (now {now})")
    if when.interaction_residue:
        check = st["chain_check"]
        now = "not checked yet" if check is None else _check_words(check)
        parts.append(f"residue on the interactions erased so far (now {now})")
    items = when.erased_items.get(params.model.backbone, 0)
    if items:
        parts.append(f"{items} item(s) erased (now {st['erased_items']})")
    if not parts:
        return "next consolidation: when started (lifecycle.consolidate_when: every trigger off)"
    return "next consolidation: the nightly flow starts one at " + ", or ".join(parts)
