"""What the `tru` command says when a user gets something wrong, or asks for something
slightly off the main path: one clear line naming the problem, and the documented exit status.
Every test drives the real command (typer's CliRunner over `tru.cli.app`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tru.cli import app

ROOT = Path(__file__).resolve().parents[1]
B1, B2 = "b20260101T020000Z", "b20260102T020000Z"


def invoke(*args: str):
    # a wide terminal (rich reads COLUMNS): no message is cut by line wrapping or a help box
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def one_line(text: str) -> str:
    return " ".join(text.split())


def register(root: Path, *ids: str) -> None:
    entries = [{"id": b, "prior": "data/split", "base_model": "data/models/base", "method": "tru"} for b in ids]
    (root / "batches.yaml").write_text(yaml.safe_dump({"batches": entries}, sort_keys=False))


# --- params.yaml ---------------------------------------------------------------------------------


def test_invalid_yaml_in_params_names_line_and_column(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: 1\ndata:\n  source: movielens-100k\n  name: [ml100k\n  dataset_dir: x\n")
    r = invoke("fetch", "--params", str(bad))
    assert r.exit_code == 2, r.output
    assert f"error: {bad}: not valid YAML at line 5, column 14: expected ',' or ']'" in r.output
    assert "started at line 4" in r.output  # where the unclosed list began
    assert "Traceback" not in r.output

    bad.write_text("seed: 1\n data: 2\n")
    r = invoke("fetch", "--params", str(bad))
    assert r.exit_code == 2
    assert "not valid YAML at line 2, column 6: mapping values are not allowed here" in r.output


# --- unknown batches -----------------------------------------------------------------------------


def test_report_and_verify_name_an_unknown_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    register(tmp_path, B1, B2)
    for args in (["report", "--batch"], ["evidence", "verify", "--batch"]):
        for wrong in ("X", "b20990101T000000Z"):
            r = invoke(*args, wrong)
            assert r.exit_code == 2, (args, r.output)
            assert f"error: unknown batch {wrong} (known: {B1}, {B2}; see `tru status` or batches.yaml)" in r.output
            assert "run the report stage first" not in r.output


def test_unknown_batch_without_any_batch_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("evidence", "verify", "--batch", B1)
    assert r.exit_code == 2
    assert f"unknown batch {B1} (known: none; `tru ingest` registers batches in batches.yaml)" in r.output


def test_a_known_batch_without_evidence_is_not_unknown(tmp_path, monkeypatch):
    # registered but its stages have not run: the message says what is missing
    monkeypatch.chdir(tmp_path)
    register(tmp_path, B1)
    r = invoke("evidence", "verify", "--batch", B1)
    assert r.exit_code == 1
    assert f"reports/{B1}/manifest.json: missing (run the report stage first)" in r.output


# --- verify every batch --------------------------------------------------------------------------


def evidence_of(root: Path, batch: str) -> None:
    """A batch's files (a report, a checkpoint) and their manifest, PDF and sidecar, as the report
    stage writes them, signed as the flows do after it."""
    from conftest import TEST_SIGNING_KEY

    from tru.evidence import signing
    from tru.evidence.manifest import write_manifest, write_sidecar

    (root / "reports" / batch).mkdir(parents=True)
    (root / "reports" / batch / "metrics.json").write_text(json.dumps({"batch": batch}) + "\n")
    (root / "reports" / batch / "timings").mkdir()
    (root / "reports" / batch / "timings" / "update.json").write_text('{"total_seconds": 1.0}\n')
    model = root / "data" / "batches" / batch / "model"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights of " + batch.encode())
    write_manifest(batch, root)
    (root / "reports" / batch / "evidence.pdf").write_bytes(b"%PDF-1.7 evidence of " + batch.encode())
    write_sidecar(batch, root)
    signing.sign(batch, root, key=signing.load_private_key(env={"TRU_SIGNING_KEY": TEST_SIGNING_KEY}))


def test_verify_without_batch_checks_every_registered_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    register(tmp_path, B1, B2)
    evidence_of(tmp_path, B1)
    evidence_of(tmp_path, B2)
    r = invoke("evidence", "verify")
    assert r.exit_code == 0, r.output
    assert f"batch {B1}: every artifact matches" in r.output and f"batch {B2}: every artifact matches" in r.output
    assert "all 2 batch(es) verified" in r.output

    # a new timing file is no problem (outside the manifest); a changed checkpoint is
    (tmp_path / "reports" / B1 / "timings" / "update.json").write_text('{"total_seconds": 2.0}\n')
    (tmp_path / "data" / "batches" / B2 / "model" / "model.safetensors").write_bytes(b"tampered")
    r = invoke("evidence", "verify")
    assert r.exit_code == 1
    assert f"batch {B1}: every artifact matches" in r.output
    assert f"batch {B2}: data/batches/{B2}/model/model.safetensors: changed" in r.output
    assert f"1 of 2 batch(es) failed verification: {B2}" in r.output


def test_verify_without_batch_and_without_batches(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("evidence", "verify")
    assert r.exit_code == 0
    assert "no batch registered in batches.yaml: nothing to verify" in r.output


# --- help text -----------------------------------------------------------------------------------


def test_serve_help_keeps_the_dask_extra():
    r = invoke("serve", "--help")
    assert r.exit_code == 0
    assert "pip install -e '.[dask]'" in one_line(r.output)


# --- tru split: duplicated (user, item) pairs ----------------------------------------------------


def test_split_names_the_duplicated_rows(tmp_path):
    from tru.data.mmrec import write_folder

    # an MMRec folder with its own split (x_label) that repeats two (user, item) pairs
    inter = pd.DataFrame(
        {
            "userID": [0, 0, 1, 1, 1, 0, 2, 2],
            "itemID": [1, 2, 1, 3, 1, 1, 4, 5],
            "rating": [5] * 8,
            "timestamp": [10, 11, 12, 13, 14, 15, 16, 17],
            "x_label": [0, 2, 0, 1, 2, 0, 0, 2],
        }
    )
    write_folder(tmp_path / "ds", "hand", inter, {"image": np.ones((6, 3), np.float32)}, None, None)
    out = tmp_path / "split"
    r = invoke("split", "--params", str(ROOT / "params.yaml"), "--dataset", str(tmp_path / "ds"), "--out", str(out))
    assert r.exit_code == 3, r.output
    text = one_line(r.output)
    assert "expect_compound_columns_to_be_unique(user, item) — 4 rows" in text
    assert "hand.inter repeats 2 (userID, itemID) pair(s) on 4 lines" in text
    # the header is line 1: the first data row is line 2
    assert "userID 0, itemID 1 on line 2 (timestamp 10, x_label 0), line 7 (timestamp 15, x_label 0)" in text
    assert "userID 1, itemID 1 on line 4 (timestamp 12, x_label 0), line 6 (timestamp 14, x_label 2)" in text
    assert not out.exists()


# --- tru erase --method M --out DIR --------------------------------------------------------------


@pytest.fixture
def fake_erasure(tmp_path, monkeypatch):
    """`tru erase` with the model work replaced (no data, no training): what is written where."""
    import tru.stages.erase as erase
    from tru.unlearning.registry import UnlearnResult

    class Ctx:
        seed = 7
        resume = None

    def save_checkpoint(path, model, meta):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "checkpoint.json").write_text("{}")
        return "0" * 64

    monkeypatch.chdir(tmp_path)
    register(tmp_path, B1)
    monkeypatch.setattr(erase, "load_context", lambda params, b, f=None: (Ctx(), {"base_model": "m", "method": "tru"}))
    monkeypatch.setattr(
        erase,
        "run_method",
        lambda method, ctx, params: UnlearnResult(
            model=None, log={"epochs": [{"epoch": 1, "loss": 0.5, "seconds": 0.2}]}, seconds=1.5
        ),
    )
    monkeypatch.setattr(erase, "save_checkpoint", save_checkpoint)
    return tmp_path


def erase_cmd(*args: str):
    return invoke("erase", "--batch", B1, "--params", str(ROOT / "params.yaml"), *args)


def test_erase_into_a_folder_of_its_own_keeps_its_log_there(fake_erasure):
    root = fake_erasure
    reports = root / "reports" / B1
    for method in ("gradient_ascent", "retrain"):
        out = root / "side" / method
        r = erase_cmd("--method", method, "--out", str(out))
        assert r.exit_code == 0, r.output
        log = yaml.safe_load((out / "update_log.json").read_text())
        assert log["method"] == method and log["epochs"] == [{"epoch": 1, "loss": 0.5}]
        timings = yaml.safe_load((out / "timings.json").read_text())
        # the method's seconds, then the stage's own around it (reading the batch, writing the checkpoint)
        assert set(timings) == {"total_seconds", "epochs[0].seconds", "context_seconds", "save_seconds"}
        assert timings["total_seconds"] == 1.5 and timings["epochs[0].seconds"] == 0.2
        assert timings["context_seconds"] >= 0 and timings["save_seconds"] >= 0
        assert f"log: {out / 'update_log.json'}; timings: {out / 'timings.json'}" in one_line(r.output)
    # the batch's own reports are untouched: no retrain_log.json, no timings/retrain.json
    assert not reports.exists()


def test_erase_retrain_without_out_is_the_reference(fake_erasure):
    root = fake_erasure
    r = erase_cmd("--method", "retrain")
    assert r.exit_code == 0, r.output
    assert (root / "reports" / B1 / "retrain_log.json").is_file()
    assert (root / "reports" / B1 / "timings" / "retrain.json").is_file()
    assert (root / "data" / "batches" / B1 / "retrain" / "checkpoint.json").is_file()
    assert not (root / "data" / "batches" / B1 / "retrain" / "update_log.json").exists()


def test_erase_with_the_batch_method_writes_the_batch_log(fake_erasure):
    root = fake_erasure
    r = erase_cmd()
    assert r.exit_code == 0, r.output
    assert (root / "reports" / B1 / "update_log.json").is_file()
    assert (root / "reports" / B1 / "timings" / "update.json").is_file()
    assert re.search(r"log: reports/b\w+/update_log\.json", r.output)
