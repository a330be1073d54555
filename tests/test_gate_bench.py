"""`tru bench gate`'s bookkeeping: which cells run, how a verdict is scored, the generated table."""

from pathlib import Path

from tru.bench.gate import cells, expected, gate_store, outcome, write_gate_report


def test_the_cold_canary_runs_with_the_user_regime_only():
    got = cells(["mgcn"], ["user", "item"], ["warm", "cold"], [1, 2])
    assert ("mgcn", "user", "cold", 1) in got and ("mgcn", "item", "warm", 2) in got
    assert not [c for c in got if c[1] == "item" and c[2] == "cold"]
    assert len(got) == 6


def test_a_refused_retrain_is_a_false_alarm_and_a_passed_original_a_miss():
    assert expected("retrain") == "pass" and expected("original") == "fail" and expected("tru") == "-"
    assert outcome("retrain", "fail") == "false alarm" and outcome("retrain", "pass") == "ok"
    assert outcome("original", "pass") == "miss" and outcome("original", "fail") == "ok"
    assert outcome("original", "inconclusive") == outcome("retrain", "inconclusive") == "no power"
    assert outcome("tru", "fail") == "fail"


def _row(model, verdict, seed=1, **extra):
    return {
        "backbone": "mgcn",
        "regime": "user",
        "canary": "warm",
        "seed": seed,
        "model": model,
        "verdict": verdict,
        "outcome": outcome(model, verdict),
        "membership_auc": 0.5,
        "membership_threshold": 0.6,
        "membership_original_auc": 0.55,
        "target_median_rank": None,
        "residue_flagged": 0,
        "target_z": None,
        **extra,
    }


def test_the_generated_table_counts_false_alarms_and_misses(tmp_path: Path):
    out = tmp_path / "gate.csv"
    store = gate_store(out)
    done: list[dict] = []
    for r in (_row("retrain", "fail"), _row("original", "pass"), _row("retrain", "pass", seed=2)):
        store.record(done, r)
    md = write_gate_report(store.read(), out).read_text()
    assert "| mgcn | user | warm | retrain | 2 | 1 | 0 | 1 | 1 | - |" in md
    assert "| mgcn | user | warm | original | 1 | 1 | 0 | 0 | - | 1 |" in md
    assert "In all: 1 false alarm(s) in 2 retrain judgement(s), 1 miss(es) in 1 original judgement(s)." in md
