"""`tru bench stream`: many nights in a row, each compared with an exact retrain (docs: Benchmarks).

Production erases a batch every night, each from the model the night before left. One
deletion applied once (the grid, the gate bench) cannot say whether such a chain drifts away
from what an exact retrain on the same data would give. This benchmark runs the chain:

- **traffic**, drawn with the stream's seed as real nights look: most nights a few
  interactions (1-20 pairs) and a few users (Poisson, mean 1); some nights an item (15%);
  every 10th night a large one (1% of the users and 50 interactions); the backdoor canary's
  fake users on one night (`canary_night`, default the 12th). Only real users, items and
  pairs still in the data are drawn; requests carry raw ids, as an inbox's do;
- **each night through the stage functions the nightly flow runs** (tru.stages: ingest, sets,
  map, erase, repair, evaluate_batch, audit, in the project folder, cumulative as in
  production: each batch starts from the previous one's sets and promoted model). A batch the
  gate refuses is cleared as `tru review` clears it (an exact retrain of that batch), and the
  chain goes on from there; the refused attempt's reports stay under `refused/<B>/` in the
  chain's folder. The evidence PDF is not written (it measures nothing here);
  Prefect and DVC are left out (their cost is in `tru bench nightly`);
- **every `every`-th night, and the last**, an exact retrain on the cumulative retain set
  (the erase stage's reference retrain, `data/batches/<B>/retrain`; another method's stream
  of the same backbone and seed has the same traffic and retained data, so its retrain is
  reused when the night's sets are byte-identical, and a night cleared by a retrain is its own
  reference), and the chain's model compared with it: Recall@20 on retained users' test rows,
  Recall@20 on every pair erased so far (cumulative forget, and the same on each kind of pair
  alone: a deleted user's, a deleted item's, an interaction erased from a user and item that
  stay; forget_kinds), the share of each retained user's top-20 both models agree on (the
  untouched original's agreement with the retrain beside it, for scale), the parameters'
  distance to the retrain, and the gate's verdict on the retrain as if it were the night's
  erasure (a FAIL is a false alarm);
- **Retrain's noise floor on the same nights**: the retrain again with another training seed
  (`data/batches/<B>/retrain_r2`, shared as the retrain is), measured the same way. How far
  apart two exact retrains land is what a chain's distance from the retrain is judged
  against (first_departure): nearer than another retrain would land is as near as an exact
  retrain gets.

Each night is one CSV row (checkpoint nights carry the comparison), written when the night is
done: a killed run resumes at the next night of each stream (a night killed half-way is run
again from its ingest: the ledger and batches.yaml say how far it got). A stream lives in its
own folder under `data/bench/stream/<backbone>-<method>-<seed>/`, a copy of the pipeline's
split, base model and dataset maps.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from contextlib import chdir
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from tru import paths
from tru.bench.markdown import section
from tru.bench.process import peak_rss_mb
from tru.bench.store import ResultsStore, file_lock
from tru.config import Params
from tru.errors import ConfigError
from tru.io import read_json, write_json
from tru.lifecycle.policy import batch_retain_ratio

KEY = ("backbone", "method", "seed", "night")
# Traffic seeds, as the grid's seeds: TRU's loop rules were chosen on development traffic (seed 1:
# the growing reverse step), so the report reads a chain from its evaluation traffic wherever it
# has run there, and from development traffic only until then, saying so
DEVELOPMENT_SEEDS = (1, 2, 3)
EVALUATION_SEEDS = (11, 12, 13)
STAGES = ("sets", "map", "erase", "repair", "evaluate_batch", "audit")
START = datetime(2027, 1, 1, 2, 0, tzinfo=UTC)  # night 1's batch time (names and seeds the batches)
LARGE_EVERY = 10  # every 10th night is a large one
TOP_K = 20


def _line(row: dict) -> str:
    line = (
        f"  {row['backbone']}-{row['method']}-{row['seed']} night {row['night']}: {row['requests']} request(s), "
        f"gate {row['verdict']}"
        + (" (cleared by retrain)" if row["cleared_by_retrain"] else "")
        + f", erase+repair {row['erase_repair_s']:.1f} s"
    )
    if row.get("retrain_seconds") is not None:
        line += (
            f"; vs retrain: retain R@20 {row['chain_retain_recall@20']:.4f}/{row['retrain_retain_recall@20']:.4f}, "
            f"forget R@20 {row['chain_forget_recall@20']:.4f}/{row['retrain_forget_recall@20']:.4f}"
            + (f", retrain gate {row['retrain_gate']}" if row.get("retrain_gate") else "")
        )
    return line


def stream_store(out: str | Path) -> ResultsStore:
    return ResultsStore(Path(out), KEY, _line)


# --------------------------------------------------------------------------- traffic


def night_plan(rng: np.random.Generator, night: int, canary_night: int, n_users: int) -> dict:
    """How many requests of each kind night `night` (1-based) brings."""
    large = night % LARGE_EVERY == 0
    return {
        "users": max(1, round(0.01 * n_users)) if large else int(rng.poisson(1.0)),
        "items": int(rng.random() < 0.15),
        "pairs": 50 if large else int(rng.integers(1, 21)),
        "canary": night == canary_night,
    }


def draw_requests(
    rng: np.random.Generator,
    plan: dict,
    train: np.ndarray,
    fake: np.ndarray,
    user_ids: list[str],
    item_ids: list[str],
    night: int,
    received_at: str,
) -> list[dict]:
    """The night's request rows (raw ids) drawn from the current training pairs `train`: users
    and items still there (not the canary's fake users, except on its night), pairs of users
    who keep at least 5 interactions."""
    real = ~np.isin(train[:, 0], fake)
    users = np.unique(train[real, 0])
    chosen_u = rng.choice(users, size=min(plan["users"], len(users)), replace=False) if plan["users"] else []
    rest = train[real & ~np.isin(train[:, 0], chosen_u)]
    counts = np.bincount(rest[:, 1], minlength=len(item_ids))
    mid = np.flatnonzero((counts >= 5) & (counts <= 50))
    chosen_i = rng.choice(mid, size=min(plan["items"], len(mid)), replace=False) if plan["items"] else []
    rest = rest[~np.isin(rest[:, 1], chosen_i)]
    per_user = np.bincount(rest[:, 0], minlength=len(user_ids))
    pool = rest[per_user[rest[:, 0]] >= 5]
    pick = pool[rng.choice(len(pool), size=min(plan["pairs"], len(pool)), replace=False)] if len(pool) else pool
    rows: list[dict] = []

    def add(kind: str, user: str | None, item: str | None, reason: str) -> None:
        k = len(rows)
        rows.append(
            {
                "request_id": f"n{night:03d}-{k:04d}",
                "kind": kind,
                "user_id": user,
                "item_id": item,
                "received_at": received_at,
                "reason": reason,
            }
        )

    for u in sorted(int(x) for x in chosen_u):
        add("user", user_ids[u], None, "account deleted")
    if plan["canary"]:
        for u in fake.tolist():
            add("user", user_ids[u], None, "fake account removed")
    for i in sorted(int(x) for x in chosen_i):
        add("item", None, item_ids[i], "product withdrawn")
    for u, i in sorted(map(tuple, pick.tolist())):
        add("interaction", user_ids[u], item_ids[i], "remove this from my history")
    return rows


# --------------------------------------------------------------------------- one stream


def prepare_stream(
    folder: Path, split: Path, checkpoint: Path, dataset_dir: Path, key_file: Path | None, source: Path | None = None
) -> None:
    """A stream's project folder: the split, the base model and the dataset folder's files (its
    features and id maps), copied (the chain writes batches, ledger and reports beside them).
    The dataset folder goes to `dataset_dir` in the stream's folder (params' data.dataset_dir,
    where the stages read it), from `source` (default: the same path here)."""
    if (folder / paths.SPLIT).is_dir():
        return
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(split, tmp / paths.SPLIT)
    shutil.copytree(checkpoint, tmp / paths.BASE_MODEL)
    (tmp / dataset_dir).mkdir(parents=True)
    for f in (source or dataset_dir).iterdir():
        if f.is_file():
            shutil.copy2(f, tmp / dataset_dir / f.name)
    if key_file is not None and key_file.is_file():
        shutil.copy2(key_file, tmp / key_file.name)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _id_lists(params: Params) -> tuple[list[str], list[str], np.ndarray]:
    from tru.requests.demo import raw_id_lists

    users, items, fake = raw_id_lists(params.data.dataset_dir, paths.SPLIT)
    return users, items, np.asarray(fake, np.int64)


def _current_train() -> np.ndarray:
    from tru import batches
    from tru.data.dataset import load_split

    done = batches.read_batches()
    where = paths.sets_dir(done[-1]["id"]) if done else paths.SPLIT
    return load_split(where).train


def loop_activity(report_dir: Path) -> dict:
    """What a night's erasure loop did, from its update and repair logs in `report_dir`: the
    reverse epochs it ran (epochs that reversed any pair; None for a method whose log has no
    such loop), the largest step growth they used (TRU's growing step; None without it) and
    the final repair's epochs (None without a repair log)."""
    update = read_json(report_dir / "update_log.json") if (report_dir / "update_log.json").is_file() else {}
    repair = read_json(report_dir / "repair_log.json") if (report_dir / "repair_log.json").is_file() else {}
    epochs = update.get("epochs") or []
    looped = "stop" in update or any("reverse_pairs" in e for e in epochs)  # a reverse loop's log
    growth = [e["step_growth"] for e in epochs if e.get("reverse_pairs") and "step_growth" in e]
    return {
        "reverse_epochs": sum(1 for e in epochs if e.get("reverse_pairs")) if looped else None,
        "step_growth_max": max(growth) if growth else None,
        "repair_epochs": repair.get("epochs_run"),
    }


def run_night(params: Params, night: int, rows: list[dict]) -> dict:
    """Ingest the night's requests and run the batch's stages; a refused batch is cleared by an
    exact retrain. Returns the night's measures (seconds per stage, the verdict)."""
    from tru import batches
    from tru.errors import AuditGateFailed
    from tru.models.graph import clear_graph_cache
    from tru.nightly import stage_functions
    from tru.stages.ingest import ingest_stage

    # every night builds its graphs afresh, as a nightly run in a process of its own does
    clear_graph_cache()
    t0 = time.perf_counter()
    inbox = Path(paths.INBOX)
    inbox.mkdir(parents=True, exist_ok=True)
    done = batches.read_batches()
    batch_time = START + timedelta(days=night - 1)
    if not done or done[-1]["id"] != _batch_id(batch_time):
        (inbox / f"night-{night:03d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        ingest_stage(params, inbox, now=batch_time)
    batch_id = batches.read_batches()[-1]["id"]
    seconds = {"ingest": time.perf_counter() - t0}
    functions = stage_functions()
    for stage in STAGES:
        t = time.perf_counter()
        try:
            functions[stage](params, batch_id)
        except AuditGateFailed:  # the audit stage's refusal (audit.json and the ledger are written): cleared below
            if stage != "audit":
                raise
        seconds[stage] = time.perf_counter() - t
    first = json.loads((paths.report_dir(batch_id) / "audit.json").read_text())
    activity = loop_activity(paths.report_dir(batch_id))  # the night's own loop, before a retrain rewrites its logs
    cleared = batches.gate_verdict(batch_id) != "pass"
    if cleared:  # as `tru review` clears it: an exact retrain of this batch, then its stages again
        # the retrain rewrites the batch's reports: the refused attempt's (its update log, its
        # audit) are kept beside the chain, so that a refusal can still be diagnosed
        shutil.copytree(paths.report_dir(batch_id), REFUSED / batch_id, dirs_exist_ok=True)
        batches.set_method(batch_id, "retrain")
        t = time.perf_counter()
        for stage in STAGES[2:]:
            functions[stage](params, batch_id)
        seconds["review_retrain"] = time.perf_counter() - t
    return {
        "batch": batch_id,
        "seconds": seconds,
        "verdict": first["verdict"],
        "failed_checks": " ".join(first.get("failed") or []),  # the refused audit is rewritten by the retrain
        "cleared_by_retrain": cleared,
        "activity": activity,
    }


def _batch_id(t: datetime) -> str:
    from tru.requests.ledger import new_batch_id

    return new_batch_id(t)


REFUSED = Path("refused")  # in a chain's folder: each refused night's reports, as the refused attempt left them
REPLICATE = "retrain_r2"  # the retrain again with another training seed: Retrain's noise floor


def top_k(model, data, users: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Each user's top-k items (their training items and deleted items masked)."""
    import torch

    from tru.data.dataset import group_by_user

    train = group_by_user(data.train, data.n_users)
    model.eval()
    with torch.no_grad():
        scores = model.score_fn()(torch.as_tensor(users))
        for j, u in enumerate(users):
            scores[j, torch.as_tensor(train[u], dtype=torch.long)] = -torch.inf
        if len(data.deleted_items):
            scores[:, torch.as_tensor(data.deleted_items)] = -torch.inf
        return torch.topk(scores, k, dim=1).indices.numpy()


# what the pairs erased so far were erased with (forget_kinds): whose gap is whose
FORGET_KINDS = ("users", "items", "interactions")


def forget_kinds(data, cum: np.ndarray) -> dict[str, np.ndarray]:
    """The pairs erased so far (`cum`) by what erased them: `users`, every pair of a deleted user
    (the canary's fake users among them); `items`, the pairs of a deleted item whose users stay;
    `interactions`, the rest: interactions erased from a user and an item that both stay. A
    backbone recovers each differently (a deleted user's row is re-drawn, a deleted item's
    score comes from its features where it owns no row), so a chain's distance from the retrain
    can live in one kind alone."""
    by_user = np.isin(cum[:, 0], data.deleted_users)
    by_item = ~by_user & np.isin(cum[:, 1], data.deleted_items)
    return {"users": cum[by_user], "items": cum[by_item], "interactions": cum[~by_user & ~by_item]}


def forget_by_kind(models: dict, data, cum: np.ndarray, counts: bool = True) -> dict:
    """Cumulative forget Recall@20 of each of `models` ({who: model}, in eval mode) on each kind
    of erased pair (forget_kinds), as `<who>_forget_recall@20_<kind>` (None for a kind with no
    pair), and with `counts` each kind's pairs and users (`forget_pairs_<kind>`,
    `forget_users_<kind>`)."""
    from tru.unlearning.probes import forget_eval, rank_metrics_of

    scores = {who: m.score_fn() for who, m in models.items()}
    out: dict = {}
    for kind, pairs in forget_kinds(data, cum).items():
        es = forget_eval(data, pairs)
        if counts:
            out[f"forget_pairs_{kind}"] = len(pairs)
            out[f"forget_users_{kind}"] = len(es.users)
        for who, m in models.items():
            value = rank_metrics_of(m, es, score=scores[who])["recall@20"] if len(es.users) else None
            out[f"{who}_forget_recall@20_{kind}"] = value
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each row's top-k that two rankings share."""
    return float(np.mean([len(np.intersect1d(x, y)) / len(x) for x, y in zip(a, b, strict=True)]))


def cumulative_context(ctx, original, dataset_dir: str):
    """Everything erased since the chain began, as one deletion of the original model: the
    training pairs gone from the night's retain set, the users and items deleted so far, and
    the shadow pairs that left with them. Its membership test reads the residue no single
    night's batch is large enough to show."""
    from tru.audit.chain import pairs_gone
    from tru.data.dataset import load_split
    from tru.unlearning import UnlearnContext

    base = load_split(paths.SPLIT, dataset_dir)
    data = ctx.data

    def gone(before: np.ndarray, after: np.ndarray) -> np.ndarray:
        return pairs_gone(before, after, data.n_items)

    return UnlearnContext(
        base=original,
        prior=base,
        data=data,
        forget=gone(base.train, data.train),
        heldout=np.zeros((0, 2), np.int64),
        new_users=data.deleted_users,
        new_items=data.deleted_items,
        seed=ctx.seed,
        heldout_shadow=gone(base.shadow, data.shadow),
        fake_users=ctx.fake_users,
    )


def _files_digest(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir()) if f.is_file()}


def shared_retrain(batch_id: str, siblings: Sequence[Path], name: str = "retrain") -> Path | None:
    """A sibling stream's retrain of the same batch on byte-identical sets (the same backbone and
    seed under another method: the traffic and the retained data do not depend on the method,
    and the retrain is deterministic), or None. Its `bench_seconds.json` carries the seconds it
    took to train. `name`: the retrain's folder in the batch (`retrain`, or `retrain_r2`, the
    replicate)."""
    mine = _files_digest(paths.batch_dir(batch_id) / "sets")
    for other in siblings:
        ref = other / paths.batch_dir(batch_id)
        if (ref / name / "bench_seconds.json").is_file() and _files_digest(ref / "sets") == mine:
            return ref / name
    return None


def _adopt(shared: Path, here: Path, seconds: float | None = None) -> None:
    """A retrain copied in whole (a partial copy never looks done), with `seconds` as the time
    it took to train when given (else the copy's own record)."""
    tmp = here.with_name(here.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(shared, tmp)
    if seconds is not None:
        write_json(tmp / "bench_seconds.json", {"seconds": seconds})
    tmp.rename(here)


def _trained_seconds(t0: float, timings: Path) -> float:
    """A retrain's seconds since `t0`, plus what the snapshot it resumed from had recorded (the
    `resumed_seconds` of its timings file, erase_stage's): an ML-1M retrain killed half-way
    costs both parts."""
    before = read_json(timings).get("resumed_seconds", 0.0) if timings.is_file() else 0.0
    return round(time.perf_counter() - t0 + float(before or 0.0), 2)


def night_model(path: str | Path, data):
    """The checkpoint at `path` on the night's retained graph (`data`: its InteractionData), in
    eval mode: how every model a night is measured on is loaded."""
    from tru.checkpoint import load_checkpoint

    model, _ = load_checkpoint(path, data.features)
    model.set_graph(data.train, data.active_items)
    model.eval()
    return model


def replicate_retrain(params: Params, batch_id: str, siblings: Sequence[Path] = (), sample_users: int = 500) -> dict:
    """Retrain's noise floor on a checkpoint night: the same cumulative retain set trained again
    with another training seed (the grid's `retrain_r2` offset from params.seed), in
    `data/batches/<B>/retrain_r2` (a sibling stream's reused, as the retrain is), measured as
    the retrain is: its retained and cumulative forget Recall@20, and the share of each sampled
    user's top-20 it agrees on with the retrain (what two exact retrains agree on: the scale for
    the chain's agreement), where the night's retrain is at hand (kept here or by a sibling):
    a night whose retrain's measures were read from a recorded row leaves the agreement empty.
    With them, what says which retained data it was trained on (_identity: the digest and the
    counts of pairs erased so far)."""
    from tru.bench.unlearn import REPLICATES
    from tru.stages.context import load_context
    from tru.stages.erase import erase_stage
    from tru.unlearning.probes import forget_eval, rank_metrics_of, retain_eval

    here = paths.batch_dir(batch_id) / REPLICATE
    if not (here / "checkpoint.json").is_file():
        shared = shared_retrain(batch_id, siblings, REPLICATE)
        if shared is not None:
            _adopt(shared, here)
        else:
            t0 = time.perf_counter()
            offset = REPLICATES[REPLICATE]  # the grid's training-seed offset for its own retrain_r2
            erase_stage(params.model_copy(update={"seed": params.seed + offset}), batch_id, "retrain", out_dir=here)
            write_json(here / "bench_seconds.json", {"seconds": _trained_seconds(t0, here / "timings.json")})
    ctx, _ = load_context(params, batch_id)
    data = ctx.data
    orig = night_model(paths.BASE_MODEL, data)
    rep = night_model(here, data)
    kept = paths.batch_dir(batch_id) / "retrain"
    retrain = kept if (kept / "checkpoint.json").is_file() else shared_retrain(batch_id, siblings)
    cum = cumulative_context(ctx, orig, params.data.dataset_dir).forget
    users = _sample_users(ctx, sample_users)  # the users compare_with_retrain's agreement is measured on
    together = None
    if retrain is not None:
        together = agreement(top_k(rep, data, users), top_k(night_model(retrain, data), data, users))
    digest, counts = _identity(data, cum)
    return {
        "retain_sha256": digest,
        **counts,
        f"{REPLICATE}_seconds": read_json(here / "bench_seconds.json")["seconds"],
        f"{REPLICATE}_retain_recall@20": rank_metrics_of(rep, retain_eval(data, "test"))["recall@20"],
        f"{REPLICATE}_forget_recall@20": rank_metrics_of(rep, forget_eval(data, cum))["recall@20"],
        f"{REPLICATE}_top20_agreement": together,
        **forget_by_kind({REPLICATE: rep}, data, cum, counts=False),
    }


def _identity(data, cum: np.ndarray) -> tuple[str, dict]:
    """What says two rows of a night measured the same retained data (_same_retained): the
    digest of its retained pairs (retain_digest) and its counts of pairs erased so far, in all
    and of each kind."""
    counts = {"forget_pairs_cumulative": len(cum)}
    counts |= {f"forget_pairs_{kind}": len(pairs) for kind, pairs in forget_kinds(data, cum).items()}
    return retain_digest(data), counts


def _sample_users(ctx, sample_users: int) -> np.ndarray:
    """The retained users whose top-20 lists are compared (the same on every call)."""
    rng = np.random.default_rng(0)
    users = ctx.normal_users
    return np.sort(rng.choice(users, size=min(sample_users, len(users)), replace=False))


def retain_digest(data) -> str:
    """sha256 of a night's retained training pairs (in the sets' order): two chains of the same
    traffic whose digests agree have one and the same exact retrain."""
    return hashlib.sha256(np.ascontiguousarray(data.train, dtype=np.int64).tobytes()).hexdigest()


def is_reference_column(column: str) -> bool:
    """A checkpoint row's column that the night's retrain (and its replicate) alone determine,
    the same for every method's chain of the same traffic: the retrain's own measures, the
    replicate's, and the original's distance and agreement to the retrain."""
    if column == "retrain_shared":  # how this row came by its retrain, not a measure of it
        return False
    if column == "retrain_gate":  # the gate judges the retrain against the chain's own input model
        return False
    return column.startswith(("retrain_", f"{REPLICATE}_")) or column in (
        "original_top20_agreement",
        "original_retrain_param_distance",
    )


def recorded_reference(done: list[dict], key: dict, night: int, replicate: bool) -> list[dict]:
    """Other methods' recorded checkpoint rows of the same backbone, traffic seed and night
    (same traffic, so the same retained data and the same exact retrain; compare_with_retrain
    checks it and reads the first that passes), those with the replicate first where
    `replicate`, then those with the digest."""
    rows = [
        r
        for r in done
        if r["backbone"] == key["backbone"]
        and int(r["seed"]) == int(key["seed"])
        and int(r["night"]) == night
        and r["method"] != key["method"]
        and pd.notna(r.get("retrain_retain_recall@20"))
        and not isinstance(r.get("reference_recorded"), str)  # measured from a retrain, not copied from a row
    ]

    def order(r: dict) -> tuple[bool, bool]:
        return bool(replicate and pd.isna(r.get(f"{REPLICATE}_retain_recall@20"))), bool(
            pd.isna(r.get("retain_sha256"))
        )

    return sorted(rows, key=order)


def _same_retained(ctx_digest: str, counts: dict, recorded: dict) -> bool:
    """Whether a recorded row measured the same retained data: its digest where it has one
    (retain_digest), else its counts of pairs erased so far, in all and of each kind."""
    digest = recorded.get("retain_sha256")
    if digest is not None and not pd.isna(digest):
        return str(digest) == ctx_digest
    return all(k in recorded and pd.notna(recorded[k]) and int(recorded[k]) == v for k, v in counts.items())


def compare_with_retrain(
    params: Params,
    batch_id: str,
    sample_users: int = 500,
    siblings: Sequence[Path] = (),
    replicate: bool = True,
    recorded: Sequence[dict] = (),
) -> dict:
    """The checkpoint night's comparison (module docstring). `siblings`: other streams' folders
    whose retrain of this batch is reused when its retained data is the same (shared_retrain).
    `replicate`: Retrain's noise floor as well (replicate_retrain).

    `recorded` (recorded_reference): other methods' recorded rows of the same traffic and
    night, read where no retrain of this night is at hand (neither kept here nor in a sibling):
    the first that measured the same retained data (its digest, or for a row recorded before the
    digest its counts of erased pairs) has its retrain's measures copied instead of training
    the retrain again (it is deterministic: the same data and seed give the same model), and
    the row says so (`reference_recorded`: that row's method). What needs the retrain's
    parameters (the chain's top-20 agreement and parameter distance to it) is left empty, and so
    is the gate's verdict on the retrain, which judges it against the chain's own input model."""
    from tru import batches
    from tru.audit import canary as canary_mod
    from tru.bench.gate import judge
    from tru.stages.audit import chain_check
    from tru.stages.context import load_context
    from tru.stages.erase import erase_stage
    from tru.unlearning.probes import forget_eval, rank_metrics_of, retain_eval, shadow_membership

    t0 = time.perf_counter()
    here = paths.batch_dir(batch_id) / "retrain"
    shared = None
    if not (here / "checkpoint.json").is_file():  # kept: a re-comparison reuses it
        shared = shared_retrain(batch_id, siblings)
        own = shared is None and batches.batch_entry(batch_id).get("method") == "retrain"
        if own:  # a night cleared by a retrain: its own model is the exact retrain of the same data
            shared = paths.batch_dir(batch_id) / "unlearned"
        if shared is None and recorded:
            read = compare_with_recorded(params, batch_id, recorded)
            if read is not None:
                return read
        if shared is None:
            erase_stage(params, batch_id, method="retrain")
            took = _trained_seconds(t0, paths.report_dir(batch_id) / "timings" / "retrain.json")
            write_json(here / "bench_seconds.json", {"seconds": took})
        else:
            took = read_json(paths.report_dir(batch_id) / "timings" / "update.json") if own else {}
            _adopt(shared, here, took.get("total_seconds", took.get("seconds")) if own else None)
    timed = here / "bench_seconds.json"
    seconds = json.loads(timed.read_text())["seconds"] if timed.is_file() else time.perf_counter() - t0
    ctx, _ = load_context(params, batch_id)
    data = ctx.data
    chain, ref = (night_model(paths.batch_dir(batch_id) / f, data) for f in ("model", "retrain"))
    orig = night_model(paths.BASE_MODEL, data)
    cctx = cumulative_context(ctx, orig, params.data.dataset_dir)
    cum = cctx.forget
    retain_es, forget_es = retain_eval(data, "test"), forget_eval(data, cum)
    out: dict = {
        "retrain_seconds": round(seconds, 2),
        "retrain_shared": shared is not None,
        "forget_pairs_cumulative": len(cum),
        "retain_sha256": retain_digest(data),
    }
    for name, m in (("chain", chain), ("retrain", ref), ("original", orig)):
        out[f"{name}_retain_recall@20"] = rank_metrics_of(m, retain_es)["recall@20"]
        out[f"{name}_forget_recall@20"] = rank_metrics_of(m, forget_es)["recall@20"]
    out |= forget_by_kind({"chain": chain, "retrain": ref, "original": orig}, data, cum)
    users = _sample_users(ctx, sample_users)
    ref_top = top_k(ref, data, users)
    out["chain_top20_agreement"] = agreement(top_k(chain, data, users), ref_top)
    out["original_top20_agreement"] = agreement(top_k(orig, data, users), ref_top)
    for name, m in (("chain", chain), ("retrain", ref)):
        test = shadow_membership(m, cctx, params.audit.gate, reference=orig)
        out[f"{name}_cumulative_membership_auc"] = test.get("auc")
        if name == "chain":
            out["original_cumulative_membership_auc"] = test.get("original_auc")
            out["cumulative_membership_threshold"] = test.get("threshold")
            out["cumulative_membership_pairs"] = test.get("members")
    out |= parameter_distances(chain, ref, orig)
    canary = canary_mod.load(paths.sets_dir(batch_id))
    delete = bool(len(ctx.targets))
    judged = judge(params, ctx, ref, canary, delete)
    out["retrain_gate"] = judged["result"]["verdict"]
    # the chain's check on the retrain (which saw none of the erased pairs): its false alarms
    out |= check_columns("retrain", chain_check(params, ctx, ref))
    if replicate:
        out |= replicate_retrain(params, batch_id, siblings, sample_users)
    return out


def compare_with_recorded(params: Params, batch_id: str, recorded: Sequence[dict]) -> dict | None:
    """compare_with_retrain's row from the chain's side alone, the retrain's columns copied from
    the first of `recorded` that measured the same retained data; None where none did (then the
    retrain is trained)."""
    from tru.stages.context import load_context
    from tru.unlearning.probes import forget_eval, rank_metrics_of, retain_eval, shadow_membership

    ctx, _ = load_context(params, batch_id)
    data = ctx.data
    orig = night_model(paths.BASE_MODEL, data)
    cctx = cumulative_context(ctx, orig, params.data.dataset_dir)
    cum = cctx.forget
    digest, counts = _identity(data, cum)
    same = next((r for r in recorded if _same_retained(digest, counts, r)), None)
    if same is None:
        return None
    chain = night_model(paths.batch_dir(batch_id) / "model", data)
    out: dict = {k: v for k, v in same.items() if is_reference_column(k)}
    out |= {"retrain_shared": True, "reference_recorded": same["method"], "retain_sha256": digest, **counts}
    retain_es, forget_es = retain_eval(data, "test"), forget_eval(data, cum)
    for name, m in (("chain", chain), ("original", orig)):
        out[f"{name}_retain_recall@20"] = rank_metrics_of(m, retain_es)["recall@20"]
        out[f"{name}_forget_recall@20"] = rank_metrics_of(m, forget_es)["recall@20"]
    out |= forget_by_kind({"chain": chain, "original": orig}, data, cum)
    test = shadow_membership(chain, cctx, params.audit.gate, reference=orig)
    out["chain_cumulative_membership_auc"] = test.get("auc")
    out["original_cumulative_membership_auc"] = test.get("original_auc")
    out["cumulative_membership_threshold"] = test.get("threshold")
    out["cumulative_membership_pairs"] = test.get("members")
    out |= {"chain_top20_agreement": None, "chain_retrain_param_distance": None}
    out["chain_original_param_distance"] = relative_distance(chain, orig)
    return out


def check_columns(who: str, check: dict | None) -> dict:
    """The chain's membership check (tru.audit.chain) as row columns `<who>_check_*`: the pairs
    it tested, its AUC, threshold and the base model's AUC, and whether it flagged residue
    (None throughout when it was not recorded)."""
    check = check or {}
    return {
        f"{who}_check_pairs": check.get("members"),
        f"{who}_check_auc": check.get("auc"),
        f"{who}_check_threshold": check.get("threshold"),
        f"{who}_check_original_auc": check.get("original_auc"),
        f"{who}_check_flagged": check.get("flagged"),
    }


def relative_distance(a, b) -> float:
    """||a - b|| / ||b|| over every parameter of two models of the same architecture (6 decimals)."""
    import torch

    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    with torch.no_grad():
        diff = sum(float((pa[n] - pb[n]).pow(2).sum()) for n in pb)
        norm = sum(float(pb[n].pow(2).sum()) for n in pb)
    return round(float(np.sqrt(diff / max(norm, 1e-24))), 6)


def parameter_distances(chain, retrain, original) -> dict:
    """How far the chain's parameters are from the retrain's, relative to the retrain's norm,
    with the untouched original's distance beside it for scale (a retrain trains anew, so the
    original is far from it too), and how far the chain has moved from the original."""
    dist = relative_distance
    return {
        "chain_retrain_param_distance": dist(chain, retrain),
        "original_retrain_param_distance": dist(original, retrain),
        "chain_original_param_distance": dist(chain, original),
    }


def _unmeasured_kept(rows: list[dict], root: Path, column: str):
    """(row, its stream folder, its batch folder) for each checkpoint row without `column` whose
    stream folder under `root` kept that night's retrain: what an earlier version did not
    measure and can be measured now."""
    for row in rows:
        if pd.isna(row.get("retrain_seconds")) or not pd.isna(row.get(column, np.nan)):
            continue
        folder = root / f"{row['backbone']}-{row['method']}-{int(row['seed'])}"
        batch = folder / paths.batch_dir(row["batch"])
        if (batch / "retrain" / "checkpoint.json").is_file():
            yield row, folder, batch


def fill_parameter_distances(rows: list[dict], root: Path, dataset_dir: str) -> int:
    """Checkpoint rows recorded before the parameter distances were measured, filled from the
    models their stream folder kept; returns how many rows were filled."""
    from tru.checkpoint import load_checkpoint
    from tru.data.dataset import load_split

    filled = 0
    for row, folder, batch in _unmeasured_kept(rows, root, "chain_retrain_param_distance"):
        features = load_split(folder / paths.sets_dir(row["batch"]), folder / dataset_dir).features
        kept = (batch / "model", batch / "retrain", folder / paths.BASE_MODEL)
        models = [load_checkpoint(f, features)[0] for f in kept]
        row |= parameter_distances(*models)
        filled += 1
    return filled


def fill_forget_kinds(rows: list[dict], root: Path, dataset_dir: str) -> int:
    """Checkpoint rows recorded before the forget Recall@20 was split by kind (forget_by_kind),
    filled from the models their stream folder kept (the replicate's where it was measured),
    only where the kept chain model gives the row's recorded cumulative forget Recall@20 again (a
    folder a later run of the same stream replaced keeps other models); returns how many rows
    were filled."""
    from tru.audit.chain import pairs_gone
    from tru.data.dataset import load_split
    from tru.unlearning.probes import forget_eval, rank_metrics_of

    filled = 0
    for row, folder, batch in _unmeasured_kept(rows, root, "forget_pairs_interactions"):
        data = load_split(folder / paths.sets_dir(row["batch"]), folder / dataset_dir)
        base = load_split(folder / paths.SPLIT, folder / dataset_dir)
        cum = pairs_gone(base.train, data.train, data.n_items)
        kept = {"chain": batch / "model", "retrain": batch / "retrain", "original": folder / paths.BASE_MODEL}
        if not pd.isna(row.get(f"{REPLICATE}_forget_recall@20", np.nan)) and (batch / REPLICATE).is_dir():
            kept[REPLICATE] = batch / REPLICATE
        models = {who: night_model(f, data) for who, f in kept.items()}
        again = rank_metrics_of(models["chain"], forget_eval(data, cum))["recall@20"]
        if not np.isclose(again, float(row["chain_forget_recall@20"]), rtol=0, atol=1e-9):
            continue
        row |= forget_by_kind(models, data, cum)
        filled += 1
    return filled


def fill_replicates(
    params: Params, store: ResultsStore, done: list[dict], root: Path, backbone: str, echo=print
) -> int:
    """Checkpoint rows of `backbone` recorded before the replicate was measured: it is trained
    once per seed and night, in a stream folder under `root` that kept that night's batch (the
    traffic and the retained data do not depend on the method; one that kept the night's
    retrain first, so the replicate's agreement with it is measured too), and its measures go to
    every method's row of that night that measured the same retained data (_same_retained),
    each recorded as it is filled. The last night first: a fill stopped part-way has judged the
    chains where drift has had longest to build. The number of rows filled."""
    col = f"{REPLICATE}_forget_recall@20"
    todo: dict[tuple, list[dict]] = {}
    for row in done:
        if row["backbone"] == backbone and not pd.isna(row.get("retrain_seconds")) and pd.isna(row.get(col, np.nan)):
            todo.setdefault((int(row["seed"]), row["batch"]), []).append(row)
    filled = 0
    for (seed, batch), rows in sorted(todo.items(), key=lambda kv: (kv[0][1], -kv[0][0]), reverse=True):
        folders = [
            f.resolve()
            for f in sorted(root.glob(f"{backbone}-*-{seed}"))
            if f.name.rsplit("-", 1)[-1] == str(seed) and (f / paths.sets_dir(batch)).is_dir()
        ]
        kept = sorted(folders, key=lambda f: not (f / paths.batch_dir(batch) / "retrain" / "checkpoint.json").is_file())
        if not kept:
            continue
        echo(f"  {backbone} seed {seed}, batch {batch}: Retrain's replicate for {len(rows)} row(s)")
        with chdir(kept[0]):
            measured = replicate_retrain(params, batch, siblings=kept[1:])
        digest = measured["retain_sha256"]
        counts = {k: v for k, v in measured.items() if k.startswith("forget_pairs_")}
        for row in rows:
            if not _same_retained(digest, counts, row):
                echo(f"    not the {row['method']} row: it measured other retained data")
                continue
            row |= measured
            store.record(done, row)
            filled += 1
    return filled


def run_stream(
    params: Params,
    folder: Path,
    store: ResultsStore,
    done: list[dict],
    key: dict,
    nights: int,
    every: int,
    canary_night: int,
    replicate: bool = True,
    timings: Path | None = None,
    echo=print,
) -> None:
    """Every night of one stream not yet in `done`, in `folder` (prepared); `replicate`:
    Retrain's replicate on checkpoint nights as well. `timings`: the JSON file whose entry for
    this stream (its folder's name) gains each night's seconds, comparison included, as the
    night is recorded (a killed run keeps the seconds of the nights it finished)."""
    seen = {int(r["night"]) for r in done if all(r[k] == v for k, v in key.items())}
    seed = int(key["seed"])
    siblings = [
        f
        for f in sorted(folder.resolve().parent.glob(f"{key['backbone']}-*-{seed}"))
        if f.name != folder.name and f.name.rsplit("-", 1)[-1] == str(seed)
    ]
    with chdir(folder):
        users, items, fake = _id_lists(params)
        for night in range(1, nights + 1):
            # each night's own generator: a resumed stream draws the nights it runs as a whole run would
            rng = np.random.default_rng([seed, night])
            plan = night_plan(rng, night, canary_night, len(users) - len(fake))
            if night in seen:
                continue
            received = (START + timedelta(days=night - 1) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
            rows = draw_requests(rng, plan, _current_train(), fake, users, items, night, received)
            t0 = time.perf_counter()
            res = run_night(params, night, rows)
            wall = time.perf_counter() - t0
            ratio = batch_retain_ratio(json.loads((paths.report_dir(res["batch"]) / "metrics.json").read_text()))
            audit = json.loads((paths.report_dir(res["batch"]) / "audit.json").read_text())
            row = {
                **key,
                "night": night,
                "batch": res["batch"],
                "requests": len(rows),
                "users": plan["users"],
                "items": plan["items"],
                "pairs": plan["pairs"],
                "canary": plan["canary"],
                "verdict": res["verdict"],
                "failed_checks": res["failed_checks"],
                "cleared_by_retrain": res["cleared_by_retrain"],
                "erase_repair_s": round(res["seconds"]["erase"] + res["seconds"]["repair"], 2),
                "night_s": round(wall, 2),
                "retain_valid_ratio": None if ratio is None else round(ratio, 6),
                **res["activity"],  # what the night's loop did: reverse epochs, step growth, repair epochs
                "peak_rss_mb": round(peak_rss_mb()),
                "load_average": round(os.getloadavg()[0], 2),  # the host's 1-minute load: contended seconds show
                **check_columns("chain", audit.get("chain")),  # the audit's reference-free check of the chain
            }
            if night % every == 0 or night == nights:
                recorded = recorded_reference(done, key, night, replicate)
                row |= compare_with_retrain(
                    params, res["batch"], siblings=siblings, replicate=replicate, recorded=recorded
                )
                if row.get("reference_recorded"):
                    who = row["reference_recorded"]
                    echo(f"  night {night}: the retrain's measures read from the {who} chain's row (same data)")
            store.record(done, row)
            if timings is not None:
                add_seconds(timings, folder.name, time.perf_counter() - t0)


def add_seconds(timings: Path, name: str, seconds: float) -> None:
    """`seconds` added to the entry `name` of the timings file (streams of other seeds may write
    it beside this one)."""
    with file_lock(timings):
        spent = read_json(timings) if timings.is_file() else {}
        spent[name] = round(spent.get(name, 0.0) + seconds, 1)
        write_json(timings, spent)


def report_name(label: str) -> str:
    """The report files' stem for a grid dataset's label: `MovieLens-1M` -> `stream_movielens1m`."""
    return "stream_" + re.sub(r"[^a-z0-9]", "", label.split(" (")[0].lower())


@dataclass(frozen=True)
class StreamDataset:
    params: Params  # the dataset's params, with the backbone and its recipe there
    split: Path
    checkpoint: str  # the base model every stream of this backbone starts from
    root: Path  # the folder the streams live in
    label: str  # the name the report prints
    dataset_dir: Path  # the dataset folder (features, id maps) a stream's folder gets a copy of


def stream_dataset(
    params: Params, grid_file: str | Path, dataset: str | None, backbone: str, root: Path
) -> StreamDataset:
    """A dataset's params, split and base model for `backbone`, and the folder its streams live
    in. The pipeline's own (`dataset` None or params' data.name, ml100k) is the warm-canary split
    every ML-100k stream has run on, its streams directly under `root`; another dataset of the
    grid file is prepared and its base model trained as the grid does it, under the grid's
    root (so both share them), its streams under `root`/<dataset>."""
    from tru.bench.gate import _dataset
    from tru.bench.grid.run import base_checkpoint, prepare_dataset, with_train
    from tru.config import with_backbone

    dataset = dataset or params.data.name
    grid_root, spec = grid_dataset(params, grid_file, dataset)
    if grid_root is None:
        p, split, checkpoint = _dataset(params, "warm", backbone, root.parent / "gate")
        return StreamDataset(p, Path(split), checkpoint, root, spec.label, Path(p.data.dataset_dir))
    p, split = prepare_dataset(params, dataset, spec, grid_root)
    p = with_train(with_backbone(p, backbone), spec)
    checkpoint = base_checkpoint(p, dataset, spec, split, grid_root, params.model.backbone)
    return StreamDataset(
        p, split, checkpoint, streams_root(root, grid_root, dataset), spec.label, grid_root / dataset / "dataset"
    )


def grid_dataset(params: Params, grid_file: str | Path, dataset: str | None):
    """(the grid's root, the dataset's spec) for a dataset of the grid file; (None, a pipeline
    spec) for the pipeline's own dataset (None, or params' data.name), which needs no grid file
    (its label is the grid file's where it names it). Another dataset the grid file lacks is a
    ConfigError."""
    from tru.bench.grid.spec import DatasetSpec, load_grid

    dataset = dataset or params.data.name
    grid_file = Path(grid_file)
    grid = load_grid(grid_file) if grid_file.is_file() or dataset != params.data.name else None
    if dataset == params.data.name:
        label = grid.datasets[dataset].label if grid is not None and dataset in grid.datasets else dataset
        return None, DatasetSpec(label=label, source="pipeline", canary=True)
    assert grid is not None  # load_grid raises on a missing file
    if dataset not in grid.datasets:
        raise ConfigError(
            f"--dataset: {dataset!r} is not in {grid_file}; choose from {', '.join(grid.datasets)} "
            f"({params.data.name}: the pipeline's own)"
        )
    return Path(grid.root), grid.datasets[dataset]


def streams_root(root: Path, grid_root: Path | None, dataset: str | None = None) -> Path:
    """Where a dataset's streams live: the pipeline's directly under `root` (as every ML-100k
    stream has), a grid dataset's under `root`/<dataset>."""
    return root if grid_root is None or not dataset else root / dataset


def run_stream_bench(
    params: Params,
    out: str | Path,
    backbones: list[str],
    methods: list[str],
    seeds: list[int],
    nights: int = 30,
    every: int = 5,
    canary_night: int = 12,
    root: str | Path = paths.BENCH_SCRATCH / "stream",
    replicate: bool = True,
    echo=print,
    dataset: str | None = None,
    grid_file: str | Path = paths.BENCH_REPORTS / "grid.yaml",
) -> list[dict]:
    """Every stream (backbone x method x seed) to `nights` nights on `dataset` (a dataset of the
    grid file: stream_dataset), resuming; then the report. `replicate`: Retrain's replicate on
    every checkpoint night (replicate_retrain), and on the rows recorded without it where a
    stream kept the night (fill_replicates)."""
    from tru.unlearning import METHODS

    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"--methods: unknown method(s) {unknown}; choose from {', '.join(sorted(METHODS))}")
    if every < 1 or nights < 1:
        raise ConfigError("--nights and --every must be at least 1")
    out = Path(out).resolve()
    store = stream_store(out)
    done = store.read()
    base_root = Path(root).resolve()
    key_file = Path(".tru-secret").resolve()
    log = out.with_suffix(".timings.json")
    ds = None
    for backbone in backbones:
        ds = stream_dataset(params, grid_file, dataset, backbone, base_root)
        p, split, checkpoint, root = ds.params, ds.split, ds.checkpoint, ds.root
        for method in methods:
            for seed in seeds:
                key = {"backbone": backbone, "method": method, "seed": seed}
                name = f"{backbone}-{method}-{seed}"
                folder = root / name
                prepare_stream(
                    folder,
                    Path(split).resolve(),
                    Path(checkpoint).resolve(),
                    Path(p.data.dataset_dir),
                    key_file,
                    ds.dataset_dir.resolve(),
                )
                mp = p.model_copy(update={"unlearn": p.unlearn.model_copy(update={"method": method})})
                echo(f"stream {name}: {nights} night(s), a retrain every {every}")
                run_stream(mp, folder, store, done, key, nights, every, canary_night, replicate, log, echo)
        if replicate:  # rows recorded without Retrain's replicate: measured where a stream kept the night
            fill_replicates(p, store, done, root, backbone, echo)
    assert ds is not None  # at least one backbone
    refresh_report(ds.params, out, ds.root, ds.label)
    return done


def refresh_report(
    params: Params,
    out: str | Path,
    root: str | Path = paths.BENCH_SCRATCH / "stream",
    label: str | None = None,
) -> Path:
    """The report from the CSV at `out`, after filling the checkpoint rows' parameter distances
    and forget Recall@20 by kind from the streams' kept models under `root` where an earlier
    version did not measure them.
    `params`: the dataset's (its data.dataset_dir); `label`: the dataset's name, in the title."""
    out = Path(out).resolve()
    store = stream_store(out)
    rows = store.read()
    filled = fill_parameter_distances(rows, Path(root).resolve(), params.data.dataset_dir)
    filled += fill_forget_kinds(rows, Path(root).resolve(), params.data.dataset_dir)
    if filled:
        store.rewrite(rows)
    return write_stream_report(rows, out, label)


# --------------------------------------------------------------------------- report


def retrain_band(ck: pd.DataFrame) -> dict[str, dict]:
    """Per backbone, how far from the retrain another exact retrain lands: Retrain's noise floor,
    from the checkpoint rows `ck` that measured the replicate (the same retain set trained with
    another training seed). Each model's Recall@20 is taken relative to the untouched
    original's on the same pairs (as first_departure judges); per seed and night the two
    retrains' ratios give a sample variance, pooled over every seed and night measured (the
    traffic does not depend on the method, so each seed's night counts once). The half-width is
    the 95% prediction interval of one more retrain around the pair's mean: t(0.975, n) x the
    pooled std x sqrt(1 + 1/2), with n seed-nights (each pair one degree of freedom). Pooling
    over nights assumes the floor does not grow with the nights; early nights, with few pairs
    erased, are the noisier, so the band is cautious later on. Each value: {"retain",
    "forget" (half-widths), "pairs"}; a backbone with fewer than two measured pairs is left out."""
    from scipy import stats

    col = f"{REPLICATE}_forget_recall@20"
    if ck.empty or col not in ck:
        return {}
    out = {}
    for backbone, g in ck[ck[col].notna()].drop_duplicates(["backbone", "seed", "night"]).groupby("backbone"):
        if len(g) < 2:
            continue
        band: dict = {"pairs": len(g)}
        for m in ("retain", "forget"):
            a = g[f"retrain_{m}_recall@20"] / g[f"original_{m}_recall@20"]
            b = g[f"{REPLICATE}_{m}_recall@20"] / g[f"original_{m}_recall@20"]
            pooled = float(np.mean((a - b) ** 2 / 2))
            band[m] = float(stats.t.ppf(0.975, len(g)) * np.sqrt(pooled * 1.5))
        out[backbone] = band
    return out


def replicate_nights(ck: pd.DataFrame, backbone: str) -> int:
    """The seed-nights of `backbone` whose checkpoint rows measured Retrain's replicate."""
    col = f"{REPLICATE}_forget_recall@20"
    if col not in ck:
        return 0
    g = ck[(ck["backbone"] == backbone) & ck[col].notna()]
    return len(g.drop_duplicates(["seed", "night"]))


def band_lines(ck: pd.DataFrame, bands: dict[str, dict]) -> list[str]:
    """The report's band section: per backbone, how far another retrain would land
    (retrain_band), or how many seed-nights have the replicate so far where that is too few for
    a band."""
    lines = [
        f"* {backbone}: +-{band['retain']:.3f} of the original's retain Recall@20 and +-{band['forget']:.3f} "
        f"of its forget Recall@20 ({band['pairs']} seed-nights with both retrains)"
        for backbone, band in bands.items()
    ]
    for backbone in sorted(set(ck["backbone"]) - set(bands)):
        n = replicate_nights(ck, backbone)
        if n:
            lines.append(f"* {backbone}: the replicate measured on {n} seed-night so far; a band needs two")
    return lines or ["* no replicate measured yet"]


def _unjudged(ck: pd.DataFrame, backbone: str) -> str:
    """The first-departure cell of a backbone with no range: one seed, and the replicate on too
    few seed-nights for a band (band_lines)."""
    n = replicate_nights(ck, backbone)
    return "– (one seed: no spread)" if not n else f"– (one seed; the replicate on {n} seed-night, a band needs two)"


def first_departure(df: pd.DataFrame) -> dict:
    """Per (backbone, method): the first checkpoint night where a seed's chain leaves Retrain's
    range, with why; None when it never does. Each seed draws its own traffic, so each model's
    Recall@20 is taken relative to the untouched original's on the same pairs (forget: every
    pair erased so far; retain: retained users' test rows).

    Where the replicate was measured (retrain_band), the range is the seed's own retrains (the
    mean of the two ratios) +- the band: where another exact retrain of the same data would
    land. Without it, an earlier version's rows: [min, max] of that night's retrains' ratios
    over the seeds, absent with fewer than two seeds (a strict range: with n seeds another
    retrain falls outside it with probability 2/(n+1)). A chain leaves when its ratio is below
    or above, or on a gate miss (forget above the range on a night the gate said PASS)."""
    return {k: (nights[0] if nights else None) for k, nights in out_of_range(df).items()}


def out_of_range(df: pd.DataFrame) -> dict:
    """Per (backbone, method): every checkpoint night where a seed's chain leaves Retrain's
    range, as "night: why" (first_departure's rule), in night order."""
    out = {}
    ck = checkpoints(df)
    bands = retrain_band(ck)
    rep = f"{REPLICATE}_forget_recall@20"
    for (backbone, method), g in ck.groupby(["backbone", "method"]):
        band = bands.get(backbone)
        if band is None and g["seed"].nunique() < 2:
            continue
        nights = []
        for night, n in g.groupby("night"):
            why = []
            for m in ("retain", "forget"):
                ref = n[f"retrain_{m}_recall@20"] / n[f"original_{m}_recall@20"]
                chain = n[f"chain_{m}_recall@20"] / n[f"original_{m}_recall@20"]
                if band is not None:
                    if rep in n:
                        again = n[f"{REPLICATE}_{m}_recall@20"] / n[f"original_{m}_recall@20"]
                        ref = pd.concat([ref, again], axis=1).mean(axis=1)
                    lo, hi = ref - band[m], ref + band[m]
                else:
                    lo, hi = ref.min(), ref.max()
                why += [f"{m} below (seed {int(r.seed)})" for r in n[chain < lo].itertuples()]
                why += [f"{m} above (seed {int(r.seed)})" for r in n[chain > hi].itertuples()]
                if m == "forget":
                    missed = n[(chain > hi) & (n["verdict"] == "pass")]
                    why += [f"gate miss (seed {int(r.seed)})" for r in missed.itertuples()]
            if why:
                nights.append(f"{int(night)}: {', '.join(why)}")
        out[(backbone, method)] = nights
    return out


def checkpoints(df: pd.DataFrame) -> pd.DataFrame:
    """The checkpoint nights' rows (those compared with a retrain)."""
    return df[df["retrain_seconds"].notna()] if "retrain_seconds" in df else df.iloc[0:0]


def gap_closed(n: pd.DataFrame) -> float:
    """Share of the untouched original's excess cumulative forget Recall@20 over the retrain's
    that the chain removed (1: as forgotten as the retrain; 0: as the original)."""
    excess = (n["original_forget_recall@20"] - n["retrain_forget_recall@20"]).mean()
    left = (n["chain_forget_recall@20"] - n["retrain_forget_recall@20"]).mean()
    return float("nan") if excess <= 0 else 1 - left / excess


def _auc(n: pd.DataFrame) -> str:
    """chain / retrain / original cumulative membership AUC (threshold), or – before it was measured."""
    cols = [f"{w}_cumulative_membership_auc" for w in ("chain", "retrain", "original")]
    if not all(c in n for c in cols) or n[cols[0]].isna().all():
        return "–"
    return " / ".join(f"{n[c].mean():.3f}" for c in cols) + f" ({n['cumulative_membership_threshold'].mean():.3f})"


def _distances(n: pd.DataFrame) -> str:
    """chain / original relative parameter distance to the retrain (the chain's from the original), or –."""
    cols = ("chain_retrain_param_distance", "original_retrain_param_distance", "chain_original_param_distance")
    if not all(c in n for c in cols) or n[cols[0]].isna().all():
        return "–"
    return f"{n[cols[0]].mean():.3f} / {n[cols[1]].mean():.3f} ({n[cols[2]].mean():.3f})"


def _outside(nights: list[str] | None, c: pd.DataFrame) -> str:
    """How many of a chain's checkpoint nights are out of Retrain's range, and which (– unjudged)."""
    if nights is None:
        return "–"
    which = ", ".join(n.split(":")[0] for n in nights)
    return f"{len(nights)} of {c['night'].nunique()}" + (f" ({which})" if nights else "")


def cost_lines(df: pd.DataFrame, ck: pd.DataFrame) -> list[str]:
    """One line per backbone: each method's erase + repair seconds over its nights (a mean over
    seeds), TRU first, and as a share of one exact retrain's (the mean over the backbone's
    checkpoint retrains, every method's: they retrain the same data); and the retrains that
    cleared its refused nights, which come on top (a mean over seeds)."""
    out = []
    for backbone, g in df.groupby("backbone"):
        retrain = float(ck.loc[ck["backbone"] == backbone, "retrain_seconds"].mean())
        spans = {}
        for method, m in g.groupby("method"):
            nights = m.groupby("seed")["night"].max()
            lo, hi = int(nights.min()), int(nights.max())
            cleared = float(m["cleared_by_retrain"].astype(bool).groupby(m["seed"]).sum().mean())
            seconds = m.groupby("seed")["erase_repair_s"].sum().mean()
            spans[method] = (seconds, f"{lo}" if lo == hi else f"{lo}-{hi}", cleared)
        one_span = len({span for _, span, _ in spans.values()}) == 1
        parts = []
        for method in sorted(spans, key=lambda m: (m != "tru", m)):
            seconds, span, cleared = spans[method]
            share = f" ({seconds / retrain:.2f} of a retrain)" if retrain > 0 else ""
            review = f" + {cleared:.2g} review retrain{'' if cleared == 1 else 's'}" if cleared else ""
            parts.append(f"{method} {seconds:.0f} s" + ("" if one_span else f" over {_nights(span)}") + share + review)
        head = f"over {_nights(next(iter(spans.values()))[1])}, " if one_span else ""
        retrain_s = f"{retrain:.0f} s" if retrain == retrain else "not measured yet"
        out.append(f"* {backbone}, one retrain {retrain_s}; erase + repair {head}a seed: {', '.join(parts)}.")
    return out


def _nights(span: str) -> str:
    return f"{span} night" + ("" if span == "1" else "s")


def forget_gap(c: pd.DataFrame) -> tuple[float, float | None]:
    """From a chain's checkpoint rows `c`: the mean over seed-nights of |chain - retrain| on
    cumulative forget Recall@20, and the same for Retrain's replicate (how far another exact
    retrain lands, over the nights it was measured on: every checkpoint night since it exists; None
    where none was measured)."""
    gap = float((c["chain_forget_recall@20"] - c["retrain_forget_recall@20"]).abs().mean())
    col = f"{REPLICATE}_forget_recall@20"
    if col not in c or c[col].isna().all():
        return gap, None
    r = c[c[col].notna()]
    return gap, float((r[col] - r["retrain_forget_recall@20"]).abs().mean())


def _forget_gap(c: pd.DataFrame) -> str:
    gap, again = forget_gap(c)
    return f"{gap:.3f}" + ("" if again is None else f" ({again:.3f})")


def _check_flags(g: pd.DataFrame, c: pd.DataFrame) -> str:
    """The first night the chain's membership check flagged residue, per seed ("never" where it
    did not), and on how many checkpoint nights it flagged the retrain (its false alarms); – for
    rows recorded before the check."""
    if "chain_check_flagged" not in g or g["chain_check_flagged"].isna().all():
        return "–"
    firsts = []
    for seed, s in g.sort_values("night").groupby("seed"):
        hit = s[s["chain_check_flagged"].fillna(False).astype(bool)]
        firsts.append(f"{int(seed)}: {int(hit['night'].iloc[0]) if len(hit) else 'never'}")
    measured = c["retrain_check_flagged"].notna() if "retrain_check_flagged" in c else c["night"].isna()
    on_retrain = int(c.loc[measured, "retrain_check_flagged"].astype(bool).sum()) if measured.any() else 0
    return ", ".join(firsts) + f" ({on_retrain} of {int(measured.sum())})"


def kind_gap(c: pd.DataFrame, kind: str) -> tuple[float, float | None, float, int] | None:
    """From a chain's checkpoint rows `c`: on the pairs of one kind (forget_kinds), the mean over
    seed-nights of |chain - retrain| cumulative forget Recall@20, the same for Retrain's
    replicate where it was measured (None where not), the mean number of users the kind's
    Recall@20 averages over and the number of seed-nights it was measured on (rows of a kind
    with no pair count as measured); None where no row measured the kind."""
    col = f"chain_forget_recall@20_{kind}"
    if col not in c or c[col].isna().all():
        return None
    r = c[c[col].notna()]
    gap = float((r[col] - r[f"retrain_forget_recall@20_{kind}"]).abs().mean())
    rep = f"{REPLICATE}_forget_recall@20_{kind}"
    again = None
    if rep in r and r[rep].notna().any():
        m = r[r[rep].notna()]
        again = float((m[rep] - m[f"retrain_forget_recall@20_{kind}"]).abs().mean())
    return gap, again, float(r[f"forget_users_{kind}"].mean()), int(c[f"forget_users_{kind}"].notna().sum())


def _kind_gap(c: pd.DataFrame, kind: str) -> str:
    got = kind_gap(c, kind)
    if got is None:
        return "–"
    gap, again, users, measured = got
    out = f"{gap:.3f}" + ("" if again is None else f" ({again:.3f})") + f", {users:.0f} users"
    return out + (f", {measured} of {len(c)} seed-nights" if measured < len(c) else "")


def _replicate(n: pd.DataFrame) -> str:
    """The replicate's retain / forget Recall@20 (means over seeds), or – before it was measured."""
    cols = [f"{REPLICATE}_{m}_recall@20" for m in ("retain", "forget")]
    if not all(c in n for c in cols) or n[cols[1]].isna().all():
        return "–"
    return " / ".join(f"{n[c].mean():.4f}" for c in cols)


def _recorded_note(ck: pd.DataFrame) -> list[str]:
    """A sentence on the checkpoint rows whose retrain's measures were read from another chain's
    row (compare_with_retrain's `recorded`), naming the chains; none without such rows."""
    if "reference_recorded" not in ck or not ck["reference_recorded"].notna().any():
        return []
    read = ck[ck["reference_recorded"].notna()]
    chains = ", ".join(sorted({f"{b} {m}" for b, m in zip(read["backbone"], read["method"], strict=True)}))
    return [
        "",
        f"Where a chain's own retrain was not at hand ({chains}: {len(read)} of its checkpoint seed-nights), the "
        "retrain's measures (and its replicate's) are read from another method's row of the same traffic and night, "
        "which measured the same retained data (checked by a digest of the retained pairs, or on rows recorded "
        "before the digest by the counts of pairs erased so far): an exact retrain of the same data and seed is the "
        "same model. What needs the retrain's parameters, the chain's top-20 agreement and parameter distance to it, "
        "is not measured there (–), nor is the gate's verdict on the retrain, which judges it against the chain's "
        "own input model (the false-alarm column counts the nights it was measured on).",
    ]


def _chain_agreement(n: pd.DataFrame) -> str:
    """The chain's top-20 agreement with the retrain (mean over seeds), or – where no seed measured
    it (a row whose retrain's measures were read from another chain's row: reference_recorded)."""
    a = n["chain_top20_agreement"]
    return "–" if a.isna().all() else f"{a.mean():.3f}"


def _agreement(n: pd.DataFrame) -> str:
    col = f"{REPLICATE}_top20_agreement"
    return "" if col not in n or n[col].isna().all() else f" ({n[col].mean():.3f})"


def retain_indicator(df: pd.DataFrame) -> pd.DataFrame:
    """On every checkpoint seed-night, the reference-free retain indicator the consolidation
    policy reads (`lifecycle.consolidate_when.retain_drop`: each night's Recall@20 on retained
    users' validation rows, its model over the one it started from, multiplied along the chain; a night
    without the ratio counts as 1, as tru.lifecycle.policy.retain_ratio skips it) beside what it
    stands for: the chain's Recall@20 on retained users' test rows over the untouched
    original's (`measured`), and the retrain's (`retrain`). One row per backbone, method, seed
    and checkpoint night."""
    cols = ["backbone", "method", "seed", "night", "indicator", "measured", "retrain"]
    if df.empty or "retain_valid_ratio" not in df:
        return pd.DataFrame(columns=cols)
    out = []
    for (backbone, method, seed), g in df.groupby(["backbone", "method", "seed"]):
        g = g.sort_values("night")
        chained = pd.to_numeric(g["retain_valid_ratio"], errors="coerce").fillna(1.0).cumprod()
        for (_, r), ind in zip(g.iterrows(), chained, strict=True):
            if pd.isna(r.get("retrain_seconds")) or not r.get("original_retain_recall@20"):
                continue
            base = float(r["original_retain_recall@20"])
            out.append(
                [
                    backbone,
                    method,
                    seed,
                    int(r["night"]),
                    float(ind),
                    r["chain_retain_recall@20"] / base,
                    r["retrain_retain_recall@20"] / base,
                ]
            )
    return pd.DataFrame(out, columns=cols)


def _reversed_nights(rows: pd.DataFrame) -> str:
    """On how many of its nights a chain's loop reversed any pair, per seed (of the nights
    recorded with the count), and the largest step growth used; – where no night
    recorded it (a method without a reverse loop, or rows from before the count)."""
    if "reverse_epochs" not in rows:
        return "–"
    known = rows[rows["reverse_epochs"].notna()]
    if known.empty:
        return "–"
    reversed_ = (known["reverse_epochs"] > 0).groupby(known["seed"]).sum()
    nights = known.groupby("seed")["night"].count()
    growth = known["step_growth_max"].max() if "step_growth_max" in known else None
    grown = f", step up to {growth:g}x" if growth is not None and growth == growth else ""
    return ", ".join(f"{int(seed)}: {int(reversed_[seed])} of {int(nights[seed])}" for seed in nights.index) + grown


def indicator_lines(df: pd.DataFrame) -> list[str]:
    """The table of retain_indicator per backbone and method: the means over seeds at the last
    checkpoint night (in brackets the lowest checkpoint night's mean), and over every checkpoint
    seed-night the mean of indicator - measured (above 0: the indicator reads better than the
    measure) and of its absolute value."""
    ind = retain_indicator(df)
    lines = [
        "| backbone | method | traffic | checkpoint seed-nights | indicator: last night (lowest) "
        "| measured on test rows: last night (lowest) | the retrain's, measured: last night "
        "| indicator - measured: mean (mean absolute) | nights the loop reversed, per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (backbone, method), g in ind.groupby(["backbone", "method"]):
        by = g.groupby("night")[["indicator", "measured", "retrain"]].mean()
        last = by.iloc[-1]
        rows = df[(df["backbone"] == backbone) & (df["method"] == method)]
        traffic = rows["traffic"].iloc[0]
        lines.append(
            f"| {backbone} | {method} | {traffic} | {len(g)} | {last['indicator']:.3f} ({by['indicator'].min():.3f}) "
            f"| {last['measured']:.3f} ({by['measured'].min():.3f}) | {last['retrain']:.3f} "
            f"| {(g['indicator'] - g['measured']).mean():+.3f} ({(g['indicator'] - g['measured']).abs().mean():.3f}) "
            f"| {_reversed_nights(rows)} |"
        )
    return lines if len(lines) > 2 else ["* no checkpoint night with both measures yet"]


def reported(df: pd.DataFrame) -> pd.DataFrame:
    """The rows the report reads, with their `traffic`: per backbone and method, the chains on
    evaluation traffic where any has run, else every chain (development traffic, or a seed in
    neither list)."""
    if df.empty:
        return df.assign(traffic=pd.Series(dtype=str))
    parts = []
    for _, g in df.groupby(["backbone", "method"], sort=False):
        ev = g[g["seed"].astype(int).isin(EVALUATION_SEEDS)]
        parts.append(ev.assign(traffic="evaluation") if len(ev) else g.assign(traffic="development"))
    return pd.concat(parts).sort_index()


def write_stream_report(rows: list[dict], out: Path, label: str | None = None) -> Path:
    """The README section (`out` with .md) and the plot (`out` with .png) from the CSV rows;
    `label`: the dataset's name."""
    md = out.with_suffix(".md")
    md.parent.mkdir(parents=True, exist_ok=True)
    df = reported(pd.DataFrame(rows))
    on = f": {label}" if label else ""
    lines = [f"# Many nights in a row{on} (generated by `tru bench stream`)", ""]
    if df.empty:
        md.write_text("\n".join(lines + ["No stream has been run yet.", ""]))
        return md
    ck = checkpoints(df)
    departures = first_departure(df)
    outside = out_of_range(df)
    bands = retrain_band(ck)
    lines += [
        "Each stream erases one batch a night, through the batch stages, from the model the night before left; "
        "every few nights an exact retrain on the same retained data is the reference, and a second one with "
        "another training seed (the replicate) says how far apart two exact retrains land: Retrain's noise "
        "floor. *Forget* is Recall@20 on every pair erased so far (lower: less remembered), *retain* Recall@20 "
        "on retained users' test rows, each taken as a ratio to the untouched original's on the same pairs (each "
        "seed draws its own traffic). A chain leaves Retrain's range where one of them is farther from its own "
        "seed's two retrains (their mean) than another retrain would land, or where its forget is above that "
        "range on a night the gate said PASS (a gate miss). *Another retrain would land* is the 95% prediction "
        "interval of one more retrain, from the two retrains' differences pooled over seeds and nights:",
        "",
    ]
    lines += section("band", band_lines(ck, bands))
    lines += [
        "",
        f"Traffic seeds: **evaluation** {', '.join(map(str, EVALUATION_SEEDS))} (nothing was chosen on them) and "
        f"development {', '.join(map(str, DEVELOPMENT_SEEDS))} (TRU's growing reverse step was chosen on seed 1's "
        "traffic). A chain is read from its evaluation traffic wherever it has run there; a row marked "
        "*development* has not yet, and is no evidence for the rules chosen on it.",
        "",
        "Rows recorded before the replicate existed are judged by the retrains' range over seeds instead (a "
        "strict range: another retrain falls outside the range of n others with probability 2/(n+1)); with one "
        "seed and no replicate there is no range, and the column says so.",
        "",
        "*Chain check*: the audit's own reference-free check of the chain (tru/audit/chain.py), the membership "
        "test on every interaction erased so far for users who stay, against their shadow pairs; the first night "
        "it flags residue on each seed's chain (`lifecycle.consolidate_when.interaction_residue` consolidates "
        "then), and in brackets on how many checkpoint nights it flagged the exact retrain (a false alarm). – : "
        "rows recorded before the check existed.",
        "",
        "*Forget R@20: mean |chain - retrain|*: over the checkpoint nights of every seed, how far the chain's "
        "Recall@20 on everything erased so far is from the retrain's; in brackets, how far Retrain's replicate is "
        "from it on the nights it was measured (another exact retrain's distance). A chain as near the retrain as "
        "another retrain has the two level; the residue a chain keeps shows as the first above the second.",
        "",
    ]
    summary = [
        "| backbone | method | traffic | seeds | nights | gate FAIL (cleared by a retrain) "
        "| retrain judged FAIL (false alarms) | erase+repair s, all nights (per night) | one retrain's s (mean) "
        "| first night out of range "
        "| checkpoint nights out of range | forget R@20: mean \\|chain - retrain\\| (another retrain's) "
        "| chain check: first night it flags, per seed (on the retrain) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (backbone, method), g in df.groupby(["backbone", "method"]):
        c = ck[(ck["backbone"] == backbone) & (ck["method"] == method)]
        per_seed = g.groupby("seed")["erase_repair_s"].sum().mean()
        first = (
            departures.get((backbone, method), "never") if (backbone, method) in departures else _unjudged(ck, backbone)
        )
        summary.append(
            f"| {backbone} | {method} | {g['traffic'].iloc[0]} | {g['seed'].nunique()} | {int(g['night'].max())} "
            f"| {int((g['verdict'] == 'fail').sum())} ({int(g['cleared_by_retrain'].astype(bool).sum())}) "
            f"| {int((c['retrain_gate'] == 'fail').sum())} of {int(c['retrain_gate'].notna().sum())} "
            f"| {per_seed:.0f} ({g['erase_repair_s'].mean():.1f}) "
            f"| {c['retrain_seconds'].mean():.0f} | {'never' if first is None else first} "
            f"| {_outside(outside.get((backbone, method)), c)} | {_forget_gap(c)} | {_check_flags(g, c)} |"
        )
    lines += [*section("summary", summary), "", *section("cost", cost_lines(df, ck))]
    lines += [
        "",
        "Where the forget gap lives: the same distance, |chain - retrain| on cumulative forget Recall@20 (in "
        "brackets another retrain's), on each kind of erased pair alone: every pair of a **deleted user** (the "
        "canary's fake users among them; the row is re-drawn), the pairs of a **deleted item** whose users stay "
        "(a backbone whose items own no row, MIG-GT, scores a deleted item from its features alone), and the "
        "**interactions** erased from users and items that both stay; each a mean over the checkpoint nights of "
        "every seed, with the users its Recall@20 averages over (a mean per night), and how many of the chain's "
        "seed-nights it covers where some were recorded before the split and not kept to fill it from (– : none).",
        "",
    ]
    kinds = [
        "| backbone | method | traffic | deleted users' pairs | deleted items' pairs (users stay) "
        "| interactions erased from users who stay |",
        "|---|---|---|---|---|---|",
    ]
    for (backbone, method), g in df.groupby(["backbone", "method"]):
        c = ck[(ck["backbone"] == backbone) & (ck["method"] == method)]
        cells = " | ".join(_kind_gap(c, kind) for kind in FORGET_KINDS)
        kinds.append(f"| {backbone} | {method} | {g['traffic'].iloc[0]} | {cells} |")
    lines += section("kinds", kinds)
    lines += [
        "",
        "*Retain drop, read without a retrain*: `lifecycle.consolidate_when.retain_drop` starts a consolidation "
        "when the chain's Recall@20 on retained users' validation rows, each night's model over the one it started "
        "from, multiplied along the chain (the *indicator*), has fallen by its threshold. On the checkpoint nights it "
        "is set beside what it stands for, measured: the chain's Recall@20 on retained users' test rows over the "
        "untouched original's, and the retrain's the same way (1: as the original). Means over seeds; over every "
        "checkpoint seed-night, how far the indicator strays from the measure, signed (above 0: it reads better "
        "than the measure) and in brackets either way; and on how many nights the chain's loop reversed any pair, "
        "with the largest step it grew to (from each night's update log; – for a method without such a loop, or "
        "rows recorded before the count).",
        "",
    ]
    lines += section("indicator", indicator_lines(df))
    lines += [
        "",
        "Per checkpoint night (means over seeds): chain / retrain / untouched original, and the share of the "
        "original's excess forget Recall@20 the chain removed; the calibrated membership test (the gate's) on every "
        "pair erased so far against the shadow pairs that left with them: an AUC above the threshold is residue "
        "a retrain does not show.",
        *_recorded_note(ck),
        "",
        "| backbone | method | night | pairs erased so far | retain R@20 | forget R@20 | forget excess removed "
        "| another retrain: retain / forget R@20 | top-20 agreement with the retrain: chain / original "
        "(another retrain) | membership AUC of everything erased so far (threshold) | parameter distance to the "
        "retrain: chain / original (chain from the original) | gate on the retrain |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (backbone, method, night), n in ck.groupby(["backbone", "method", "night"]):

        def trio(m: str, n=n) -> str:
            return " / ".join(f"{n[f'{w}_{m}_recall@20'].mean():.4f}" for w in ("chain", "retrain", "original"))

        lines.append(
            f"| {backbone} | {method} | {int(night)} | {n['forget_pairs_cumulative'].mean():.0f} | {trio('retain')} "
            f"| {trio('forget')} | {gap_closed(n):.0%} | {_replicate(n)} "
            f"| {_chain_agreement(n)} / {n['original_top20_agreement'].mean():.3f}{_agreement(n)} "
            f"| {_auc(n)} | {_distances(n)} | {', '.join(n['retrain_gate'].fillna('–').astype(str))} |"
        )
    lines += [
        "",
        "The plot: each chain's Recall@20 less the retrain's, a mean over seeds, per checkpoint night; the "
        "shaded band is Retrain's range (where another retrain would land, 95%) on the same scale, also a mean "
        "over seeds. The summary judges each seed against its own range, so with several seeds a mean line "
        "inside the band can hide a seed outside it on either side.",
        "",
        f"![drift over nights]({out.with_suffix('.png').name})",
        "",
    ]
    md.write_text("\n".join(lines))
    _plot(ck, out.with_suffix(".png"))
    return md


def range_offsets(rep: pd.DataFrame, band: dict, m: str) -> tuple[pd.Series, pd.Series]:
    """Retrain's range on the stream plot's scale (chain - retrain Recall@20), per checkpoint
    night, from one backbone's checkpoint rows `rep` (a row per seed and night) and its
    retrain_band: out_of_range's bounds, (the mean of the seed's retrains) +- band x the
    original's Recall@20, less the retrain's Recall@20; a mean over seeds where several ran
    (each seed is judged against its own). `m`: "retain" or "forget"."""
    retrain = rep[f"retrain_{m}_recall@20"]
    mid = retrain
    if f"{REPLICATE}_{m}_recall@20" in rep:
        mid = pd.concat([retrain, rep[f"{REPLICATE}_{m}_recall@20"]], axis=1).mean(axis=1)
    half = band[m] * rep[f"original_{m}_recall@20"]
    by = rep.assign(_lo=mid - half - retrain, _hi=mid + half - retrain).groupby("night")
    return by["_lo"].mean(), by["_hi"].mean()


def _plot(ck: pd.DataFrame, path: Path) -> None:
    """One row of panels per backbone (each its own methods, retrains and scale), one legend.
    Where the backbone has a band (retrain_band), Retrain's range is shaded; else, where a
    replicate ran, how far it landed from the retrain."""
    from tru.bench.process import pyplot

    plt = pyplot()
    if ck.empty:
        return
    backbones = sorted(ck["backbone"].unique())
    fig, grid = plt.subplots(len(backbones), 3, figsize=(13, 3.3 * len(backbones)), squeeze=False)
    # each method its own colour, marker and dash, the same in every row: chains that land on the
    # same values (a method whose update barely moves the model lies on the exact step's line)
    # stay visible
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", (0, (5, 1, 1, 1)))]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = sorted(ck["method"].unique())
    handles: dict[str, object] = {}
    rep_all = ck.drop_duplicates(["backbone", "seed", "night"])
    bands = retrain_band(ck)
    for row, (axes, backbone) in enumerate(zip(grid, backbones, strict=True)):
        for method, g in ck[ck["backbone"] == backbone].groupby("method"):
            k = methods.index(method)
            marker, dash = styles[k % len(styles)]
            style = {"marker": marker, "linestyle": dash, "markerfacecolor": "none", "color": colours[k % len(colours)]}
            by = g.groupby("night")
            for ax, col in zip(axes[:2], ("retain", "forget"), strict=True):
                gap = by.apply(lambda n, col=col: (n[f"chain_{col}_recall@20"] - n[f"retrain_{col}_recall@20"]).mean())
                ax.plot(gap.index, gap.values, **style)
            (line,) = axes[2].plot(by["chain_top20_agreement"].mean(), **style)
            handles[method] = line
        rep = rep_all[rep_all["backbone"] == backbone]
        if backbone in bands:
            # the range first_departure judges by, on the panels' scale: a chain's line outside
            # the shaded band is a night the summary counts out of range
            for ax, col in zip(axes[:2], ("retain", "forget"), strict=True):
                lo, hi = range_offsets(rep, bands[backbone], col)
                shade = ax.fill_between(lo.index, lo.values, hi.values, color="tab:blue", alpha=0.12, lw=0)
            handles["Retrain's range (95%)"] = shade
        elif f"{REPLICATE}_forget_recall@20" in rep and rep[f"{REPLICATE}_forget_recall@20"].notna().any():
            # where another exact retrain lands: the scale each chain's gap is read against (the
            # sign of one retrain's gap to the other is arbitrary: shaded both ways)
            by = rep[rep[f"{REPLICATE}_forget_recall@20"].notna()].groupby("night")
            for ax, col in zip(axes[:2], ("retain", "forget"), strict=True):
                gap = by.apply(
                    lambda n, col=col: (n[f"{REPLICATE}_{col}_recall@20"] - n[f"retrain_{col}_recall@20"]).abs().mean()
                )
                band = ax.fill_between(gap.index, -gap.values, gap.values, color="grey", alpha=0.25)
            handles["another retrain's distance"] = band
        agreement = f"{REPLICATE}_top20_agreement"
        if agreement in rep and rep[agreement].notna().any():
            again = rep[rep[agreement].notna()].groupby("night")[agreement].mean()
            (line,) = axes[2].plot(again, color="black", ls="--")
            handles["another retrain"] = line
        seeds = sorted(ck.loc[ck["backbone"] == backbone, "seed"].unique())
        axes[0].set_ylabel(f"{backbone}: {'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}")
        for ax, title in zip(
            axes,
            (
                "retain Recall@20: chain - retrain",
                "cumulative forget Recall@20: chain - retrain",
                "top-20 agreement with the retrain",
            ),
            strict=True,
        ):
            if row == 0:
                ax.set_title(title, fontsize=9)
            ax.set_xlabel("night")
            ax.axhline(0, color="grey", lw=0.5) if "chain" in title else None
    fig.legend(list(handles.values()), list(handles), loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
