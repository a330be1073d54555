"""One request, for the person who sent it: what `tru evidence get REQUEST_ID` prints, and the
one-page certificate it writes with `--pdf` / `--certificate`.

The fixture batch of test_evidence (its ledger written through the real ledger API), with its
audit gate passed (a batch whose requests are erased is a batch that passed), its evidence
rendered, and a second, later batch: a new request for a user the first batch erased
(`already_erased`), the first batch's request id sent again, and a request id rejected for its
form that cannot name a file.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest
from test_evidence import KEY, B, make_batch, pdf_text, raw_texts
from typer.testing import CliRunner

from tru.cli import app
from tru.evidence import render_pdf
from tru.evidence.certificate import certificate_pdf, request_facts, summary_lines
from tru.io import sha256_file
from tru.requests.ledger import LedgerWriter
from tru.requests.pseudonym import subject
from tru.requests.schema import LEDGER_SCHEMA

B2 = "b20260201T020000Z"
ROOT = Path(__file__).resolve().parents[1]
BAD_ID = "../escape"
# request_id -> (kind, user_id, status, reason) of the later batch
LATER = {
    "req-0101": ("user", "rawuser-0001", "already_erased", f"user already erased in batch {B}"),
    "req-0001": (
        "user",
        "rawuser-0001",
        "already_erased",
        f"duplicate request_id (first recorded in batch {B}); user already erased in batch {B}",
    ),
    BAD_ID: ("user", "rawuser-0002", "rejected", "request_id: not of the allowed form"),
}


def _pass_the_gate(root: Path) -> None:
    """The fixture's audit refused the batch; a batch whose requests are erased passed."""
    path = root / "reports" / B / "audit.json"
    audit = json.loads(path.read_text())
    for check in audit["checks"]:
        if check["passed"] is False:
            check.update(passed=None, note="too few pairs to judge")
    audit.update(verdict="pass", failed=[], promoted=True, current_model=f"data/batches/{B}/model")
    path.write_text(json.dumps(audit, indent=2))


def _write_later_batch(root: Path) -> None:
    cols: dict[str, list] = {name: [] for name in LEDGER_SCHEMA.names}
    for line, (rid, (kind, uid, status, reason)) in enumerate(LATER.items(), 1):
        values = {
            "batch_id": B2,
            "source": "later.jsonl",
            "line": line,
            "request_id": rid,
            "kind": kind,
            "user_id": uid,
            "item_id": None,
            "user_index": -1,
            "item_index": -1,
            "subject": subject(KEY, kind, uid, None),
            "status": status,
            "reason": reason,
            "duplicate_of": None,
            "received_at": "2026-01-20T08:30:00Z",
            "recorded_at": "2026-02-01T02:00:00Z",
            "request_reason": "PRIVATE-LATER-TEXT",
        }
        for k, v in values.items():
            cols[k].append(v)
    with LedgerWriter(root / "data" / "ledger", B2) as w:
        w.write(pa.table(cols, schema=LEDGER_SCHEMA))
        w.close([{"name": "later.jsonl", "rows": len(LATER)}])


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = make_batch(tmp_path_factory.mktemp("cert"))
    _pass_the_gate(root)
    render_pdf(B, root)
    _write_later_batch(root)
    return root


def get(root: Path, monkeypatch, *args: str):
    monkeypatch.chdir(root)
    return CliRunner().invoke(app, ["evidence", "get", *args], env={"COLUMNS": "250"})


def private_texts(request_id: str) -> list[str]:
    """What must never be printed or rendered for `request_id`: every raw id, the other
    requests' ids and every requester's own text."""
    texts = raw_texts() + ["rawuser-0001", "rawuser-0002", "PRIVATE-LATER-TEXT", "req-0101"]
    return sorted({t for t in texts if t != request_id})


def test_get_prints_an_erased_request(root, monkeypatch):
    r = get(root, monkeypatch, "req-0002")
    assert r.exit_code == 0, r.output
    pseudo = subject(KEY, "user", "rawuser-0002", None)
    assert r.stdout.splitlines() == [
        "request req-0002: erased",
        f"pseudonym: {pseudo} (the subject column of the batch PDF's request list)",
        "kind: user",
        "status: erased",
        "received: 2025-12-31 09:05:00 UTC",
        f"erased: 2026-01-01 02:00:00 UTC, by batch {B}",
        f"verdict: PASS (the audit gate of batch {B})",
        f"evidence: reports/{B}/evidence.pdf, section Requests, row 2 of 12",
        "where the erased data is today:",
        "  model in service: erased (the batch's model, or a later batch's built on it)",
        "  data: still in the data the pipeline keeps (dataset, splits, the base model trained on them) "
        "until the next consolidation retrains without it (`tru consolidate`)",
        "  batch files: the batch's sets and checkpoints, the request file and their versions in the DVC cache "
        "and remote, kept for lifecycle.retention_days after that consolidation, then purged (`tru purge`)",
        "  ledger: the request with its raw ids, kept until that purge; then the request id, kind, pseudonym "
        "and status only",
        "certificate: `--certificate` writes data/certificates/req-0002.pdf (git-ignored), "
        "`--pdf PATH` writes it where you say",
    ]
    for text in private_texts("req-0002"):
        assert text not in r.output, text


def test_get_prints_a_rejected_request_with_its_reason(root, monkeypatch):
    r = get(root, monkeypatch, "req-0007")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "request req-0007: rejected"
    assert "status: rejected: unknown user_id (not in the dataset)" in lines
    assert "received: 2025-12-31 13:00:00 UTC" in lines
    assert "erased: no, nothing was erased for this request" in lines
    assert "verdict: none, nothing of this request was audited" in lines
    assert f"evidence: reports/{B}/evidence.pdf, section Requests, row 7 of 12" in lines
    assert "rawuser-0099" not in r.output  # the unknown id it named


def test_get_names_the_earlier_batch_that_erased_an_already_erased_request(root, monkeypatch):
    r = get(root, monkeypatch, "req-0101")
    assert r.exit_code == 0, r.output
    pseudo = subject(KEY, "user", "rawuser-0001", None)  # the same target as req-0001: the same pseudonym
    assert r.stdout.splitlines()[:8] == [
        "request req-0101: already erased",
        f"pseudonym: {pseudo} (the subject column of the batch PDF's request list)",
        "kind: user",
        f"status: already erased: user already erased in batch {B}",
        "received: 2026-01-20 08:30:00 UTC",
        f"erased: 2026-01-01 02:00:00 UTC, by batch {B} (for an earlier request for the same data; "
        f"this one was recorded in batch {B2})",
        f"verdict: PASS (the audit gate of batch {B})",
        f"evidence: reports/{B2}/evidence.pdf, section Requests, row 1 of 3 (not rendered here: `dvc pull` or "
        f"`dvc repro`); the erasure: reports/{B}/evidence.pdf",
    ]
    for text in private_texts("req-0101"):
        assert text not in r.output, text
    # the first request's id sent again later: the row that erased it, and the resend named
    again = get(root, monkeypatch, "req-0001").stdout.splitlines()
    assert f"erased: 2026-01-01 02:00:00 UTC, by batch {B}" in again
    assert f"also recorded in batch(es) {B2} (the same request id sent again)" in again


def test_an_unknown_request_id_is_one_line_and_exit_status_2(root, monkeypatch):
    r = get(root, monkeypatch, "req-9999", "--certificate")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        "error: request 'req-9999' is not in the ledger (data/ledger: 2 batch(es) searched); "
        "check the id as the requester sent it (the `request_id` of the request file)"
    ]
    assert not (root / "data" / "certificates").exists()


def test_certificate_is_byte_identical_and_one_page(root, monkeypatch, tmp_path):
    from pypdf import PdfReader

    first, second = tmp_path / "first.pdf", tmp_path / "second.pdf"
    r = get(root, monkeypatch, "req-0002", "--pdf", str(first))
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == (
        f"certificate: {first.as_posix()} (it names the request id: for the requester, never for git)"
    )
    assert get(root, monkeypatch, "req-0002", "--pdf", str(second)).exit_code == 0
    assert first.read_bytes() == second.read_bytes()
    assert certificate_pdf(request_facts("req-0002", root)) == first.read_bytes()
    elsewhere = shutil.copytree(root, tmp_path / "another" / "checkout")  # no path of the machine in it
    assert certificate_pdf(request_facts("req-0002", elsewhere)) == first.read_bytes()
    reader = PdfReader(io.BytesIO(first.read_bytes()))
    assert len(reader.pages) == 1
    assert reader.metadata["/CreationDate"].startswith("D:20260101020000")  # the batch's time, not the clock
    assert reader.metadata["/Title"] == "Certificate of erasure: request req-0002"


def test_certificate_text_names_request_batch_dates_and_verdict_and_no_raw_id(root):
    text = pdf_text(certificate_pdf(request_facts("req-0002", root)))
    flat = " ".join(text.split())
    pdf_sha = sha256_file(root / "reports" / B / "evidence.pdf")
    for expected in (
        "Certificate of erasure",
        "ERASED",
        "req-0002",
        subject(KEY, "user", "rawuser-0002", None),
        B,
        "received 2025-12-31 09:05:00 UTC",
        "2026-01-01 02:00:00 UTC",
        "PASS",
        "Detecting the erased data",
        "data/models/base",
        "row 2 of 12",
        pdf_sha,
        f"tru evidence verify --batch {B}",
        f"sha256sum reports/{B}/evidence.pdf",
        "Erasure certificate · request req-0002",  # the page's footer
    ):
        assert expected in flat, expected
    for private in private_texts("req-0002"):
        assert private not in flat, private


def test_requests_not_erased_get_a_page_that_says_so(root):
    from pypdf import PdfReader

    rejected = certificate_pdf(request_facts("req-0007", root))
    flat = " ".join(pdf_text(rejected).split())
    assert "Erasure request: not erased" in flat and "NOT ERASED" in flat
    assert "Certificate of erasure" not in flat
    assert "unknown user_id (not in the dataset)" in flat and "Nothing was erased for this request" in flat
    assert "The audit of the erasure" not in flat  # a rejected request was part of no erasure
    assert len(PdfReader(io.BytesIO(rejected)).pages) == 1

    pending = " ".join(pdf_text(certificate_pdf(request_facts("req-0005", root))).split())
    assert "Erasure request: not erased yet" in pending and "NOT ERASED YET" in pending

    earlier = certificate_pdf(request_facts("req-0101", root))
    flat = " ".join(pdf_text(earlier).split())
    assert "Certificate of erasure" in flat and "ALREADY ERASED" in flat
    assert f"by deletion batch {B}" in flat and f"recorded in batch {B2}" in flat
    assert sha256_file(root / "reports" / B / "evidence.pdf") in flat  # the evidence of the batch that erased it
    assert len(PdfReader(io.BytesIO(earlier)).pages) == 1
    for private in private_texts("req-0101"):
        assert private not in flat, private


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_certificates_go_to_a_git_ignored_folder_and_never_under_reports(root, monkeypatch, tmp_path):
    work = shutil.copytree(root, tmp_path / "work")
    shutil.copy(ROOT / ".gitignore", work / ".gitignore")
    r = get(work, monkeypatch, "req-0002", "--certificate")
    assert r.exit_code == 0, r.output
    made = work / "data" / "certificates" / "req-0002.pdf"
    assert made.read_bytes().startswith(b"%PDF-")
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    ignored = subprocess.run(["git", "check-ignore", "-q", "data/certificates/req-0002.pdf"], cwd=work)
    assert ignored.returncode == 0, "the default certificate folder must be git-ignored"

    r = get(work, monkeypatch, "req-0002", "--pdf", f"reports/{B}")
    assert r.exit_code == 2 and "git commits reports/" in r.stderr
    assert not (work / "reports" / B / "req-0002.pdf").exists()
    # an id rejected for its form cannot name a file; the person still gets a certificate, named by the officer
    r = get(work, monkeypatch, BAD_ID, "--certificate")
    assert r.exit_code == 2 and "cannot name a file" in r.stderr
    assert get(work, monkeypatch, BAD_ID, "--pdf", "cert.pdf").exit_code == 0
    assert (work / "cert.pdf").is_file() and not (work / "data" / "escape.pdf").exists()


def test_a_request_beyond_the_listed_rows_says_where_it_is(root):
    facts = {**request_facts("req-0002", root), "row": 245, "batch_rows": 480, "listed": False}
    evidence = next(line for line in summary_lines(facts) if line.startswith("evidence: "))
    assert evidence == (
        f"evidence: reports/{B}/evidence.pdf lists the first 200 of 480 requests; this one is row 245 of "
        f"the batch's ledger (data/ledger/{B}), counted in the PDF's totals"
    )
