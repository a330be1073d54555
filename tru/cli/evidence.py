"""`tru evidence`: verify a batch's hashes, find a request's evidence."""

from __future__ import annotations

from pathlib import Path

import typer

from tru.cli.common import stage

app = typer.Typer(help="Compliance evidence: verify a batch's hashes, find a request's PDF.", no_args_is_help=True)


@app.command("verify")
@stage
def evidence_verify(
    batch: str | None = typer.Option(
        None, "--batch", "-b", help="the batch id (see `tru status` or batches.yaml); default: every registered batch"
    ),
    against: Path | None = typer.Option(
        None, "--against", help="a PDF or manifest kept aside: must be what was signed for the batch (needs --batch)"
    ),
    key: Path | None = typer.Option(
        None, "--key", help="the operator's public key (PEM) to trust, instead of the one reports/keys/ holds"
    ),
) -> None:
    """Recompute every hash in reports/B/manifest.json (and the PDF's), check the signed
    statement over them (the signature, and every signed digest against the file now), and
    name what changed. Prints the signing key's fingerprint: compare it with the one the
    operator publishes, or pass their public key with `--key`.

    Without `--batch`, every batch in batches.yaml is checked; exit status 1 names each batch
    that failed."""
    from tru.errors import ConfigError
    from tru.evidence import signing, verify, verify_all

    if against is not None and batch is None:
        raise ConfigError("--against needs --batch: the batch whose signed PDF or manifest the file should be")
    batches = [batch] if batch is not None else None
    results = {batch: verify(batch, Path("."), key)} if batch is not None else verify_all(Path("."), key)
    if not results:
        typer.echo("no batch registered in batches.yaml: nothing to verify")
        return
    if against is not None and batch is not None:
        results[batch] += signing.check_against(batch, against)
    failed = [b for b, problems in results.items() if problems]
    keys: dict[str, list[str]] = {}
    for b, problems in results.items():
        for p in problems:
            typer.echo(f"batch {b}: {p}", err=True)
        if not problems:
            fp, _ = signing.check(b, Path("."), key)
            keys.setdefault(str(fp), []).append(b)
            extra = f" {against} is what was signed;" if against is not None else ""
            typer.echo(
                f"batch {b}: every artifact matches its recorded sha256 and the signed statement;{extra} "
                f"signing key {fp}"
            )
    if failed:
        if batches is None:
            typer.echo(f"{len(failed)} of {len(results)} batch(es) failed verification: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
    if len(keys) > 1:  # a forger can sign with a key of their own: only the fingerprint tells
        typer.echo(
            f"note: the batches are signed by {len(keys)} different keys: "
            + "; ".join(f"{fp[:16]}… ({len(bs)} batch(es))" for fp, bs in keys.items())
            + "; compare each with the fingerprints the operator publishes",
            err=True,
        )
    if batches is None:
        typer.echo(f"all {len(results)} batch(es) verified")


@app.command("sign")
@stage
def evidence_sign(
    batch: str = typer.Option(..., "--batch", "-b", help="the batch id (see `tru status` or batches.yaml)"),
) -> None:
    """Sign the batch's evidence with the operator's Ed25519 key ($TRU_SIGNING_KEY or
    .tru-signing-key): reports/B/evidence.statement.json and .sig, and the public key under
    reports/keys/. The nightly and review flows do it after the report stage; by hand after a
    deliberate `dvc repro` of a batch."""
    from tru.evidence import signing
    from tru.evidence.lookup import check_known_batch
    from tru.runlock import run_lock

    check_known_batch(batch)
    with run_lock("tru evidence sign"):
        out = signing.sign(batch)
    typer.echo(f"signed {out['statement']} ({out['signature']}); key {out['fingerprint']} ({out['public_key']})")


@app.command("get")
@stage
def evidence_get(
    request_id: str = typer.Argument(..., help="the request_id as submitted"),
    pdf: Path | None = typer.Option(
        None,
        "--pdf",
        help="write the requester's one-page certificate to this file (an existing folder: "
        "FOLDER/REQUEST_ID.pdf); never under reports/, which git commits",
    ),
    certificate: bool = typer.Option(
        False,
        "--certificate",
        help="write the certificate to data/certificates/REQUEST_ID.pdf (git ignores it, DVC does not track it)",
    ),
) -> None:
    """One request: its pseudonym, kind, status with the reason, when it was received and
    erased, the batch that erased it (for an already-erased request: the earlier batch that
    did), the audit verdict and its row in the batch's evidence PDF. With `--pdf` or
    `--certificate`, also a one-page certificate in plain language for the person who asked;
    it names the request id, so keep it out of git. Exit status 2 for an id the ledger does
    not hold."""
    from tru.evidence.certificate import CERTIFICATES, request_facts, summary_lines, write_certificate

    facts = request_facts(request_id, Path("."))
    for line in summary_lines(facts):
        typer.echo(line)
    if pdf is None and not certificate:
        typer.echo(
            f"certificate: `--certificate` writes {CERTIFICATES.as_posix()}/{request_id}.pdf "
            "(git-ignored), `--pdf PATH` writes it where you say"
        )
        return
    path = write_certificate(facts, Path("."), pdf)
    typer.echo(f"certificate: {path.as_posix()} (it names the request id: for the requester, never for git)")
