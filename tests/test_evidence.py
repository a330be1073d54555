"""Compliance evidence of one deletion batch: collect, manifest, verify, HTML, PDF, lookup.

The batch is a fixed small project tree under tests/fixtures/evidence/ (hand-written JSON in
the formats the stages write, tiny checkpoints); its ledger is written here through the real
ledger API (LedgerWriter, append_status), with a fixed pseudonymisation key.

Golden file: tests/golden/evidence.html is the rendered HTML of that batch, with the plots'
data URIs, the hashes of Parquet files (their bytes depend on the pyarrow version) and the
code digest (it changes with every edit of the package) replaced by placeholders. After an
intended change to the templates or the fixture, regenerate it with

    TRU_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_evidence.py -k golden

and review the diff.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from tru.errors import DataError, TruError
from tru.evidence import (
    build_manifest,
    collect,
    get_request,
    render_html,
    render_pdf,
    verify,
    write_manifest,
)
from tru.evidence.lineage import code_digest
from tru.evidence.manifest import lock_problems, write_sidecar
from tru.evidence.plots import branch_scales
from tru.evidence.render import pdf_bytes
from tru.requests.ledger import LedgerWriter, append_status, batch_time
from tru.requests.pseudonym import subject
from tru.requests.schema import LEDGER_SCHEMA

FIXTURE = Path(__file__).parent / "fixtures" / "evidence"
GOLDEN = Path(__file__).parent / "golden" / "evidence.html"
B = "b20260101T020000Z"
KEY = bytes.fromhex("0f" * 32)
SECTION_TITLES = (  # in the document's order: the part for people, then the appendix for engineers
    "Summary",
    "Requests",
    "Audits",
    "Where this data still exists",
    "Limits",
    "Component map",
    "Branch scales and layer selection",
    "Ranking gate and exposure",
    "Metrics",
    "Work done",
    "Artifact manifest",
    "How to reproduce",
)

INJECTION = "<script>alert(1)</script> <b>bold</b>"
LONG_WORD = "Erasure" + "x" * 400 + "END"
WORLD_TEXT = f"مراجعة يدوية مطلوبة · בדיקה ידנית נדרשת · 需要人工审核 · 手動確認 · {LONG_WORD}"
# request_id -> (ingest status, ingest reason, duplicate_of); later stages add events below
INGEST = {
    "req-0001": ("accepted", None, None),
    "req-0002": ("accepted", None, None),
    "req-0003": ("accepted", None, None),
    "req-0004": ("accepted", None, None),
    "req-0005": ("accepted", None, None),
    "req-0006": ("accepted", None, None),
    "req-0007": ("rejected", "unknown user_id (not in the dataset)", None),
    "req-0008": ("rejected", "unknown item_id (not in the dataset)", None),
    "req-0009": ("accepted", "same target as an earlier request (see duplicate_of); erased once", "req-0001"),
    "req-0010": ("rejected", "kind 'account<script>' is not one of user, item, interaction", None),
    "req-0011": ("already_erased", "interaction already erased in batch b20251201T020000Z", None),
    "req-0012": ("accepted", None, None),
}


def _requests() -> list[dict]:
    path = FIXTURE / "data" / "deletions" / "batches" / B / "input" / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def raw_texts() -> list[str]:
    """Everything of the ledger that must never reach the evidence: raw ids, request ids and
    the requesters' own text."""
    out = []
    for r in _requests():
        out += [r["request_id"], r.get("user_id"), r.get("item_id"), r.get("reason")]
    return [t for t in out if t]


def write_ledger(root: Path) -> None:
    rows = _requests()
    recorded = "2026-01-01T02:00:00Z"
    cols = {name: [] for name in LEDGER_SCHEMA.names}
    for line, r in enumerate(rows, 1):
        status, reason, dup = INGEST[r["request_id"]]
        valid_kind = r["kind"] in ("user", "item", "interaction")
        values = {
            "batch_id": B,
            "source": "requests.jsonl",
            "line": line,
            "request_id": r["request_id"],
            "kind": r["kind"],
            "user_id": r.get("user_id"),
            "item_id": r.get("item_id"),
            "user_index": -1,
            "item_index": -1,
            "subject": subject(KEY, r["kind"], r.get("user_id"), r.get("item_id")) if valid_kind else None,
            "status": status,
            "reason": reason,
            "duplicate_of": dup,
            "received_at": r["received_at"],
            "recorded_at": recorded,
            "request_reason": r.get("reason"),
        }
        for k, v in values.items():
            cols[k].append(v)
    ledger = root / "data" / "ledger"
    with LedgerWriter(ledger, B) as w:
        w.write(pa.table(cols, schema=LEDGER_SCHEMA))
        w.close([{"name": "requests.jsonl", "rows": len(rows)}])
    at = batch_time(B)
    append_status(
        ledger, B, "unlearn", ["req-0001", "req-0002", "req-0003", "req-0004", "req-0009", "req-0012"], "erased", at
    )
    append_status(ledger, B, "audit", ["req-0005", "req-0006"], "needs_review", at, reason=INJECTION)
    append_status(ledger, B, "review", ["req-0006"], "needs_review", at, reason=WORLD_TEXT)


def make_batch(root: Path) -> Path:
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True)
    write_ledger(root)
    return root


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The fixture batch with its evidence rendered once: (root, pdf bytes, html)."""
    root = make_batch(tmp_path_factory.mktemp("batch"))
    pdf = render_pdf(B, root)
    sign_fixture(root)
    return root, pdf.read_bytes(), render_html(collect(B, root))


def sign_fixture(root: Path) -> None:
    """What the flows do after the report stage: sign the evidence (the tests' key)."""
    from conftest import TEST_SIGNING_KEY

    from tru.evidence.signing import load_private_key, sign

    sign(B, root, key=load_private_key(env={"TRU_SIGNING_KEY": TEST_SIGNING_KEY}))


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    text = "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)
    return text.replace("\x00", "")  # pypdf reads some two-byte runs of WeasyPrint's fonts with NULs between


def normalise(html: str) -> str:
    """Placeholders for what depends on library versions, not on our templates or inputs."""
    html = re.sub(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "data:image/svg+xml;base64,PLOT", html)
    html = re.sub(r"(\d+ files, )[0-9,]+( bytes)", r"\1TOTAL\2", html)
    digest = code_digest()
    html = html.replace(digest, "CODE-DIGEST").replace(digest[:16], "CODE-DIGEST")
    html = re.sub(r"(<tr><th>renderer</th><td>).*?(<br><span)", r"\1RENDERER\2", html)
    return re.sub(
        r'(\.parquet</td><td class="n">)[0-9,]+(</td><td class="hash">)[0-9a-f]{64}', r"\1BYTES\2PARQUET-SHA256", html
    )


# ---------------------------------------------------------------------------------- tests


def test_html_matches_golden(rendered):
    _, _, html = rendered
    got = normalise(html)
    if os.environ.get("TRU_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(got, encoding="utf-8")
    assert GOLDEN.is_file(), "no golden file yet: run with TRU_UPDATE_GOLDEN=1 (see the module docstring)"
    assert got == GOLDEN.read_text(encoding="utf-8")


def test_pdf_has_every_section_and_no_raw_id(rendered):
    _, data, html = rendered
    assert data.startswith(b"%PDF-")
    text = pdf_text(data)
    for title in SECTION_TITLES:
        assert title in text, title
        assert f"<h2>{title}</h2>" in html
    assert "FAIL" in text and "mia_balanced_accuracy" in text  # the gate's verdict and its failed check
    for raw in raw_texts():
        assert raw not in text, raw
        assert raw not in html, raw
    # pseudonyms are there instead: every subject of the ledger rows shown
    pseudo = subject(KEY, "user", "rawuser-0001", None)
    assert pseudo in html and pseudo[:16] in text.replace("\n", "")


def test_no_request_file_name_or_forgotten_item_in_the_evidence(rendered):
    """The manifest and the PDF are committed: a request file's name is chosen by whoever sends
    it and can name a person, and components.json must not list the forgotten items. The
    request file is there by its position and its hash."""
    root, data, html = rendered
    name = "requests.jsonl"
    archived = root / "data" / "deletions" / "batches" / B / "input" / name
    assert archived.is_file()
    manifest = (root / "reports" / B / "manifest.json").read_text()
    for text in (pdf_text(data).replace("\n", ""), html, manifest):
        assert name not in text
    entry = next(f for f in json.loads(manifest)["files"] if f["role"] == "request files")
    assert entry["path"] == f"data/deletions/batches/{B}/input/file-1-of-1"
    assert entry["sha256"] == hashlib.sha256(archived.read_bytes()).hexdigest()
    assert "file-1-of-1" in html
    comp = json.loads((root / "reports" / B / "components.json").read_text())
    assert set(comp["target_items"]) == {"count", "removed_share_median", "share_under_10pct", "fully_removed"}
    assert comp["rebuild"]["knn"]["text"] == {"items_with_new_neighbours": 4}
    assert "4 items get new neighbours" in html


def test_verify_names_request_files_by_position(rendered, tmp_path):
    root = shutil.copytree(rendered[0], tmp_path / "batch")
    folder = root / "data" / "deletions" / "batches" / B / "input"
    (folder / "requests.jsonl").write_text((folder / "requests.jsonl").read_text() + "\n")
    (folder / "alice-smith.csv").write_text("request_id,kind\n")
    problems = verify(B, root)
    assert problems == [
        f"data/deletions/batches/{B}/input/file-1-of-1: missing",
        f"data/deletions/batches/{B}/input/file-1-of-2: not in the manifest (added after the evidence was made)",
        f"data/deletions/batches/{B}/input/file-2-of-2: not in the manifest (added after the evidence was made)",
    ]
    (folder / "alice-smith.csv").unlink()
    problems = verify(B, root)
    assert len(problems) == 1 and problems[0].startswith(f"data/deletions/batches/{B}/input/file-1-of-1: changed")


def test_pdf_is_byte_identical_when_rendered_again(rendered):
    root, first, _ = rendered
    again = render_pdf(B, root, out=root / "again.pdf").read_bytes()
    assert again == first
    from pypdf import PdfReader

    meta = PdfReader(io.BytesIO(first)).metadata
    assert meta["/CreationDate"].startswith("D:20260101020000")  # the batch's time, not the wall clock
    assert meta["/Title"] == f"Erasure evidence: batch {B}"


def _git(cwd: Path, *args: str) -> str:
    """git in `cwd`, ignoring the user's and the system's configuration."""
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    out = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def _scaled(obj):
    """Every number in a JSON value, changed (as another run's wall clock would)."""
    if isinstance(obj, dict):
        return {k: _scaled(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scaled(v) for v in obj]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return round(obj * 3.7 + 1.25, 6)
    return obj


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_pdf_is_identical_in_a_clone_with_other_timings(rendered, tmp_path):
    """What an auditor's reproduction changes: another folder, a git checkout with its own
    HEAD and origin URL (the original is no checkout at all), other wall-clock seconds, and
    dvc.lock with or without the report stage's own entry (missing when a batch's PDF is first
    rendered, present when a reproduction renders it again). None of it may change a byte of
    the PDF or of the manifest."""
    root, first, _ = rendered
    clone = shutil.copytree(root, tmp_path / "elsewhere" / "clone")
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    del lock["stages"]["report@0"]
    (clone / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    timings = sorted((clone / "reports" / B / "timings").glob("*.json"))
    assert len(timings) == 5
    for path in timings:
        before = json.loads(path.read_text())
        after = _scaled(before)
        path.write_text(json.dumps(after, indent=2, sort_keys=True) + "\n")
        assert path.read_bytes() != (root / path.relative_to(clone)).read_bytes()
        assert all(after[k] != v for k, v in before.items()), path.name  # every value changed
    _git(clone, "init", "-q")
    _git(clone, "remote", "add", "origin", "https://git.example.com/compliance/tru.git")
    _git(clone, "add", "-A")
    _git(clone, "commit", "-q", "-m", "batch recorded", "--no-gpg-sign")
    assert re.fullmatch(r"[0-9a-f]{40}", _git(clone, "rev-parse", "HEAD"))
    assert _git(clone, "config", "--get", "remote.origin.url") == "https://git.example.com/compliance/tru.git"
    assert not (root / ".git").exists()  # the original: no checkout, no HEAD, no origin

    again = render_pdf(B, clone).read_bytes()
    assert hashlib.sha256(again).hexdigest() == hashlib.sha256(first).hexdigest()
    for name in ("manifest.json", "evidence.sha256"):  # the sidecar holds the PDF's and the manifest's hashes
        assert (clone / "reports" / B / name).read_bytes() == (root / "reports" / B / name).read_bytes(), name
    assert verify(B, clone) == []  # new timings are no problem: they are not artifacts
    html = render_html(collect(B, clone))
    assert "git.example.com" not in html and _git(clone, "rev-parse", "HEAD") not in html
    assert str(tmp_path) not in html and str(root) not in html  # no absolute path either
    assert "dvc repro --force --single-item sets@0 map@0 erase@0 repair@0 report@0\n" in html


def test_code_digest_covers_sources_only(tmp_path):
    pkg = tmp_path / "pkg"
    files = {"a.py": b"print(1)\n", "sub/b.html.j2": b"<p>{{ x }}</p>\n", "sub/c.css": b"p { margin: 0 }\n"}
    ignored = {
        "notes.txt": b"x",
        "__pycache__/a.cpython-311.pyc": b"x",
        "sub/__pycache__/d.py": b"x",
        ".hidden/e.py": b"x",
        "sub/.f.py": b"x",
    }
    for rel, data in {**files, **ignored}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_bytes(data)
    expected = hashlib.sha256()
    for rel in sorted(files):
        expected.update(rel.encode() + b"\0" + str(len(files[rel])).encode() + b"\0" + files[rel])
    assert code_digest(pkg) == expected.hexdigest()
    (pkg / "sub" / "c.css").write_bytes(b"p { margin: 1px }\n")
    assert code_digest.__wrapped__(pkg) != expected.hexdigest()  # uncached: the content counts
    assert re.fullmatch(r"[0-9a-f]{64}", code_digest())  # the running package


def test_pdf_refuses_fonts_the_stylesheet_does_not_name(monkeypatch):
    html = "<p style=\"font-family: 'DejaVu Sans'\">x</p>"
    assert pdf_bytes({"batch": B}, html).startswith(b"%PDF-")
    monkeypatch.setattr("tru.evidence.renderer.stylesheet_fonts", lambda: {"Noto Sans"})
    with pytest.raises(TruError, match="DejaVu Sans"):
        pdf_bytes({"batch": B}, html)


def test_external_text_is_escaped_and_wraps(rendered):
    root, data, html = rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert LONG_WORD in html and "مراجعة يدوية" in html and "בדיקה ידנית" in html and "需要人工审核" in html
    text = pdf_text(data)
    assert "<script>alert(1)</script>" in text.replace("\n", " ")  # shown as text, not run or dropped
    assert "Erasurexxxx" in text  # the long word is laid out (wrapped), not lost
    # the requests table is cut at 200 rows, with a count of the rest
    ev = collect(B, root)
    ev["requests"] = ev["requests"] * 40  # 480 rows
    ev["request_counts"]["total"] = 480
    many = render_html(ev)
    assert many.count('<td class="subject">') == 200
    assert "… and 280 more requests" in many


def test_manifest_lists_every_artifact_sorted(rendered):
    root, _, _ = rendered
    manifest = json.loads((root / "reports" / B / "manifest.json").read_text())
    paths = [f["path"] for f in manifest["files"]]
    assert paths == sorted(paths)
    for expected in (
        f"data/deletions/batches/{B}/input/file-1-of-1",  # by position, never by its own name
        f"data/ledger/{B}/requests.parquet",
        f"data/ledger/{B}/gate/status-review.parquet",
        f"data/batches/{B}/sets/forget.parquet",
        f"data/batches/{B}/unlearned/model.safetensors",
        f"data/batches/{B}/model/model.safetensors",
        f"data/batches/{B}/retrain/model.safetensors",
        "data/models/base/model.safetensors",
        f"reports/{B}/audit.json",
        f"reports/{B}/update_log.json",
    ):
        assert expected in paths, expected
    assert not any(p.endswith(("manifest.json", "evidence.pdf", "evidence.sha256")) for p in paths)
    # wall-clock timings differ on every run: in no file list, in no dvc.lock hash of the manifest
    assert (root / "reports" / B / "timings" / "methods.json").is_file()
    assert not any("/timings/" in p for p in paths)
    locked = [e["path"] for st in manifest["dvc_lock"].values() for e in st["deps"] + st["outs"]]
    assert f"reports/{B}/components.json" in locked and not any("/timings/" in p for p in locked)
    # the code by its content, not by a commit (a clone that reproduces the batch has another HEAD)
    assert manifest["code_digest"] == code_digest() and "git_commit" not in manifest
    # the batch's stages; not `train`, not batch 1's erase, not the report stage (its lock holds the last PDF's hash)
    assert sorted(manifest["dvc_lock"]) == ["erase@0", "map@0", "repair@0", "sets@0"]
    assert manifest == build_manifest(B, root)  # deterministic
    write_manifest(B, root)
    assert json.loads((root / "reports" / B / "manifest.json").read_text()) == manifest


def test_verify_names_a_flipped_byte_in_a_checkpoint(rendered, tmp_path):
    root = shutil.copytree(rendered[0], tmp_path / "batch")
    assert verify(B, root) == []
    ckpt = root / "data" / "batches" / B / "model" / "model.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 0x01
    ckpt.write_bytes(bytes(data))
    problems = verify(B, root)
    assert len(problems) == 1
    assert problems[0].startswith(f"data/batches/{B}/model/model.safetensors: changed")
    ckpt.unlink()
    (root / "reports" / B / "evidence.pdf").write_bytes(b"%PDF-1.7 tampered")
    (root / "data" / "batches" / B / "model" / "extra.bin").write_bytes(b"x")
    problems = verify(B, root)
    assert f"data/batches/{B}/model/model.safetensors: missing" in problems
    assert any(p.startswith(f"reports/{B}/evidence.pdf: changed") for p in problems)
    assert any(p.startswith(f"data/batches/{B}/model/extra.bin: not in the manifest") for p in problems)


def test_missing_optional_inputs_show_not_run(tmp_path):
    root = make_batch(tmp_path)
    for name in ("update_log.json", "repair_log.json"):
        (root / "reports" / B / name).unlink()
    shutil.rmtree(root / "reports" / B / "timings")
    (root / "dvc.lock").unlink()
    ev = collect(B, root)
    ev["audit"] = {"verdict": "pass", "checks": []}  # an audit that recorded nothing else
    del ev["metrics"]["retrain"]
    html = render_html(ev)
    for title in SECTION_TITLES:
        assert f"<h2>{title}</h2>" in html
    assert "Not run: there is no update log" in html and "Final repair: not run" in html
    assert "Membership inference: not run" in html and "Backdoor audit: not run" in html
    assert html.count("not run") >= 10
    (root / "reports" / B / "audit.json").unlink()
    with pytest.raises(DataError, match=r"audit\.json: missing"):
        collect(B, root)


def test_a_batch_that_needed_no_reverse_epoch_says_so(tmp_path):
    """TRU checks its stop rule before the first reverse epoch: a batch where it held at once
    has no epochs, its reason at the top of the log and the probe after the item refit."""
    root = make_batch(tmp_path)
    path = root / "reports" / B / "update_log.json"
    log = json.loads(path.read_text())
    log["epochs"] = []
    log["refit"] = {"items": 3, "pairs": 41, "steps": 30, "share": 0.2}
    log["probe_start"] = {"forget_recall@20": 0.0312, "membership_auc": 0.507, "retain_valid_recall@20": 0.2377}
    log["stop"] = (
        "before the first reverse epoch: forgotten pairs rank no higher than held-out ones; "
        "retain utility within tolerance"
    )
    path.write_text(json.dumps(log))
    html = render_html(collect(B, root))
    assert "No reverse epoch ran: the stop rule held before the first reverse epoch: forgotten pairs rank" in html
    assert '<td class="n">after refit</td>' in html and "0.0312" in html and "0.507" in html
    assert "own rows of 3 item(s)" in html
    assert re.search(r"<td>0 of at most [0-9]+: stop rule met</td>", html)
    assert "Ran all" not in html


def test_get_request_finds_batch_status_and_pdf(rendered):
    root, _, _ = rendered
    found = get_request("req-0006", root)
    assert found["batch"] == B and found["status"] == "needs_review" and found["stage"] == "review"
    assert found["pdf"] == f"reports/{B}/evidence.pdf" and found["pdf_exists"] is True
    assert found["subject"] == subject(KEY, "user", "rawuser-0005", None)
    assert get_request("req-0001", root)["status"] == "erased"
    with pytest.raises(DataError, match=r"'req-9999' is not in the ledger"):
        get_request("req-9999", root)


def test_plots_are_deterministic_svg():
    epochs = [{"epoch": e, "branch_scales": {"id": 1.0 + e / 10, "text": 0.5}} for e in (1, 2, 3)]
    first, second = branch_scales(epochs), branch_scales(epochs)
    assert first == second and first.startswith("data:image/svg+xml;base64,")
    assert branch_scales([]) is None


def test_verify_catches_an_edited_audit_rerendered_by_the_report_stage(rendered, tmp_path):
    """The manifest is rewritten by every report: an edited audit.json followed by `tru report`
    passes the manifest's own hashes, but dvc.lock still holds what the audit stage wrote."""
    root = shutil.copytree(rendered[0], tmp_path / "batch")
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    audit_path = f"reports/{B}/audit.json"
    entry = {"path": audit_path, "hash": "md5", "md5": hashlib.md5((root / audit_path).read_bytes()).hexdigest()}
    lock["stages"]["audit@0"] = {"cmd": f"tru audit --batch {B}", "outs": [entry]}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    assert lock_problems(B, root) == []
    forged = json.loads((root / audit_path).read_text())
    forged["verdict"] = "pass" if forged.get("verdict") != "pass" else "fail"
    (root / audit_path).write_text(json.dumps(forged))
    write_manifest(B, root)  # what the report stage does: re-hash what it finds
    write_sidecar(B, root)
    problems = verify(B, root)
    assert problems[0] == f"{audit_path}: differs from what audit@0 wrote (dvc.lock md5 {entry['md5'][:12]}…)"
    # ... and the re-hashed manifest is not the one that was signed
    assert problems[1].startswith(f"reports/{B}/manifest.json: differs from what was signed")
    assert problems[1].endswith(f"re-hashed entries: {audit_path}") and len(problems) == 2
    (root / audit_path).unlink()
    assert f"{audit_path}: missing (dvc.lock records it as an output of audit@0)" in lock_problems(B, root)


def test_a_batch_cleared_by_an_exact_retrain_says_why_it_passes(tmp_path):
    """A refused batch cleared by a review: the summary says the verdict rests on the method,
    and the check that would have failed shows its value and why it was not judged."""
    from tru.audit.gate import exact_retrain_verdict

    root = make_batch(tmp_path)
    ev = collect(B, root)
    failing = {**ev["audit"]["checks"][0], "passed": False}
    cleared = exact_retrain_verdict({"verdict": "fail", "failed": [failing["name"]], "checks": [failing]})
    ev["audit"] = {**ev["audit"], **cleared, "method": "retrain"}
    html = render_html(ev)
    assert "it passes by construction (exact retrain: the model was trained from scratch without the erased" in html
    assert "would fail its limit" in html and "a false alarm of the check, not residue" in html


def test_the_chains_check_is_shown_beside_the_verdict_when_the_audit_recorded_it(tmp_path):
    """The chain's membership check (tru/audit/chain.py) in the summary, in words, apart from
    the batch's verdict; an audit without it (an earlier version's) shows no such row."""
    root = make_batch(tmp_path)
    ev = collect(B, root)
    assert "the chain since the last consolidation" not in render_html(ev)
    check = {"verdict": "residue", "flagged": True, "auc": 0.5712, "threshold": 0.5571, "original_auc": 0.5926,
             "members": 345, "pairs": 351, "power": True}  # fmt: skip
    ev["audit"] = {**ev["audit"], "chain": check}
    html = render_html(ev)
    assert "<b>residue</b>: the membership test on the 345 interactions erased since the last consolidation" in html
    assert "AUC 0.571 against the threshold 0.557 (the base model: 0.593)" in html
    assert "interaction_residue" in html and "Not part of this batch’s verdict" in html
    ev["audit"]["chain"] = {**check, "verdict": "no power", "flagged": False, "original_auc": 0.55, "power": False}
    assert "the base model is below the threshold too" in render_html(ev)


def test_the_document_is_in_two_parts_people_first(rendered):
    """What a person reads comes first (summary, requests, what the checks found, limits); the
    engineers' appendix starts on a page of its own."""
    html = rendered[2]
    where = [html.index(f"<h2>{t}</h2>") for t in SECTION_TITLES]
    assert where == sorted(where)
    people = html.index('<h1 class="part" id="part-people">What was erased, and what the checks found</h1>')
    appendix = html.index('<h1 class="part appendix" id="part-engineers">Appendix for engineers')
    n_people = SECTION_TITLES.index("Limits") + 1
    assert people < where[0] and where[n_people - 1] < appendix < where[n_people]
    text = pdf_text(rendered[1])
    assert text.index("Limits") < text.index("Appendix for engineers") < text.index("Artifact manifest")


def test_no_contradiction_for_a_batch_erased_by_retrain_or_with_no_reverse_epoch(tmp_path):
    root = make_batch(tmp_path)
    ev = collect(B, root)
    ev["audit"] = {**ev["audit"], "method": "retrain"}
    del ev["metrics"]["retrain"]
    html = render_html(ev)
    assert "the batch’s model is itself an exact retrain" in html and "retrain reference: <span" not in html
    ev = collect(B, root)
    ev["update_log"] = {**ev["update_log"], "epochs": [], "mechanisms": {"gate": True, "scaling": True}}
    html = render_html(ev)
    assert "Branch scales: none, since no reverse epoch ran" in html and "scaling off" not in html


def test_the_pdf_is_the_same_with_or_without_harfbuzz_subsetting(rendered, monkeypatch):
    """WeasyPrint subsets fonts with HarfBuzz when libharfbuzz-subset is installed, else with
    fontTools, and the two give other bytes: the render pins fontTools, so a machine with the
    library gives the PDF a machine without it gives. The manifest says so, with the versions."""
    from weasyprint.pdf import fonts
    from weasyprint.text import ffi

    root, first, html = rendered
    for handle in (None, ffi.harfbuzz_subset):  # as if the library were absent, then as it is here
        monkeypatch.setattr(fonts, "harfbuzz_subset", handle)
        assert render_pdf(B, root, out=root / "again.pdf").read_bytes() == first
    if ffi.harfbuzz_subset is None:
        pytest.skip("libharfbuzz-subset is not installed here: only the fontTools path was rendered")
    manifest = json.loads((root / "reports" / B / "manifest.json").read_text())
    assert manifest["renderer"]["font_subsetting"].startswith("fontTools (pinned")
    assert manifest["renderer"]["packages"]["weasyprint"] and "renderer</th>" in html


def test_a_judged_check_shows_what_its_value_rests_on():
    """A retain drop above the limit that passes (its lower bound is within it) must say why in
    the evidence, as must a check not judged; a plain pass carries no note."""
    from tru.evidence.sections import _checks

    audit = {
        "checks": [
            {"name": "retain_recall_drop", "value": 0.06, "threshold": 0.05, "op": "<=", "passed": True,
             "note": "drop 0.060, one-sided 95% bounds 0.015 to 0.104 over 900 retained users' shadow pairs"},
            {"name": "backdoor_lift", "value": None, "threshold": 0.02, "op": "<=", "passed": None,
             "note": "the batch does not delete the built-in canary"},
            {"name": "membership_vs_shadow", "value": 0.5, "threshold": 0.6, "op": "<=", "passed": True, "power": True},
        ]
    }  # fmt: skip
    rows = {r["name"]: r for r in _checks(audit)}
    assert "bounds 0.015 to 0.104" in rows["retain_recall_drop"]["note"]
    assert rows["backdoor_lift"]["note"].startswith("the batch does not delete")
    assert rows["membership_vs_shadow"]["note"] is None
