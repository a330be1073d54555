"""Redaction: the suppression list (tru.lifecycle.suppression) applied to what the pipeline keeps.

Two places, so that no artifact downstream of them can hold an erased subject:

- the fetched source (`redact_atomic_files`): the RecBole atomic files MovieLens arrives in
  (`.inter`, `.user`, `.item`, `.link`), line by line. A row goes when the pseudonym of its
  user, its item or its (user, item) pair is listed; every other line keeps its bytes. The
  knowledge-graph triples (`.kg`) name entities, not users or items, and stay;
- the dataset folder every source is built into (`redact_folder`): interactions of a listed
  user, item or pair are dropped, listed users and items leave the id maps and the feature
  rows, a user left without any interaction leaves too, and the indices are renumbered in
  their order (0..n-1, as a fresh build would number them). A source whose raw files were
  redacted already gives nothing to drop here; a generated source (synthetic) or a folder of
  your own (`data.source: mmrec`, copied as it is) is redacted here.

Each returns what it removed (counts, never an id) for the manifests: `fetch.json` and the
dataset's `manifest.json` say which generation of the list was applied and what it took out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tru.data.mmrec import FEAT_SUFFIX, find_inter_file, load_folder, write_folder
from tru.lifecycle.suppression import Suppression

ATOMIC_SUFFIXES = (".inter", ".user", ".item", ".link")
USER_FIELD, ITEM_FIELD = "user_id", "item_id"


def _field_positions(header: str) -> tuple[int | None, int | None]:
    """Positions of the user and item id fields in a RecBole atomic header (`user_id:token`)."""
    names = [h.split(":", 1)[0].strip() for h in header.rstrip("\r\n").split("\t")]
    return (
        names.index(USER_FIELD) if USER_FIELD in names else None,
        names.index(ITEM_FIELD) if ITEM_FIELD in names else None,
    )


def redact_atomic_file(path: Path, sup: Suppression, key: bytes | None) -> int:
    """Drop the lines of one RecBole atomic file that belong to a suppressed subject; the file
    is rewritten (in place: the caller owns the folder, e.g. fetch's temporary one) only when a
    line goes. Returns the lines removed."""
    lines = path.read_bytes().decode("utf-8").splitlines(keepends=True)
    if not lines:
        return 0
    upos, ipos = _field_positions(lines[0])
    if upos is None and ipos is None:
        return 0
    body = lines[1:]
    cells = [ln.rstrip("\r\n").split("\t") for ln in body]

    def column(pos: int | None) -> list[str] | None:
        return None if pos is None else [c[pos] if pos < len(c) else "" for c in cells]

    drop = sup.mask(key, column(upos), column(ipos))
    if not drop.any():
        return 0
    path.write_bytes("".join([lines[0], *(ln for ln, d in zip(body, drop, strict=True) if not d)]).encode("utf-8"))
    return int(drop.sum())


def redact_atomic_files(folder: Path, sup: Suppression, key: bytes | None) -> dict[str, int]:
    """`redact_atomic_file` over every atomic file under `folder`; relative path -> lines removed
    (files that lost none are left out)."""
    if not len(sup):
        return {}
    out = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in ATOMIC_SUFFIXES):
        n = redact_atomic_file(path, sup, key)
        if n:
            out[path.relative_to(folder).as_posix()] = n
    return out


def redact_folder(path: Path, sup: Suppression, key: bytes | None) -> dict:
    """Apply the list to the MMRec folder at `path` in place (the caller's temporary folder);
    returns {"generation", "removed": {"users", "items", "interactions"}} (counts)."""
    record = {"generation": sup.generation, "removed": {"users": 0, "items": 0, "interactions": 0}}
    if not len(sup):
        return record
    path = Path(path)
    folder = load_folder(path, require_features=False)
    inter = folder.interactions
    user_raw = (
        folder.user_map["raw_id"].astype(str).to_numpy()
        if folder.user_map is not None
        else np.arange(folder.n_users).astype(str)
    )
    item_raw = (
        folder.item_map["raw_id"].astype(str).to_numpy()
        if folder.item_map is not None
        else np.arange(folder.n_items).astype(str)
    )
    users_out = sup.mask(key, user_raw, None)
    items_out = sup.mask(key, None, item_raw)
    rows_out = (
        users_out[inter["userID"].to_numpy()]
        | items_out[inter["itemID"].to_numpy()]
        | sup.mask(key, user_raw[inter["userID"].to_numpy()], item_raw[inter["itemID"].to_numpy()])
    )
    kept = inter[~rows_out]
    # users left without any interaction leave with the listed ones; items stay in the
    # catalogue (their features describe the item, not a person) unless listed
    users_keep = ~users_out & np.isin(np.arange(folder.n_users), kept["userID"].to_numpy())
    items_keep = ~items_out
    record["removed"] = {
        "users": int((~users_keep).sum()),
        "items": int((~items_keep).sum()),
        "interactions": int(rows_out.sum()),
    }
    if not rows_out.any() and users_keep.all() and items_keep.all():
        return record
    new_user = np.cumsum(users_keep) - 1
    new_item = np.cumsum(items_keep) - 1
    kept = kept.assign(userID=new_user[kept["userID"].to_numpy()], itemID=new_item[kept["itemID"].to_numpy()])
    features = {m: f[items_keep] for m, f in folder.features.items()}
    item_map = user_map = None
    if folder.item_map is not None:
        item_map = folder.item_map[items_keep].assign(itemID=np.arange(int(items_keep.sum())))
    if folder.user_map is not None:
        user_map = folder.user_map[users_keep].assign(userID=np.arange(int(users_keep.sum())))
    inter_file = find_inter_file(path, folder.name)
    inter_file.unlink()
    for modality in folder.features:
        (path / f"{modality}{FEAT_SUFFIX}").unlink()
    write_folder(path, folder.name, kept.reset_index(drop=True), features, item_map, user_map)
    return record


def counts_of(folder: Path) -> dict[str, int]:
    """Users, items and interactions of the MMRec folder at `folder` (for its manifest)."""
    f = load_folder(folder, require_features=False)
    return {"users": int(f.n_users), "items": int(f.n_items), "interactions": int(len(f.interactions))}
