"""Quiet by default, detail on demand (tru/logs.py, `tru --verbose`), and Prefect runs a person
can read: `tru nightly` as a subprocess on a tiny project against the test Prefect server.

- a configuration error (no pseudonymisation key, no server at PREFECT_API_URL) is one line
  and exit status 2, in the CLI and, for the key, in the flow (a Failed run, one-line message);
- a run is named `erasure-<batch id>` and tagged with its verdict (pass or inconclusive when
  promoted, fail when refused; noop, error);
- no DVC lock-file lines or git hints, no Great Expectations INFO lines by default;
- the audit gate's refusal: its checks in the task log, one `error:` line, exit status 4, no
  traceback; `--verbose` brings the tracebacks and DVC's lines back.

The tests share one repository and run in order (the refused batch follows the passed one)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest
import yaml
from conftest import BIN, HELD_FOR_REVIEW, copy_repo
from conftest import tool_env as env

from tru import logs
from tru.errors import AuditGateFailed, TruError

NOISE = ("To track the changes with git", "Updating lock file", "ephemeral docs site", "Traceback")


@pytest.fixture(scope="module")
def repo(base_repo, tmp_path_factory):
    """A project with a trained base model, committed; no deletion batch yet."""
    return copy_repo(base_repo, tmp_path_factory.mktemp("quietrepo"))


def tru(repo: Path, *args: str, expect: int = 0, **extra: str) -> str:
    """`tru ARGS` in `repo`; its stdout and stderr together, after checking its exit status."""
    res = subprocess.run(
        [str(BIN / "tru"), *args], cwd=repo, env=env(**extra), capture_output=True, text=True, timeout=600
    )
    out = res.stdout + res.stderr
    assert res.returncode == expect, f"tru {' '.join(args)} exited {res.returncode}, not {expect}:\n{out}"
    return out


def run_named(out: str):
    """The flow run whose name the output's last `Flow run '...'` line shows, read from the server."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    names = re.findall(r"Flow run '(erasure-[^']+)'", out)
    assert names, out
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[names[-1]])))
    assert len(runs) == 1, names[-1]
    return runs[0]


def error_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("error:")]


# --- configuration errors: one line, before anything runs ------------------------------------------


def test_a_missing_key_is_one_line_and_exit_status_2(repo):
    out = tru(repo, "nightly", expect=2, TRU_PSEUDONYM_KEY="")
    assert out.strip().startswith("error: no pseudonymisation key") and out.strip().count("\n") == 0
    assert "TRU_PSEUDONYM_KEY" in out and ".tru-secret" in out  # the fix
    # --verbose: the same line, and the traceback behind it
    out = tru(repo, "--verbose", "nightly", expect=2, TRU_PSEUDONYM_KEY="")
    assert "Traceback" in out and "ConfigError" in out and error_lines(out)[0].startswith("error: no pseudonymisation")


def test_a_prefect_server_that_does_not_answer_is_one_line(repo):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    out = tru(repo, "nightly", expect=2, PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    assert out.strip().count("\n") == 0 and "Traceback" not in out
    assert f"PREFECT_API_URL is http://127.0.0.1:{port}/api" in out and "prefect server start" in out


def test_the_flow_reports_a_missing_key_as_a_failed_run_in_one_line(repo, harness):
    """The flow alone (as `tru serve` runs it): a Failed run whose message is the one line."""
    code = (
        "from flows.erasure import erasure_batch\n"
        "s = erasure_batch(return_state=True)\n"
        "print('RESULT', s.type.value, s.state_details.flow_run_id)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        env=env(PREFECT_API_URL=harness, TRU_PSEUDONYM_KEY=""),
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Traceback" not in out and "no pseudonymisation key" in out
    state_type, run_id = out.split("RESULT ")[1].split()[:2]
    assert state_type == "FAILED"
    from prefect import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    assert run.name.startswith("erasure-error-") and "error" in run.tags
    assert run.state.message.startswith("no pseudonymisation key") and "\n" not in run.state.message


# --- a batch: named after it, tagged with its verdict, quiet ------------------------------------------


def test_a_nightly_run_is_named_after_its_batch_tagged_and_quiet(repo, harness):
    tru(repo, "demo-requests", "data/deletions/inbox/demo.jsonl")
    out = tru(repo, "nightly", "--batch-time", "2026-03-01T02:00:00Z", PREFECT_API_URL=harness)
    for noise in NOISE:
        assert noise not in out, f"{noise!r} in the output of tru nightly:\n{out}"
    # promoted: PASS, or INCONCLUSIVE under params.yaml's `inconclusive: pass` (a 3-epoch model
    # on 80 users rarely gives an erasure check power: tests/test_pipeline.py)
    audit = json.loads((repo / "reports/b20260301T020000Z/audit.json").read_text())
    verdict = audit["verdict"]
    assert verdict in ("pass", "inconclusive") and audit["promoted"]
    # the gate's checks are in the audit task's log, the summary in the flow's
    assert "Task run 'audit-gate-b20260301T020000Z' - [pass] retain_recall_drop" in out
    assert f"Task run 'audit-gate-b20260301T020000Z' - audit gate {verdict.upper()}" in out
    assert f"Flow run 'erasure-b20260301T020000Z' - batch b20260301T020000Z: audit gate {verdict.upper()}" in out
    assert "Flow run 'erasure-b20260301T020000Z' - Finished in state Completed()" in out  # the engine's line too
    run = run_named(out)
    assert run.name == "erasure-b20260301T020000Z" and verdict in run.tags and run.state.is_completed()

    # an empty inbox: a no-op, and it says so in the runs list
    out = tru(repo, "nightly", PREFECT_API_URL=harness)
    run = run_named(out)
    assert re.fullmatch(r"erasure-noop-\d{8}T\d{6}Z", run.name) and "noop" in run.tags
    assert "pass" not in run.tags and run.state.is_completed()


def user_requests(repo: Path, name: str, n: int) -> None:
    """A request file erasing `n` users still in the current retain set."""
    last = yaml.safe_load((repo / "batches.yaml").read_text())["batches"][-1]["id"]
    users = pd.read_parquet(repo / f"data/batches/{last}/sets/train.parquet")["user"].unique()[:n]
    raw = pd.read_csv(repo / "data/datasets/tiny/user_map.tsv", sep="\t", dtype={"raw_id": str})
    raw = raw.set_index("userID")["raw_id"]
    rows = [
        {"request_id": f"{name}-{k}", "kind": "user", "user_id": raw[int(u)], "received_at": "2026-02-01T00:00:00Z"}
        for k, u in enumerate(users)
    ]
    (repo / f"data/deletions/inbox/{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_refused_erasure_is_one_line_without_a_traceback(repo, harness):
    params = (repo / "params.yaml").read_text()
    strict = yaml.safe_load(params)
    strict["audit"]["gate"].update(HELD_FOR_REVIEW)  # INCONCLUSIVE by construction, refused by policy
    (repo / "params.yaml").write_text(yaml.safe_dump(strict, sort_keys=False))
    user_requests(repo, "strict", 2)
    try:
        out = tru(repo, "nightly", "--batch-time", "2026-03-04T02:00:00Z", expect=4, PREFECT_API_URL=harness)
        for noise in NOISE:
            assert noise not in out, f"{noise!r} in the output of a refused run:\n{out}"
        audit = json.loads((repo / "reports/b20260304T020000Z/audit.json").read_text())
        assert audit["verdict"] == "inconclusive" and not audit["promoted"] and audit["failed"] == []
        # the checks and the verdict, in the audit task's log
        assert "[n/a] item_residue" in out and "audit gate INCONCLUSIVE" in out
        (line,) = error_lines(out)
        assert line.startswith("error: audit gate inconclusive for batch b20260304T020000Z")
        assert "tru review --batch b20260304T020000Z" in line
        run = run_named(out)
        assert run.name == "erasure-b20260304T020000Z" and "fail" in run.tags and run.state.is_failed()
        assert run.state.message.startswith("audit gate inconclusive") and "\n" not in run.state.message

        # the next night is refused too (the batch awaits review): one line, exit status 4 ...
        out = tru(repo, "nightly", expect=4, PREFECT_API_URL=harness)
        assert "Traceback" not in out and "awaits review" in error_lines(out)[0]
        run = run_named(out)
        assert run.name.startswith("erasure-error-") and "error" in run.tags
        # ... and --verbose shows the traceback behind it, in the run's log and the CLI's
        verbose = tru(repo, "--verbose", "nightly", expect=4, PREFECT_API_URL=harness)
        assert "Traceback" in verbose and "AwaitingReview" in verbose and "awaits review" in error_lines(verbose)[0]
        assert len(verbose.splitlines()) > len(out.splitlines())
    finally:
        (repo / "params.yaml").write_text(params)


# --- DVC's chatter, and what --verbose brings back ----------------------------------------------------


def test_dvc_git_hints_only_with_verbose(base_repo, tmp_path):
    outs = {}
    for flag in ("", "--verbose"):
        work = copy_repo(base_repo, tmp_path / (flag or "quiet"))
        tru(work, "demo-requests", "data/deletions/inbox/demo.jsonl")
        outs[flag] = tru(work, *([flag] if flag else []), "ingest", "--batch-time", "2026-02-01T02:00:00Z")
        assert (work / "data/ledger/b20260201T020000Z/requests.parquet.dvc").is_file()  # dvc add ran
    assert "To track the changes with git" not in outs[""] and "git add" not in outs[""]
    assert outs[""].startswith("batch b20260201T020000Z:")
    assert "To track the changes with git" in outs["--verbose"]


def test_configure_quiets_the_libraries_and_verbose_restores_them(monkeypatch):
    monkeypatch.delenv(logs.VERBOSE_ENV, raising=False)
    try:
        assert logs.configure() is False
        assert not logging.getLogger("weasyprint").isEnabledFor(logging.WARNING)  # font warnings
        assert logging.getLogger("weasyprint").isEnabledFor(logging.ERROR)  # an unreachable resource
        assert not logging.getLogger("great_expectations.core").isEnabledFor(logging.INFO)
        gx = logging.getLogger("great_expectations.data_context.types.base")
        gx.setLevel(logging.INFO)  # as GX does when it is imported: the filter still drops INFO
        info = gx.makeRecord(gx.name, logging.INFO, __file__, 1, "ephemeral docs site", None, None)
        assert not gx.filter(info)
        lock = logging.getLogger("dvc.dvcfile")
        assert not lock.filter(lock.makeRecord(lock.name, logging.INFO, __file__, 1, "Updating lock file", None, None))

        task_log = logging.getLogger("prefect.task_runs")

        def logged(exc: Exception) -> logging.LogRecord:
            try:
                raise exc
            except Exception:
                record = task_log.makeRecord(task_log.name, logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
            assert task_log.filter(record)  # kept, in one line or with its traceback
            return record

        assert logged(AuditGateFailed("refused")).exc_info is None  # expected: the message alone
        assert logged(TruError("no key")).exc_info is None
        assert logged(ValueError("a bug")).exc_info is not None  # a bug keeps its traceback

        monkeypatch.setenv(logs.VERBOSE_ENV, "1")
        assert logs.configure() is True
        assert logging.getLogger("weasyprint").isEnabledFor(logging.WARNING)
        assert gx.filter(info) and logged(AuditGateFailed("refused")).exc_info is not None
    finally:
        monkeypatch.delenv(logs.VERBOSE_ENV, raising=False)
        logs.configure()
