"""Signed evidence (tru/evidence/signing.py): what a forger without the key cannot do. A flipped
byte in any manifest file, a manifest re-hashed after an edit, a re-rendered PDF, a PDF kept
aside that is not the signed one, a statement signed by another key: each is named by
`tru evidence verify`. The signature checks with openssl alone, without tru."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TEST_SIGNING_KEY
from test_evidence import B, make_batch
from typer.testing import CliRunner

from tru.errors import ConfigError
from tru.evidence import render_pdf, signing, verify
from tru.evidence.manifest import write_manifest, write_sidecar

KEY = signing.load_private_key(env={"TRU_SIGNING_KEY": TEST_SIGNING_KEY})


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> Path:
    root = make_batch(tmp_path_factory.mktemp("signed"))
    render_pdf(B, root)
    signing.sign(B, root, key=KEY)
    return root


@pytest.fixture
def copy(signed, tmp_path) -> Path:
    return shutil.copytree(signed, tmp_path / "batch")


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_statement_lists_every_file_with_its_digest_and_the_key(signed):
    st = json.loads(signing.statement_path(B, signed).read_bytes())
    assert st["_type"] == "https://in-toto.io/Statement/v1" and st["predicate"]["batch"] == B
    names = {s["name"] for s in st["subject"]}
    manifest = json.loads((signed / f"reports/{B}/manifest.json").read_text())
    assert names == {f["path"] for f in manifest["files"]} | {f"reports/{B}/manifest.json", f"reports/{B}/evidence.pdf"}
    fp = st["predicate"]["signing_key"]["fingerprint"]
    assert fp == signing.fingerprint(KEY.public_key()) and signing.public_key_path(fp, signed).is_file()
    assert verify(B, signed) == []
    # deterministic: signing again writes the same bytes
    before = signing.signature_path(B, signed).read_bytes()
    signing.sign(B, signed, key=KEY)
    assert signing.signature_path(B, signed).read_bytes() == before


def test_openssl_checks_the_signature_without_tru(signed):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    fp = signing.fingerprint(KEY.public_key())
    cmd = [
        "openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(signing.public_key_path(fp, signed)), "-rawin",
        "-in", str(signing.statement_path(B, signed)), "-sigfile", str(signing.signature_path(B, signed)),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0 and "Signature Verified Successfully" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("what", ["checkpoint", "request file", "audit", "pdf", "manifest"])
def test_a_flipped_byte_in_any_file_is_named(copy, what):
    path = {
        "checkpoint": f"data/batches/{B}/model/model.safetensors",
        "request file": f"data/deletions/batches/{B}/input/requests.jsonl",
        "audit": f"reports/{B}/audit.json",
        "pdf": f"reports/{B}/evidence.pdf",
        "manifest": f"reports/{B}/manifest.json",
    }[what]
    flip(copy / path)
    problems = verify(B, copy)
    assert problems, what
    if what in ("pdf", "manifest"):
        assert any(p.startswith(f"{path}: differs from what was signed") for p in problems), problems


def test_a_manifest_rehashed_without_the_key_is_refused(copy):
    """A forger edits audit.json and regenerates the manifest and its sidecar (what `tru report`
    does): every hash of the manifest agrees, the signature does not."""
    audit = copy / f"reports/{B}/audit.json"
    forged = json.loads(audit.read_text())
    forged["verdict"] = "pass"
    forged["failed"] = []
    audit.write_text(json.dumps(forged))
    write_manifest(B, copy)
    write_sidecar(B, copy)
    problems = verify(B, copy)
    assert any(
        p.startswith(f"reports/{B}/manifest.json: differs from what was signed")
        and p.endswith(f"re-hashed entries: reports/{B}/audit.json")
        for p in problems
    ), problems
    # re-signing needs the key; another key is named, not trusted
    other = signing.load_private_key(env={"TRU_SIGNING_KEY": "77" * 32})
    signing.sign(B, copy, key=other)
    assert verify(B, copy) == []  # consistent in itself: only the key's fingerprint tells
    trusted = copy / "operator.pem"
    shutil.copy(signing.public_key_path(signing.fingerprint(KEY.public_key()), copy), trusted)
    problems = verify(B, copy, trusted)
    assert any("the statement names" in p for p in problems) and any("signature does not match" in p for p in problems)


def test_an_unsigned_or_edited_statement_is_refused(copy):
    st = signing.statement_path(B, copy)
    st.write_bytes(st.read_bytes().replace(b'"batch"', b'"batch" ', 1))
    assert any("the signature does not match the statement" in p for p in verify(B, copy))
    st.unlink()
    assert any(p.endswith(f"`tru evidence sign --batch {B}`)") and "not signed" in p for p in verify(B, copy))


def test_a_pdf_kept_aside_is_compared_with_what_was_signed(copy, tmp_path, monkeypatch):
    from tru.cli import app

    kept = tmp_path / "kept.pdf"
    shutil.copy(copy / f"reports/{B}/evidence.pdf", kept)
    assert signing.check_against(B, kept, copy) == []
    (copy / "batches.yaml").write_text(f"batches:\n- id: {B}\n  prior: data/split\n  base_model: data/models/base\n")
    monkeypatch.chdir(copy)
    runner = CliRunner()
    r = runner.invoke(app, ["evidence", "verify", "--batch", B, "--against", str(kept)])
    assert r.exit_code == 0, r.output
    assert "is what was signed" in r.output and signing.fingerprint(KEY.public_key()) in r.output
    flip(kept)  # a re-render that differs, or a copy someone altered
    r = runner.invoke(app, ["evidence", "verify", "--batch", B, "--against", str(kept)])
    assert r.exit_code == 1 and "is neither the signed PDF" in r.output


def test_the_key_comes_from_the_environment_or_a_file_and_bad_keys_are_one_line(tmp_path):
    assert signing.fingerprint(signing.load_private_key(env={"TRU_SIGNING_KEY": TEST_SIGNING_KEY}).public_key())
    (tmp_path / ".tru-signing-key").write_text(TEST_SIGNING_KEY + "\n")
    assert signing.load_private_key(tmp_path / ".tru-signing-key", env={}) is not None
    with pytest.raises(ConfigError, match="not 64 hex digits"):
        signing.load_private_key(env={"TRU_SIGNING_KEY": "short"})
    with pytest.raises(ConfigError, match=r"no evidence signing key: \$TRU_SIGNING_KEY is not set"):
        signing.load_private_key(tmp_path / "absent", env={})


def record_signing_key(root: Path, fp: str) -> None:
    """What ingest does when a signing key is configured: the ledger's metadata names it."""
    import pyarrow.parquet as pq

    from tru.requests.ledger import META_KEY, requests_path

    path = requests_path(root / "data" / "ledger", B)
    table = pq.read_table(path)
    meta = dict(table.schema.metadata or {})
    body = json.loads(meta.get(META_KEY, b"{}"))
    meta[META_KEY] = json.dumps({**body, "signing_key": fp}, sort_keys=True).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)


def test_the_ledger_names_the_key_and_another_key_is_refused(copy):
    """Ingest records the signing key's fingerprint in the ledger (the PDF names it): a
    statement signed by any other key is named by verify, and `sign` refuses another key."""
    from tru.evidence import collect, render_html

    fp = signing.fingerprint(KEY.public_key())
    record_signing_key(copy, fp)
    assert signing.recorded_fingerprint(B, copy) == fp
    html = render_html(collect(B, copy))
    assert f'<tr><th>signing key</th><td><code class="hash">{fp}</code>' in html
    other = signing.load_private_key(env={"TRU_SIGNING_KEY": "77" * 32})
    with pytest.raises(ConfigError, match=f"is not the one batch {B}'s ledger recorded at ingest"):
        signing.sign(B, copy, key=other)
    # a forger who re-signs without tru's check: verify names the key the ledger expected
    body = signing.statement(B, signing.fingerprint(other.public_key()), copy)
    signing.statement_path(B, copy).write_bytes(body)
    signing.signature_path(B, copy).write_bytes(other.sign(body))
    from cryptography.hazmat.primitives import serialization

    pem = other.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing.public_key_path(signing.fingerprint(other.public_key()), copy).write_bytes(pem)
    problems = verify(B, copy)  # the signature itself checks out: only the ledger's record tells
    assert any(f"but the batch's ledger recorded key {fp[:16]}…" in p for p in problems), problems
