"""The way out of a refusal, in its parts (the whole of it runs in tests/test_flows.py): the
gate passes an exact retrain by construction, `start_review` picks the batch to clear and
refuses anything else by name, the params that changed since the refused run are listed, and
the nightly run resumes a killed review instead of refusing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tru import nightly
from tru.audit.gate import evaluate_gate, exact_retrain_verdict, promoted
from tru.config import GateParams
from tru.errors import DataError

B0, B1 = "b20260101T020000Z", "b20260102T020000Z"


def metrics(retain_after: float) -> dict:
    return {
        "original": {"retain_shadow": {"recall@20": 0.2}, "forget": {"recall@20": 0.5, "n_rows": 40}},
        "unlearned": {"retain_shadow": {"recall@20": retain_after}, "forget": {"recall@20": 0.4, "n_rows": 40}},
    }


GATE = GateParams(
    max_retain_drop=0.05,
    retain_confidence=0.95,
    retain_resamples=1000,
    membership_quantile=0.99,
    membership_min_effect=0.02,
    membership_permutations=1000,
    residue_min_removed_share=0.2,
    residue_min_removed=3,
    residue_peers=50,
    residue_declared_alpha=0.01,
    residue_alpha=0.01,
    max_backdoor_lift=0.02,
    inconclusive="review",
)
# the membership test of an exact retrain above its null's 99% quantile, as 1% of them are (the
# test's size): a false alarm, on a batch where the test has power (the original exceeds it too)
MEMBERSHIP = {"members": 300, "auc": 0.64, "threshold": 0.6, "power": True, "original_auc": 0.8}


def test_an_exact_retrain_passes_and_keeps_what_its_checks_measured():
    refused = evaluate_gate(metrics(0.2), MEMBERSHIP, None, None, GATE)
    assert refused["verdict"] == "fail" and refused["failed"] == ["membership_vs_shadow"]
    cleared = exact_retrain_verdict(refused)
    assert cleared["verdict"] == "pass" and cleared["failed"] == [] and cleared["basis"].startswith("exact retrain")
    by_name = {c["name"]: c for c in cleared["checks"]}
    member = by_name["membership_vs_shadow"]
    assert member["value"] == pytest.approx(0.64) and member["passed"] is None and member["judged"] is False
    assert "would fail its limit (<= 0.6)" in member["note"] and "false alarm" in member["note"]
    assert by_name["retain_recall_drop"]["passed"] is True  # a check that passed stays judged
    assert by_name["backdoor_lift"] == {c["name"]: c for c in refused["checks"]}["backdoor_lift"]  # not judged: kept
    assert refused["verdict"] == "fail"  # the refused result is not changed in place


def test_an_exact_retrain_passes_a_batch_held_as_inconclusive():
    """Under `inconclusive: review` a batch no erasure check could judge is held like a failed
    one; its review (an exact retrain) passes it by construction."""
    held = evaluate_gate(metrics(0.2), {**MEMBERSHIP, "auc": 0.5, "power": False}, None, None, GATE)
    assert held["verdict"] == "inconclusive" and not promoted(held)
    cleared = exact_retrain_verdict(held)
    assert cleared["verdict"] == "pass" and promoted(cleared) and cleared["basis"].startswith("exact retrain")
    assert [c["passed"] for c in cleared["checks"]] == [c["passed"] for c in held["checks"]]  # nothing failed


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """Two batches, the last refused by its gate; dvc.lock as the refused run left it."""
    monkeypatch.chdir(tmp_path)
    entries = [{"id": b, "prior": "data/split", "base_model": "data/models/base", "method": "tru"} for b in (B0, B1)]
    Path("batches.yaml").write_text(yaml.safe_dump({"batches": entries}))
    for b, verdict in ((B0, "pass"), (B1, "fail")):
        Path(f"reports/{b}").mkdir(parents=True)
        Path(f"reports/{b}/audit.json").write_text(json.dumps({"verdict": verdict, "failed": []}))
    params = {"seed": 1, "unlearn": {"method": "tru", "tru": {"lr": 0.01}}, "audit": {"gate": {"max": 0.5}}}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    lock = {
        "schema": "2.0",
        "stages": {
            "erase@1": {"params": {"params.yaml": {"seed": 1, "unlearn": params["unlearn"]}}},
            "audit@1": {"params": {"params.yaml": {"seed": 1, "audit": params["audit"]}}},
            "report@0": {},
        },
    }
    Path("dvc.lock").write_text(yaml.safe_dump(lock))
    return tmp_path


def test_the_refused_batch_is_the_one_a_review_clears(project):
    assert nightly.clearable_batch() == B1
    with pytest.raises(nightly.AwaitingReview, match=f"tru review --batch {B1}") as err:
        nightly.unfinished_batch()
    assert err.value.batch == B1 and "erasure-review/review" in str(err.value)
    with pytest.raises(DataError, match=f"batch {B0} passed its audit gate.*awaiting review is {B1}"):
        nightly.start_review(B0)
    with pytest.raises(DataError, match="no batch 'b2027'"):
        nightly.start_review("b2027")
    batch, changed = nightly.start_review(None)
    assert batch == B1 and changed == []
    assert yaml.safe_load(Path("batches.yaml").read_text())["batches"][1]["method"] == "retrain"
    assert yaml.safe_load(Path("batches.yaml").read_text())["batches"][0]["method"] == "tru"


def test_a_killed_review_is_resumed_by_the_nightly_run_and_by_the_review(project):
    nightly.start_review(None)  # ... and killed before its audit: the verdict still says fail
    assert nightly.unfinished_batch() == B1  # the nightly run resumes it rather than refusing
    assert nightly.clearable_batch() == B1
    # killed after its audit passed, before its report: not refused any more, not finished
    Path(f"reports/{B1}/audit.json").write_text(json.dumps({"verdict": "pass", "failed": []}))
    assert nightly.clearable_batch() == B1 and nightly.unfinished_batch() == B1


def test_nothing_to_clear_is_said_in_one_line(project):
    Path(f"reports/{B1}/audit.json").write_text(json.dumps({"verdict": "pass", "failed": []}))
    lock = yaml.safe_load(Path("dvc.lock").read_text())
    lock["stages"]["report@1"] = {}
    Path("dvc.lock").write_text(yaml.safe_dump(lock))
    assert nightly.clearable_batch() is None and nightly.unfinished_batch() is None
    with pytest.raises(DataError, match="no batch awaits review"):
        nightly.start_review(None)


def test_params_changed_since_the_refused_run_are_named(project):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["audit"]["gate"]["max"] = 0.9
    params["unlearn"]["tru"]["lr"] = 0.02
    params["unlearn"]["tru"]["new_knob"] = 1
    params["evaluate"] = {"ks": [20]}  # no stage of the batch reads it
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert nightly.changed_params(B1) == ["audit.gate.max", "unlearn.tru.lr", "unlearn.tru.new_knob"]
    assert nightly.changed_params(B0) == []  # nothing recorded for it here
