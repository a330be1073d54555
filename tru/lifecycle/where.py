"""Where an erased batch's data still exists, today: the answer `tru evidence get REQUEST_ID`
gives a person, from the lifecycle's own records (batches.yaml, lifecycle/generations.yaml),
never from a scan. Each place is one plain sentence; no id but the batch's."""

from __future__ import annotations

from pathlib import Path

from tru import batches, paths
from tru.lifecycle.consolidate import read_generations


def _day(iso: str | None) -> str:
    return (iso or "?")[:10]


def where_lines(batch_id: str, root: str | Path = Path("."), retention_days: int | None = None) -> list[str]:
    """Place by place, where the data batch `batch_id` erased still exists (or how it left)."""
    root = Path(root)
    gens = read_generations(root / paths.GENERATIONS)
    folded = next((g for g in gens if batch_id in (g.get("batches") or [])), None)
    days = "lifecycle.retention_days" if retention_days is None else f"{retention_days} day(s)"
    if folded is None:
        registered = [b["id"] for b in batches.read_batches(root / paths.BATCHES_FILE)]
        if batch_id not in registered:
            return []
        return [
            "model in service: erased (the batch's model, or a later batch's built on it)",
            "data: still in the data the pipeline keeps (dataset, splits, the base model trained on them) "
            "until the next consolidation retrains without it (`tru consolidate`)",
            f"batch files: the batch's sets and checkpoints, the request file and their versions in the DVC cache "
            f"and remote, kept for {days} after that consolidation, then purged (`tru purge`)",
            "ledger: the request with its raw ids, kept until that purge; then the request id, kind, pseudonym "
            "and status only",
        ]
    g = int(folded["generation"])
    if folded.get("state") != "done":
        data = f"being consolidated into data generation {g} (started {_day(folded.get('started_at'))})"
    else:
        data = (
            f"left out of the data since generation {g} (consolidated {_day(folded.get('finished_at'))}): "
            "the data and the base model in service never saw it"
        )
    if folded.get("purged_at"):
        files = (
            f"purged {_day(folded['purged_at'])}: {folded.get('purged_objects', 0)} object(s) removed from the work "
            "tree, the DVC cache and the DVC remotes (lifecycle/tombstones.jsonl)"
        )
        ledger = "the request id, kind, pseudonym and status only (raw ids and reasons dropped at the purge)"
    else:
        until = _day(folded.get("retain_until")) if folded.get("state") == "done" else f"{days} after it"
        files = (
            f"generation {g - 1} (its data, base model, the batch's sets, checkpoints and request file, in the DVC "
            f"cache and remote) kept for audit until {until}, then purged (`tru purge`)"
        )
        ledger = f"the request with its raw ids, kept until {until}; then the request id, kind, pseudonym and status"
    return [
        "model in service: erased (an exact retrain without it since the consolidation)"
        if folded.get("state") == "done"
        else "model in service: erased",
        f"data: {data}",
        f"batch files: {files}",
        f"ledger: {ledger}",
    ]
