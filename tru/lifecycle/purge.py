"""Retention and purge: what held erased data goes once its retention window closes (`tru purge`).

After a consolidation (tru.lifecycle.consolidate) the generation that ended is kept for
`lifecycle.retention_days`, for audit and rollback: its data, its base model, the batches'
sets, checkpoints and archived request files, in the work tree, the DVC cache and the DVC
remote. When the window has closed, a purge removes them:

- **what**: every object the ended generation's dvc.lock names (its copy in
  `lifecycle/locks/`), every object the archived batches' `.dvc` pointers name (request files,
  ledger versions, declarations), the members of their folder listings, and every object of the
  cache or a local remote that the scan (tru.lifecycle.scan) finds holding the batches'
  subjects (versions no lock names any longer);
- **never**: an object the current dvc.lock or a `.dvc` file of the work tree names, or that a
  generation still in its window needs (its lock copy): the data and model in service, and what
  an auditor may still check out, stay. Objects go by hash, one at a time, never by a blanket
  `dvc gc`;
- **where**: the DVC cache and every DVC remote: a remote that is a local folder object by
  object in its folder, any other (S3, GCS, Azure, SSH, ...) through DVC's own object store for
  that remote (`dvc.data_cloud`, the credentials and plugin `dvc push` uses), by the same
  hashes. A remote DVC cannot open or delete from (no plugin, no credentials, a read-only HTTP
  remote) is named in the plan and the certificate with why, and every object left there is
  listed, for its own tools; in the work tree, the archived batches' folders
  (`data/batches/<B>/`, `data/deletions/batches/<B>/`);
- **the ledger**: the archived batches' requests files lose their raw ids, the indices those
  resolved to and the free-text reasons (tru.requests.ledger.drop_private); request ids,
  kinds, pseudonyms and statuses stay, and the new version is versioned by DVC;
- **the record**: one tombstone per object removed (`lifecycle/tombstones.jsonl`: its hash,
  the path it held, the generation, why, when, where from), and the generation's entry in
  `lifecycle/generations.yaml` says when it was purged and how many objects went.

Crash safety: the purge first writes its plan (`lifecycle/purge-plan.json`: every object and
path, decided before anything is removed); killed, it resumes from the plan when run again.
Every step is idempotent (a file already gone counts as removed). In order: folders and
objects go, the verification scan runs and its counts join the plan, the ledger loses its raw
ids (last, so a purge killed before then still has the subjects to verify with), then the
tombstones, the generation's record and the certificate are written, and the plan is removed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml

from tru import paths
from tru.errors import DataError
from tru.io import atomic_path, read_json, write_json
from tru.lifecycle.consolidate import DONE, read_generations, write_generations
from tru.requests.ledger import drop_private, iso_utc, requests_path

PLAN = paths.LIFECYCLE / "purge-plan.json"
TOMBSTONES = paths.LIFECYCLE / "tombstones.jsonl"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def due(gens: list[dict], now: datetime) -> list[dict]:
    """Consolidations whose earlier generation's window has closed and that are not purged yet."""
    return [
        g for g in gens if g.get("state") == DONE and not g.get("purged_at") and parse_time(g["retain_until"]) <= now
    ]


def _entries(doc: dict | list | None) -> list[dict]:
    """The `outs` entries of a dvc.lock stage map or of a .dvc file: what DVC caches (a stage's
    data dependencies are another stage's outputs or a .dvc file's)."""
    out: list[dict] = []
    if isinstance(doc, dict) and "stages" in doc:
        for stage in (doc.get("stages") or {}).values():
            if isinstance(stage, dict):
                out += [e for e in stage.get("outs") or [] if isinstance(e, dict)]
    elif isinstance(doc, dict):
        out += [e for e in doc.get("outs") or [] if isinstance(e, dict)]
    return out


def named_objects(file: Path, base: str = "") -> dict[str, str]:
    """md5 (a file's, or a folder's `<md5>.dir`) -> the path it held, from a dvc.lock or a .dvc
    file (paths of a .dvc file are relative to its folder)."""
    if not file.is_file():
        return {}
    doc = yaml.safe_load(file.read_text()) or {}
    return {
        str(e["md5"]): (Path(base) / str(e["path"])).as_posix() if base else str(e["path"])
        for e in _entries(doc)
        if e.get("md5") and e.get("path")
    }


def object_files(store: Path, md5: str) -> list[Path]:
    """Where a DVC object lives in a cache or local remote (DVC 3's files/md5/ layout and the
    older one)."""
    return [store / "files" / "md5" / md5[:2] / md5[2:], store / md5[:2] / md5[2:]]


def with_members(objects: dict[str, str], stores: list[Path]) -> dict[str, str]:
    """`objects` plus the members of every folder listing (`.dir`) among them, read from the
    first store that has it (members named `<folder>/<relpath>`)."""
    out = dict(objects)
    for md5, where in objects.items():
        if not md5.endswith(".dir"):
            continue
        for store in stores:
            hit = next((p for p in object_files(store, md5) if p.is_file()), None)
            if hit is None:
                continue
            try:
                listing = json.loads(hit.read_text())
            except (ValueError, OSError):
                continue
            for e in listing if isinstance(listing, list) else []:
                if isinstance(e, dict) and e.get("md5"):
                    out.setdefault(str(e["md5"]), f"{where}/{e.get('relpath', '')}")
            break
    return out


def tracked_pointers(root: Path, skip: list[Path]) -> list[Path]:
    """Every .dvc file of the work tree outside `skip` (folders) and outside .git/.dvc."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d not in (".git", ".dvc", ".venv", "node_modules")]
        if any(here == s or s in here.parents for s in skip):
            continue
        found += [here / f for f in filenames if f.endswith(".dvc")]
    return sorted(found)


def batch_folders(batch_id: str) -> list[Path]:
    """What an archived batch keeps in the work tree beside its ledger and reports."""
    return [paths.batch_dir(batch_id), paths.ARCHIVE / batch_id]


def _why(err: BaseException) -> str:
    return f"{err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")


def remote_odbs(root: Path, remotes: list[dict]) -> tuple[dict[str, list], dict[str, str]]:
    """DVC's object stores (DVC 3's layout and DVC 2's) of every remote that is not a local
    folder, by name, and the remotes DVC could not open, with why."""
    far = [r for r in remotes if "scheme" in r]
    if not far:
        return {}, {}
    from dvc.repo import Repo  # why: DVC is slow to import; a project with local remotes never needs it

    odbs: dict[str, list] = {}
    failed: dict[str, str] = {}
    try:
        repo = Repo(str(root))
    except Exception as err:  # noqa: BLE001 -- reported per remote, the local stores are still purged
        return {}, {r["name"]: _why(err) for r in far}
    with repo:
        for r in far:
            if r["scheme"] in ("http", "https"):  # fsspec reads an unreachable HTTP object as absent
                failed[r["name"]] = "an HTTP remote is read-only: DVC can neither list nor delete its objects"
                continue
            try:
                remote = repo.cloud.get_remote(r["name"])
                odbs[r["name"]] = [remote.odb, remote.legacy_odb]
            except Exception as err:  # noqa: BLE001 -- no plugin, no credentials: reported, not fatal
                failed[r["name"]] = _why(err)
    return odbs, failed


def odb_holds(odbs: list, md5: str) -> bool:
    """Whether one of a remote's object stores holds the object (raises when it cannot tell)."""
    return any(odb.fs.exists(odb.oid_to_path(md5)) for odb in odbs)


def odb_remove(odbs: list, md5: str) -> None:
    """Delete the object from a remote's object stores (idempotent; raises when it cannot)."""
    for odb in odbs:
        path = odb.oid_to_path(md5)
        if odb.fs.exists(path):
            odb.fs.rm(path)


def _stores(root: Path) -> tuple[list[Path], list[dict], dict[str, str]]:
    """The DVC cache and the local remotes' folders, every remote, and a name per store folder."""
    from tru.lifecycle.scan import dvc_locations

    cache, remotes = dvc_locations(root)
    stores = [cache] if cache is not None else []
    names = {cache.as_posix(): "dvc cache"} if cache is not None else {}
    for r in remotes:
        if r.get("path") is not None:
            stores.append(Path(r["path"]))
            names[Path(r["path"]).as_posix()] = f"remote {r['name']}"
    return stores, remotes, names


def make_plan(
    gens: list[dict], now: datetime, root: Path = Path("."), scan_finds: dict[str, str] | None = None
) -> dict:
    """What a purge of the due generations removes (module docstring); written before anything is."""
    closing = due(gens, now)
    stores, remotes, names = _stores(root)
    archived = [b for g in closing for b in g["batches"]]
    old: dict[str, str] = {}
    for g in closing:
        old |= named_objects(root / g["previous_lock"])
    for b in archived:
        for folder in batch_folders(b) + [paths.LEDGER / b]:
            for ptr in tracked_pointers(root / folder, []):
                old |= named_objects(ptr, ptr.parent.relative_to(root).as_posix())
    old |= scan_finds or {}
    skip = [root / f for b in archived for f in batch_folders(b)]
    keep = named_objects(root / "dvc.lock")
    for ptr in tracked_pointers(root, skip):
        if any(ptr.parent == root / paths.LEDGER / b for b in archived):
            continue  # the ledger's pointer is replaced by its redacted version below
        keep |= named_objects(ptr, ptr.parent.relative_to(root).as_posix())
    for g in gens:
        if g.get("state") == DONE and not g.get("purged_at") and g not in closing:
            keep |= named_objects(root / g["previous_lock"])  # a window still open
    old, keep = with_members(old, stores), with_members(keep, stores)
    odbs, failed = remote_odbs(root, remotes)
    candidates = {m: w for m, w in sorted(old.items()) if m not in keep}
    far: dict[str, list[str]] = {}
    for name, stores_of in odbs.items():
        try:
            for md5 in candidates:
                if odb_holds(stores_of, md5):
                    far.setdefault(md5, []).append(name)
        except Exception as err:  # noqa: BLE001 -- unreachable: reported as not purged
            failed[name] = _why(err)
            far = {m: [n for n in ns if n != name] for m, ns in far.items()}
    remove = {}
    for md5, where in candidates.items():
        present = [s.as_posix() for s in stores if any(f.is_file() for f in object_files(s, md5))]
        if present or far.get(md5):  # outputs DVC does not cache (metrics, plots) are in no store
            remove[md5] = {"held": where, "in": present, "remotes": far.get(md5, [])}
    return {
        "generations": [int(g["generation"]) - 1 for g in closing],
        "consolidations": [int(g["generation"]) for g in closing],
        "batches": archived,
        "objects": remove,
        "kept_in_use": len(set(old) & set(keep)),
        "paths": [f.as_posix() for b in archived for f in batch_folders(b)],
        "ledgers": archived,
        "stores": [s.as_posix() for s in stores],
        "store_names": names,
        "far_remotes": sorted(odbs),
        "not_purged": [
            {"remote": r["name"], "url": r["url"], "why": failed[r["name"]]} for r in remotes if r["name"] in failed
        ],
        "planned_at": iso_utc(now),
    }


def _store_name(store: str, plan: dict) -> str:
    """`dvc cache` or `remote <name>` for a store folder of the plan."""
    return plan["store_names"].get(store, store)


def _remove_path(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def execute(plan: dict, now: datetime, root: Path = Path("."), echo: Callable[[str], None] = print) -> list[dict]:
    """Remove the plan's folders and objects (idempotent); returns the tombstones (one per
    object). The ledger is redacted after this, by `redact_ledgers`."""
    for p in plan["paths"]:
        _remove_path(root / p)
    named = {n for obj in plan["objects"].values() for n in obj.get("remotes", [])}
    odbs, failed = remote_odbs(root, [r for r in _stores(root)[1] if r["name"] in named])
    tombstones = []
    for md5, obj in plan["objects"].items():
        for store in obj["in"]:
            for f in object_files(Path(store), md5):
                if f.is_file():
                    f.unlink()
        where = [_store_name(s, plan) for s in obj["in"]]
        left = {}
        for name in obj.get("remotes", []):
            if name in failed or name not in odbs:
                left[f"remote {name}"] = failed.get(name, "the remote is no longer configured")
                continue
            try:
                odb_remove(odbs[name], md5)
                where.append(f"remote {name}")
            except Exception as err:  # noqa: BLE001 -- what stays on a remote is recorded, never hidden
                left[f"remote {name}"] = _why(err)
        stone = {"object": md5, "held": obj["held"], "removed_from": where, "at": iso_utc(now)}
        if left:
            stone["not_removed_from"] = left
        tombstones.append(stone)
    kept = sum(bool(t.get("not_removed_from")) for t in tombstones)
    echo(
        f"purged {len(plan['objects']) - kept} object(s) and {len(plan['paths'])} folder(s) of the work tree"
        + (f"; {kept} object(s) could not be removed from a remote (the certificate lists them)" if kept else "")
    )
    return tombstones


def redact_ledgers(plan: dict, now: datetime, root: Path = Path(".")) -> None:
    """The archived batches' request files without raw ids, indices and reasons, versioned by
    DVC (idempotent): the purge's last removal, so that a purge killed before it still reads the
    subjects its verification scans for."""
    from tru.dvcio import dvc_add  # why: DVC is slow to import; planning never needs it

    for b in plan["ledgers"]:
        ledger_file = requests_path(root / paths.LEDGER, b)
        if ledger_file.is_file() and drop_private(root / paths.LEDGER, b, now):
            dvc_add([ledger_file.relative_to(root) if root != Path(".") else ledger_file], root)


def purge(
    now: datetime | None = None, root: Path = Path("."), dataset_dir: str = "", scan: bool = True, echo=print
) -> dict | None:
    """Purge every generation whose retention window has closed (module docstring), or resume an
    unfinished purge; returns the plan carried out, None when nothing was due. `dataset_dir`:
    the dataset the scan resolves ids the ledger did not in; `scan`: also remove what the scan
    finds. The caller holds the run lock."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    gens = read_generations(root / paths.GENERATIONS)
    plan_file = root / PLAN
    if plan_file.is_file():
        plan = read_json(plan_file)
        echo(f"resuming the purge planned at {plan['planned_at']}")
        subjects = _subjects(plan["batches"], root, dataset_dir)  # None once the ledger lost the raw ids
    else:
        closing = due(gens, now)
        if not closing:
            return None
        subjects = _subjects([b for g in closing for b in g["batches"]], root, dataset_dir)
        finds = scan_finds(_scan(subjects, root)) if scan and subjects is not None else {}
        plan = make_plan(gens, now, root, finds)
        write_json(plan_file, plan)
    tombstones = execute(plan, now, root, echo)
    if "verification" not in plan:  # kept in the plan (counts only): a resumed purge reuses it
        plan["verification"] = verification(_scan(subjects, root)) if scan and subjects is not None else None
        write_json(plan_file, plan)
    checked = plan["verification"]
    redact_ledgers(plan, now, root)
    why = {
        g: f"retention window of data generation {g} closed (consolidated into generation {g + 1})"
        for g in plan["generations"]
    }
    reason = "; ".join(why.values())
    for t in tombstones:
        t["generation"] = plan["generations"][0] if len(plan["generations"]) == 1 else plan["generations"]
        t["why"] = reason
    existing = (root / TOMBSTONES).read_text() if (root / TOMBSTONES).is_file() else ""
    seen = {json.loads(line)["object"] for line in existing.splitlines() if line.strip()}
    lines = [json.dumps(t, sort_keys=True) for t in tombstones if t["object"] not in seen]
    with atomic_path(root / TOMBSTONES) as tmp:
        tmp.write_text(existing + "".join(line + "\n" for line in lines))
    gens = read_generations(root / paths.GENERATIONS)
    for g in gens:
        if int(g["generation"]) in plan["consolidations"]:
            g["purged_at"] = iso_utc(now)
            g["purged_objects"] = len(plan["objects"])
    write_generations(gens, root / paths.GENERATIONS)
    from tru.lifecycle.certificate import certificate_facts, write_certificate

    facts = certificate_facts(plan, tombstones, checked, gens, now, root, Path(dataset_dir).name or "?")
    plan["certificate"] = write_certificate(facts, root, now).relative_to(root).as_posix()
    plan["left_on_remotes"] = {t["object"]: t["not_removed_from"] for t in tombstones if t.get("not_removed_from")}
    plan_file.unlink()
    echo(f"certificate of sanitization: {plan['certificate']}")
    return plan


def _subjects(batch_ids: list[str], root: Path, dataset_dir: str):
    """The batches' subjects by raw id, read from the ledger (in memory only), or None when the
    ledger no longer holds them (a purge that dropped them already)."""
    from tru.lifecycle.scan import resolve_indices, subjects_from_batches

    try:
        subjects = subjects_from_batches(batch_ids, root)
    except DataError:
        return None
    if not (subjects.users or subjects.items or subjects.pairs):
        return None
    # the indices ingest resolved belong to the generation that ended: the data in service is
    # renumbered, so its index-keyed files are read through its own maps (where the erased ids are not)
    subjects.user_index.clear()
    subjects.item_index.clear()
    resolve_indices(subjects, root, dataset_dir)
    return subjects


def _scan(subjects, root: Path) -> dict:
    """The scan's report of the work tree, the DVC cache and the local remotes."""
    from tru.lifecycle.scan import scan as run_scan

    return run_scan(subjects, root, cache=True, remotes=True)


def scan_finds(report: dict) -> dict[str, str]:
    """Objects of the DVC cache and local remotes that the scan found holding the subjects:
    md5 -> what it held (the path when the checkout names it)."""
    out = {}
    for loc in report["locations"]:
        if loc["kind"] not in ("dvc cache", "remote"):
            continue
        for e in loc.get("holding", []) + loc.get("ledger_copies", []):
            if e.get("object"):
                out[str(e["object"])] = str(e.get("path") or e.get("in") or "an earlier version")
    return out


def verification(report: dict) -> dict:
    """What the scan after a purge found, per location (counts only)."""
    holding = {
        loc["location"]: len(loc.get("holding", []))
        for loc in report["locations"]
        if loc["kind"] in ("work tree", "dvc cache", "remote") and "not_scanned" not in loc
    }
    return {"holding": holding, "holds_subjects": bool(report["holds_subjects"])}
