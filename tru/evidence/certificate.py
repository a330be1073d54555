"""One request, for the person who sent it: what `tru evidence get` prints, and a one-page
certificate in plain language (what was asked, what was erased from which model, when, by
which batch, the audit's verdict and what its checks mean, and how to verify the batch's
evidence).

The certificate is rendered like the batch's evidence PDF (tru.evidence.render: the same
stylesheet and fonts, WeasyPrint, fixed dates and file identifier), from the ledger,
batches.yaml and the batch's git-tracked reports (audit.json, evidence.sha256), never from the
clock or the machine: the same inputs give the same bytes.

Where it goes. Unlike the batch's evidence, a certificate names the request id: it is written
for the person who sent it. So it never goes under reports/, which git commits with each batch's
lineage; by default it goes to data/certificates/, beside the ledger that holds the same ids,
which git ignores and DVC does not track. Nothing needs to keep it: it can be made again from
the ledger and the reports.

Requests that were not erased (rejected, awaiting review, pending) get a page too, titled "not
erased", with the reason: the person is owed an answer when nothing was done, and the reasons
(GDPR Art. 12(4)); a refusal to write one would leave the data-protection officer nothing to
send. Its title and badge say "not erased", so it cannot be taken for a certificate of erasure.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from tru import paths
from tru.errors import DataError
from tru.evidence import layout
from tru.evidence.collect import MAX_REQUEST_ROWS
from tru.evidence.lookup import get_request
from tru.evidence.manifest import base_model_dir
from tru.evidence.sections import OPS, STATUS_LABELS
from tru.io import atomic_path, read_json
from tru.lifecycle.where import where_lines
from tru.requests.ledger import batch_time, iso_utc, utc
from tru.requests.schema import ACCEPTED, ALREADY_ERASED, ERASED, NEEDS_REVIEW, REJECTED, REQUEST_ID_REGEX

CERTIFICATES = Path("data/certificates")  # git-ignored (all of data/ is), not tracked by DVC

# what each kind of request asks, for the person who sent it
KIND_TEXT = {
    "user": "erase a user account: every interaction it had and the account's own part of the model",
    "item": "erase an item: every interaction with it and the item's own part of the model; no longer recommended",
    "interaction": "erase one interaction: one account's interaction with one item",
    "invalid": "a kind of erasure the service does not know",
}
# the audit gate's checks (tru/audit/gate.py), each in a sentence or two for the person who
# asked; a check not named here shows the description audit.json gives it
CHECK_TEXT = {
    "retain_recall_drop": (
        "Service for everyone else",
        "The erasure must not spoil recommendations for people who did not ask: their quality, measured "
        "on a sample, may not fall, beyond what chance explains, by more than the limit (a share of what it was).",
    ),
    "membership_vs_shadow": (
        "Detecting the erased data",
        "The erased interactions are compared with real interactions of the same people or items that "
        "no model was ever trained on, set aside for this purpose. If the model still ranks the erased "
        "ones higher, by more than chance gives in 1 erasure in 100, it still remembers them.",
    ),
    "item_residue": (
        "Items pushed by the erased data",
        "Items that lost much of their activity in this erasure, and any declared targets of fake "
        "accounts, may not stay recommended more than items of the same popularity that the erasure "
        "did not touch.",
    ),
    "forget_recall_ratio": (
        "Erased items recommended back",
        "How often the model still recommends the erased items to the people who asked, as a share "
        "of how often it did before. Their remaining history suggests some of these items even to a "
        "model that never saw the erased data, so current audits show this figure without judging it.",
    ),
    "backdoor_lift": (
        "A planted test pattern",
        "Test batches plant fake accounts that push one item; erasing them must take the push away. "
        "Judged only in batches that erase them.",
    ),
    # audits of batches erased before the membership test against never-trained pairs: their
    # certificates still read their own audit.json
    "mia_balanced_accuracy": (
        "Detecting the erased data",
        "A simulated attacker reads the model's recommendations and tries to tell the erased "
        "interactions from ones the model never saw; 0.5 is a coin toss, and the attacker may do no "
        "better than the limit.",
    ),
}
VERDICTS = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE (promoted by policy)"}
# the badge of the certificate: its class in evidence.css and its words
OUTCOMES = {
    ERASED: ("PASS", "ERASED"),
    ALREADY_ERASED: ("PASS", "ALREADY ERASED"),
    REJECTED: ("FAIL", "NOT ERASED"),
    NEEDS_REVIEW: ("UNKNOWN", "NOT ERASED YET"),
    ACCEPTED: ("UNKNOWN", "NOT ERASED YET"),
}


def when(iso: str | None) -> str | None:
    """A ledger time (`2026-01-01T02:00:00Z`) as a person reads it: `2026-01-01 02:00:00 UTC`."""
    if not iso:
        return None
    try:
        return utc(datetime.fromisoformat(iso)).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def _pdf_sha256(root: Path, batch_id: str) -> str | None:
    """The evidence PDF's sha256 as the batch's sidecar records it (None before the report):
    what `tru evidence verify` and `sha256sum` check the PDF against."""
    sidecar = root / layout.sidecar_path(batch_id)
    if not sidecar.is_file():
        return None
    for line in sidecar.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name.strip() == layout.PDF:
            return digest.strip()
    return None


def _audit(root: Path, batch_id: str) -> dict | None:
    """The audit gate's verdict and checks of the batch (None before its audit)."""
    path = root / layout.report_dir(batch_id) / "audit.json"
    if not path.is_file():
        return None
    try:
        audit = read_json(path)
    except ValueError:
        raise DataError(f"{path}: not valid JSON") from None
    checks = []
    for c in audit.get("checks") or []:
        if not isinstance(c, dict) or "name" not in c:
            continue
        title, meaning = CHECK_TEXT.get(c["name"], (c["name"], c.get("description") or ""))
        passed = c.get("passed")
        checks.append(
            {
                "title": title,
                "meaning": meaning,
                "result": "passed" if passed is True else "failed" if passed is False else "not judged",
                "css": "pass" if passed is True else "fail" if passed is False else "notrun",
                "value": c.get("value"),
                "op": OPS.get(str(c.get("op") or ""), str(c.get("op") or "")),
                "threshold": c.get("threshold"),
                "note": c.get("note") if passed is None else None,
                # a judged check's note: what its value rests on (the portal shows it; the one-page
                # certificate keeps to the plain sentence)
                "rests_on": c.get("note") if passed is not None else None,
            }
        )
    return {
        "verdict": VERDICTS.get(str(audit.get("verdict", "")).lower(), "UNKNOWN"),
        "basis": audit.get("basis"),
        "promoted": audit.get("promoted"),
        "current_model": audit.get("current_model"),
        "failed": [c["title"] for c in checks if c["result"] == "failed"],
        "checks": checks,
    }


def request_facts(request_id: str, root: str | Path = Path(".")) -> dict:
    """Everything the printout and the certificate of request `request_id` show:
    `tru.evidence.lookup.get_request`, and of the batch whose evidence stands for it (the one
    that erased it, else the one that recorded it): its audit, its evidence PDF's sha256, and
    the model it started from. DataError for an id the ledger does not hold."""
    root = Path(root)
    found = get_request(request_id, root)
    evidence_batch = found["erased_by"] or found["batch"]
    # the audit that stands for the request: its erasure's, or its own batch's while that batch is
    # under way or refused (a rejected request was part of no erasure)
    audited = found["erased_by"] is not None or found["status"] in (NEEDS_REVIEW, ACCEPTED)
    audit = _audit(root, evidence_batch) if audited else None
    return {
        **found,
        "status_label": STATUS_LABELS.get(found["status"], found["status"]),
        "listed": found["row"] <= MAX_REQUEST_ROWS,
        "audited": audited,
        "evidence_batch": evidence_batch,
        "evidence_pdf": layout.pdf_path(evidence_batch).as_posix(),
        "evidence_sha256": _pdf_sha256(root, evidence_batch),
        "audit": audit,
        "model_before": base_model_dir(evidence_batch, root) if audited else None,
        "model_after": audit["current_model"] if audit and audit["promoted"] is True else None,
        # where the erased data still exists today (tru/lifecycle/where.py); nothing before an erasure
        "where": where_lines(found["erased_by"], root) if found["erased_by"] else [],
    }


def _row_text(f: dict) -> str:
    """Where the batch's evidence PDF shows the request."""
    if f["listed"]:
        return f"{f['pdf']}, section Requests, row {f['row']} of {f['batch_rows']}"
    return (
        f"{f['pdf']} lists the first {MAX_REQUEST_ROWS} of {f['batch_rows']} requests; this one is row "
        f"{f['row']} of the batch's ledger ({paths.LEDGER.as_posix()}/{f['batch']}), counted in the PDF's totals"
    )


def summary_lines(f: dict) -> list[str]:
    """What `tru evidence get` prints for the facts `f` (`request_facts`): the request id the
    person gave and pseudonyms, never a raw user or item id."""
    status = f["status"]
    lines = [
        f"request {f['request_id']}: {f['status_label']}",
        "pseudonym: "
        + (
            f"{f['subject']} (the subject column of the batch PDF's request list)"
            if f["subject"]
            else "none (the request named no valid target)"
        ),
        f"kind: {f['kind'] or 'invalid'}",
        f"status: {f['status_label']}" + (f": {f['reason']}" if f["reason"] else ""),
        f"received: {when(f['received_at']) or 'not recorded'}",
    ]
    if f["erased_by"]:
        erased = f"{when(f['erased_at']) or 'time not recorded'}, by batch {f['erased_by']}"
        if f["erased_by"] != f["batch"]:
            erased += f" (for an earlier request for the same data; this one was recorded in batch {f['batch']})"
    elif status == ALREADY_ERASED:
        erased = "earlier (see its status); the ledger holds no erasure of its target"
    elif status == REJECTED:
        erased = "no, nothing was erased for this request"
    elif status == NEEDS_REVIEW:
        b = f["batch"]
        erased = f"not yet: the audit gate refused batch {b}, which awaits review (`tru review --batch {b}`)"
    else:
        erased = f"not yet: batch {f['batch']} has not finished"
    lines.append(f"erased: {erased}")
    audit = f["audit"]
    if status == REJECTED:
        lines.append("verdict: none, nothing of this request was audited")
    elif not f["audited"]:
        lines.append("verdict: none here, the ledger holds no erasure of its target")
    elif audit is None:
        lines.append(f"verdict: none yet, batch {f['evidence_batch']} has not been audited")
    else:
        lines.append(f"verdict: {audit['verdict']} (the audit gate of batch {f['evidence_batch']})")
    evidence = _row_text(f) + ("" if f["pdf_exists"] else " (not rendered here: `dvc pull` or `dvc repro`)")
    if f["evidence_batch"] != f["batch"]:
        evidence += f"; the erasure: {f['evidence_pdf']}"
    lines.append(f"evidence: {evidence}")
    if f["other_batches"]:
        lines.append(f"also recorded in batch(es) {', '.join(f['other_batches'])} (the same request id sent again)")
    if f.get("where"):
        lines.append("where the erased data is today:")
        lines += [f"  {line}" for line in f["where"]]
    return lines


def _context(f: dict) -> dict:
    """The certificate template's context: the facts, with dates for a person and the badge."""
    badge, outcome = OUTCOMES.get(f["status"], ("UNKNOWN", f["status_label"].upper()))
    recorded = iso_utc(batch_time(f["batch"]))
    return {
        **f,
        "erased": f["status"] in (ERASED, ALREADY_ERASED),
        "badge": badge,
        "outcome": outcome,
        "kind_text": KIND_TEXT.get(f["kind"] or "invalid", KIND_TEXT["invalid"]),
        "received": when(f["received_at"]),
        "erased_on": when(f["erased_at"]),
        "status_on": when(f["status_at"]),
        # the PDF's dates: when the request was recorded, and when its status last changed
        "created": recorded,
        "modified": f["status_at"] or recorded,
        "row_text": _row_text(f),
    }


def render_certificate_html(facts: dict) -> str:
    """The certificate of `facts` (`request_facts`) as one self-contained HTML page."""
    from tru.evidence.render import environment

    return environment().get_template("certificate.html.j2").render(c=_context(facts))


def certificate_pdf(facts: dict) -> bytes:
    """The certificate as PDF bytes: rendered by `tru.evidence.render.pdf_bytes`, with the batch
    that recorded the request as its clock, so the same facts give the same bytes."""
    from tru.evidence.render import pdf_bytes

    return pdf_bytes({"batch": facts["batch"]}, render_certificate_html(facts))


def certificate_path(request_id: str, root: str | Path = Path("."), out: str | Path | None = None) -> Path:
    """Where the certificate of `request_id` goes: `out` (an existing folder: the file
    `<request id>.pdf` in it), else root/data/certificates/<request id>.pdf. DataError for a
    path under reports/, which git commits with the batch's lineage, and for a request id that
    cannot name a file (an id rejected for its form: pass `out`)."""
    root = Path(root)
    target = root / CERTIFICATES if out is None else Path(out)
    if out is None or target.is_dir():
        if not re.match(REQUEST_ID_REGEX, request_id):
            raise DataError(
                f"request id {request_id!r} cannot name a file (it is not a valid request id): "
                "give the certificate's file name with --pdf"
            )
        target = target / f"{request_id}.pdf"
    if target.resolve().is_relative_to((root / paths.REPORTS).resolve()):
        raise DataError(
            f"{target}: a certificate names the request id, and git commits {paths.REPORTS}/ with each "
            f"batch's lineage; write it elsewhere (by default {CERTIFICATES}/, which git ignores)"
        )
    return target


def write_certificate(facts: dict, root: str | Path = Path("."), out: str | Path | None = None) -> Path:
    """Render the certificate of `facts` (`request_facts`) to `certificate_path` (atomically).
    An erased request's certificate names its batch's evidence PDF by its sha256: DataError
    while that batch has no evidence yet."""
    root = Path(root)
    target = certificate_path(facts["request_id"], root, out)
    if facts["erased_by"] and facts["evidence_sha256"] is None:
        b = facts["erased_by"]
        raise DataError(
            f"batch {b} has no evidence yet ({layout.sidecar_path(b).as_posix()} missing), and a certificate of "
            f"erasure names its PDF's sha256: render it first (`tru report --batch {b}`)"
        )
    data = certificate_pdf(facts)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target
