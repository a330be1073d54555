"""A deletion batch's commands: `ingest` (which creates the batch) and its DVC stages (sets, map,
erase, repair, evaluate-batch, audit, report)."""

from __future__ import annotations

from pathlib import Path

import typer

from tru import paths
from tru.cli.common import BatchOpt, BatchTimeOpt, ParamsOpt, load, locked, stage

PANEL = "Deletion batches"
app = typer.Typer()


@app.command(rich_help_panel=PANEL)
@stage
def ingest(
    files: list[Path] | None = typer.Argument(None, help="request files (JSONL, CSV, Parquet); default: the inbox"),
    params: Path = ParamsOpt,
    inbox: Path = typer.Option(paths.INBOX),
    dvc: bool = typer.Option(True, help="version the batch's inputs and ledger with `dvc add`"),
    batch_time: str | None = BatchTimeOpt,
    backdoors: list[Path] | None = typer.Option(
        None,
        "--backdoors",
        metavar="FILE",
        help="a declaration of fake accounts (CSV or JSON Lines: role fake_user/trigger/target, id, note), "
        "copied into the inbox as backdoors-FILE: its fake users are deleted, its targets audited",
    ),
) -> None:
    """Take the pending deletion requests as one batch: validate, record in the ledger, archive."""
    from tru.dvcio import dvc_add
    from tru.nightly import dvc_pointers
    from tru.runlock import run_lock
    from tru.stages.ingest import ingest_stage

    with run_lock("tru ingest"):
        s = ingest_stage(load(params), inbox, files, now=batch_time, backdoors=backdoors)
        for q in s.get("quarantined", []):
            typer.echo(f"quarantined {q['name']}: {q['reason']}" + (f" ({q['path']})" if q["path"] else ""), err=True)
        for k in s.get("skipped", []):
            typer.echo(f"left in the inbox {k['name']}: {k['reason']}", err=True)
        if s["batch_id"] is None:
            typer.echo(
                "no request to ingest: nothing changed" if s.get("quarantined") else "inbox empty: nothing to ingest"
            )
            return
        if dvc and Path(".dvc").is_dir():
            dvc_add(dvc_pointers(s["batch_id"]))
    typer.echo(f"batch {s['batch_id']}: {s['rows']} rows, " + ", ".join(f"{k} {v}" for k, v in s["by_status"].items()))
    if s.get("backdoors"):
        d = s["backdoors"]
        typer.echo(
            "declared backdoors: fake accounts "
            + ", ".join(f"{k} {v}" for k, v in d["fake_users"].items())
            + f"; {d['targets']} target(s), {d['triggers']} trigger(s) kept; {d['rejected']} row(s) rejected"
            + f" ({d['path']})"
        )
    typer.echo(f"next: dvc repro (or tru sets --batch {s['batch_id']} && tru map --batch {s['batch_id']})")


@app.command(rich_help_panel=PANEL)
@stage
@locked
def sets(batch: str = BatchOpt, params: Path = ParamsOpt) -> None:
    """Build the batch's forget and retain sets (cumulative over batches)."""
    from tru.stages.sets import sets_stage

    s = sets_stage(load(params), batch)
    b = s["batch"]
    typer.echo(
        f"batch {batch}: forget {b['forget']} interactions of {b['affected_users']} users and "
        f"{b['target_items']} items; retain {b['retain']}; held out {b['heldout']}"
    )


@app.command("map", rich_help_panel=PANEL)
@stage
@locked
def map_cmd(batch: str = BatchOpt, params: Path = ParamsOpt) -> None:
    """Map the batch to model components: counts, target items, rebuilds, deletion heat map."""
    from tru.stages.components import map_stage

    s = map_stage(load(params), batch)
    typer.echo(f"wrote {s['components']} in {s['seconds']:.2f} s")


@app.command(rich_help_panel=PANEL)
@stage
@locked
def erase(
    batch: str = BatchOpt,
    params: Path = ParamsOpt,
    method: str | None = typer.Option(None, help="unlearning method (default: unlearn.method)"),
    out: Path | None = typer.Option(
        None,
        help="checkpoint folder (default: data/batches/B/unlearned, or .../retrain); "
        "a folder of its own also gets the run's update_log.json and timings.json",
    ),
) -> None:
    """Unlearn the batch from its base model (exact erasure, graph rebuild, then the method).

    `--method retrain` on the batch the audit gate refused clears it, as `tru review` does: the
    batch is then erased by an exact retrain (recorded in batches.yaml) and its stages rerun.
    Another method than the batch's own runs with `--out DIR`, and its log and timings go to
    DIR, never over the batch's reports."""
    from tru import batches, nightly
    from tru.stages.erase import erase_stage

    if method == "retrain" and out is None and nightly.clearable_batch() == batch:
        verdict = nightly.clear_by_retrain(batch, params, echo=typer.echo)
        typer.echo(f"batch {batch}: audit gate {verdict}; current model {batches.current_model()}")
        return
    s = erase_stage(load(params), batch, method, out)
    typer.echo(f"{s['method']}: wrote {s['checkpoint']} in {s['seconds']:.1f} s (sha256 {s['weights_sha256'][:12]}…)")
    typer.echo(f"log: {s['log']}; timings: {s['timings']}")


@app.command(rich_help_panel=PANEL)
@stage
@locked
def repair(batch: str = BatchOpt, params: Path = ParamsOpt) -> None:
    """Final retain-side repair of the unlearned model (0 epochs when utility is within tolerance)."""
    from tru.stages.repair import repair_stage

    s = repair_stage(load(params), batch)
    typer.echo(f"repaired in {s['epochs']} epoch(s): {s['checkpoint']}")


@app.command("evaluate-batch", rich_help_panel=PANEL)
@stage
@locked
def evaluate_batch(batch: str = BatchOpt, params: Path = ParamsOpt) -> None:
    """Retain and forget Recall/NDCG@K of the batch's models: original, unlearned, retrain (when run)."""
    from tru.stages.evaluate_batch import evaluate_batch_stage

    s = evaluate_batch_stage(load(params), batch)
    for name, vals in s["values"].items():
        if isinstance(vals, dict):
            line = "  ".join(f"{k} R@20 {v['recall@20']:.4f}" for k, v in vals.items() if "recall@20" in v)
            drop = vals.get("retain_shadow_drop") or {}
            if drop.get("low") is not None:  # the retain check's measure: the drop from the original, with bounds
                line += f"  retain drop {drop['drop']:.3f} (bounds {drop['low']:.3f} to {drop['high']:.3f})"
            typer.echo(f"{name:9s} {line}")


@app.command(rich_help_panel=PANEL)
@stage
@locked
def audit(batch: str = BatchOpt, params: Path = ParamsOpt) -> None:
    """Membership inference, backdoor canary, exposure and parameter-shift audits, and the gate.

    Exit status 4 when the gate refuses the erasure (the model is not promoted and the
    batch's requests become needs_review)."""
    from tru.errors import AuditGateFailed
    from tru.io import read_json
    from tru.stages.audit import audit_stage

    try:
        s = audit_stage(load(params), batch)
    except AuditGateFailed:
        print_audit(read_json(paths.report_dir(batch) / "audit.json"))
        raise
    a = read_json(s["audit"])
    print_audit(a)
    state = "passed" if s["verdict"] == "pass" else f"inconclusive, promoted by policy ({a.get('basis')})"
    typer.echo(f"audit gate {state}: {s['requests']} request(s) erased; wrote {s['audit']}")


def print_audit(a: dict) -> None:
    """The audit's checks, membership attacks and backdoor success rates, a line each."""
    for c in a["checks"]:
        mark = {True: "pass", False: "FAIL", None: "n/a "}[c["passed"]]
        value = "-" if c["value"] is None else f"{c['value']:.4f}"
        limit = "" if c.get("threshold") is None else f"  (allowed {c['op']} {c['threshold']})"
        why = ""
        if c["passed"] is None:
            why = f"  not judged: {c.get('note', '')}"
        elif c.get("power") is False:
            why = "  no power: the original model passes it too"
        elif c.get("note"):  # what a judged value rests on (the retain drop's bounds, items above by chance)
            why = f"  {c['note']}"
        typer.echo(f"  [{mark}] {c['name']:24s} {value:>8s}{limit}{why}")
    typer.echo(f"  verdict {a['verdict'].upper()}" + (f": {a['basis']}" if a.get("basis") else ""))
    for name, m in a["membership"].get("models", {}).items():
        if m.get("best"):
            b = m[m["best"]]
            typer.echo(
                f"  membership attack on {name:9s}: balanced accuracy {b['balanced_accuracy']:.3f} "
                f"[{b['balanced_accuracy_ci'][0]:.3f}, {b['balanced_accuracy_ci'][1]:.3f}] ({m['best']})"
            )
    if a["backdoor"].get("enabled"):
        typer.echo(
            "  backdoor attack success rate: "
            + ", ".join(
                f"{n} {v['asr']:.3f}" + (f" (peers {v['peer_asr']:.3f})" if "peer_asr" in v else "")
                for n, v in a["backdoor"]["models"].items()
            )
        )


@app.command(rich_help_panel=PANEL)
@stage
@locked
def report(batch: str = BatchOpt, params: Path = ParamsOpt) -> None:
    """Render the batch's evidence PDF (reports/B/evidence.pdf) and its hash manifest."""
    from tru.evidence.lookup import check_known_batch
    from tru.stages.report import report_stage

    check_known_batch(batch)
    s = report_stage(load(params), batch)
    typer.echo(f"wrote {s['pdf']} (sha256 {s['sha256'][:12]}…) and {s['manifest']}")
