"""Where erased data still lives: the scan behind `tru scan`.

An erasure batch removes its subjects from the model in service; their rows and raw ids stay
in the data the pipeline keeps: the fetched source files, the dataset folder, the splits,
the batches' forget sets, the archived request files, every version of those in the DVC cache
and in the DVC remote, and the models trained on them. The scan reads all of it and says,
per location, which files and objects still hold the subjects, so that a purge can be shown to
work (the same scan finds them before it and finds nothing after it).

**Subjects.** Users, items and interactions named by their raw ids, as requests name them:
the requests of one or more batches (`subjects_from_batches`: every ledger row of the
batches that was not rejected; the ledger also gives the dataset index each id was resolved
to), or a CSV, JSON Lines or Parquet file with the columns of a request file (`kind`,
`user_id`, `item_id`; `subjects_from_file`). Ids the ledger did not resolve are resolved
against the dataset's `user_map.tsv` / `item_map.tsv` (and the canary's fake users in
`data/split/split.json`), as ingest resolves them.

**Where.** Three kinds of location, each reported on its own:

- the work tree: every file under the repository root, except `.git`, `.dvc` (read as the
  cache below), tool folders (`.venv`, `node_modules`, byte-code and linter caches) and the
  documentation build `site/`; symbolic links are not followed (counted). The ledger
  (`data/ledger/`) holds raw ids by design, the record of what was asked: it is reported
  apart, as "ledger (record of requests)", never as a copy;
- the DVC cache (`.dvc/cache`, or `cache.dir` of the DVC config): every object, its format
  told from its bytes; an object is named by its hash, and by its path when the work tree's
  `dvc.lock` or `.dvc` files name it (directly or inside a `.dir` listing). Objects that are
  versions of the ledger (its Parquet metadata or schema, or a tracked path under
  `data/ledger/`) are listed as ledger copies, not counted;
- every remote of `.dvc/config` and `.dvc/config.local` whose URL is a local path (or
  `file://`), read like the cache. Any other remote is listed as "not scanned: <scheme>".

**Formats.** Parquet (the id columns only), delimited text (CSV, TSV, MMRec `.inter`, RecBole
atomic files such as `ml-100k.inter`; columns are found by their header), JSON (arrays of
records, single records, and lists under keys that name users or items, such as
`deleted_users` or the canary's `raw_ids`) and JSON Lines, `.npy` (structured arrays by field
name; integer `(n, 2)` / `(n, 3)` arrays as (user, item[, timestamp]) index pairs; 1-D integer
arrays whose name says users or items; float matrices in a dataset folder as one feature row
per item), safetensors (integer tensors whose name says users or items) and zip archives
(wheels, `.npz`: every member, two levels deep).

**Ids.** A column is read as raw ids or as dataset indices by its name: `user_id`, `item_id`,
`raw_id` (in a map) and RecBole's `user_id:token` hold raw ids; `user`, `item`, `userID`,
`itemID`, `user_index` and `item_index` hold indices. Indices are read in the id space of the
dataset folder a file sits in (its own maps), else in the space of the dataset the subjects
were resolved in. An interaction matches on its (user, item) pair wherever both are in a row:
a request names a pair, not a time, and the erasure removes every row of the pair, so a
file's timestamp is listed among the columns read but does not narrow the match. A user or
item matches every row that names it.

**Models.** A checkpoint (`model.safetensors` + `checkpoint.json`) holds no ids, and its
embedding rows are not decoded into people. What it records of its lineage decides:

- a base model (`data.split_sha256`) was *trained on them* when the split whose tree hash it
  records is found in a scanned location and that split's `train.parquet` holds them; *not*
  when it does not, or when the checkpoint names another dataset;
- a batch model (`batch`, `method`) was *trained on them* when the batch's sets folder (its
  retain set: the model's training data) still holds them, i.e. the batch ran before they
  were erased; an exact method (`retrain`) on sets that no longer hold them did *not* train on
  them; an approximate method (TRU and the other comparison methods) on such sets *erased them
  approximately*: the model was updated from one trained on them (the chain of the sets'
  `prior_train_sha256` shows which held them) and what remains is what the batch's audit
  measures. Such models are listed on their own and do not count as holding the subjects;
- anything else is *undetermined* (the split or sets it names are not in any scanned
  location, or it records no lineage); it counts as holding the subjects when it records
  their dataset, since the scan cannot show that it does not.

**What it cannot see.** Copies outside the repository, its DVC cache and its local remotes
(backups, other clones, non-local remotes, Prefect's database contents beyond its bytes);
delimited text without a header, binary formats other than those above, compressed files
(gzip, zstd, ...); ids under column names other than the ones above; what a model memorised
(the lineage rule says which models were trained on the subjects, not what their weights
reveal: the audits measure that); index-keyed files of another project nested in the work
tree (their id space is unknown: listed, not matched). Raw ids are compared as text: another
dataset in the tree that reuses the same ids (MovieLens-1M's users are numbered like
MovieLens-100k's) is reported as holding them.

**Output.** `scan` returns a JSON-able report: per location, each file or object that holds
the subjects with its format, the columns read and counts (rows naming a subject user, item
or interaction, and how many distinct subjects), never an id. Files under `data/deletions/`
are named by their position in their folder (`file-1-of-2`), as the evidence manifest names
request files: a request file's name is chosen by its sender. `summary_lines` is its human
summary. The CLI exits with `EXIT_FOUND` when anything outside the ledger holds the subjects.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import json
import os
import re
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import pandas as pd

from tru import paths
from tru.errors import DataError

EXIT_FOUND = 6  # `tru scan`: something outside the ledger holds the subjects (0: nothing does)

# the work tree: folders never read (tool folders; `.dvc` is read as the cache)
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".dvc",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".tox",
        ".nox",
        ".ipynb_checkpoints",
    }
)
ROOT_SKIP = frozenset({"site"})  # the documentation build (make docs), at the root only
PROJECT_MARKERS = ("dvc.yaml", "dvc.lock", "batches.yaml")  # a nested project (test fixtures)
EXACT_METHODS = ("retrain",)  # methods whose model never saw the erased data
LEDGER_NAME = "ledger (record of requests)"
CHECKPOINT_META = "checkpoint.json"
HEAD_BYTES = 1 << 16
MAX_MEMBER_BYTES = 256 << 20  # a zip member larger than this is listed, not unpacked
MAX_TEXT_BYTES = 1 << 30  # JSON read whole up to this size
ZIP_DEPTH = 2
STRIDE = 1 << 32  # pair code: user * STRIDE + item

# column (or key) names, normalised (`normal`): what they hold. Plural names only name lists
# (a JSON key over a list of ids); a scalar or a table column must have a singular name, since
# `users` or `items` alone usually counts something.
ROLES: dict[str, tuple[str, str]] = {
    "user_id": ("user", "raw"),
    "raw_user_id": ("user", "raw"),
    "user_raw_id": ("user", "raw"),
    "user": ("user", "index"),
    "userid": ("user", "index"),
    "user_index": ("user", "index"),
    "user_idx": ("user", "index"),
    "item_id": ("item", "raw"),
    "raw_item_id": ("item", "raw"),
    "item_raw_id": ("item", "raw"),
    "movie_id": ("item", "raw"),
    "item": ("item", "index"),
    "itemid": ("item", "index"),
    "item_index": ("item", "index"),
    "item_idx": ("item", "index"),
    "timestamp": ("time", ""),
}
LIST_ROLES: dict[str, tuple[str, str]] = {
    "user_ids": ("user", "raw"),
    "raw_user_ids": ("user", "raw"),
    "user_indices": ("user", "index"),
    "deleted_users": ("user", "index"),
    "fake_users": ("user", "index"),
    "item_ids": ("item", "raw"),
    "raw_item_ids": ("item", "raw"),
    "item_indices": ("item", "index"),
    "deleted_items": ("item", "index"),
}
# a ledger file by its columns (tru.requests.schema: requests, and status events)
LEDGER_COLUMNS = frozenset({"batch_id", "request_id", "kind", "user_id", "item_id", "subject", "status"})
STATUS_COLUMNS = frozenset({"batch_id", "request_id", "stage", "status", "at"})
LEDGER_META_KEY = b"tru.batch"  # tru.requests.ledger.META_KEY (not imported: it loads pyarrow's writer)
BACKDOORS_KEYS = frozenset({"batch_id", "targets", "triggers", "counts"})
COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
SAFETENSORS_INTS = {"I64": "<i8", "I32": "<i4", "I16": "<i2"}
KINDS = ("users", "items", "interactions")
# file names the pipeline writes: shown as they are inside a `.dir` listing the checkout no
# longer names (any other name, which a request's sender may have chosen, is shown by position)
PIPELINE_NAMES = re.compile(
    r"(train|valid|test|shadow|forget|heldout|heldout_shadow|requests|status-[a-z_-]+)\.parquet|split\.json"
    r"|[\w.-]+\.inter|[\w-]+_feat\.npy|(user|item)_map\.tsv|manifest\.json|checkpoint\.json|model\.safetensors"
    r"|fetch\.json|backdoors\.json|ml-[\w.-]+|[\w-]+-titles\.parquet"
)


# ====================================================================== subjects


@dataclass
class Subjects:
    """The subjects to look for, by raw id, and the dataset index of each id where known
    (`user_index`, `item_index`: raw id -> index in the dataset the ids were resolved in,
    `dataset`). `sources` says where they came from (batch ids, "subjects file")."""

    users: set[str] = field(default_factory=set)
    items: set[str] = field(default_factory=set)
    pairs: set[tuple[str, str]] = field(default_factory=set)
    user_index: dict[str, int] = field(default_factory=dict)
    item_index: dict[str, int] = field(default_factory=dict)
    dataset: str | None = None
    sources: list[str] = field(default_factory=list)

    def add(self, kind: str, user_id: str | None, item_id: str | None) -> None:
        """One subject, as a request names it."""
        if kind == "user" and user_id:
            self.users.add(user_id)
        elif kind == "item" and item_id:
            self.items.add(item_id)
        elif kind == "interaction" and user_id and item_id:
            self.pairs.add((user_id, item_id))

    def merge(self, other: Subjects) -> Subjects:
        """These subjects and `other`'s (the first known dataset is kept)."""
        self.users |= other.users
        self.items |= other.items
        self.pairs |= other.pairs
        self.user_index.update(other.user_index)
        self.item_index.update(other.item_index)
        self.dataset = self.dataset or other.dataset
        self.sources += other.sources
        return self

    def counts(self) -> dict[str, int]:
        return {"users": len(self.users), "items": len(self.items), "interactions": len(self.pairs)}

    def resolved(self) -> dict[str, int]:
        """How many subjects have a dataset index (a pair: both of its ids)."""
        return {
            "users": sum(u in self.user_index for u in self.users),
            "items": sum(i in self.item_index for i in self.items),
            "interactions": sum(u in self.user_index and i in self.item_index for u, i in self.pairs),
        }

    def __bool__(self) -> bool:
        return bool(self.users or self.items or self.pairs)


def subjects_from_batches(
    batch_list: Iterable[str], root: str | Path = ".", ledger_dir: str | Path = paths.LEDGER
) -> Subjects:
    """The subjects of the ledger's batches `batch_list`: every request row that was not
    rejected (accepted, erased, needing review, or already erased by an earlier batch), with
    the dataset indices ingest resolved. DataError for a malformed or unknown batch id, or
    batches that name no subject."""
    from tru.requests.ledger import batch_ids, batch_metadata, check_batch_id, read_ledger
    from tru.requests.schema import REJECTED

    wanted = list(dict.fromkeys(batch_list))
    ledger = Path(root) / ledger_dir
    known = batch_ids(ledger)
    for b in wanted:
        check_batch_id(b)
        if b not in known:
            raise DataError(
                f"no batch {b!r} in the ledger {Path(ledger_dir).as_posix()} (known: {', '.join(known) or 'none'})"
            )
    cols = ["batch_id", "kind", "user_id", "item_id", "user_index", "item_index", "status"]
    df = read_ledger(ledger, columns=cols)
    df = df[df["batch_id"].isin(wanted) & (df["status"] != REJECTED)]
    s = Subjects(sources=[f"batch {b}" for b in wanted])
    for kind, uid, iid, ui, ii in df[["kind", "user_id", "item_id", "user_index", "item_index"]].itertuples(
        index=False, name=None
    ):
        uid = uid if isinstance(uid, str) and uid else None
        iid = iid if isinstance(iid, str) and iid else None
        s.add(kind, uid, iid)
        if uid is not None and int(ui) >= 0:
            s.user_index[uid] = int(ui)
        if iid is not None and int(ii) >= 0:
            s.item_index[iid] = int(ii)
    if not s:
        raise DataError(f"batch(es) {', '.join(wanted)} name no subject: every request row was rejected")
    for b in wanted:
        name = (batch_metadata(ledger, b).get("dataset") or {}).get("name")
        s.dataset = s.dataset or name
    return s


def subjects_from_file(path: str | Path) -> Subjects:
    """The subjects of a CSV, JSON Lines or Parquet file with the columns of a request file:
    `kind` (user, item or interaction; when empty, told from the ids given), `user_id`,
    `item_id` (raw ids, as strings); other columns (request_id, received_at, ...) are ignored.
    The file is read with the request readers (tru.requests.readers). DataError naming the
    file and line for an unreadable file, a row without an id, a kind without the id it needs,
    or a malformed id; no id is quoted."""
    from tru.requests.readers import UnreadableFile, json_type, reader_for
    from tru.requests.schema import ID_REGEX, MAX_ID_LEN, NEEDS_ITEM, NEEDS_USER
    from tru.requests.schema import KINDS as REQUEST_KINDS

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found (a CSV, JSON Lines or Parquet file of subjects: kind, user_id, item_id)")
    read = reader_for(path)
    id_regex = re.compile(ID_REGEX)
    s = Subjects(sources=["subjects file"])
    rows = 0
    try:
        for frame in read(path, path.name, 50_000):
            for rec in frame.to_dict("records"):
                line = rec["line"]
                where = f"{path}: line {line}"
                if rec["pre"]:
                    pre = str(rec["pre"])
                    raise DataError(f"{path}: {pre}" if pre.startswith("line ") else f"{where}: {pre}")
                absent = str(rec["absent"] or "").split(",")
                if "user_id" in absent and "item_id" in absent:
                    raise DataError(
                        f"{path}: no user_id or item_id column "
                        "(subjects are named like requests: kind, user_id, item_id)"
                    )
                vals: dict[str, str | None] = {}
                for name in ("kind", "user_id", "item_id"):
                    v = rec[name]
                    if v is None or v == "" or (isinstance(v, float) and v != v):
                        vals[name] = None
                    elif type(v) is not str:
                        raise DataError(f"{where}: {name} must be a string, not {json_type(v)}")
                    else:
                        vals[name] = v
                kind, uid, iid = vals["kind"], vals["user_id"], vals["item_id"]
                if uid is None and iid is None:
                    raise DataError(f"{where}: no user_id or item_id (a subject needs a raw id)")
                if kind is None:
                    kind = "interaction" if uid and iid else "user" if uid else "item"
                elif kind not in REQUEST_KINDS:
                    raise DataError(f"{where}: kind is not one of {', '.join(REQUEST_KINDS)}")
                for name, value, needs, empty_for in (
                    ("user_id", uid, NEEDS_USER, "item"),
                    ("item_id", iid, NEEDS_ITEM, "user"),
                ):
                    if kind in needs and value is None:
                        raise DataError(f"{where}: {name} is required for kind {kind}")
                    if kind == empty_for and value is not None:
                        raise DataError(f"{where}: {name} must be empty for kind {kind}")
                    if value is not None and len(value) > MAX_ID_LEN:
                        raise DataError(f"{where}: {name} is longer than {MAX_ID_LEN} characters")
                    if value is not None and not id_regex.match(value):
                        raise DataError(
                            f"{where}: {name} must be printable characters without leading or trailing spaces"
                        )
                s.add(kind, uid, iid)
                rows += 1
    except OSError as err:
        raise UnreadableFile(path, f"cannot be read ({err.strerror or err.__class__.__name__})") from None
    if not rows:
        raise DataError(f"{path}: holds no subjects")
    return s


def resolve_indices(
    s: Subjects, root: str | Path = ".", dataset_dir: str | Path = "", split_dir: str | Path = paths.SPLIT
) -> None:
    """Fill the dataset indices of the subjects' ids that have none yet, from the dataset's
    maps and split (tru.requests.catalog.Catalog, as ingest resolves requests). Ids it does
    not know stay unresolved: files keyed by index cannot be matched for them."""
    need_u = sorted({u for u in s.users | {u for u, _ in s.pairs} if u not in s.user_index})
    need_i = sorted({i for i in s.items | {i for _, i in s.pairs} if i not in s.item_index})
    if not (need_u or need_i) or not str(dataset_dir):
        return
    from tru.requests.catalog import Catalog

    try:
        cat = Catalog.from_dataset(Path(root) / dataset_dir, Path(root) / split_dir)
    except (DataError, OSError, ValueError, KeyError):
        cat = None  # maps that no longer list every id (a purge removed rows): read them as they are
    if cat is not None:
        user_of = dict(zip(need_u, map(int, cat.user_index(need_u)), strict=True))
        item_of = dict(zip(need_i, map(int, cat.item_index(need_i)), strict=True))
    else:
        folder = Path(root) / dataset_dir
        um, im = folder / "user_map.tsv", folder / "item_map.tsv"
        user_of = _read_map(um.read_bytes(), "userID", set(need_u)) if um.is_file() else {}
        item_of = _read_map(im.read_bytes(), "itemID", set(need_i)) if im.is_file() else {}
        try:  # the backdoor canary's fake users follow the real ones (tru/audit/canary.py)
            canary = json.loads((Path(root) / split_dir / "split.json").read_text()).get("canary") or {}
            user_of.update(zip(canary.get("raw_ids", []), canary.get("fake_users", []), strict=False))
        except (OSError, ValueError, AttributeError):
            pass
    for raw in need_u:
        if user_of.get(raw, -1) >= 0:
            s.user_index[raw] = int(user_of[raw])
    for raw in need_i:
        if item_of.get(raw, -1) >= 0:
            s.item_index[raw] = int(item_of[raw])


# ====================================================================== id spaces and matching


@dataclass
class Space:
    """The subjects' indices in one dataset's id space (`source`: where the map came from)."""

    source: str
    users: np.ndarray
    items: np.ndarray
    pair_codes: np.ndarray

    @classmethod
    def of(cls, source: str, s: Subjects, user_of: Mapping[str, int], item_of: Mapping[str, int]) -> Space:
        users = sorted({int(user_of[u]) for u in s.users if u in user_of})
        items = sorted({int(item_of[i]) for i in s.items if i in item_of})
        pairs = sorted(
            {int(user_of[u]) * STRIDE + int(item_of[i]) for u, i in s.pairs if u in user_of and i in item_of}
        )
        return cls(source, np.array(users, np.int64), np.array(items, np.int64), np.array(pairs, np.int64))


def _read_map(data: bytes, id_col: str, wanted: set[str]) -> dict[str, int]:
    """raw id -> index of the `wanted` ids an id map (user_map.tsv, item_map.tsv) lists; {} for
    a file that is not one."""
    try:
        df = pd.read_csv(io.BytesIO(data), sep="\t", dtype={"raw_id": str}, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return {}
    if id_col not in df.columns or "raw_id" not in df.columns or not pd.api.types.is_integer_dtype(df[id_col]):
        return {}
    df = df[df["raw_id"].isin(wanted)]
    return {str(r): int(k) for r, k in zip(df["raw_id"], df[id_col], strict=True)}


def folder_space(source: str, s: Subjects, user_map: bytes | None, item_map: bytes | None) -> Space:
    """The id space of a dataset folder with its own maps (MMRec: without a map, the raw id is
    the index written in decimal)."""
    users = s.users | {u for u, _ in s.pairs}
    items = s.items | {i for _, i in s.pairs}
    user_of = (
        _read_map(user_map, "userID", users) if user_map is not None else {u: int(u) for u in users if u.isdigit()}
    )
    item_of = (
        _read_map(item_map, "itemID", items) if item_map is not None else {i: int(i) for i in items if i.isdigit()}
    )
    return Space.of(source, s, user_of, item_of)


def normal(name: object) -> str:
    """A column or key name as the role tables spell it: lower case, `_` for spaces and
    dashes, RecBole's type suffix (`user_id:token`) dropped."""
    return str(name).lstrip("\ufeff").split(":")[0].strip().lower().replace("-", "_").replace(" ", "_")


def role(name: object, siblings: set[str], parent: str = "", listed: bool = False) -> tuple[str, str] | None:
    """(entity, representation) a column or key holds: ("user" | "item", "raw" | "index"), or
    ("time", "") for a timestamp; None when its name says neither. `siblings`: the normalised
    names beside it; `parent`: the normalised key it sits under (JSON); `listed`: a list of
    values under a key (plural names count there)."""
    n = normal(name)
    if n in ROLES:
        return ROLES[n]
    if listed and n in LIST_ROLES:
        return LIST_ROLES[n]
    if n in ("raw_id", "raw_ids"):  # an id map (userID/itemID beside it), or the canary's fake users
        if "userid" in siblings or "user" in parent or parent == "canary":
            return ("user", "raw")
        if "itemid" in siblings or "item" in parent:
            return ("item", "raw")
    return None


def as_text(values: Any) -> pd.Series:
    """Raw ids as strings (None where a value cannot be an id): integers in decimal, integral
    floats without their `.0`, bytes decoded."""
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    kind = arr.dtype.kind
    if kind in "iu":
        return pd.Series(arr.astype(str), dtype=object)
    if kind in "US":
        return pd.Series(arr.astype(str), dtype=object)
    if kind == "f":
        out = np.full(len(arr), None, dtype=object)
        ok = np.isfinite(arr) & (arr == np.round(arr))
        out[ok] = arr[ok].astype(np.int64).astype(str)
        return pd.Series(out, dtype=object)
    if kind != "O":
        return pd.Series([None] * len(arr), dtype=object)

    def one(v: Any) -> str | None:
        if isinstance(v, str):
            return v
        if isinstance(v, bool) or v is None:
            return None
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return str(int(v)) if np.isfinite(v) and float(v).is_integer() else None
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        return None

    return pd.Series([one(v) for v in arr], dtype=object)


def as_index(values: Any) -> np.ndarray:
    """Dataset indices as int64, -1 where a value is not a non-negative integer."""
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    kind = arr.dtype.kind
    if kind in "iu":
        out = arr.astype(np.int64)
    elif kind == "f" or kind in "OUS":
        num = (
            arr.astype(np.float64)
            if kind == "f"
            else pd.to_numeric(pd.Series(arr, dtype=object), errors="coerce").to_numpy(np.float64)
        )
        out = np.full(len(num), -1, dtype=np.int64)
        ok = np.isfinite(num) & (num == np.round(num)) & (np.abs(num) < 2**62)
        out[ok] = num[ok].astype(np.int64)
    else:
        out = np.full(len(arr), -1, dtype=np.int64)
    return np.where(out < 0, -1, out)


@dataclass
class Match:
    """What one file or object holds of the subjects: rows naming a subject user, item or
    interaction (`rows`), distinct subjects found (`subjects`; across several tables of one
    file, the largest count), the columns read (`keys`), and tables keyed by index that could
    not be matched (no id space: `unmatched`)."""

    rows: Counter = field(default_factory=Counter)
    subjects: Counter = field(default_factory=Counter)
    keys: list[str] = field(default_factory=list)
    unmatched: bool = False
    members: list[str] = field(default_factory=list)  # zip members that hold subjects

    def add(self, other: Match | None) -> None:
        if other is None:
            return
        self.rows.update(other.rows)
        for k, v in other.subjects.items():
            self.subjects[k] = max(self.subjects[k], v)
        for k in other.keys:
            if k not in self.keys:
                self.keys.append(k)
        self.unmatched |= other.unmatched

    def __bool__(self) -> bool:
        return any(self.rows.values())


def match_columns(
    columns: Mapping[str, Any], s: Subjects, space: Space | None, parent: str = "", listed: bool = False
) -> Match | None:
    """Match one table (column name -> values, all of one length) against the subjects; None
    when no column names users or items. Raw-id columns are preferred over index columns of
    the same entity (an id map has both)."""
    norm = {normal(c) for c in columns}
    found: dict[tuple[str, str], str] = {}
    for c in columns:
        r = role(c, norm, parent, listed)
        if r is not None:
            found.setdefault(r, c)
    m = Match()
    picked: dict[str, tuple[str, str]] = {}
    for entity in ("user", "item"):
        for rep in ("raw", "index"):
            if (entity, rep) in found and entity not in picked:
                if rep == "index" and space is None:
                    m.unmatched = True
                    continue
                picked[entity] = (rep, found[(entity, rep)])
    if not picked:
        return m if m.unmatched else None
    values: dict[str, Any] = {}
    for entity, (rep, col) in picked.items():
        m.keys.append(f"{entity} ({'raw id' if rep == 'raw' else 'index'})")
        wanted = s.users if entity == "user" else s.items
        if rep == "raw":
            v = as_text(columns[col])
            hit = v.isin(wanted).to_numpy() if wanted else np.zeros(len(v), bool)
        else:
            assert space is not None
            v = as_index(columns[col])
            hit = np.isin(v, space.users if entity == "user" else space.items)
        values[entity] = v
        kind = "users" if entity == "user" else "items"
        m.rows[kind] += int(hit.sum())
        if hit.any():
            m.subjects[kind] = int(pd.unique(np.asarray(v)[hit]).size)
    if ("time", "") in found:
        m.keys.append("timestamp")
    if "user" in picked and "item" in picked and s.pairs and picked["user"][0] == picked["item"][0]:
        if picked["user"][0] == "raw":
            key = values["user"].str.cat(values["item"], sep="\x1f")
            pair_hit = key.isin({f"{u}\x1f{i}" for u, i in s.pairs}).to_numpy()
            distinct = key[pair_hit]
        else:
            assert space is not None
            u, i = values["user"], values["item"]
            code = np.where((u >= 0) & (i >= 0) & (i < STRIDE), u * STRIDE + i, -1)
            pair_hit = np.isin(code, space.pair_codes)
            distinct = code[pair_hit]
        m.rows["interactions"] += int(pair_hit.sum())
        if pair_hit.any():
            m.subjects["interactions"] = int(pd.unique(np.asarray(distinct)).size)
    return m


# ====================================================================== decoding


class Blob:
    """Bytes to decode: a file (`path`) or a zip member held in memory (`data`); `name` is
    the file name that hints at the format (empty for a content-addressed object)."""

    def __init__(self, name: str, path: Path | None = None, data: bytes | None = None):
        self.name = name
        self.path = path
        self.data = data
        self._head: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else (self.path.stat().st_size if self.path else 0)

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def head(self) -> bytes:
        if self._head is None:
            with self.open() as f:
                self._head = f.read(HEAD_BYTES)
        return self._head

    def read(self, limit: int = MAX_TEXT_BYTES) -> bytes:
        with self.open() as f:
            return f.read(limit)


@dataclass
class Decoded:
    """One file's content as far as ids go: its format, the tables of id-like columns found
    (label, columns, parent key, whether a JSON list), and what else the scan needs: the JSON
    value (checkpoint.json, split.json), the rows of a float matrix (item features), whether it
    is a ledger file, zip members, and `note` (why no id was read) or `error` (unreadable)."""

    fmt: str
    tables: list[tuple[str, dict[str, Any], str, bool]] = field(default_factory=list)
    note: str | None = None
    error: str | None = None
    obj: Any = None
    feature_rows: int | None = None
    ledger: bool = False
    members: list[tuple[str, Decoded]] = field(default_factory=list)


def _text_head(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None


def _is_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= 100_000_000 and head[8:9] == b"{"


def sniff(head: bytes, name: str = "") -> str:
    """The format of a file from its first bytes (a content-addressed object has no name):
    parquet, npy, zip, safetensors, pdf, sqlite, compressed, empty, json, jsonl, text or
    binary."""
    if not head:
        return "empty"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if _is_safetensors(head):
        return "safetensors"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    if any(head.startswith(magic) for magic, _ in COMPRESSED):
        return "compressed"
    text = _text_head(head)
    if text is None:
        return "binary"
    if name.lower().endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if text.lstrip("\ufeff \t\r\n")[:1] in ("{", "["):
        return "json"
    return "text"


NOT_DECODED = {
    "pdf": "PDF: not decoded (the evidence shows pseudonyms and counts only)",
    "sqlite": "SQLite database: not decoded",
    "compressed": "compressed: not decoded",
    "binary": "binary: not decoded",
    "empty": "empty",
}


def decode(blob: Blob, depth: int = 0) -> Decoded:
    """Decode `blob` as far as ids go (see Decoded); never raises for a malformed file: its
    `error` names the exception class (never its message, which may quote content)."""
    fmt = sniff(blob.head(), blob.name)
    try:
        if fmt == "parquet":
            return _parquet(blob)
        if fmt == "npy":
            return _npy(blob)
        if fmt == "zip":
            return _zip(blob, depth)
        if fmt == "safetensors":
            return _safetensors(blob)
        if fmt == "json":
            return _json(blob)
        if fmt == "jsonl":
            return _jsonl(blob.read().decode("utf-8-sig", "replace"), "jsonl")
        if fmt == "text":
            return _delimited(blob)
        return Decoded(fmt, note=NOT_DECODED.get(fmt, fmt))
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - a malformed file is reported as unreadable, not a crash
        return Decoded(fmt, error=f"cannot be read as {fmt} ({err.__class__.__name__})")


def _parquet(blob: Blob) -> Decoded:
    import pyarrow.parquet as pq

    with blob.open() as f:
        pf = pq.ParquetFile(f)
        schema = pf.schema_arrow
        names = list(schema.names)
        kv = pf.metadata.metadata or {}
        ledger = LEDGER_META_KEY in kv or LEDGER_COLUMNS <= set(names) or STATUS_COLUMNS <= set(names)
        norm = {normal(n) for n in names}
        cols = list(dict.fromkeys(n for n in names if role(n, norm)))
        if not cols:
            return Decoded("parquet", note="no id column", ledger=ledger)
        table = pf.read(columns=cols)
        data = {n: table.column(n).to_pandas().to_numpy() for n in cols}
    return Decoded("parquet", [("table", data, "", False)], ledger=ledger)


def _delimited(blob: Blob) -> Decoded:
    lower = blob.name.lower()
    with blob.open() as f:
        first = f.readline(1 << 20).decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
        delim = "\t" if "\t" in first else "," if "," in first else ";" if ";" in first else None
        fmt = "inter" if lower.endswith(".inter") else "tsv" if delim == "\t" else "csv" if delim else "text"
        names = next(csv.reader([first], delimiter=delim)) if delim else [first.strip()]
        norm = {normal(n) for n in names}
        wanted = [k for k, n in enumerate(names) if role(n, norm)]
        if not wanted:
            return Decoded(fmt, note="no id column in its header")
        f.seek(0)
        df = pd.read_csv(
            f,
            sep=delim or "\t",
            header=0,
            usecols=wanted,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            encoding_errors="replace",
            on_bad_lines="skip",
            engine="python" if delim is None else "c",
        )
    data: dict[str, Any] = {}
    for k, col in zip(sorted(wanted), df.columns, strict=True):
        data.setdefault(names[k], df[col].to_numpy())
    return Decoded(fmt, [("table", data, "", False)])


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def json_tables(obj: Any, parent: str = "", depth: int = 0) -> Iterator[tuple[str, dict[str, Any], str, bool]]:
    """The id-like tables of a JSON value: arrays of records (their scalar fields), single
    records, and lists of values under keys that name users or items (`deleted_users`, the
    canary's `raw_ids`, ...), at any depth (to 32 levels)."""
    if depth > 32:
        return
    if isinstance(obj, list):
        records = [x for x in obj if isinstance(x, dict)]
        if records and len(records) == len(obj):
            keys = list(dict.fromkeys(k for r in records for k, v in r.items() if _scalar(v)))
            norm = {normal(k) for k in keys}
            idk = [k for k in keys if role(k, norm, parent)]
            if idk:
                yield (
                    parent or "records",
                    {k: [r.get(k) if _scalar(r.get(k)) else None for r in records] for k in idk},
                    parent,
                    False,
                )
            for r in records:
                for k, v in r.items():
                    if isinstance(v, (dict, list)):
                        yield from json_tables(v, normal(k), depth + 1)
        else:
            for x in obj:
                if isinstance(x, (dict, list)):
                    yield from json_tables(x, parent, depth + 1)
    elif isinstance(obj, dict):
        norm = {normal(k) for k in obj}
        idk = [k for k, v in obj.items() if _scalar(v) and role(k, norm, parent)]
        if idk:
            yield (parent or "object", {k: [obj[k]] for k in idk}, parent, False)
        for k, v in obj.items():
            if isinstance(v, list) and v and all(_scalar(x) for x in v):
                if role(k, norm, parent, listed=True):
                    yield (normal(k), {k: v}, parent, True)
            elif isinstance(v, (dict, list)):
                yield from json_tables(v, normal(k), depth + 1)


def _json(blob: Blob) -> Decoded:
    text = blob.read().decode("utf-8-sig", "replace")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        lines = _jsonl(text, "json")
        if lines.error is None or blob.name.lower().endswith(".json"):
            return lines
        return _delimited(blob)  # text that merely starts with a bracket: TOML, a template, ...
    tables = list(json_tables(obj))
    ledger = isinstance(obj, dict) and BACKDOORS_KEYS <= set(obj)
    return Decoded("json", tables, obj=obj, ledger=ledger, note=None if tables else "no id field")


def _jsonl(text: str, fmt: str) -> Decoded:
    records: list[dict] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(value, dict):
            records.append(value)
    if not records:
        if fmt == "json":
            return Decoded("json", error="cannot be read as JSON or JSON Lines")
        return Decoded("jsonl", note="no JSON object" if not bad else "no readable line")
    tables = list(json_tables(records))
    return Decoded("jsonl", tables, note=None if tables else "no id field")


def _npy(blob: Blob) -> Decoded:
    stem = PurePosixPath(blob.name).name.lower().removesuffix(".npy")
    with blob.open() as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            f.seek(0)
            arr = np.load(f, allow_pickle=False)
            shape, dtype = arr.shape, arr.dtype

        def load() -> np.ndarray:
            f.seek(0)
            return np.load(f, allow_pickle=False)

        if dtype.hasobject:
            return Decoded("npy", note="holds Python objects: not decoded")
        if dtype.names:
            arr = load().reshape(-1)
            return Decoded("npy", [("fields", {n: arr[n] for n in dtype.names}, "", False)])
        if dtype.kind in "iu":
            if len(shape) == 2 and shape[1] in (2, 3):
                arr = load()
                cols = {"user": arr[:, 0], "item": arr[:, 1]}
                if shape[1] == 3:
                    cols["timestamp"] = arr[:, 2]
                return Decoded("npy", [("(user, item) index pairs", cols, "", False)])
            if len(shape) == 1:
                entity = _named_entity(stem)
                if entity:
                    return Decoded("npy", [("index list", {entity: load()}, "", False)])
                return Decoded("npy", note="1-D integer array whose name says neither users nor items")
            return Decoded("npy", note=f"integer array of shape {tuple(shape)}: not an id list")
        if dtype.kind == "f" and len(shape) == 2:
            return Decoded("npy", feature_rows=int(shape[0]), note="float matrix (item features in a dataset folder)")
        return Decoded("npy", note="no ids")


def _named_entity(name: str) -> str | None:
    """`user` or `item` when a name says one of them (and not both)."""
    low = name.lower()
    has_user, has_item = "user" in low, "item" in low
    return "user" if has_user and not has_item else "item" if has_item and not has_user else None


def _safetensors(blob: Blob) -> Decoded:
    with blob.open() as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        tables = []
        for name, info in header.items():
            if name == "__metadata__" or not isinstance(info, dict) or info.get("dtype") not in SAFETENSORS_INTS:
                continue
            entity = _named_entity(name)
            shape = info.get("shape") or []
            if entity is None or len(shape) != 1:
                continue
            start, end = info["data_offsets"]
            f.seek(8 + n + int(start))
            arr = np.frombuffer(f.read(int(end) - int(start)), dtype=SAFETENSORS_INTS[info["dtype"]])
            tables.append((f"tensor {name}", {entity: arr}, "", False))
    return Decoded("safetensors", tables, note=None if tables else "weights: no id tensor")


def _zip(blob: Blob, depth: int) -> Decoded:
    members: list[tuple[str, Decoded]] = []
    with blob.open() as f, zipfile.ZipFile(f) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                members.append(
                    (
                        info.filename,
                        Decoded("?", error=f"member larger than {MAX_MEMBER_BYTES >> 20} MiB: not unpacked"),
                    )
                )
                continue
            if depth >= ZIP_DEPTH:
                members.append((info.filename, Decoded("?", note="nested too deep: not unpacked")))
                continue
            member = Blob(PurePosixPath(info.filename).name, data=zf.read(info))
            members.append((info.filename, decode(member, depth + 1)))
    return Decoded("zip", members=members)


# ====================================================================== what one file holds


def assess(d: Decoded, s: Subjects, space: Space | None, feature_space: Space | None) -> Match:
    """Match a decoded file against the subjects. `space`: the id space of its index columns
    (None: unknown, index columns are not matched); `feature_space`: the space of the dataset
    folder whose item_map lists its rows (None: a float matrix is not counted)."""
    m = Match()
    for _label, cols, parent, listed in d.tables:
        m.add(match_columns(cols, s, space, parent, listed))
    if d.feature_rows is not None and feature_space is not None:
        k = int((feature_space.items < d.feature_rows).sum())
        if k:
            m.rows["items"] += k
            m.subjects["items"] = max(m.subjects["items"], k)
            m.keys.append("item (feature row)")
    for name, member in d.members:
        mm = assess(member, s, space, None)
        m.add(mm)
        if mm:
            m.members.append(name)
    return m


def _entry(where: dict, d: Decoded, m: Match) -> dict:
    out = dict(where)
    out["format"] = d.fmt
    out["rows"] = {k: int(m.rows[k]) for k in KINDS}
    out["subjects"] = {k: int(m.subjects[k]) for k in KINDS}
    out["columns"] = list(m.keys)
    if m.members:
        out["members"] = m.members
    return out


# ====================================================================== locations


@dataclass
class Location:
    """What the scan found in one location (see `Report`)."""

    name: str
    kind: str  # work tree, ledger, dvc cache, remote
    root: str
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    holding: list[dict] = field(default_factory=list)
    ledger_copies: list[dict] = field(default_factory=list)
    erased_approximately: list[dict] = field(default_factory=list)
    models_not_trained: int = 0
    models_undetermined: list[dict] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)
    index_unmatched: list[dict] = field(default_factory=list)
    not_decoded: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    not_scanned: str | None = None

    def as_dict(self) -> dict:
        for entries in (self.holding, self.ledger_copies, self.erased_approximately, self.models_undetermined):
            entries.sort(key=lambda e: (e.get("path") or e.get("in") or "~", e.get("object", "")))
        out: dict[str, Any] = {"location": self.name, "kind": self.kind, "root": self.root}
        if self.not_scanned is not None:
            out["not_scanned"] = self.not_scanned
            return out
        out.update(
            {
                "scanned": {"files": self.files, "bytes": self.bytes, "seconds": round(self.seconds, 2)},
                ("record_of_requests" if self.kind == "ledger" else "holding"): self.holding,
                "erased_approximately": self.erased_approximately,
                "models_not_trained_on_them": self.models_not_trained,
                "models_undetermined": self.models_undetermined,
                "unreadable": self.unreadable,
                "index_keyed_not_matched": self.index_unmatched,
                "not_decoded": dict(sorted(self.not_decoded.items())),
                "skipped": dict(sorted(self.skipped.items())),
            }
        )
        if self.kind != "ledger":
            out["ledger_copies"] = self.ledger_copies
        return out


@dataclass
class SplitInfo:
    """A split or batch-sets folder found in a location: its split.json, whether its
    train.parquet holds the subjects (None: not known), that file's sha256 and the folder's
    tree hash (tru.io.sha256_tree; computed on demand)."""

    where: dict
    meta: dict
    holds: bool | None
    train_sha256: str | None
    project: str | None
    tree: Callable[[], str | None]
    _tree: str | None = None
    _done: bool = False

    def tree_sha256(self) -> str | None:
        if not self._done:
            self._tree, self._done = self.tree(), True
        return self._tree

    @property
    def batch(self) -> str | None:
        b = self.meta.get("batch")
        return b.get("id") if isinstance(b, dict) else None


@dataclass
class Checkpoint:
    """A checkpoint.json found in a location, with where its weights are."""

    location: Location
    where: dict
    meta: dict
    project: str | None


class _Progress:
    """A progress bar on a terminal (as training shows one); a line every `every` files on a
    log otherwise. To stderr, so the summary on stdout stays clean."""

    def __init__(self, enabled: bool, every: int):
        self.enabled, self.every = enabled, max(1, every)
        self.bar: Any = None

    def start(self, what: str, total: int) -> None:
        self.what, self.total, self.n, self.nbytes, self.t0 = what, total, 0, 0, time.perf_counter()
        if self.enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=f"scan {what}", unit="file", leave=False, dynamic_ncols=True)

    def step(self, nbytes: int) -> None:
        self.n += 1
        self.nbytes += nbytes
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and (self.n % self.every == 0):
            print(
                f"scan: {self.what}: {self.n}/{self.total} files, {self.nbytes / 1e6:.1f} MB, "
                f"{time.perf_counter() - self.t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    def done(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _position_names(folder: Path) -> dict[str, str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_file() or p.is_symlink()) if folder.is_dir() else []
    return {n: f"file-{k}-of-{len(names)}" for k, n in enumerate(names, 1)}


def _cached_positions(cache: dict[Path, dict[str, str]], folder: Path) -> dict[str, str]:
    if folder not in cache:
        cache[folder] = _position_names(folder)
    return cache[folder]


def _redact(rel: PurePosixPath, names: Callable[[], dict[str, str]]) -> str:
    """A path to show: under `data/deletions/` (inbox, archive, quarantine) a file is named by
    its position in its folder, as the evidence manifest names request files."""
    parts = rel.parts
    if any(parts[k : k + 2] == ("data", "deletions") for k in range(len(parts) - 1)):
        return (rel.parent / names().get(rel.name, "file")).as_posix()
    return rel.as_posix()


def _in_ledger(parts: tuple[str, ...]) -> bool:
    return any(parts[k : k + 2] == ("data", "ledger") for k in range(len(parts) - 1))


def _sha256(blob: Blob) -> str:
    h = hashlib.sha256()
    with blob.open() as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _Scan:
    """One scan: the subjects, their main id space, and what every location found (the
    splits and checkpoints for the lineage rule come from all of them)."""

    def __init__(self, s: Subjects, root: Path, progress: _Progress, exclude: set[Path]):
        self.s, self.root, self.progress, self.exclude = s, root, progress, exclude
        self.main = Space.of(f"dataset {s.dataset or '?'} (ledger indices and maps)", s, s.user_index, s.item_index)
        self.splits: list[SplitInfo] = []
        self.checkpoints: list[Checkpoint] = []
        self.weights: dict[tuple[str, str], tuple[Location, dict]] = {}  # (location name, sha256) -> where

    def _classify(self, loc: Location, where: dict, d: Decoded, m: Match, ledger: bool) -> None:
        if d.error:
            loc.unreadable.append({**where, "format": d.fmt, "why": d.error})
            return
        skipped = [name for name, member in d.members if member.error]
        if skipped:  # an archive whose members could not all be read
            loc.unreadable.append({**where, "format": d.fmt, "why": f"{len(skipped)} member(s) could not be read"})
        if m.unmatched and not m:
            loc.index_unmatched.append({**where, "format": d.fmt})
        if m:
            (loc.ledger_copies if ledger and loc.kind != "ledger" else loc.holding).append(_entry(where, d, m))
        elif not d.tables and not d.members and d.feature_rows is None and d.note and d.fmt in NOT_DECODED:
            loc.not_decoded[d.fmt] += 1

    # ------------------------------------------------------------------ the work tree

    def work_tree(self) -> tuple[Location, Location]:
        root = self.root
        tree = Location("work tree", "work tree", root.as_posix())
        ledger = Location(LEDGER_NAME, "ledger", (root / paths.LEDGER).as_posix())
        files: list[Path] = []
        projects: set[Path] = set()
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            keep = []
            for sub in sorted(dirnames):
                if sub in SKIP_DIRS or (here == root and sub in ROOT_SKIP):
                    continue
                if (here / sub).is_symlink():
                    tree.skipped["symbolic link (not followed)"] += 1
                    continue
                keep.append(sub)
            dirnames[:] = keep
            if here != root and any(m in filenames for m in PROJECT_MARKERS):
                projects.add(here)
            for fn in sorted(filenames):
                p = here / fn
                if p.is_symlink():
                    tree.skipped["symbolic link (not followed)"] += 1
                elif p.resolve() in self.exclude:
                    continue
                elif p.is_file():
                    files.append(p)
        self.progress.start("work tree", len(files))
        t0 = time.perf_counter()
        maps_cache: dict[Path, Space | None] = {}
        split_meta_cache: dict[Path, dict | None] = {}
        names_cache: dict[Path, dict[str, str]] = {}
        train_results: dict[Path, tuple[bool | None, str]] = {}
        for p in files:
            rel = PurePosixPath(p.relative_to(root).as_posix())
            project = next((q for q in sorted(projects, key=lambda q: -len(q.parts)) if q in p.parents), None)
            loc = ledger if _in_ledger(rel.parts) else tree
            blob = Blob(p.name, path=p)
            size = blob.size
            loc.files += 1
            loc.bytes += size
            self.progress.step(size)
            where = {"path": _redact(rel, functools.partial(_cached_positions, names_cache, p.parent))}
            d = decode(blob)
            folder = p.parent
            fspace = self._folder_space(folder, maps_cache, rel.parent.as_posix())
            smeta = self._split_meta(folder, split_meta_cache)
            other_dataset = bool(smeta and self.s.dataset and smeta.get("name") not in (None, self.s.dataset))
            space = fspace or (None if project is not None or other_dataset else self.main)
            m = assess(d, self.s, space, fspace)
            # in the work tree only data/ledger/ is the ledger: a copy of it elsewhere is a copy
            self._classify(loc, where, d, m, ledger=loc is ledger)
            if p.name == "train.parquet" and smeta is not None:
                holds = (
                    None
                    if space is None or d.error
                    else bool(m.rows["users"] or m.rows["items"] or m.rows["interactions"])
                )
                train_results[folder] = (holds, _sha256(blob))
            if d.fmt == "safetensors":
                self.weights[(tree.name, _sha256(blob))] = (tree, {"path": rel.as_posix()})
            if _is_checkpoint(d, p.name):
                where_ckpt = {"path": rel.parent.as_posix()}
                self.checkpoints.append(
                    Checkpoint(tree, where_ckpt, d.obj, None if project is None else project.as_posix())
                )
        for folder, (holds, sha) in train_results.items():
            meta = split_meta_cache.get(folder) or {}
            project = next((q for q in sorted(projects, key=lambda q: -len(q.parts)) if q in folder.parents), None)
            self.splits.append(
                SplitInfo(
                    {"location": "work tree", "path": folder.relative_to(root).as_posix()},
                    meta,
                    holds,
                    sha,
                    None if project is None else project.as_posix(),
                    tree=functools.partial(_tree_sha, folder),
                )
            )
        self.progress.done()
        tree.seconds = ledger.seconds = time.perf_counter() - t0
        return tree, ledger

    def _folder_space(self, folder: Path, cache: dict[Path, Space | None], shown: str) -> Space | None:
        if folder not in cache:
            um, im = folder / "user_map.tsv", folder / "item_map.tsv"
            if um.is_file() or im.is_file():
                cache[folder] = folder_space(
                    shown, self.s, um.read_bytes() if um.is_file() else None, im.read_bytes() if im.is_file() else None
                )
            else:
                cache[folder] = None
        return cache[folder]

    @staticmethod
    def _split_meta(folder: Path, cache: dict[Path, dict | None]) -> dict | None:
        if folder not in cache:
            meta = None
            if (folder / "split.json").is_file() and (folder / "train.parquet").is_file():
                try:
                    value = json.loads((folder / "split.json").read_text())
                    meta = value if isinstance(value, dict) else None
                except (ValueError, OSError):
                    meta = None
            cache[folder] = meta
        return cache[folder]

    # ------------------------------------------------------------------ a DVC cache or local remote

    def store(self, name: str, kind: str, store_root: Path, tracked: dict[str, str]) -> Location:
        """Every object of a DVC cache or local remote folder (files/md5/xx/yyyy, or the older
        xx/yyyy layout); `.dir` listings name their members, `tracked` (md5 -> path in the work
        tree, from dvc.lock and the .dvc files) names what the work tree knows."""
        loc = Location(name, kind, store_root.as_posix())
        objects: dict[str, Path] = {}
        for dirpath, dirnames, filenames in os.walk(store_root):
            dirnames[:] = sorted(d for d in dirnames if d != "tmp" and not (Path(dirpath) / d).is_symlink())
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                if p.is_symlink() or not p.is_file():
                    loc.skipped["not a regular file"] += 1
                    continue
                parent = p.parent.name
                oid = (
                    parent + fn
                    if re.fullmatch(r"[0-9a-f]{2}", parent) and re.fullmatch(r"[0-9a-f]{20,}(\.dir)?", fn)
                    else p.relative_to(store_root).as_posix()
                )
                objects[oid] = p
        # .dir listings: which folder each object belongs to, and under which name
        listing: dict[str, list[tuple[str, str]]] = {}
        member_of: dict[str, list[tuple[str, str]]] = {}
        for oid, p in objects.items():
            if oid.endswith(".dir"):
                try:
                    entries = json.loads(p.read_text())
                    rows = [(str(e["md5"]), str(e["relpath"])) for e in entries]
                except (ValueError, KeyError, TypeError, OSError):
                    continue
                listing[oid] = rows
                for md5, relpath in rows:
                    member_of.setdefault(md5, []).append((oid, relpath))

        def dir_path(dir_oid: str) -> str | None:
            return tracked.get(dir_oid) or tracked.get(dir_oid.removesuffix(".dir"))

        def members_named(dir_oid: str) -> dict[str, str]:
            return {relpath: md5 for md5, relpath in listing.get(dir_oid, [])}

        def shown(oid: str) -> dict:
            where: dict[str, Any] = {"object": oid}
            path = tracked.get(oid)
            if path is not None:
                where["path"] = _redact(PurePosixPath(path), lambda: {PurePosixPath(path).name: "file"})
            elif oid in member_of:
                dir_oid, relpath = member_of[oid][0]
                rel = PurePosixPath(relpath)
                siblings = sorted(
                    PurePosixPath(r).name for _, r in listing[dir_oid] if PurePosixPath(r).parent == rel.parent
                )
                positions = {n: f"file-{k}-of-{len(siblings)}" for k, n in enumerate(siblings, 1)}
                base = dir_path(dir_oid)
                if base:
                    where["path"] = _redact(PurePosixPath(base) / rel, lambda: positions)
                else:  # a folder the checkout no longer names: only the pipeline's own file names are shown
                    name_ = rel.name if PIPELINE_NAMES.fullmatch(rel.name) else positions.get(rel.name, "file")
                    where["in"] = f"{dir_oid}/{(rel.parent / name_).as_posix()}"
            return where

        spaces: dict[str, Space | None] = {}
        split_dirs: dict[str, dict] = {}
        dir_oid: str | None
        for dir_oid in listing:
            named = members_named(dir_oid)
            um, im = named.get("user_map.tsv"), named.get("item_map.tsv")
            if (um and um in objects) or (im and im in objects):
                spaces[dir_oid] = folder_space(
                    f"{name} {dir_oid}",
                    self.s,
                    objects[um].read_bytes() if um and um in objects else None,
                    objects[im].read_bytes() if im and im in objects else None,
                )
            sj = named.get("split.json")
            if sj and sj in objects and "train.parquet" in named:
                try:
                    meta = json.loads(objects[sj].read_text())
                except (ValueError, OSError):
                    meta = None
                if isinstance(meta, dict):
                    split_dirs[dir_oid] = meta

        self.progress.start(name, len(objects))
        t0 = time.perf_counter()
        sha_of: dict[str, str] = {}
        train_holds: dict[str, bool | None] = {}
        for oid, p in objects.items():
            hint = ""
            dir_oid = None
            if oid in member_of:
                dir_oid, relpath = member_of[oid][0]
                hint = PurePosixPath(relpath).name
            elif oid in tracked:
                hint = PurePosixPath(tracked[oid]).name
            blob = Blob(hint, path=p)
            size = blob.size
            loc.files += 1
            loc.bytes += size
            self.progress.step(size)
            sha = _sha256(blob)
            sha_of[oid] = sha
            where = shown(oid)
            if oid.endswith(".dir"):
                continue  # a listing of names and hashes
            d = decode(blob)
            fspace = spaces.get(dir_oid) if dir_oid else None
            smeta = split_dirs.get(dir_oid) if dir_oid else None
            other_dataset = bool(smeta and self.s.dataset and smeta.get("name") not in (None, self.s.dataset))
            space = fspace or (None if other_dataset else self.main)
            m = assess(d, self.s, space, fspace)
            path = where.get("path", "")
            ledger = d.ledger or _in_ledger(PurePosixPath(path).parts)
            self._classify(loc, where, d, m, ledger=ledger)
            if hint == "train.parquet" and smeta is not None and dir_oid is not None:
                train_holds[dir_oid] = None if space is None or d.error else bool(m)
            if d.fmt == "safetensors":
                self.weights[(name, sha)] = (loc, where)
            if _is_checkpoint(d, hint):
                self.checkpoints.append(Checkpoint(loc, where, d.obj, None))
        for dir_oid, meta in split_dirs.items():
            named = members_named(dir_oid)

            def tree(named: dict[str, str] = named) -> str | None:
                h = hashlib.sha256()
                for relpath in sorted(named, key=PurePosixPath):
                    if named[relpath] not in sha_of:
                        return None
                    h.update(relpath.encode())
                    h.update(b"\0")
                    h.update(sha_of[named[relpath]].encode())
                return h.hexdigest()

            where = {"location": name, "object": dir_oid}
            if dir_path(dir_oid):
                where["path"] = str(dir_path(dir_oid))
            self.splits.append(
                SplitInfo(where, meta, train_holds.get(dir_oid), sha_of.get(named["train.parquet"]), None, tree=tree)
            )
        self.progress.done()
        loc.seconds = time.perf_counter() - t0
        return loc

    # ------------------------------------------------------------------ models

    def models(self) -> None:
        """Decide each checkpoint found (the module docstring's rule) and file it in its
        location: holding (trained on them, or undetermined on their dataset), erased
        approximately, or not trained on them (counted)."""
        linked: set[tuple[str, str]] = set()
        for c in self.checkpoints:
            verdict, basis, dataset = self._verdict(c)
            entry = {**c.where, "format": "checkpoint", "model": verdict, "basis": basis}
            key = (c.location.name, str(c.meta.get("weights_sha256")))
            if key in self.weights:
                linked.add(key)
                if "object" in self.weights[key][1]:
                    entry["weights"] = self.weights[key][1]["object"]
            elif "path" in c.where and "object" not in c.where:  # a work-tree folder: the weights beside it
                beside = f"{c.where['path']}/model.safetensors"
                linked |= {k for k, (_loc, w) in self.weights.items() if w.get("path") == beside}
            counted = verdict == "trained_on" or (
                verdict == "undetermined" and dataset is not None and dataset == self.s.dataset
            )
            if counted:
                c.location.holding.append(entry)
            elif verdict == "erased_approximately":
                c.location.erased_approximately.append(entry)
            elif verdict == "undetermined":
                c.location.models_undetermined.append(entry)
            else:
                c.location.models_not_trained += 1
        for key, (loc, where) in self.weights.items():
            if key not in linked:
                loc.models_undetermined.append(
                    {
                        **where,
                        "format": "safetensors",
                        "model": "undetermined",
                        "basis": "weights without a checkpoint.json that names them (a training snapshot, or a model "
                        "from elsewhere): no lineage to read",
                    }
                )

    def _find_sets(self, batch: str, project: str | None) -> SplitInfo | None:
        same = [sp for sp in self.splits if sp.batch == batch and sp.project == project]
        anywhere = [sp for sp in self.splits if sp.batch == batch] if project is None else []
        for sp in same + anywhere:
            if sp.holds is not None:
                return sp
        both = same + anywhere
        return both[0] if both else None

    def _held_before(self, sets: SplitInfo) -> bool | None:
        """Whether the data a batch's model chain started from held the subjects: the prior
        sets (found by their train.parquet's sha256, `prior_train_sha256`), back to the split.
        None when a link of the chain is in no scanned location."""
        cur, seen = sets, [sets]
        while True:
            b = cur.meta.get("batch")
            prior = b.get("prior_train_sha256") if isinstance(b, dict) else None
            if not prior:
                return False  # the split the chain started from, which does not hold them
            nxt = next(
                (
                    sp
                    for sp in self.splits
                    if sp.train_sha256 == prior and sp.holds is not None and sp.batch != cur.batch and sp not in seen
                ),
                None,
            )
            if nxt is None:
                return None
            if nxt.holds:
                return True
            cur = nxt
            seen.append(nxt)

    def _verdict(self, c: Checkpoint) -> tuple[str, str, str | None]:
        meta = c.meta
        data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
        batch = meta.get("batch")
        method = meta.get("method")
        if isinstance(batch, str) and batch:
            sets = self._find_sets(batch, c.project)
            if sets is None:
                return "undetermined", f"the sets of batch {batch} (its training data) are in no scanned location", None
            name = sets.meta.get("name")
            where = sets.where.get("path") or sets.where.get("object")
            if self.s.dataset and name and name != self.s.dataset:
                return "not_trained_on", f"batch {batch} of another dataset ({name})", name
            if sets.holds is None:
                return (
                    "undetermined",
                    f"whether batch {batch}'s sets ({where}) hold them is not known (no id space)",
                    name,
                )
            if sets.holds:
                return "trained_on", f"batch {batch}'s retain set ({where}), its training data, holds them", name
            if method in EXACT_METHODS:
                return (
                    "not_trained_on",
                    f"an exact {method} on batch {batch}'s retain set, which does not hold them",
                    name,
                )
            if not method:
                return "undetermined", f"checkpoint.json records no method for batch {batch}", name
            before = self._held_before(sets)
            if before is False:
                return (
                    "not_trained_on",
                    f"no data its lineage started from (batch {batch}'s sets and their priors) holds them",
                    name,
                )
            note = "" if before else " (the earlier data of its lineage is not in the scanned locations)"
            return (
                "erased_approximately",
                f"updated by {method} (approximate) from a model trained on them; batch {batch}'s retain set no longer "
                f"holds them{note}; reports/{batch}/audit.json measures what remains",
                name,
            )
        tree = data.get("split_sha256") if data else None
        dataset = data.get("dataset") if data else None
        if tree:
            if self.s.dataset and dataset and dataset != self.s.dataset:
                return "not_trained_on", f"trained on another dataset ({dataset})", dataset
            candidates = sorted(self.splits, key=lambda sp: (sp.project != c.project, sp.batch is not None))
            split = next((sp for sp in candidates if sp.tree_sha256() == tree), None)
            if split is None:
                return (
                    "undetermined",
                    f"the split it was trained on (tree sha256 {str(tree)[:12]}…) is in no scanned location",
                    dataset,
                )
            where = split.where.get("path") or split.where.get("object")
            if split.holds is None:
                return "undetermined", f"whether its split ({where}) holds them is not known (no id space)", dataset
            if split.holds:
                return "trained_on", f"trained on the split {where}, whose train.parquet holds them", dataset
            return "not_trained_on", f"trained on the split {where}, which does not hold them", dataset
        return "undetermined", "checkpoint.json records no data lineage", dataset


def _is_checkpoint(d: Decoded, name: str) -> bool:
    """A checkpoint.json (tru.checkpoint): the model's config and, normally, its weights' hash."""
    obj = d.obj
    return (
        d.fmt == "json"
        and isinstance(obj, dict)
        and isinstance(obj.get("model"), dict)
        and ("weights_sha256" in obj or name == CHECKPOINT_META)
    )


def _tree_sha(folder: Path) -> str | None:
    from tru.io import sha256_tree

    try:
        return sha256_tree(folder)
    except OSError:
        return None


# ====================================================================== DVC config


def dvc_tracked(root: Path) -> dict[str, str]:
    """md5 (a file's, or a folder's `<md5>.dir`) -> its path, from the work tree's dvc.lock and
    .dvc files (the versions the checkout records; older versions are named by hash only)."""
    import yaml

    out: dict[str, str] = {}

    def take(entries: Any, base: PurePosixPath) -> None:
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and e.get("md5") and e.get("path"):
                out.setdefault(str(e["md5"]), (base / str(e["path"])).as_posix())

    lock = root / "dvc.lock"
    if lock.is_file():
        try:
            data = yaml.safe_load(lock.read_text()) or {}
        except (yaml.YAMLError, OSError):
            data = {}
        for stage in (data.get("stages") or {}).values() if isinstance(data, dict) else []:
            if isinstance(stage, dict):
                take(stage.get("outs"), PurePosixPath())
                take(stage.get("deps"), PurePosixPath())
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not (here == root and d in ROOT_SKIP)]
        for fn in filenames:
            if fn.endswith(".dvc"):
                try:
                    data = yaml.safe_load((here / fn).read_text()) or {}
                except (yaml.YAMLError, OSError):
                    continue
                if isinstance(data, dict):
                    take(data.get("outs"), PurePosixPath(here.relative_to(root).as_posix()))
    return out


def dvc_locations(root: Path) -> tuple[Path | None, list[dict]]:
    """The DVC cache folder and the remotes of `.dvc/config` + `.dvc/config.local`: (cache,
    [{name, url, path (a local folder) or scheme (anything else)}]). No `.dvc`: (None, [])."""
    dvc = root / ".dvc"
    if not dvc.is_dir():
        return None, []
    from configobj import ConfigObj, ConfigObjError

    merged: dict[str, dict] = {}
    for name in ("config", "config.local"):
        path = dvc / name
        if not path.is_file():
            continue
        try:
            conf = ConfigObj(str(path), encoding="utf-8", list_values=False)
        except (ConfigObjError, OSError, UnicodeError) as err:
            raise DataError(f"{path}: cannot be read as a DVC config ({err.__class__.__name__})") from None
        for section, values in conf.items():
            if isinstance(values, Mapping):
                merged.setdefault(section.strip(), {}).update(values)
    cache_dir = (merged.get("cache") or {}).get("dir")
    cache = (dvc / cache_dir).resolve() if cache_dir else dvc / "cache"
    remotes = []
    for section, values in merged.items():
        m = re.fullmatch(r'remote\s+"(.+)"', section)
        if not m:
            continue
        url = str(values.get("url", ""))
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
        if scheme and scheme.group(1).lower() != "file":
            remotes.append({"name": m.group(1), "url": url, "scheme": scheme.group(1).lower()})
        else:
            local = url[len("file://") :] if scheme else url
            remotes.append({"name": m.group(1), "url": url, "path": (dvc / local).resolve() if local else None})
    return cache, remotes


# ====================================================================== the scan


def scan(
    subjects: Subjects,
    root: str | Path = ".",
    *,
    cache: bool = True,
    remotes: bool = True,
    exclude: Iterable[str | Path] = (),
    progress: bool = False,
    every: int = 1000,
) -> dict:
    """Scan the work tree at `root`, its DVC cache (`cache`) and its local DVC remotes
    (`remotes`) for `subjects`; returns the report (module docstring): `subjects` (counts),
    `locations` (each: what holds them, ledger copies, models erased approximately, what could
    not be read or matched), `totals` and `holds_subjects` (anything outside the ledger).
    `exclude`: files not to read (the report being written). `progress`: a bar on a terminal,
    else a line every `every` files, on stderr."""
    t0 = time.perf_counter()
    root = Path(root).resolve()
    run = _Scan(subjects, root, _Progress(progress, every), {Path(p).resolve() for p in exclude})
    tree, ledger = run.work_tree()
    locations = [tree, ledger]
    store_dir, remote_list = dvc_locations(root)
    tracked = dvc_tracked(root) if store_dir is not None else {}
    if cache and store_dir is not None:
        if store_dir.is_dir():
            locations.append(run.store("dvc cache", "dvc cache", store_dir, tracked))
        else:
            locations.append(Location("dvc cache", "dvc cache", store_dir.as_posix(), not_scanned="no cache folder"))
    if remotes:
        for r in remote_list:
            name = f"remote {r['name']}"
            if "scheme" in r:
                locations.append(Location(name, "remote", r["url"], not_scanned=f"not scanned: {r['scheme']}"))
            elif r["path"] is None or not Path(r["path"]).is_dir():
                locations.append(
                    Location(
                        name, "remote", str(r["path"] or r["url"]), not_scanned="not scanned: the folder does not exist"
                    )
                )
            else:
                locations.append(run.store(name, "remote", Path(r["path"]), tracked))
    run.models()
    totals: dict[str, Any] = {
        "holding": sum(len(loc.holding) for loc in locations if loc.kind != "ledger"),
        "ledger_files": len(ledger.holding),
        "ledger_copies": sum(len(loc.ledger_copies) for loc in locations),
        "erased_approximately": sum(len(loc.erased_approximately) for loc in locations),
        "unreadable": sum(len(loc.unreadable) for loc in locations),
        "index_keyed_not_matched": sum(len(loc.index_unmatched) for loc in locations),
        "not_scanned": [loc.name for loc in locations if loc.not_scanned],
    }
    return {
        "subjects": {
            "sources": subjects.sources,
            "dataset": subjects.dataset,
            **subjects.counts(),
            "resolved_to_indices": subjects.resolved(),
        },
        "locations": [loc.as_dict() for loc in locations],
        "totals": totals,
        "holds_subjects": totals["holding"] > 0,
        "seconds": round(time.perf_counter() - t0, 2),
    }


# ====================================================================== the summary


def _describe(e: dict) -> str:
    where = e.get("path") or e.get("in") or e.get("object", "?")
    if e.get("path") and e.get("object"):
        where = f"{e['path']} (object {e['object'][:12]}…)"
    elif e.get("object") and not e.get("path"):
        where = f"object {e['object'][:12]}…" + (f" ({e['in']})" if e.get("in") else "")
    if e.get("format") == "checkpoint":
        return f"{where}: model {VERDICTS.get(e['model'], e['model'])}: {e['basis']}"
    rows = e.get("rows", {})
    counts = ", ".join(f"{k} {rows[k]:,} rows" for k in KINDS if rows.get(k))
    return f"{where}: {e.get('format')}, {counts}"


VERDICTS = {
    "trained_on": "trained on them",
    "erased_approximately": "erased them approximately",
    "not_trained_on": "not trained on them",
    "undetermined": "lineage undetermined",
}


def summary_lines(report: dict, limit: int = 8) -> list[str]:
    """A few lines per location and the totals, for a person; counts only, never an id."""
    s = report["subjects"]
    res = s["resolved_to_indices"]
    out = [
        f"subjects ({', '.join(s['sources'])}; dataset {s['dataset'] or 'unknown'}): {s['users']} users, "
        f"{s['items']} items, {s['interactions']} interactions by raw id; with a dataset index: {res['users']} users, "
        f"{res['items']} items, {res['interactions']} interactions"
    ]
    missing = {k: s[k] - res[k] for k in KINDS if s[k] > res[k]}
    if missing:
        out.append(
            "  note: "
            + ", ".join(f"{n} {k}" for k, n in missing.items())
            + " have no dataset index (not in the ledger's record or the dataset's maps): files keyed by index "
            "cannot be matched for them, only files of raw ids"
        )
    for loc in report["locations"]:
        if "not_scanned" in loc:
            out.append(f"{loc['location']} ({loc['root']}): {loc['not_scanned']}")
            continue
        sc = loc["scanned"]
        head = (
            f"{loc['location']} ({loc['root']}): {sc['files']:,} files, {sc['bytes'] / 1e6:,.1f} MB, "
            f"{sc['seconds']:.1f} s; "
        )
        if loc["kind"] == "ledger":
            n = len(loc["record_of_requests"])
            out.append(
                head + f"{n} {'holds' if n == 1 else 'hold'} the subjects' raw ids by design, "
                "the record of what was asked (not counted)"
            )
            continue
        else:
            extra = []
            if loc.get("ledger_copies"):
                extra.append(f"{len(loc['ledger_copies'])} version(s) of the ledger (not counted)")
            if loc["erased_approximately"]:
                extra.append(f"{len(loc['erased_approximately'])} model(s) erased them approximately (not counted)")
            n = len(loc["holding"])
            out.append(
                head + f"{n} {'holds' if n == 1 else 'hold'} the subjects" + ("; " + "; ".join(extra) if extra else "")
            )
        shown = loc["holding"] + loc["erased_approximately"]
        for e in shown[:limit]:
            out.append(f"  {_describe(e)}")
        if len(shown) > limit:
            out.append(f"  ... and {len(shown) - limit} more (the JSON report, --out, lists them all)")
        if loc["models_undetermined"]:
            out.append(
                f"  {len(loc['models_undetermined'])} model(s) of another or unknown dataset whose lineage is "
                "undetermined (not counted; listed in the report)"
            )
        if loc["unreadable"]:
            out.append(
                f"  {len(loc['unreadable'])} could not be read: the scan cannot vouch for them (listed in the report)"
            )
        if loc["index_keyed_not_matched"]:
            out.append(
                f"  {len(loc['index_keyed_not_matched'])} keyed by index in an unknown id space "
                "(another project or dataset): not matched (listed in the report)"
            )
    t = report["totals"]
    verdict = (
        f"{t['holding']} file(s) or object(s) outside the ledger hold the subjects"
        if report["holds_subjects"]
        else "nothing outside the ledger holds the subjects"
    )
    out.append(f"total: {verdict}; scanned in {report['seconds']:.1f} s")
    return out
