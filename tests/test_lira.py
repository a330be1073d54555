"""The reference-model membership attack (offline LiRA, tru/audit/lira.py): calibrated when the
audited model is one more reference, powerful when it remembers, and wired into the audit
benchmark with its reference retrains kept and reused."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import copy_repo
from tru.audit.lira import lira_offline


def _world(n=4000, k=3, shift=0.0, seed=0):
    """Per-pair statistics: each pair has its own OUT mean; references and an exchangeable
    target scatter around it; members of a remembering model sit `shift` sigmas higher."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 2, n)
    y = np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]
    refs = mu + rng.normal(0, 1, (k, n))
    target = mu + rng.normal(0, 1, n) + shift * y
    return target, refs, y


def test_an_exchangeable_model_sits_at_chance_and_a_remembering_one_does_not():
    target, refs, y = _world()
    null = lira_offline(target, refs, y, bootstrap=100, seed=1)
    assert null["auc_ci"][0] < 0.5 < null["auc_ci"][1]
    assert null["tpr_at_1pct_fpr"] < 0.04  # TPR ~ FPR: another OUT model
    assert null["references"] == 3 and null["members"] == null["non_members"] == 2000
    assert null["sigma"] == pytest.approx(1.0, abs=0.05)  # the references' own spread, pooled
    target, refs, y = _world(shift=3.0)
    hit = lira_offline(target, refs, y, bootstrap=100, seed=1)
    assert hit["auc"] > 0.95 and hit["tpr_at_1pct_fpr"] > 0.5 and hit["tpr_at_0.1pct_fpr"] > 0.2
    assert hit["tpr_at_1pct_fpr_ci"][0] <= hit["tpr_at_1pct_fpr"] <= hit["tpr_at_1pct_fpr_ci"][1]
    # per-pair references matter: the same shift hidden by the pairs' own spread of means is
    # found, where a one-model score (the target alone) barely separates them
    from sklearn.metrics import roc_auc_score

    target, refs, y = _world(shift=1.0)
    assert lira_offline(target, refs, y, bootstrap=0)["auc"] > roc_auc_score(y, target) + 0.1
    assert lira_offline(target, refs, y, bootstrap=20, seed=3) == lira_offline(target, refs, y, bootstrap=20, seed=3)
    # resampled by user, pairs of one user move together: when how much is remembered differs
    # by user (40 users, 50 members and 50 non-members each), the interval is wider
    rng = np.random.default_rng(5)
    users = np.repeat(np.arange(40), 100)
    y = np.tile(np.r_[np.ones(50, int), np.zeros(50, int)], 40)
    mu = rng.normal(0, 2, len(y))
    refs = mu + rng.normal(0, 1, (3, len(y)))
    target = mu + rng.normal(0, 1, len(y)) + y * rng.normal(0.5, 1.5, 40)[users]
    by_pair = lira_offline(target, refs, y, bootstrap=200, seed=3)
    by_user = lira_offline(target, refs, y, bootstrap=200, seed=3, groups=users)
    assert by_user["auc"] == by_pair["auc"]
    width = {k: r["auc_ci"][1] - r["auc_ci"][0] for k, r in (("pair", by_pair), ("user", by_user))}
    assert width["user"] > width["pair"]


def test_bad_inputs_are_refused():
    target, refs, y = _world(n=10)
    with pytest.raises(ValueError, match="at least two reference models"):
        lira_offline(target, refs[:1], y)
    with pytest.raises(ValueError, match="lengths differ"):
        lira_offline(target[:-1], refs, y)


def test_the_audit_benchmark_attacks_with_reference_retrains_it_keeps(base_repo, tmp_path, monkeypatch, capsys):
    from tru.bench.audit import _audit_cell, bench_audit
    from tru.config import load_params
    from tru.errors import ConfigError

    repo = copy_repo(base_repo, tmp_path / "repo")
    monkeypatch.chdir(repo)
    params = load_params("params.yaml")
    with pytest.raises(ConfigError, match="at least 2 reference models"):
        bench_audit(params, tmp_path / "a.csv", [1], ["tru"], references=1)
    row = _audit_cell(params.model_dump_json(), 1, "original", 2)
    assert "training reference model 2 of 2 for seed 1" in capsys.readouterr().out
    refs = sorted(p.name for p in (repo / "data/bench/audit-references").iterdir())
    assert refs == ["seed1-r1", "seed1-r2"]
    for key in ("lira_auc", "lira_tpr_at_1pct_fpr", "lira_tpr_at_0.1pct_fpr"):
        assert 0.0 <= row[key] <= 1.0
        assert row[f"{key}_ci_low"] <= row[key] <= row[f"{key}_ci_high"]
    assert row["lira_references"] == 2 and row["lira_pairs_per_class"] > 0
    # the untouched original remembers its forgotten pairs better than exact retrains do
    again = _audit_cell(params.model_dump_json(), 1, "retrain", 2)
    assert "training reference model" not in capsys.readouterr().out  # kept and reused
    assert row["lira_auc"] > again["lira_auc"]
    # rows measured before the attack existed stay; the plot gets its panel when any row has it
    out = tmp_path / "audit.csv"
    pd.DataFrame([{k: v for k, v in again.items() if not k.startswith("lira")}]).to_csv(out, index=False)
    rows = bench_audit(params, out, [1], ["retrain", "original"], references=2)
    assert len(rows) == 2 and out.with_suffix(".png").stat().st_size > 0
