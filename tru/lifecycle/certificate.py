"""The certificate of a purge (`tru purge` writes it): what was removed, where from, by which
method, how it was verified, and the erasure batches whose data it was, with the fields of
NIST SP 800-88 Rev. 1, Appendix G (person, media, sanitization details, verification). One
small PDF per purge, `reports/lifecycle/purge-generation-<N>.pdf`, beside the facts it shows
(`.json`); both hold hashes, counts and batch ids, never a raw id or a machine path."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

from tru import __version__, paths
from tru.io import atomic_path, write_json
from tru.requests.ledger import iso_utc, new_batch_id

CERTIFICATES = paths.REPORTS / "lifecycle"


def _operator(root: Path) -> str:
    """Who ran the purge: the repository's git user.name, else the automated pipeline."""
    try:
        res = subprocess.run(["git", "config", "user.name"], cwd=root, capture_output=True, text=True, timeout=30)
        name = res.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        name = ""
    return name or "tru pipeline (automated run)"


def _pdf_sha256(root: Path, batch_id: str) -> str | None:
    side = root / paths.report_dir(batch_id) / "evidence.sha256"
    if not side.is_file():
        return None
    for line in side.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == "evidence.pdf":
            return parts[0]
    return None


def verification_text(v: dict | None) -> tuple[str, bool | None, str]:
    """The verification's sentence, outcome (None: not run) and badge label."""
    if v is None:
        return (
            "not run: the purge resumed after its ledger files had lost the raw ids the scan looks for",
            None,
            "NOT VERIFIED",
        )
    where = ", ".join(f"{k}: {n}" for k, n in v["holding"].items())
    sentence = (
        "`tru scan` for the batches’ subjects (their raw ids, read from the ledger before it was redacted, kept "
        f"in memory only), over every file of the work tree, the DVC cache and local remotes, after the removal: "
        f"files or objects holding them: {where}"
    )
    return sentence, not v["holds_subjects"], "VERIFIED" if not v["holds_subjects"] else "RESIDUE FOUND"


def certificate_facts(
    plan: dict,
    tombstones: list[dict],
    verification: dict | None,
    gens: list[dict],
    now: datetime,
    root: Path,
    dataset: str,
) -> dict:
    """What the certificate shows."""
    closing = [g for g in gens if int(g["generation"]) in plan["consolidations"]]
    sentence, verified, label = verification_text(verification)
    left = [t for t in tombstones if t.get("not_removed_from")]
    unopened = [f"{r['remote']} ({r.get('why', 'not opened')})" for r in plan["not_purged"]]
    if left or unopened:
        # a remote that kept objects: the scan cannot see into it, so nothing there is verified
        sentence += (f"; {len(left)} object(s) could not be removed from a remote (listed below)" if left else "") + (
            f"; not opened, so neither checked nor purged: {', '.join(unopened)}" if unopened else ""
        )
        verified, label = False, "INCOMPLETE"
    return {
        "generations": ", ".join(map(str, plan["generations"])),
        "consolidations": ", ".join(map(str, plan["consolidations"])),
        "dataset": dataset,
        "at": iso_utc(now),
        "operator": _operator(root),
        "version": __version__,
        "stores": sorted(set(plan["store_names"].values()) | {f"remote {n}" for n in plan.get("far_remotes", [])})
        + ["work tree"],
        "not_purged": [r["remote"] for r in plan["not_purged"]]
        + sorted({k.removeprefix("remote ") for t in left for k in t["not_removed_from"]}),
        "retention_days": ", ".join(str(g.get("retention_days")) for g in closing),
        "consolidated_at": ", ".join(str(g.get("finished_at")) for g in closing),
        "retain_until": ", ".join(str(g.get("retain_until")) for g in closing),
        "verification": sentence,
        "verified": verified,
        "verification_label": label,
        "batches": [{"id": b, "pdf_sha256": _pdf_sha256(root, b)} for b in plan["batches"]],
        "objects": [
            {k: t[k] for k in ("object", "held", "removed_from")} | {"not_removed_from": t.get("not_removed_from", {})}
            for t in tombstones
        ],
        "paths": plan["paths"],
        "scan": verification,
    }


def write_certificate(facts: dict, root: Path, now: datetime) -> Path:
    """Render the certificate to reports/lifecycle/purge-generation-<N>.pdf (and the facts to
    .json beside it); the PDF's clock is the purge's time, so the same facts give the same bytes."""
    from tru.evidence.render import environment, pdf_bytes

    html = environment().get_template("purge_certificate.html.j2").render(c=facts)
    data = pdf_bytes({"batch": new_batch_id(now)}, html)
    stem = "purge-generation-" + facts["generations"].replace(", ", "-")
    target = root / CERTIFICATES / f"{stem}.pdf"
    write_json(target.with_suffix(".json"), facts)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target
