"""`tru bench gate`: the audit gate's false alarms and misses, measured (docs: Benchmarks).

Per cell (backbone x regime x canary x seed on ML-100k) one deletion is drawn as the grid draws
it (tru.bench.unlearn.regime_context: 5% of users plus the canary's fake users, 2% of items, or
5% of interactions) and the gate judges three kinds of model as if each were the unlearned one:

- `retrain`: an exact retrain on the retain set. It never saw the erased data, so the gate must
  PASS it (or be INCONCLUSIVE where no check has power); a FAIL is a false alarm;
- `original`: theta_0, untouched. It holds everything erased, so the gate must FAIL it (or be
  INCONCLUSIVE); a PASS is a miss;
- each approximate method's model (default: tru), judged as production judges it.

The canary comes in two variants (`--canary`): `warm`, params.yaml's (a target just below the
top-20), and `cold`, a classic bandwagon attack on a cold target (`COLD_TARGET` real training
interactions), which a top-20 share cannot see and the item-side residue check must. Only the
user regime deletes the canary's fake users; the item and interaction regimes run on the warm
dataset.

Each cell is written to the CSV as soon as it is done (one row per model), so a killed run
resumes after its last cell; `--only` runs part of it. The README section and the confusion
table are generated from the CSV (`write_gate_report`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tru import paths
from tru.bench.grid.spec import DatasetSpec
from tru.bench.store import ResultsStore
from tru.config import Params, with_backbone
from tru.errors import ConfigError
from tru.io import write_json

COLD_TARGET = (5, 15)  # real training interactions of the cold canary's target
KEY = ("backbone", "regime", "canary", "seed", "model")
DIMENSIONS = ("backbone", "regime", "canary", "seed")
COLUMNS = KEY + (
    "verdict",
    "failed",
    "expected",
    "outcome",
    "retain_drop",
    "membership_auc",
    "membership_threshold",
    "membership_original_auc",
    "membership_power",
    "membership_pairs",
    "residue_checked",
    "residue_flagged",
    "residue_threshold",
    "residue_original_flagged",
    "target_median_rank",
    "target_z",
    "target_threshold",
    "backdoor_lift",
    "forget_recall@20",
    "retain_recall@20",
    "seconds",
)


def _line(row: dict) -> str:
    return (
        f"{row['backbone']:6s} {row['regime']:12s} {row['canary']:5s} seed {row['seed']} {row['model']:8s} "
        f"{row['verdict'].upper():12s} ({row['outcome']})"
    )


def gate_store(out: str | Path) -> ResultsStore:
    """The benchmark's CSV: one row per (cell, model)."""
    return ResultsStore(Path(out), KEY, _line, columns=COLUMNS, blank_as_none=True)


def cells(backbones, regimes, canaries, seeds) -> list[tuple]:
    """(backbone, regime, canary, seed) of the benchmark: the cold canary with the user regime
    only (the others do not delete it)."""
    return [
        (b, r, c, int(s))
        for b in backbones
        for r in regimes
        for c in canaries
        for s in seeds
        if r == "user" or c == "warm"
    ]


def expected(model: str) -> str:
    """What the gate should say: `pass` for an exact retrain, `fail` for the untouched original,
    `-` for an approximate method (judged, not a test of the gate)."""
    return {"retrain": "pass", "original": "fail"}.get(model, "-")


def outcome(model: str, verdict: str) -> str:
    """false alarm (a retrain refused), miss (the original passed), ok, no power (inconclusive),
    or the verdict itself for an approximate method."""
    if model == "retrain":
        return {"pass": "ok", "fail": "false alarm", "inconclusive": "no power"}[verdict]
    if model == "original":
        return {"fail": "ok", "pass": "miss", "inconclusive": "no power"}[verdict]
    return verdict


def judge(params: Params, ctx, model, canary: dict | None, delete_canary: bool, original: dict | None = None) -> dict:
    """The gate's result on `model` as the batch's unlearned model (what tru.audit.run.audit_batch
    computes for the gate, without the reported-only audits). `original`: this function's
    `parts` for theta_0 on the same ctx, reused (they do not depend on `model`)."""
    from tru.audit import canary as canary_mod
    from tru.audit.gate import evaluate_gate
    from tru.audit.residue import item_residue, residue_items
    from tru.stages.context import batch_metrics, with_retain_drop, without_rows
    from tru.unlearning.probes import shadow_membership

    ap, data = params.audit, ctx.data
    normal = ctx.normal_users
    targets = [int(canary["target_item"])] if canary and delete_canary else []
    checked, declared = residue_items(ctx, ap.gate, targets)

    def parts(m) -> dict:
        out = {
            "metrics": batch_metrics(m, ctx, keep_rows=True),
            "residue": item_residue(
                m,
                data.train,
                normal,
                data.candidates,
                checked,
                declared,
                ap.gate.residue_peers,
                ap.gate.residue_declared_alpha,
                ap.gate.residue_alpha,
            ),
        }
        if canary and targets:
            out["lift"] = canary_mod.backdoor_metrics(
                m, canary, normal, data.train, data.n_users, ap.k, candidates=data.candidates
            )["lift"]
        return out

    original = original or parts(ctx.base)
    mine = parts(model)
    membership = shadow_membership(model, ctx, ap.gate, reference=ctx.base)
    result = evaluate_gate(
        {
            "original": without_rows(original["metrics"]),
            "unlearned": with_retain_drop(original["metrics"], mine["metrics"], ap.gate),
        },
        membership,
        {"original": original["residue"], "unlearned": mine["residue"]},
        (mine["lift"], original["lift"]) if targets else None,
        ap.gate,
    )
    return {"result": result, "membership": membership, "parts": mine, "original": original, "targets": targets}


def _row(cell: tuple, name: str, judged: dict, seconds: float) -> dict:
    backbone, regime, canary, seed = cell
    result, m, mine = judged["result"], judged["membership"], judged["parts"]
    check = {c["name"]: c for c in result["checks"]}
    residue = mine["residue"]
    target = next((i for i in residue["items"] if i["declared"]), None)
    return {
        "backbone": backbone,
        "regime": regime,
        "canary": canary,
        "seed": seed,
        "model": name,
        "verdict": result["verdict"],
        "failed": "+".join(result["failed"]) or None,
        "expected": expected(name),
        "outcome": outcome(name, result["verdict"]),
        "retain_drop": check["retain_recall_drop"]["value"],
        "membership_auc": m.get("auc"),
        "membership_threshold": m.get("threshold"),
        "membership_original_auc": m.get("original_auc"),
        "membership_power": m.get("power"),
        "membership_pairs": m.get("members"),
        "residue_checked": residue["checked"],
        "residue_flagged": residue["flagged"],
        "residue_threshold": residue.get("threshold"),
        "target_threshold": residue.get("declared_threshold") if target is not None else None,
        "residue_original_flagged": judged["original"]["residue"]["flagged"],
        "target_median_rank": None if target is None else target["median_rank"],
        "target_z": None if target is None else target["z"],
        "backdoor_lift": mine.get("lift"),
        "forget_recall@20": mine["metrics"]["forget"]["recall@20"],
        "retain_recall@20": mine["metrics"]["retain"]["recall@20"],
        "seconds": round(seconds, 2),
    }


def gate_cell(params: Params, split_dir: str, checkpoint: str, cell: tuple, methods: list[str]) -> list[dict]:
    """One cell: the deletion, the retrain and each method's model, all judged; one row each."""
    from tru.audit import canary as canary_mod
    from tru.bench.unlearn import erase_variant, regime_context

    backbone, regime, _, seed = cell
    canary = canary_mod.load(split_dir)
    delete = bool(canary) and regime == "user"
    ctx = regime_context(params, regime, seed, split_dir, checkpoint, delete_canary=delete)
    original = judge(params, ctx, ctx.base, canary, delete)
    rows = [_row(cell, "original", original, 0.0)]
    for name in ["retrain", *methods]:
        t0 = time.perf_counter()
        run = erase_variant(params, ctx, name)
        model = run["model"]
        model.set_graph(ctx.data.train, ctx.data.active_items)
        model.eval()
        rows.append(_row(cell, name, judge(params, ctx, model, canary, delete, original["original"]), run["seconds"]))
        print(f"  {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def _dataset(params: Params, canary: str, backbone: str, root: Path) -> tuple[Params, Path, str]:
    """The ML-100k split of a canary variant and its base model for `backbone`: the warm one
    is the pipeline's own (data/split, and data/models/base for the pipeline's backbone, as the
    grid uses them); the cold one is prepared and trained once under `root` (the grid's recipe)."""
    from tru.bench.grid.run import base_checkpoint, prepare_dataset

    if canary == "warm":
        spec = DatasetSpec(label="ML-100k (warm canary)", source="pipeline", canary=True)
        name, p = "pipeline", params
    else:
        spec = DatasetSpec(label="ML-100k (cold canary)", source="movielens-100k", canary=True)
        name = "ml100k-cold"
        p = params.model_copy(update={"canary": params.canary.model_copy(update={"target_popularity": COLD_TARGET})})
    p, split = prepare_dataset(p, name, spec, root)
    p = with_backbone(p, backbone)
    return p, split, base_checkpoint(p, name, spec, split, root, params.model.backbone)


def run_gate_bench(
    params: Params,
    out: str | Path,
    backbones: list[str],
    regimes: list[str],
    canaries: list[str],
    seeds: list[int],
    methods: list[str],
    root: str | Path = paths.BENCH_SCRATCH / "gate",
) -> list[dict]:
    """Every cell not yet in the CSV at `out`, dataset by dataset; then the report beside it.
    Returns all rows."""
    unknown = sorted(set(canaries) - {"warm", "cold"})
    if unknown:
        raise ConfigError(f"--canary: unknown variant(s) {unknown}; choose warm and/or cold")
    store = gate_store(out)
    done = store.read()
    finished = {tuple(r[k] for k in DIMENSIONS) for r in done}
    todo = [c for c in cells(backbones, regimes, canaries, seeds) if c not in finished]
    print(f"gate bench: {len(todo)} cell(s) to run, {len(finished)} done", flush=True)
    root = Path(root)
    log = Path(out).with_suffix(".timings.json")
    for c in todo:
        backbone, _, canary, _ = c
        t0 = time.perf_counter()
        p, split, checkpoint = _dataset(params, canary, backbone, root)
        prepared = time.perf_counter() - t0
        rows = gate_cell(p, str(split), checkpoint, c, methods)
        for r in rows:
            store.record(done, r)
        # how long each part took (a cell's seconds include its retrain), kept across resumed runs
        timings = json.loads(log.read_text()) if log.is_file() else {}
        cell_s = time.perf_counter() - t0 - prepared
        timings["-".join(map(str, c))] = {"prepare_s": round(prepared, 1), "cell_s": round(cell_s, 1)}
        write_json(log, timings)
    write_gate_report(store.read(), Path(out))
    return done


def _near_retrain(df) -> list[str]:
    """Per method and setting, how near each cell's model is to the same cell's retrain: the
    forget Recall@20 gap, retain Recall@20 (test rows of retained users) as a share of the
    original's, and the seconds as a share of the retrain's. Cells measured before the retain
    column existed count for the gap and the time only."""
    key = ["backbone", "regime", "canary", "seed"]
    ref = df[df["model"] == "retrain"].set_index(key)
    orig = df[df["model"] == "original"].set_index(key)
    rows = []
    for _, r in df[~df["model"].isin(["retrain", "original"])].iterrows():
        k = tuple(r[c] for c in key)
        if k not in ref.index:
            continue
        re_, o = ref.loc[k], orig.loc[k]
        retain = r.get("retain_recall@20")
        known = retain is not None and retain == retain and o["retain_recall@20"]
        share = retain / o["retain_recall@20"] if known else None
        rows.append(
            {
                **dict(zip(key, k)),
                "model": r["model"],
                "gap": abs(r["forget_recall@20"] - re_["forget_recall@20"]),
                "retain_share": share,
                "time_share": r["seconds"] / re_["seconds"] if re_["seconds"] else None,
            }
        )
    if not rows:
        return []
    import pandas as pd

    near = pd.DataFrame(rows)
    lines = [
        "",
        "## How near an exact retrain (per cell, against that cell's retrain)",
        "",
        "| backbone | regime | canary | model | cells | forget Recall@20 gap (mean, max) | retain vs original "
        "(mean, min) | time vs retrain (mean, max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (b, r, c, m), g in near.groupby(["backbone", "regime", "canary", "model"], sort=True):
        rs = g["retain_share"].dropna()
        ts = g["time_share"].dropna()
        retain = f"{rs.mean():.1%} ({rs.min():.1%}) of {len(rs)}" if len(rs) else "-"
        time_ = f"{ts.mean():.1%} ({ts.max():.1%})" if len(ts) else "-"
        lines.append(
            f"| {b} | {r} | {c} | {m} | {len(g)} | {g['gap'].mean():.3f} ({g['gap'].max():.3f}) | {retain} | {time_} |"
        )
    return lines


def write_gate_report(rows: list[dict], out: Path) -> Path:
    """The benchmark's README section (generated): the confusion table of the gate on retrains
    and originals, per backbone and regime, and Retrain's membership AUC against shadow pairs."""
    import pandas as pd

    md = out.with_suffix(".md")
    if not rows:
        md.write_text("No cell measured yet.\n")
        return md
    df = pd.DataFrame(rows)
    lines = [
        "# The audit gate: false alarms and misses (generated by `tru bench gate`)",
        "",
        "Each cell: one deletion drawn on ML-100k; the gate judges an exact retrain (must not FAIL: a FAIL is a",
        "false alarm), the untouched original (must not PASS: a PASS is a miss) and each method's model.",
        "INCONCLUSIVE: no erasure check that could have failed was judged (none has power on the batch).",
        "",
        "## Confusion table",
        "",
        "| backbone | regime | canary | model | cells | PASS | INCONCLUSIVE | FAIL | false alarms | misses |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (b, r, c, m), g in df.groupby(["backbone", "regime", "canary", "model"], sort=True):
        v = g["verdict"].value_counts()
        lines.append(
            f"| {b} | {r} | {c} | {m} | {len(g)} | {v.get('pass', 0)} | {v.get('inconclusive', 0)} "
            f"| {v.get('fail', 0)} "
            f"| {(g['outcome'] == 'false alarm').sum() if m == 'retrain' else '-'} "
            f"| {(g['outcome'] == 'miss').sum() if m == 'original' else '-'} |"
        )
    total_fa = int((df["outcome"] == "false alarm").sum())
    total_miss = int((df["outcome"] == "miss").sum())
    n_re, n_or = int((df["model"] == "retrain").sum()), int((df["model"] == "original").sum())
    lines += [
        "",
        f"In all: {total_fa} false alarm(s) in {n_re} retrain judgement(s), {total_miss} miss(es) in {n_or} "
        "original judgement(s).",
        "",
        "## Is a retrain's forgotten pair a shadow pair? (membership AUC, 0.5 = indistinguishable)",
        "",
        "| backbone | regime | canary | cells | retrain AUC (mean, min-max) | threshold (mean) | original AUC (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    re = df[df["model"] == "retrain"]
    for (b, r, c), g in re.groupby(["backbone", "regime", "canary"], sort=True):
        a = g["membership_auc"].dropna()
        if a.empty:
            lines.append(f"| {b} | {r} | {c} | {len(g)} | no pair to compare | - | - |")
            continue
        lines.append(
            f"| {b} | {r} | {c} | {len(g)} | {a.mean():.3f} ({a.min():.3f}-{a.max():.3f}) "
            f"| {g['membership_threshold'].mean():.3f} | {g['membership_original_auc'].mean():.3f} |"
        )
    lines += _near_retrain(df)
    targets = df[df["target_median_rank"].notna()]
    if not targets.empty:
        lines += [
            "",
            "## The canary's target among normal users (median rank; item-side residue z against its peers)",
            "",
            "The target is a declared item: flagged above its own threshold, the (1 - residue_declared_alpha)",
            "quantile of the untouched items' z's (cells measured before it existed show -).",
            "",
            "| backbone | canary | model | cells | median rank (mean, min) | z (mean, max) | target threshold (mean) "
            "| cells with an item flagged | PASS / INCONCLUSIVE / FAIL |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for (b, c, m), g in targets.groupby(["backbone", "canary", "model"], sort=True):
            v = g["verdict"].value_counts()
            th = g["target_threshold"].dropna() if "target_threshold" in g else g["target_z"].iloc[:0]
            lines.append(
                f"| {b} | {c} | {m} | {len(g)} | {g['target_median_rank'].mean():.0f} "
                f"({g['target_median_rank'].min():.0f}) | {g['target_z'].mean():.2f} ({g['target_z'].max():.2f}) "
                f"| {f'{th.mean():.2f}' if len(th) else '-'} | {(g['residue_flagged'] > 0).sum()} "
                f"| {v.get('pass', 0)} / {v.get('inconclusive', 0)} / {v.get('fail', 0)} |"
            )
    md.write_text("\n".join(lines) + "\n")
    return md
