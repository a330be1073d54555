"""Where things stand (`tru status`): the base model's metrics and, per deletion batch, its
requests by status, the components it touched, the audit gate's verdict and the backdoor
canary before and after. Reads only what the stages wrote; changes nothing."""

from __future__ import annotations

from pathlib import Path

from tru import batches, lineage, paths
from tru.io import read_json
from tru.requests.ledger import read_ledger


def base_model_line(metrics: Path = paths.BASE_METRICS) -> str | None:
    """One line on the base model's test metrics, or None before the base pipeline has run."""
    if not metrics.is_file():
        return None
    t = read_json(metrics)["test"]
    return f"base model: test Recall@20 {t['recall@20']:.4f}  NDCG@20 {t['ndcg@20']:.4f}  ({metrics})"


def batch_line(batch_id: str, ledger=None) -> str:
    """One line on batch `batch_id`: requests by status (from `ledger`, a frame with batch_id and
    status columns, when given), components, the gate's verdict and the backdoor canary."""
    line = f"batch {batch_id}:"
    if ledger is not None:
        mine = ledger[ledger["batch_id"] == batch_id]
        line += " requests " + ", ".join(f"{k} {v}" for k, v in mine["status"].value_counts().sort_index().items())
    comp_path = paths.report_dir(batch_id) / "components.json"
    if comp_path.is_file():
        c = read_json(comp_path)
        top = ", ".join(r["name"] for r in c["heat_map"].get("modules", [])[:3])
        line += (
            f"; forget {c['counts']['forget_interactions']} interactions of {c['counts']['affected_users']} "
            f"users, {c['counts']['target_items']} target items; most deletion-sensitive modules: {top} "
            f"({comp_path})"
        )
    audit_path = paths.report_dir(batch_id) / "audit.json"
    if audit_path.is_file():
        a = read_json(audit_path)
        line += f"; audit gate {a['verdict'].upper()}" + (f" ({', '.join(a['failed'])})" if a["failed"] else "")
        if a.get("method") == "retrain" and a.get("basis"):  # a refused batch cleared by a review
            line += " by construction (an exact retrain)"
        elif a["verdict"] == "inconclusive":
            line += " (promoted by policy)" if a.get("promoted") else " (held for review)"
        bd = a.get("backdoor", {})
        if bd.get("enabled") and "unlearned" in bd.get("models", {}):
            o, u = bd["models"]["original"], bd["models"]["unlearned"]
            line += f"; backdoor attack success {o['asr']:.1%} before, {u['asr']:.1%} after" + (
                f" (items of the target's real popularity: {u['peer_asr']:.1%})" if "peer_asr" in u else ""
            )
    return line


def lifecycle_lines(now=None) -> list[str]:
    """The data generation in service, what is kept in retention and when `tru purge` may remove
    it, and what was purged (tru/lifecycle/): nothing before the first consolidation."""
    from datetime import UTC, datetime

    from tru.lifecycle.consolidate import current_generation, read_generations
    from tru.lifecycle.purge import parse_time
    from tru.lifecycle.suppression import read_suppression

    gens = read_generations()
    sup = read_suppression(paths.SUPPRESSION)
    pending = batches.read_batches()
    if not gens and not pending:
        return []
    now = now or datetime.now(UTC)
    g = current_generation(gens)
    counts = ", ".join(f"{v} {k}(s)" for k, v in sup.counts().items() if v)
    lines = [f"data generation {g}: the data leaves out {len(sup)} erased subject(s) ({counts or 'none'})"]
    if pending:
        from tru.config import load_params  # why: pydantic; only this line needs the settings
        from tru.lifecycle.policy import policy_line

        params = load_params(Path("params.yaml")) if Path("params.yaml").is_file() else None
        days = params.lifecycle.retention_days if params is not None else 30
        lines.append(
            f"generation {g} still holds the erased subjects of {len(pending)} batch(es) in its data, its base model "
            f"and the batches' files: `tru consolidate` retrains without them; generation {g} is then kept "
            f"{days} day(s) (lifecycle.retention_days) before `tru purge` removes it"
        )
        if params is not None:
            lines.append(policy_line(params))
    for e in gens:
        if e.get("state") != "done":
            lines.append(
                f"warning: the consolidation into generation {e['generation']} is unfinished: run `tru consolidate`"
            )
        elif e.get("purged_at"):
            lines.append(
                f"generation {int(e['generation']) - 1}: purged {e['purged_at']} "
                f"({e.get('purged_objects', 0)} object(s); lifecycle/tombstones.jsonl)"
            )
        else:
            until = parse_time(e["retain_until"])
            state = "due now: `tru purge`" if until <= now else f"purge from {e['retain_until']}"
            lines.append(
                f"generation {int(e['generation']) - 1} in retention ({len(e['batches'])} archived batch(es), "
                f"the base model and data before {e['finished_at']}): {state}"
            )
    return lines


def status_lines(batches_file: Path = paths.BATCHES_FILE) -> list[str]:
    """The whole status report, one line per fact: base model, data generation and retention,
    current model, every batch."""
    lines = [line for line in [base_model_line()] if line] + lifecycle_lines()
    ids = [b["id"] for b in batches.read_batches(batches_file)]
    if not ids:
        return lines + [f"no deletion batch yet (put request files in {paths.INBOX.as_posix()}/, then `tru ingest`)"]
    lines.append(f"current model: {batches.current_model(batches_file)}")
    ledger = read_ledger(paths.LEDGER, columns=["batch_id", "kind", "status"]) if paths.LEDGER.is_dir() else None
    return lines + [batch_line(b, ledger) for b in ids] + lineage_lines()


def lineage_lines(params_file: Path = Path("params.yaml")) -> list[str]:
    """Whether the batches' lineage is committed in git and pushed to the DVC remote: one line,
    or a warning line per thing missing and the command that fixes it."""
    from tru.config import load_params  # why: pydantic; only this line needs the settings

    branch = load_params(params_file).lineage.branch if params_file.is_file() else ""
    st = lineage.state(branch)
    where = f"branch {branch}" if branch else "git"
    out = []
    if not st.git:
        out.append("warning: lineage not committed: this is not a git repository")
    elif st.uncommitted:
        shown = ", ".join(st.uncommitted[:3]) + (
            f" and {len(st.uncommitted) - 3} more" if len(st.uncommitted) > 3 else ""
        )
        out.append(f"warning: lineage not committed in {where}: {shown} (`tru lineage` commits it)")
    if st.remote is None:
        out.append(
            "warning: lineage not pushed: no default DVC remote (`dvc remote add -d NAME URL`, then `tru lineage`)"
        )
    elif st.unpushed:
        out.append(
            f"warning: lineage not pushed: {st.unpushed} cached object(s) missing from DVC remote "
            f"{st.remote!r} (`tru lineage`)"
        )
    if st.note:
        out.append(f"warning: lineage not checked: {st.note}")
    if not out:
        out.append(f"lineage: committed in {where} and pushed to DVC remote {st.remote!r}")
    return out
