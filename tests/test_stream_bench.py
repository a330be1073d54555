"""`tru bench stream` on tiny data: nights chained through the batch stages, each batch starting
where the previous one ended, a retrain compared on checkpoint nights, resumed night by night,
and the report generated from the CSV."""

import json
import os
import re
from contextlib import chdir
from pathlib import Path

import pandas as pd
import pytest
import yaml

import tru.bench.stream as stream
from tests.conftest import HELD_FOR_REVIEW, copy_repo
from tru import paths
from tru.bench.stream import (
    FORGET_KINDS,
    checkpoints,
    draw_requests,
    is_reference_column,
    loop_activity,
    night_plan,
    reported,
    retain_indicator,
    run_stream_bench,
    stream_store,
    write_stream_report,
)
from tru.config import load_params
from tru.errors import ConfigError
from tru.stages.context import load_context


def test_traffic_is_mostly_small_with_a_large_night_and_the_canary_once():
    import numpy as np

    plans = [night_plan(np.random.default_rng([1, n]), n, 12, 943) for n in range(1, 31)]
    assert sum(p["canary"] for p in plans) == 1 and plans[11]["canary"]
    assert [n for n, p in enumerate(plans, 1) if p["pairs"] == 50] == [10, 20, 30]
    assert all(p["users"] == 9 for p in plans[9::10])
    small = [p for n, p in enumerate(plans, 1) if n % 10]
    assert all(1 <= p["pairs"] <= 20 for p in small) and np.mean([p["users"] for p in small]) < 2
    # drawn from what is still there: never a fake user outside the canary's night, every pair trained on
    train = np.array([[u, i] for u in range(6) for i in range(8)] + [[6, 0], [6, 1]])
    users, items = [f"u{k}" for k in range(7)], [f"i{k}" for k in range(8)]
    rows = draw_requests(np.random.default_rng(0), {"users": 1, "items": 0, "pairs": 5, "canary": False},
                         train, np.array([6]), users, items, 3, "2027-01-03T01:00:00Z")  # fmt: skip
    assert len(rows) == 6 and not any(r["user_id"] == "u6" for r in rows)
    pairs = {(r["user_id"], r["item_id"]) for r in rows if r["kind"] == "interaction"}
    (gone,) = [r["user_id"] for r in rows if r["kind"] == "user"]
    assert all(u != gone for u, _ in pairs) and len(pairs) == 5


def stream_project(base_repo, tmp_path, monkeypatch):
    """A copy of the pipeline's project with its key, as the working directory; (its path, params)."""
    repo = copy_repo(base_repo, tmp_path / "repo")
    (repo / ".tru-secret").write_text("00112233445566778899aabbccddeeff\n")
    monkeypatch.chdir(repo)
    monkeypatch.delenv("TRU_PSEUDONYM_KEY", raising=False)
    return repo, load_params("params.yaml")


def test_a_chain_without_its_retrain_reads_the_recorded_one_of_the_same_traffic(base_repo, tmp_path, monkeypatch):
    """A method's chain re-run where no retrain of the night is kept (its own folder, no sibling
    stream beside it) reads the retrain's measures from another method's recorded row of the same
    traffic and night, where that row measured the same retained data: the same exact retrain,
    not trained again. A row of other data (its digest differs) is not read; a row recorded
    before the digest is read where its counts of erased pairs agree."""
    repo, params = stream_project(base_repo, tmp_path, monkeypatch)
    out = tmp_path / "stream.csv"
    run = dict(nights=2, every=2, canary_night=2, replicate=False)
    run_stream_bench(params, out, ["mgcn"], ["exact"], [1], **run)

    def tru_in(root: str) -> pd.Series:
        run_stream_bench(params, out, ["mgcn"], ["tru"], [1], root=repo / "data/bench" / root, **run)
        df = pd.read_csv(out)
        row = df[(df["method"] == "tru") & (df["night"] == 2)].iloc[0]
        has_retrain = (repo / "data/bench" / root / "mgcn-tru-1/data/batches" / row["batch"] / "retrain").is_dir()
        return row, has_retrain

    ex = pd.read_csv(out).query("night == 2").iloc[0]
    tr, trained = tru_in("stream-a")
    assert tr["reference_recorded"] == "exact" and not trained
    assert tr["retain_sha256"] == ex["retain_sha256"]
    assert tr["forget_pairs_cumulative"] == ex["forget_pairs_cumulative"] > 0
    copied = [c for c in ex.index if is_reference_column(c)]
    assert "retrain_forget_recall@20" in copied and "retrain_check_flagged" in copied
    assert "retrain_gate" not in copied and pd.isna(tr["retrain_gate"])  # judged against the chain's own input
    assert all(tr[c] == ex[c] or (pd.isna(tr[c]) and pd.isna(ex[c])) for c in copied)
    # the chain's own side is measured: the original the same, the chain its own
    assert tr["original_forget_recall@20"] == pytest.approx(ex["original_forget_recall@20"])
    assert 0 <= tr["chain_forget_recall@20"] <= 1 and pd.notna(tr["chain_cumulative_membership_auc"])
    assert pd.isna(tr["chain_top20_agreement"]) and pd.isna(tr["chain_retrain_param_distance"])
    report = out.with_suffix(".md").read_text()
    assert "mgcn tru: 1 of its checkpoint seed-nights" in report
    # Retrain's replicate filled in afterwards where no stream kept the night's retrain (stream-a
    # holds only the tru chain, which read its retrain's measures): trained in that folder, its
    # agreement with the retrain left empty (none to agree with), and given to the rows of the
    # night that measured the same retained data, not to a row of other data
    df = pd.read_csv(out)
    df.loc[(df["method"] == "exact") & (df["night"] == 2), "retain_sha256"] = "f" * 64
    df.to_csv(out, index=False)
    store = stream_store(out)
    assert stream.fill_replicates(params, store, store.read(), repo / "data/bench/stream-a", "mgcn") == 1
    filled = pd.read_csv(out).set_index(["method", "night"])
    assert 0 <= filled.loc[("tru", 2), "retrain_r2_forget_recall@20"] <= 1
    assert 0 <= filled.loc[("tru", 2), "retrain_r2_retain_recall@20"] <= 1
    assert pd.isna(filled.loc[("tru", 2), "retrain_r2_top20_agreement"])
    assert pd.isna(filled.loc[("exact", 2), "retrain_r2_forget_recall@20"])
    kept = repo / "data/bench/stream-a/mgcn-tru-1" / paths.batch_dir(tr["batch"])
    assert (kept / "retrain_r2/checkpoint.json").is_file() and not (kept / "retrain").exists()
    # a recorded row of other retained data is not read: the chain trains its own retrain
    df = pd.read_csv(out)
    df = df[df["method"] == "exact"]
    df.assign(retain_sha256="f" * 64).to_csv(out, index=False)
    tr, trained = tru_in("stream-b")
    assert pd.isna(tr["reference_recorded"]) and trained
    assert tr["retrain_forget_recall@20"] == pytest.approx(ex["retrain_forget_recall@20"])  # deterministic
    # a row recorded before the digest: read where its counts of erased pairs agree
    df.drop(columns=["retain_sha256"]).to_csv(out, index=False)
    tr, trained = tru_in("stream-c")
    assert tr["reference_recorded"] == "exact" and not trained


def test_a_stream_chains_the_batches_and_compares_with_a_retrain(base_repo, tmp_path, monkeypatch):
    repo, params = stream_project(base_repo, tmp_path, monkeypatch)
    out = tmp_path / "stream.csv"

    # killed in night 2's comparison: night 1 stays recorded, with its seconds in the timings file
    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(stream, "compare_with_retrain", killed)
        with pytest.raises(KeyboardInterrupt):
            run_stream_bench(params, out, ["mgcn"], ["exact"], [1], nights=2, every=2, canary_night=2, replicate=False)
    assert list(pd.read_csv(out)["night"]) == [1]
    first = json.loads(out.with_suffix(".timings.json").read_text())["mgcn-exact-1"]
    assert first > 0
    run_stream_bench(params, out, ["mgcn"], ["exact"], [1], nights=2, every=2, canary_night=2, replicate=False)
    assert json.loads(out.with_suffix(".timings.json").read_text())["mgcn-exact-1"] > first
    assert os.getcwd() == str(repo)
    assert "retrain_r2_forget_recall@20" not in pd.read_csv(out)
    # killed after night 2: the rerun runs night 3 only, and fills in night 2's replicate
    rows = run_stream_bench(params, out, ["mgcn"], ["exact"], [1], nights=3, every=2, canary_night=2)
    df = pd.read_csv(out)
    assert list(df["night"]) == [1, 2, 3] and len(rows) == 3
    assert df["retrain_r2_forget_recall@20"].notna().tolist() == [False, True, True]
    folder = repo / "data/bench/stream/mgcn-exact-1"
    chain = yaml.safe_load((folder / "batches.yaml").read_text())["batches"]
    assert [b["id"] for b in chain] == list(df["batch"])
    # each batch starts from the sets and the model the previous one left
    for before, after in zip(chain, chain[1:], strict=False):
        assert after["prior"] == f"data/batches/{before['id']}/sets"
        assert after["base_model"] in (f"data/batches/{before['id']}/model", before["base_model"])
    # the chain's start, the generation's base model, is known to every batch that starts from a later model
    with chdir(folder):
        starts = [load_context(params, b["id"])[0].chain_start_path for b in chain]
    assert starts == [None if Path(b["base_model"]) == paths.BASE_MODEL else paths.BASE_MODEL for b in chain]
    assert any(s is not None for s in starts)
    # exact: no reverse epoch on any night
    for b in chain:
        assert json.loads((folder / "reports" / b["id"] / "update_log.json").read_text())["epochs"] == []
    # the canary's fake users went on night 2, by their raw ids
    led = pd.read_parquet(folder / "data/ledger" / chain[1]["id"] / "requests.parquet")
    assert led["user_id"].str.startswith("canary-").sum() == 4
    # checkpoint nights (2, and the last) carry the comparison with an exact retrain on the same data
    ck = df[df["retrain_seconds"].notna()]
    assert list(ck["night"]) == [2, 3]
    assert (ck["forget_pairs_cumulative"].diff().dropna() > 0).all()
    for col in ("chain", "retrain", "original"):
        assert ck[f"{col}_retain_recall@20"].between(0, 1).all()
    # everything erased so far, judged by the gate's membership test: measured for chain, retrain and original
    for col in ("chain", "retrain", "original"):
        assert ck[f"{col}_cumulative_membership_auc"].between(0, 1).all()
    assert (ck["cumulative_membership_pairs"] > 0).all()
    # the audit's own check of the chain (tru.audit.chain) on every night, and on the retrain of checkpoint nights
    assert df["chain_check_flagged"].notna().all() and ck["retrain_check_flagged"].notna().all()
    audits = [json.loads((folder / "reports" / b["id"] / "audit.json").read_text())["chain"] for b in chain]
    assert [a["flagged"] for a in audits] == df["chain_check_flagged"].tolist()
    assert ck["chain_top20_agreement"].between(0, 1).all() and set(ck["retrain_gate"]) <= {
        "pass",
        "fail",
        "inconclusive",
    }
    assert (folder / "data/batches" / chain[1]["id"] / "retrain").is_dir()
    # parameter distances to the retrain, measured on checkpoint nights; a CSV without them (an
    # earlier version's) is filled from the models the stream kept, to the same values
    distances = ["chain_retrain_param_distance", "original_retrain_param_distance", "chain_original_param_distance"]
    assert (ck[distances] > 0).all().all()
    # the cumulative forget Recall@20 split by what erased each pair: every pair in one kind, the
    # canary's fake users (night 2) among the deleted users, each kind's Recall@20 measured where it has users
    kinds = [f"forget_{n}_{k}" for n in ("pairs", "users") for k in FORGET_KINDS]
    kinds += [f"{w}_forget_recall@20_{k}" for w in ("chain", "retrain", "original") for k in FORGET_KINDS]
    assert (ck[[f"forget_pairs_{k}" for k in FORGET_KINDS]].sum(axis=1) == ck["forget_pairs_cumulative"]).all()
    assert (ck["forget_users_users"] >= 4).all()
    for k in FORGET_KINDS:
        has = ck[f"forget_users_{k}"] > 0
        assert ck.loc[has, f"chain_forget_recall@20_{k}"].between(0, 1).all()
        assert ck.loc[~has, f"chain_forget_recall@20_{k}"].isna().all()
    # a CSV without them (an earlier version's) is filled from the models the stream kept, to the same values
    df.drop(columns=distances + kinds).to_csv(out, index=False)
    run_stream_bench(params, out, ["mgcn"], ["exact"], [1], nights=3, every=2, canary_night=2)
    refilled = pd.read_csv(out)
    assert refilled.loc[ck.index, distances].round(6).equals(ck[distances].round(6))
    assert refilled.loc[ck.index, kinds].round(9).equals(ck[kinds].round(9))
    # ... where the kept chain model gives the row's recorded forget Recall@20 again, and only there
    changed = refilled.drop(columns=kinds)
    changed.loc[ck.index[0], "chain_forget_recall@20"] += 0.5
    changed.to_csv(out, index=False)
    run_stream_bench(params, out, ["mgcn"], ["exact"], [1], nights=3, every=2, canary_night=2)
    refilled = pd.read_csv(out)
    assert refilled.loc[ck.index[1:], kinds].round(9).equals(ck.loc[ck.index[1:], kinds].round(9))
    assert refilled.loc[ck.index[0], kinds].isna().all()
    refilled.loc[ck.index[0], "chain_forget_recall@20"] -= 0.5
    refilled.drop(columns=kinds).to_csv(out, index=False)
    run_stream_bench(params, out, ["mgcn"], ["exact"], [1], nights=3, every=2, canary_night=2)
    # another method on the same seed: the same traffic and retained data, so the retrain is reused, not re-run
    run_stream_bench(params, out, ["mgcn"], ["tru"], [1], nights=2, every=2, canary_night=2)
    df = pd.read_csv(out).set_index(["method", "night"])
    other = repo / "data/bench/stream/mgcn-tru-1/data/batches" / chain[1]["id"]
    assert (other / "retrain/model.safetensors").read_bytes() == (
        folder / "data/batches" / chain[1]["id"] / "retrain/model.safetensors"
    ).read_bytes()
    assert df.loc[("tru", 2), "retrain_shared"] and not df.loc[("exact", 2), "retrain_shared"]
    # Retrain's replicate (another training seed) on the same nights: reused the same way, a
    # different model from the retrain, measured on every checkpoint row
    night = folder / "data/batches" / chain[1]["id"]
    replicate = (night / "retrain_r2/model.safetensors").read_bytes()
    assert (other / "retrain_r2/model.safetensors").read_bytes() == replicate
    assert replicate != (night / "retrain/model.safetensors").read_bytes()
    measured = df[df["retrain_seconds"].notna()]
    assert measured["retrain_r2_forget_recall@20"].between(0, 1).all()
    assert measured["retrain_r2_forget_recall@20_users"].between(0, 1).all()
    assert measured["retrain_r2_top20_agreement"].between(0, 1).all()
    assert df.loc[("tru", 2), "retrain_r2_forget_recall@20"] == df.loc[("exact", 2), "retrain_r2_forget_recall@20"]
    assert df.loc[("tru", 2), "retrain_seconds"] == df.loc[("exact", 2), "retrain_seconds"]
    md = write_stream_report(stream_store(out).read(), out).read_text()
    assert "| mgcn | exact | development | 1 | 3 |" in md and out.with_suffix(".png").is_file()
    # one seed with the replicate is judged: of its two checkpoint nights, how many are out of range
    assert re.search(r"\| mgcn \| exact \| development \| 1 \| 3 \|.* \| [0-2] of 2[ |]", md)
    # the chain check's column: the first night it flagged the chain, and its flags on the retrain
    assert re.search(r"\| mgcn \| exact \| development \| 1 \| 3 \|.* \| 1: (never|[1-3]) \([0-2] of 2\) \|", md)
    # beside it, the chain's forget gap to the retrain and the replicate's on the same nights
    assert re.search(r"\| [0-2] of 2[^|]* \| \d\.\d{3} \(\d\.\d{3}\) \| 1: (never|[1-3]) ", md)
    # where the forget gap lives: per kind of erased pair, the chain's distance and another retrain's
    assert re.search(r"\| mgcn \| exact \| development \| \d\.\d{3} \(\d\.\d{3}\), \d+ users \|", md)
    # each stream's seconds, summed over its resumed runs, in the timings file beside the CSV
    timings = json.loads(out.with_suffix(".timings.json").read_text())
    assert set(timings) == {"mgcn-exact-1", "mgcn-tru-1"} and min(timings.values()) > 0
    # what each night's loop did, from its own logs: the exact step has no loop; TRU's reverse
    # epochs as its update log counts them, shown in the report per seed
    assert df.xs("exact")["reverse_epochs"].isna().all()
    tru_folder = repo / "data/bench/stream/mgcn-tru-1"
    for night, b in zip((1, 2), chain, strict=False):
        log = json.loads((tru_folder / "reports" / b["id"] / "update_log.json").read_text())
        assert df.loc[("tru", night), "reverse_epochs"] == sum(1 for e in log["epochs"] if e.get("reverse_pairs"))
    assert re.search(r"\| mgcn \| tru \| development \| 1 \|[^\n]*\| 1: \d of 2(, step up to \d+x)? \|", md)


def test_a_stream_on_another_dataset_of_the_grid_starts_from_its_prepared_split_and_base_model(
    base_repo, tmp_path, monkeypatch
):
    """`--dataset` (ML-1M in production): the grid file's dataset is prepared and its base model
    trained where the grid keeps them, and the stream starts from those, in a folder of its own;
    a dataset the grid file lacks is refused with the ones it has."""
    from typer.testing import CliRunner

    from tru.cli import app
    from tru.data.dataset import load_split

    repo = copy_repo(base_repo, tmp_path / "repo")
    (repo / ".tru-secret").write_text("00112233445566778899aabbccddeeff\n")
    monkeypatch.chdir(repo)
    monkeypatch.delenv("TRU_PSEUDONYM_KEY", raising=False)
    grid = repo / "grid.yaml"
    grid.write_text(
        "root: data/bench/grid\nout: results.csv\n"
        "datasets:\n  syn: {label: Synthetic-200, source: synthetic, scale: tiny, canary: true}\n"
        "blocks:\n  - {datasets: [syn], backbones: [mgcn], regimes: [user], methods: [tru], seeds: [1]}\n"
    )
    params = load_params("params.yaml")
    out = tmp_path / "stream_syn.csv"
    with pytest.raises(ConfigError, match=r"'nope' is not in .*choose from syn \(tiny: the pipeline's own\)"):
        run_stream_bench(params, out, ["mgcn"], ["exact"], [1], nights=1, dataset="nope", grid_file=grid)
    run_stream_bench(
        params, out, ["mgcn"], ["exact"], [1], nights=2, every=2, canary_night=2, replicate=False,
        dataset="syn", grid_file=grid,
    )  # fmt: skip
    df = pd.read_csv(out)
    assert list(df["night"]) == [1, 2] and df["retrain_seconds"].notna().tolist() == [False, True]
    folder = repo / "data/bench/stream/syn/mgcn-exact-1"
    assert not (repo / "data/bench/stream/mgcn-exact-1").exists()
    prepared = repo / "data/bench/grid/syn"
    # the grid's split (200 users and the canary's, not the pipeline's 80), base model and id maps
    ours = load_split(folder / "data/split", folder / params.data.dataset_dir)
    assert ours.n_users == load_split(prepared / "split", prepared / "dataset").n_users > 200
    assert ours.n_users > load_split("data/split", params.data.dataset_dir).n_users
    base = folder / "data/models/base/model.safetensors"
    assert base.read_bytes() == (prepared / "base-mgcn/model.safetensors").read_bytes()
    for name in ("user_map.tsv", "item_map.tsv"):
        assert (folder / params.data.dataset_dir / name).read_bytes() == (prepared / "dataset" / name).read_bytes()
    assert out.with_suffix(".md").read_text().startswith("# Many nights in a row: Synthetic-200 (generated")
    # the report alone, from the CLI: the same folder, the default CSV named after the dataset
    res = CliRunner().invoke(
        app, ["bench", "stream", "--dataset", "syn", "--grid", str(grid), "--out", str(out), "--report-only"]
    )
    assert res.exit_code == 0, res.output
    assert out.with_suffix(".md").read_text().startswith("# Many nights in a row: Synthetic-200 (generated")
    res = CliRunner().invoke(app, ["bench", "stream", "--dataset", "syn", "--grid", str(grid), "--report-only"])
    assert res.exit_code == 0 and "stream_synthetic200.md" in res.output, res.output


def test_a_refused_night_is_cleared_by_a_retrain_and_the_stream_goes_on(base_repo, tmp_path, monkeypatch):
    """A night the gate refuses (here every INCONCLUSIVE one, under `inconclusive: review`) is
    recorded as refused and cleared as `tru review` clears it; the next night starts from the
    retrained batch."""
    repo = copy_repo(base_repo, tmp_path / "repo")
    (repo / ".tru-secret").write_text("00112233445566778899aabbccddeeff\n")
    monkeypatch.chdir(repo)
    monkeypatch.delenv("TRU_PSEUDONYM_KEY", raising=False)
    params = load_params("params.yaml")
    held = params.audit.gate.model_copy(update=HELD_FOR_REVIEW)
    params = params.model_copy(update={"audit": params.audit.model_copy(update={"gate": held})})
    out = tmp_path / "stream.csv"
    run_stream_bench(params, out, ["mgcn"], ["exact"], [1], nights=2, every=5, canary_night=9)
    df = pd.read_csv(out)
    assert list(df["night"]) == [1, 2]
    assert (df["verdict"] != "pass").all() and df["cleared_by_retrain"].all()
    assert df["failed_checks"].isna().all()  # held as inconclusive: refused with no check failed
    # the last night's reference is the night's own retrain (the same data), not trained again
    assert df["retrain_shared"].iloc[-1] and df["retrain_seconds"].iloc[-1] > 0
    folder = repo / "data/bench/stream/mgcn-exact-1"
    chain = yaml.safe_load((folder / "batches.yaml").read_text())["batches"]
    assert [b["method"] for b in chain] == ["retrain", "retrain"]
    assert chain[1]["base_model"] == f"data/batches/{chain[0]['id']}/model"
    for b in chain:  # cleared: the retrained batch's audit promotes it
        audit = json.loads((folder / "reports" / b["id"] / "audit.json").read_text())
        assert audit["promoted"] is True
        # the refused attempt's reports are kept beside the chain, as that attempt left them
        refused = folder / "refused" / b["id"]
        assert json.loads((refused / "audit.json").read_text())["promoted"] is False
        assert json.loads((refused / "update_log.json").read_text())["method"] == "exact"


def test_the_report_reads_a_chain_from_evaluation_traffic_wherever_it_has_run_there():
    """Traffic seeds as the grid's: a chain's development rows (where rules were chosen) are read
    only until the same backbone and method has run on evaluation traffic, and are marked."""
    rows = [
        {"backbone": "mgcn", "method": m, "seed": seed, "night": 1}
        for m, seeds in (("tru", (1, 2, 11)), ("exact", (1, 2)))
        for seed in seeds
    ]
    df = reported(pd.DataFrame(rows))
    tru = df[df["method"] == "tru"]
    assert tru["seed"].tolist() == [11] and set(tru["traffic"]) == {"evaluation"}
    exact = df[df["method"] == "exact"]
    assert exact["seed"].tolist() == [1, 2] and set(exact["traffic"]) == {"development"}
    assert reported(pd.DataFrame()).empty


def test_first_departure_names_the_night_and_why():
    from tru.bench.stream import first_departure

    def row(seed, night, chain_forget, retrain_forget, verdict="inconclusive", original_forget=0.5):
        return {"backbone": "mgcn", "method": "tru", "seed": seed, "night": night, "verdict": verdict,
                "retrain_seconds": 1.0, "chain_retain_recall@20": 0.18, "retrain_retain_recall@20": 0.18,
                "chain_forget_recall@20": chain_forget, "retrain_forget_recall@20": retrain_forget,
                "original_retain_recall@20": 0.18, "original_forget_recall@20": original_forget}  # fmt: skip

    # each seed's own traffic: judged relative to the original on the same pairs, seed 1's chain
    # (0.30 of an original 0.60: 0.5) is inside the retrains' ratios (0.40 and 0.52)
    other_traffic = [row(1, 5, 0.30, 0.24, original_forget=0.6), row(2, 5, 0.25, 0.26)]
    assert first_departure(pd.DataFrame(other_traffic)) == {("mgcn", "tru"): None}

    inside = [row(1, 5, 0.25, 0.24), row(2, 5, 0.25, 0.26)]
    assert first_departure(pd.DataFrame(inside)) == {("mgcn", "tru"): None}
    later = inside + [row(1, 10, 0.30, 0.24, verdict="pass"), row(2, 10, 0.25, 0.26)]
    assert first_departure(pd.DataFrame(later)) == {("mgcn", "tru"): "10: forget above (seed 1), gate miss (seed 1)"}
    assert first_departure(pd.DataFrame(inside[:1])) == {}  # one seed: no range


def test_with_retrains_replicate_a_chain_is_judged_against_where_another_retrain_lands():
    from scipy import stats

    from tru.bench.stream import first_departure, out_of_range, retrain_band

    def row(seed, night, chain_forget, verdict="inconclusive"):
        # two retrains 0.02 apart on forget (ratios 0.48 and 0.52 of the original's 0.5), level on retain
        return {"backbone": "mgcn", "method": "tru", "seed": seed, "night": night, "verdict": verdict,
                "retrain_seconds": 1.0, "chain_retain_recall@20": 0.18, "retrain_retain_recall@20": 0.18,
                "retrain_r2_retain_recall@20": 0.18, "original_retain_recall@20": 0.18,
                "chain_forget_recall@20": chain_forget, "retrain_forget_recall@20": 0.24,
                "retrain_r2_forget_recall@20": 0.26, "original_forget_recall@20": 0.5}  # fmt: skip

    near = [row(s, n, 0.28) for s in (1, 2) for n in (5, 10)]
    band = retrain_band(checkpoints(pd.DataFrame(near)))["mgcn"]
    # pooled over the 4 seed-nights: each pair's variance (0.04^2 / 2), one more retrain around their mean
    assert band["pairs"] == 4 and band["retain"] == 0
    assert band["forget"] == pytest.approx(stats.t.ppf(0.975, 4) * (0.04**2 / 2 * 1.5) ** 0.5)
    # 0.56 of the original: 0.06 above the retrains' mean, within the 0.096 another retrain may land
    # (outside the two retrains' range over seeds, which alone would call it a departure)
    assert first_departure(pd.DataFrame(near)) == {("mgcn", "tru"): None}
    far = near[:3] + [row(2, 10, 0.31, verdict="pass")]
    assert first_departure(pd.DataFrame(far)) == {("mgcn", "tru"): "10: forget above (seed 2), gate miss (seed 2)"}
    # one seed is judged too: the band comes from its own nights
    alone = [row(1, 5, 0.25), row(1, 10, 0.25), row(1, 15, 0.40)]
    assert first_departure(pd.DataFrame(alone)) == {("mgcn", "tru"): "15: forget above (seed 1)"}
    # a chain that forgets much more than a retrain leaves below
    assert first_departure(pd.DataFrame(near[:2] + [row(2, 5, 0.15)])) == {("mgcn", "tru"): "5: forget below (seed 2)"}
    # one seed with the replicate on a single night: no band yet, and the report says how far it has got
    from tru.bench.stream import _unjudged, band_lines

    single = pd.DataFrame([row(1, 5, 0.25), {**row(1, 10, 0.25), "retrain_r2_forget_recall@20": None}])
    assert retrain_band(checkpoints(single)) == {} and first_departure(single) == {}
    assert band_lines(checkpoints(single), {}) == [
        "* mgcn: the replicate measured on 1 seed-night so far; a band needs two"
    ]
    assert _unjudged(checkpoints(single), "mgcn") == "– (one seed; the replicate on 1 seed-night, a band needs two)"
    none = single.drop(columns=[c for c in single if c.startswith("retrain_r2_")])
    assert band_lines(checkpoints(none), {}) == ["* no replicate measured yet"]
    assert _unjudged(checkpoints(none), "mgcn") == "– (one seed: no spread)"
    # every night out of range, not only the first: back inside on night 10
    back = [row(1, 5, 0.15), row(1, 10, 0.26), row(2, 5, 0.25), row(2, 10, 0.40)]
    assert out_of_range(pd.DataFrame(back)) == {
        ("mgcn", "tru"): ["5: forget below (seed 1)", "10: forget above (seed 2)"]
    }


def test_the_plot_shades_the_range_the_summary_judges_by():
    """The stream plot's band is out_of_range's bound on the plot's scale (chain - retrain): a
    chain just inside it is not counted out of range, one just outside it is; on a night
    without the replicate the range is centred on the retrain alone."""
    from tru.bench.stream import out_of_range, range_offsets, retrain_band

    def row(night, chain_forget, r2=0.26):
        return {"backbone": "mgcn", "method": "tru", "seed": 11, "night": night, "verdict": "inconclusive",
                "retrain_seconds": 1.0, "chain_retain_recall@20": 0.18, "retrain_retain_recall@20": 0.18,
                "retrain_r2_retain_recall@20": 0.18, "original_retain_recall@20": 0.18,
                "chain_forget_recall@20": chain_forget, "retrain_forget_recall@20": 0.24,
                "retrain_r2_forget_recall@20": r2, "original_forget_recall@20": 0.5}  # fmt: skip

    rows = [row(10, 0.24), row(20, 0.24), row(30, 0.24, r2=None)]
    ck = checkpoints(pd.DataFrame(rows))
    band = retrain_band(ck)["mgcn"]
    lo, hi = range_offsets(ck, band, "forget")
    half = band["forget"] * 0.5
    # the retrains' mean (0.25) +- the band, less the retrain (0.24)
    assert lo[10] == pytest.approx(0.01 - half) and hi[10] == pytest.approx(0.01 + half)
    assert lo[30] == pytest.approx(-half) and hi[30] == pytest.approx(half)  # no replicate that night
    assert range_offsets(ck, band, "retain")[0].tolist() == [0.0, 0.0, 0.0]  # two retrains level: no width
    for night, at in ((10, hi[10]), (30, lo[30])):
        inside = [r if r["night"] != night else {**r, "chain_forget_recall@20": 0.24 + at * 0.999} for r in rows]
        outside = [r if r["night"] != night else {**r, "chain_forget_recall@20": 0.24 + at * 1.001} for r in rows]
        assert out_of_range(pd.DataFrame(inside)) == {("mgcn", "tru"): []}
        assert [n.split(":")[0] for n in out_of_range(pd.DataFrame(outside))[("mgcn", "tru")]] == [str(night)]


def test_the_forget_gap_is_read_against_how_far_another_retrain_lands():
    from tru.bench.stream import forget_gap

    def row(seed, night, chain, retrain, replicate):
        return {"seed": seed, "night": night, "chain_forget_recall@20": chain,
                "retrain_forget_recall@20": retrain, "retrain_r2_forget_recall@20": replicate}  # fmt: skip

    # the chain 0.04 above on one seed-night and 0.02 below on the other; the replicate 0.01 and 0.03 away
    c = pd.DataFrame([row(11, 5, 0.24, 0.20, 0.21), row(12, 5, 0.18, 0.20, 0.17)])
    gap, again = forget_gap(c)
    assert gap == pytest.approx(0.03) and again == pytest.approx(0.02)
    # rows recorded before the replicate: the chain's gap alone
    assert forget_gap(c.drop(columns="retrain_r2_forget_recall@20")) == (pytest.approx(0.03), None)
    # a night without the replicate does not count against it
    c.loc[1, "retrain_r2_forget_recall@20"] = None
    assert forget_gap(c)[1] == pytest.approx(0.01)


def test_the_forget_gap_is_split_by_what_erased_each_pair():
    from types import SimpleNamespace

    import numpy as np

    from tru.bench.stream import _kind_gap, forget_kinds, kind_gap

    # user 0 deleted (its pair of the deleted item 5 is a deleted user's), item 5 deleted, users 1-2 stay
    data = SimpleNamespace(deleted_users=np.array([0]), deleted_items=np.array([5]))
    cum = np.array([[0, 1], [0, 5], [1, 5], [2, 5], [1, 3], [2, 4]])
    kinds = forget_kinds(data, cum)
    assert list(kinds) == list(FORGET_KINDS)
    assert kinds["users"].tolist() == [[0, 1], [0, 5]]
    assert kinds["items"].tolist() == [[1, 5], [2, 5]]
    assert kinds["interactions"].tolist() == [[1, 3], [2, 4]]

    def row(chain, retrain, replicate, users):
        return {"chain_forget_recall@20_items": chain, "retrain_forget_recall@20_items": retrain,
                "retrain_r2_forget_recall@20_items": replicate, "forget_users_items": users}  # fmt: skip

    # the chain 0.3 below on one seed-night and 0.1 above on the other; the replicate 0.2 and 0 away
    c = pd.DataFrame([row(0.6, 0.9, 0.7, 20), row(0.5, 0.4, 0.4, 30)])
    gap, again, users, measured = kind_gap(c, "items")
    assert (gap, again, users, measured) == (pytest.approx(0.2), pytest.approx(0.1), 25, 2)
    # a night without a deleted item does not count in the gap, yet was measured; a row recorded
    # before the split was not; a chain with no row measured says so
    c.loc[2] = row(None, None, None, 0)
    c.loc[3] = row(None, None, None, None)
    assert kind_gap(c, "items")[0] == pytest.approx(0.2) and kind_gap(c, "items")[3] == 3
    assert _kind_gap(c, "items") == "0.200 (0.100), 25 users, 3 of 4 seed-nights"
    assert kind_gap(c.drop(columns="chain_forget_recall@20_items"), "items") is None


def test_a_retrain_resumed_from_its_snapshot_counts_the_seconds_before_it(tmp_path):
    """An ML-1M retrain killed half-way resumes from its snapshot: its cost is both parts."""
    import time

    from tru.bench.stream import _trained_seconds

    timings = tmp_path / "retrain.json"
    t0 = time.perf_counter()
    assert 0 <= _trained_seconds(t0, timings) < 60  # no timings file: this process's seconds
    timings.write_text(json.dumps({"total_seconds": 12.0, "resumed_seconds": 3600.0}))
    assert 3600 <= _trained_seconds(t0, timings) < 3660
    timings.write_text(json.dumps({"total_seconds": 12.0, "resumed_seconds": 0.0}))
    assert _trained_seconds(t0, timings) < 60


def test_the_report_marks_the_sections_the_docs_include_and_says_the_cost_against_a_retrain(tmp_path):
    """The docs quote no figure by hand: they include the report's named sections. The cost
    section puts each method's nights against one retrain, TRU first, on the nights it ran."""
    recalls = {f"{w}_{m}_recall@20": 0.2 for w in ("chain", "retrain", "original") for m in ("retain", "forget")}

    def row(method, seed, night, seconds, retrain=None):
        return {"backbone": "mgcn", "method": method, "seed": seed, "night": night, "verdict": "pass",
                "cleared_by_retrain": False, "erase_repair_s": seconds, "retrain_seconds": retrain,
                "retrain_gate": "pass", "forget_pairs_cumulative": 10,
                "chain_top20_agreement": 0.8, "original_top20_agreement": 0.7, **recalls}  # fmt: skip

    # TRU: two seeds of two nights (3 s and 5 s a seed: a mean of 4 s); the exact step one seed,
    # one night so far; the retrains 40 s and 60 s (a mean of 50 s)
    rows = [row("tru", s, n, 1.0 + s - 11 + (n == 2), 40.0 if n == 2 and s == 11 else (60.0 if n == 2 else None))
            for s in (11, 12) for n in (1, 2)] + [row("exact", 11, 1, 2.0, None)]  # fmt: skip
    rows[-1]["cleared_by_retrain"] = True  # the exact step's night was refused and cleared by a retrain
    md = write_stream_report(rows, tmp_path / "stream").read_text()
    for name in ("band", "summary", "cost", "kinds", "indicator"):
        assert md.count(f"[start:{name}]") == 1 and md.count(f"[end:{name}]") == 1
    cost = md.split("[start:cost] -->")[1].split("<!--")[0].strip()
    assert cost == (
        "* mgcn, one retrain 50 s; erase + repair a seed: tru 4 s over 2 nights (0.08 of a retrain), "
        "exact 2 s over 1 night (0.04 of a retrain) + 1 review retrain."
    )
    # the summary table's rows sit inside its section
    summary = md.split("[start:summary] -->")[1].split("[end:summary]")[0]
    assert "| mgcn | tru | evaluation | 2 | 2 |" in summary and "| mgcn | exact |" in summary


def test_the_retain_indicator_is_set_beside_the_retain_it_stands_for_on_checkpoint_nights(tmp_path):
    """`retain_drop` reads each night's validation ratio multiplied along the chain (a night
    without one counts as 1, as the policy skips it); on checkpoint nights the report puts it
    beside the chain's and the retrain's test Recall@20 over the original's."""

    def row(seed, night, ratio, chain=None, retrain=None):
        ck = {} if chain is None else {"retrain_seconds": 9.0, "chain_retain_recall@20": chain,
              "retrain_retain_recall@20": retrain, "original_retain_recall@20": 0.2, "retrain_gate": "pass",
              "forget_pairs_cumulative": 10, "chain_top20_agreement": 0.8, "original_top20_agreement": 0.7,
              **{f"{w}_forget_recall@20": 0.1 for w in ("chain", "retrain", "original")}}  # fmt: skip
        return {"backbone": "mgcn", "method": "tru", "seed": seed, "night": night, "retain_valid_ratio": ratio,
                "verdict": "pass", "cleared_by_retrain": False, "erase_repair_s": 1.0, **ck}  # fmt: skip

    rows = [
        row(11, 2, 0.9, 0.19, 0.21),  # out of order on purpose: the chain is multiplied in night order
        row(11, 1, 0.5),
        row(11, 3, None),
        row(11, 4, 2.0, 0.16, 0.2),
        row(12, 1, 1.0),
        row(12, 2, 0.95, 0.2, 0.2),
        row(12, 4, 1.0, 0.2, 0.22),
    ]
    ind = retain_indicator(pd.DataFrame(rows)).sort_values(["seed", "night"])
    assert ind[["seed", "night"]].values.tolist() == [[11, 2], [11, 4], [12, 2], [12, 4]]
    assert ind["indicator"].round(6).tolist() == [0.45, 0.9, 0.95, 0.95]  # 0.5*0.9; *1 (no ratio) *2.0
    assert ind["measured"].round(6).tolist() == [0.95, 0.8, 1.0, 1.0]
    assert ind["retrain"].round(6).tolist() == [1.05, 1.0, 1.0, 1.1]
    md = write_stream_report(rows, tmp_path / "stream").read_text()
    table = md.split("[start:indicator] -->")[1].split("<!--")[0]
    # last night (4): indicator (0.9+0.95)/2, measured (0.8+1.0)/2, retrain (1.0+1.1)/2; lowest
    # over the nights' means: night 2's 0.7 and 0.9; indicator - measured: -0.5, 0.1, -0.05, -0.05
    assert "| mgcn | tru | evaluation | 4 | 0.925 (0.700) | 0.900 (0.900) | 1.050 | -0.125 (0.175) |" in table
    assert (
        "* no checkpoint night with both measures yet"
        in write_stream_report(
            [{k: v for k, v in r.items() if k != "retain_valid_ratio"} for r in rows], tmp_path / "bare"
        ).read_text()
    )


def test_a_nights_loop_activity_is_read_from_its_update_and_repair_logs(tmp_path):
    def logs(update, repair=None):
        d = tmp_path / str(len(list(tmp_path.iterdir())))
        d.mkdir()
        (d / "update_log.json").write_text(json.dumps(update))
        if repair is not None:
            (d / "repair_log.json").write_text(json.dumps(repair))
        return loop_activity(d)

    # TRU stopped before its first reverse epoch: a loop that reversed nothing
    assert logs({"stop": "before the first reverse epoch: ...", "epochs": []}, {"epochs_run": 0}) == {
        "reverse_epochs": 0,
        "step_growth_max": None,
        "repair_epochs": 0,
    }
    # four reverse epochs at a growing step, then a repair-only epoch (reverse_pairs 0)
    epochs = [{"epoch": k + 1, "reverse_pairs": 9, "step_growth": 2.0**k} for k in range(4)]
    epochs.append({"epoch": 5, "reverse_pairs": 0, "reverse": "skipped: the erasure checks hold; repair only"})
    assert logs({"epochs": epochs}, {"epochs_run": 1}) == {
        "reverse_epochs": 4,
        "step_growth_max": 8.0,
        "repair_epochs": 1,
    }
    # a method without a reverse loop (the exact step), and no repair log
    assert logs({"epochs": []}) == {"reverse_epochs": None, "step_growth_max": None, "repair_epochs": None}
