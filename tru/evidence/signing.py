"""Signed evidence: a manifest anyone can regenerate proves nothing against a forger (edit
audit.json, rerun `tru report`, and the manifest agrees with the forged file), so the run that
made the evidence signs it.

What is signed is a statement in the shape of an in-toto Statement v1 (the format of the
OpenSSF model-signing work): every file of the batch's manifest, the manifest itself and the
PDF, each with its sha256 (`subject`), and what the evidence is about (`predicate`: the batch,
the key's fingerprint). The signature is a detached Ed25519 signature (RFC 8032: deterministic,
the same key and statement give the same bytes) over the statement file's exact bytes, so a
third party can check it without `tru`:

    openssl pkeyutl -verify -pubin -inkey reports/keys/<fingerprint>.pem -rawin \\
        -in reports/B/evidence.statement.json -sigfile reports/B/evidence.statement.sig
    sha256sum reports/B/evidence.pdf     # the same digest as the statement's subject

Files: reports/B/evidence.statement.json and .sig, git-tracked; the public key
reports/keys/<fingerprint>.pem, committed with the lineage, whose fingerprint (sha256 of the
raw public key) `tru evidence verify` prints, to compare with the one the operator publishes.

The private key is a 32-byte Ed25519 seed in hex: $TRU_SIGNING_KEY, else the git-ignored file
`.tru-signing-key` (`make key` creates one locally). Signing is a step of the nightly and review
flows after the report stage, never part of a DVC stage: an auditor's `dvc repro` re-renders
the evidence without the key and `tru evidence verify` checks the re-render against what the
operator signed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from tru import paths
from tru.errors import ConfigError, DataError
from tru.evidence import layout
from tru.io import atomic_path, read_json, sha256_file

KEY_ENV = "TRU_SIGNING_KEY"
KEY_FILE = ".tru-signing-key"
KEYS_DIR = Path("reports/keys")
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "urn:tru:erasure-evidence:v1"

_HOW = (
    f"set {KEY_ENV} to a 32-byte Ed25519 seed in hex, or create {KEY_FILE} in the project root: "
    f'`python -c "import secrets; print(secrets.token_hex(32))" > {KEY_FILE}` (git-ignored; `make key` does it)'
)


def load_private_key(path: str | Path | None = None, env: Mapping[str, str] | None = None):
    """The signing key (cryptography's Ed25519PrivateKey): $TRU_SIGNING_KEY, else the file
    `path` (default `.tru-signing-key`). ConfigError with instructions when neither is set."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    environ: Mapping[str, str] = os.environ if env is None else env
    where, text = f"${KEY_ENV}", environ.get(KEY_ENV, "")
    if not text:
        file = Path(path) if path is not None else Path(KEY_FILE)
        if not file.is_file():
            raise ConfigError(f"no evidence signing key: ${KEY_ENV} is not set and {file} does not exist; {_HOW}")
        where, text = str(file), file.read_text(encoding="utf-8", errors="replace")
    text = text.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise ConfigError(f"the evidence signing key in {where} is not 64 hex digits; {_HOW}")
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))


def configured_fingerprint() -> str | None:
    """The fingerprint of the signing key this machine is configured with; None without one.
    Ingest records it in the batch's ledger, so the evidence PDF (rendered before it is signed)
    can name the key that signs it, and `check` can tell a statement signed by another key."""
    try:
        return fingerprint(load_private_key().public_key())
    except ConfigError:
        return None


def recorded_fingerprint(batch_id: str, root: str | Path = ".") -> str | None:
    """The signing key's fingerprint the batch's ledger recorded at ingest; None when none was."""
    from tru.requests.ledger import batch_metadata, requests_path  # why: pyarrow, for this lookup only

    ledger = Path(root) / paths.LEDGER
    if not requests_path(ledger, batch_id).is_file():
        return None
    return batch_metadata(ledger, batch_id).get("signing_key")


def _raw_public(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_key) -> str:
    """sha256 (hex) of the raw 32-byte public key: what names the key everywhere."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()


def public_key_path(fp: str, root: str | Path = ".") -> Path:
    """reports/keys/<first 16 hex digits of the fingerprint>.pem."""
    return Path(root) / KEYS_DIR / f"{fp[:16]}.pem"


def statement_path(batch_id: str, root: str | Path = ".") -> Path:
    return Path(root) / layout.report_dir(batch_id) / layout.STATEMENT


def signature_path(batch_id: str, root: str | Path = ".") -> Path:
    return Path(root) / layout.report_dir(batch_id) / layout.SIGNATURE


def statement(batch_id: str, fp: str, root: str | Path = ".") -> bytes:
    """The statement of batch `batch_id`'s evidence (see the module's docstring), as the bytes
    that are signed: its manifest's files, the manifest and the PDF with their sha256."""
    root = Path(root)
    manifest_file = root / layout.manifest_path(batch_id)
    pdf = root / layout.pdf_path(batch_id)
    for f in (manifest_file, pdf):
        if not f.is_file():
            raise DataError(f"{f.relative_to(root)}: missing; the report stage writes it before the evidence is signed")
    manifest = read_json(manifest_file)
    subjects = {f["path"]: f["sha256"] for f in manifest["files"]}
    subjects[layout.manifest_path(batch_id).as_posix()] = sha256_file(manifest_file)
    subjects[layout.pdf_path(batch_id).as_posix()] = sha256_file(pdf)
    body = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "batch": batch_id,
            "code_digest": manifest.get("code_digest"),
            "signing_key": {"algorithm": "ed25519", "fingerprint": fp},
        },
    }
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def sign(batch_id: str, root: str | Path = ".", key=None) -> dict:
    """Sign batch `batch_id`'s evidence: write its statement, the detached signature and the
    public key (reports/keys/). Returns the paths and the key's fingerprint."""
    from cryptography.hazmat.primitives import serialization

    root = Path(root)
    key = key if key is not None else load_private_key(root / KEY_FILE)
    public = key.public_key()
    fp = fingerprint(public)
    recorded = recorded_fingerprint(batch_id, root)
    if recorded is not None and recorded != fp:
        raise ConfigError(
            f"the signing key {fp[:16]}… is not the one batch {batch_id}'s ledger recorded at ingest "
            f"({recorded[:16]}…), which its evidence names: sign with that key ($TRU_SIGNING_KEY or {KEY_FILE})"
        )
    body = statement(batch_id, fp, root)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    outputs = {
        public_key_path(fp, root): pem,
        statement_path(batch_id, root): body,
        signature_path(batch_id, root): key.sign(body),
    }
    for path, data in outputs.items():
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return {
        "fingerprint": fp,
        "statement": str(statement_path(batch_id, root)),
        "signature": str(signature_path(batch_id, root)),
        "public_key": str(public_key_path(fp, root)),
    }


def _load_public(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise DataError(f"{path}: not an Ed25519 public key")
    return key


def check(batch_id: str, root: str | Path = ".", trusted_key: str | Path | None = None) -> tuple[str | None, list[str]]:
    """Check batch `batch_id`'s signed statement: the signature against the public key it names
    (or `trusted_key`, a PEM file the verifier got elsewhere), then that the manifest and the
    PDF on disk are the ones signed, and that the manifest still records the signed digest of
    every file (the files themselves against the manifest: `tru.evidence.manifest.verify`).
    Returns the key's fingerprint (None when unsigned) and the problems, one line each."""
    from cryptography.exceptions import InvalidSignature

    root = Path(root)
    st, sig = statement_path(batch_id, root), signature_path(batch_id, root)
    rel = layout.report_dir(batch_id).as_posix()
    if not st.is_file() or not sig.is_file():
        return None, [
            f"{rel}: not signed (no {layout.STATEMENT} and {layout.SIGNATURE}; `tru evidence sign --batch {batch_id}`)"
        ]
    body = st.read_bytes()
    try:
        parsed = json.loads(body)
        fp = parsed["predicate"]["signing_key"]["fingerprint"]
        subjects = {s["name"]: s["digest"]["sha256"] for s in parsed["subject"]}
    except (ValueError, KeyError, TypeError):
        return None, [f"{rel}/{layout.STATEMENT}: not a valid statement"]
    key_file = Path(trusted_key) if trusted_key is not None else public_key_path(fp, root)
    if not key_file.is_file():
        return fp, [f"{key_file}: the public key of fingerprint {fp[:16]}… is missing"]
    public = _load_public(key_file)
    problems = []
    recorded = recorded_fingerprint(batch_id, root)
    if recorded is not None and recorded != fp:
        problems.append(
            f"{rel}/{layout.STATEMENT}: signed by key {fp[:16]}…, but the batch's ledger recorded key "
            f"{recorded[:16]}… when it was ingested"
        )
    if fingerprint(public) != fp:
        problems.append(f"{key_file}: a key of fingerprint {fingerprint(public)[:16]}…, the statement names {fp[:16]}…")
    try:
        public.verify(sig.read_bytes(), body)
    except InvalidSignature:
        problems.append(
            f"{rel}/{layout.SIGNATURE}: the signature does not match the statement (edited, or another key)"
        )
        return fp, problems
    if parsed["predicate"].get("batch") != batch_id:
        problems.append(f"{rel}/{layout.STATEMENT}: signed for batch {parsed['predicate'].get('batch')!r}")
    for own in (layout.manifest_path(batch_id), layout.pdf_path(batch_id)):
        digest, file = subjects.get(own.as_posix()), root / own
        if digest is None:
            problems.append(f"{own.as_posix()}: not in the signed statement")
        elif file.is_file() and (now := sha256_file(file)) != digest:
            problems.append(
                f"{own.as_posix()}: differs from what was signed (signed sha256 {digest[:12]}…, now {now[:12]}…)"
                + (_entries_changed(file, subjects) if own == layout.manifest_path(batch_id) else "")
            )
    return fp, problems


def _entries_changed(manifest_file: Path, subjects: dict[str, str]) -> str:
    """Which of a re-hashed manifest's entries differ from the signed digests, for its problem line."""
    try:
        recorded = {f["path"]: f["sha256"] for f in read_json(manifest_file)["files"]}
    except (ValueError, KeyError, TypeError):
        return ": not a valid manifest"
    changed = sorted(k for k in recorded if subjects.get(k) != recorded[k])
    return f"; re-hashed entries: {', '.join(changed)}" if changed else ""


def check_against(batch_id: str, kept: str | Path, root: str | Path = ".") -> list[str]:
    """A PDF or manifest someone kept aside, against what was signed for the batch: its sha256
    must be the signed digest of the batch's PDF or manifest. Problems, one line each."""
    kept = Path(kept)
    if not kept.is_file():
        raise DataError(f"{kept}: not found")
    st = statement_path(batch_id, root)
    if not st.is_file():
        return [f"{layout.report_dir(batch_id).as_posix()}: not signed: nothing to compare {kept} with"]
    subjects = {s["name"]: s["digest"]["sha256"] for s in json.loads(st.read_bytes())["subject"]}
    digest = sha256_file(kept)
    pdf = subjects.get(layout.pdf_path(batch_id).as_posix(), "?")
    manifest = subjects.get(layout.manifest_path(batch_id).as_posix(), "?")
    if digest in (pdf, manifest):
        return []
    return [
        f"{kept}: sha256 {digest[:12]}… is neither the signed PDF ({pdf[:12]}…) nor the signed manifest "
        f"({manifest[:12]}…) of batch {batch_id}"
    ]
