"""Consolidation: an exact retrain on the data without every erased subject, which becomes the
new base of the lineage (`tru consolidate`).

Erasure batches change the served model; the data the pipeline keeps still holds the erased
subjects, and every later batch is an approximate update of a model that trained on them. A
consolidation ends that chain:

1. it records the start (`lifecycle/generations.yaml`: the next data generation, the batches
   it folds in, the model that served until now) and keeps a copy of `dvc.lock` as it was
   (`lifecycle/locks/generation-<N-1>.dvc.lock`: every file and model of the generation that
   ends, by hash, which a purge later removes and an auditor can still check out until then);
2. it appends the subjects of every erased request of those batches to the suppression list
   (tru.lifecycle.suppression), the canary's fake accounts included;
3. it archives the batches: `batches.yaml` starts empty again, the batches' stages leave
   `dvc.lock` (their entries live on in the copy), their files stay where they are until the
   retention window closes (tru.lifecycle.purge);
4. it runs the base stages (`dvc repro evaluate`): the list changed, so fetch, featurize and
   split rebuild the data without the erased rows and train retrains the base model from
   scratch on it, the one recipe `make run` uses. The new model never saw erased data and is
   reproducible from the redacted data alone;
5. it records the end: when, how long, the new model's hash and test Recall@20, and until
   when the earlier generation is kept (`lifecycle.retention_days`).

Killed at any point, it resumes: run it again. Steps 2 and 3 are idempotent and read only the
record of step 1; step 4 is DVC's (a stage killed half-way reruns); the record of step 5 is
written last. Nothing is lost: what the batches erased is in the suppression list before they
leave batches.yaml, and the generation that ends is in the DVC cache and in the lock copy.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import yaml

from tru import batches, paths
from tru.config import Params
from tru.dvcio import dvc_repro
from tru.errors import DataError, TruError
from tru.io import atomic_path, read_json
from tru.lifecycle.suppression import extend, read_suppression, write_suppression
from tru.requests.ledger import iso_utc, read_ledger
from tru.requests.schema import ERASED

LOCKS = paths.LIFECYCLE / "locks"
HEADER = (
    "# Data generations, oldest first; written by `tru consolidate` and `tru purge` (tru/lifecycle/).\n"
    "# Generation N's data leaves out every subject of lifecycle/suppression.tsv up to N; its base model\n"
    "# is an exact retrain on that data. The batches each consolidation folded in are listed with it.\n"
)
STARTED, DONE = "started", "done"


class NothingToConsolidate(TruError):
    """No batch since the last consolidation."""

    exit_code = 2


def read_generations(path: str | Path = paths.GENERATIONS) -> list[dict]:
    """The recorded consolidations, oldest first (none: an empty list)."""
    path = Path(path)
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    gens = data.get("generations") or []
    if not isinstance(gens, list) or not all(isinstance(g, dict) and "generation" in g for g in gens):
        raise DataError(f"{path}: `generations` must be a list of mappings with a `generation`")
    return gens


def write_generations(gens: list[dict], path: str | Path = paths.GENERATIONS) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(HEADER + yaml.safe_dump({"generations": gens}, sort_keys=False, default_flow_style=False))


def current_generation(gens: list[dict]) -> int:
    """The data generation in service: the last finished consolidation's (0: none yet)."""
    done = [int(g["generation"]) for g in gens if g.get("state") == DONE]
    return max(done, default=0)


def lock_copy(generation: int) -> Path:
    """Where the dvc.lock of `generation` is kept once a consolidation ends it."""
    return LOCKS / f"generation-{generation}.dvc.lock"


def erased_subjects(batch_ids: list[str], ledger_dir: str | Path = paths.LEDGER) -> pd.DataFrame:
    """(kind, subject) of every request of the batches whose status is `erased` (pseudonyms
    only: the ledger's `subject`)."""
    led = read_ledger(ledger_dir, columns=["batch_id", "kind", "subject", "status"])
    rows = led[led["batch_id"].isin(batch_ids) & (led["status"] == ERASED) & led["subject"].notna()]
    return rows[["kind", "subject"]].drop_duplicates().reset_index(drop=True)


def check_consolidable(entries: list[dict]) -> None:
    """DataError unless every registered batch passed its audit gate (or was cleared): a batch
    awaiting review or not yet audited has not erased anything to consolidate."""
    for b in entries:
        verdict = batches.gate_verdict(b["id"])
        if verdict == "fail":
            raise DataError(f"batch {b['id']} awaits review: clear it with `tru review` before consolidating")
        if verdict is None:
            raise DataError(f"batch {b['id']} has not been audited yet: run `tru repro` before consolidating")


def drop_batch_stages(lock_file: str | Path = "dvc.lock") -> list[str]:
    """Remove the per-batch stages (`<stage>@<n>`) from dvc.lock: batches.yaml no longer lists
    the batches they ran for. Returns the stage names removed."""
    lock_file = Path(lock_file)
    if not lock_file.is_file():
        return []
    lock = yaml.safe_load(lock_file.read_text()) or {}
    stages = lock.get("stages") or {}
    gone = sorted(k for k in stages if "@" in k)
    if gone:
        lock["stages"] = {k: v for k, v in stages.items() if "@" not in k}
        with atomic_path(lock_file) as tmp:
            tmp.write_text(yaml.safe_dump(lock, sort_keys=False))
    return gone


def plan() -> dict:
    """What `tru consolidate` would do now: the batches it folds in and the subjects it adds."""
    gens = read_generations()
    entries = batches.read_batches()
    sup = read_suppression(paths.SUPPRESSION)
    rows = erased_subjects([b["id"] for b in entries]) if entries else pd.DataFrame(columns=["kind", "subject"])
    new = extend(sup, rows, current_generation(gens) + 1)
    return {
        "generation": current_generation(gens),
        "next": current_generation(gens) + 1,
        "batches": [b["id"] for b in entries],
        "new_subjects": len(new) - len(sup),
        "unfinished": bool(gens and gens[-1].get("state") != DONE),
    }


def _model_hash(lock_file: Path = Path("dvc.lock")) -> str | None:
    lock = yaml.safe_load(lock_file.read_text()) if lock_file.is_file() else {}
    for out in ((lock or {}).get("stages", {}).get("train", {}) or {}).get("outs", []):
        if out.get("path") == paths.BASE_MODEL.as_posix():
            return out.get("md5")
    return None


def consolidate(
    params: Params,
    now: datetime | None = None,
    repro: Callable[[list[str]], None] | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) a consolidation (see the module docstring); returns its record. The
    caller holds the run lock. `repro(targets)`: runs DVC's stages (default tru.dvcio.dvc_repro);
    `now`: the time recorded (default: the clock). NothingToConsolidate when no batch is
    registered and none was left half-done."""
    repro = repro or dvc_repro

    def clock() -> datetime:
        return (now or datetime.now(UTC)).astimezone(UTC)

    gens = read_generations()
    if gens and gens[-1].get("state") == STARTED:
        entry = gens[-1]
        echo(f"resuming the consolidation into generation {entry['generation']} (started {entry['started_at']})")
    else:
        entries = batches.read_batches()
        if not entries:
            raise NothingToConsolidate(
                "no erasure batch since the last consolidation: nothing to consolidate "
                f"(data generation {current_generation(gens)})"
            )
        check_consolidable(entries)
        previous = current_generation(gens)
        copy = lock_copy(previous)
        if Path("dvc.lock").is_file():
            with atomic_path(copy) as tmp:
                shutil.copyfile("dvc.lock", tmp)
        entry = {
            "generation": previous + 1,
            "state": STARTED,
            "started_at": iso_utc(clock()),
            "batches": [b["id"] for b in entries],
            "registry": entries,
            "previous_model": batches.current_model(),
            "previous_lock": copy.as_posix(),
        }
        write_generations([*gens, entry])
        echo(f"consolidating {len(entries)} batch(es) into data generation {entry['generation']}")
    g = int(entry["generation"])

    # 2. the suppression list (idempotent: subjects already listed keep their generation)
    sup = read_suppression(paths.SUPPRESSION)
    grown = extend(sup, erased_subjects(entry["batches"]), g)
    if len(grown) != len(sup):
        write_suppression(grown, paths.SUPPRESSION)
    echo(f"suppression list: {len(grown)} subject(s), {len(grown) - len(sup)} new")

    # 3. archive the batches (only those this consolidation folds in: none was added since)
    registered = [b["id"] for b in batches.read_batches()]
    if registered:
        if registered != entry["batches"]:
            raise DataError(
                f"batches.yaml lists {', '.join(registered)}, not the batches the unfinished consolidation "
                f"into generation {g} folds in ({', '.join(entry['batches'])}): restore batches.yaml from git"
            )
        batches.write_batches([])
    drop_batch_stages()

    # 4. the exact retrain on the redacted data
    t0 = time.perf_counter()
    echo("dvc repro evaluate: fetch, featurize and split without the erased subjects, then train and evaluate")
    repro(["evaluate"])
    seconds = time.perf_counter() - t0

    # 5. the record
    metrics = read_json(paths.BASE_METRICS) if paths.BASE_METRICS.is_file() else {}
    finished = clock()
    entry.update(
        {
            "state": DONE,
            "finished_at": iso_utc(finished),
            "seconds": round(seconds, 1),
            "suppressed": grown.counts(),
            "model": paths.BASE_MODEL.as_posix(),
            "model_md5": _model_hash(),
            "test_recall@20": (metrics.get("test") or {}).get("recall@20"),
            "retention_days": int(params.lifecycle.retention_days),
            "retain_until": iso_utc(finished + timedelta(days=int(params.lifecycle.retention_days))),
        }
    )
    gens = read_generations()
    write_generations([*gens[:-1], entry])
    echo(
        f"data generation {g} in service: base model retrained in {seconds:.0f} s; generation {g - 1} "
        f"kept until {entry['retain_until']} (`tru purge` then removes it)"
    )
    return entry
