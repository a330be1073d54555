import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tru.config import SplitParams, SyntheticParams
from tru.data.dataset import load_split
from tru.data.mmrec import load_folder, write_folder
from tru.data.split import make_split, shadow_rows
from tru.data.synth import synthesize
from tru.data.validate import validate_split
from tru.errors import ValidationFailed
from tru.io import read_json, sha256_file

PARAMS = SplitParams(min_rating=4, fractions=(0.8, 0.1, 0.1), fraction_tolerance=0.03)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    p = SyntheticParams(
        n_users=120,
        n_items=150,
        n_interactions=3000,
        latent_dim=8,
        popularity_exponent=1.0,
        modalities={"image": {"dim": 16, "noise": 0.5}, "text": {"dim": 8, "noise": 1.0}},
    )
    synthesize(p, 11, root / "ds", "syn")
    folder = load_folder(root / "ds")
    meta = make_split(folder, PARAMS, 0, root / "split", root / "ds")
    return folder, meta, root


def read(split_dir, name):
    return pd.read_parquet(split_dir / f"{name}.parquet")


def hand_folder(path, inter: pd.DataFrame, n_items: int, n_users: int | None = None):
    n_users = n_users or int(inter["userID"].max()) + 1
    item_map = pd.DataFrame(
        {"itemID": range(n_items), "raw_id": [f"item{i + 100}" for i in range(n_items)], "title": "t"}
    )
    user_map = pd.DataFrame({"userID": range(n_users), "raw_id": [f"user{u + 100}" for u in range(n_users)]})
    feats = {"image": np.arange(n_items * 3, dtype=np.float32).reshape(n_items, 3)}
    write_folder(path, "hand", inter, feats, item_map, user_map)
    return load_folder(path)


def test_split_files_match_the_reader(synthetic):
    folder, meta, root = synthetic
    data = load_split(root / "split")
    assert (data.n_users, data.n_items, data.name) == (120, 150, "syn")
    assert data.modalities == ["image", "text"]
    assert [len(data.pairs(s)) for s in ("train", "valid", "test", "shadow")] == [
        meta["counts"][s] for s in ("train", "valid", "test", "shadow")
    ]
    for s in ("train", "valid", "test", "shadow"):
        table = pq.read_table(root / "split" / f"{s}.parquet")
        assert table.schema.names == ["user", "item", "timestamp"]
        assert all(str(t) == "int64" for t in table.schema.types)
        assert table.schema.metadata is None or b"pandas" not in table.schema.metadata
        df = table.to_pandas()
        assert df.equals(df.sort_values(["user", "timestamp", "item"]).reset_index(drop=True))
    on_disk = read_json(root / "split" / "split.json")
    assert on_disk == meta
    assert meta["dataset_dir"] == (root / "ds").as_posix()
    assert meta["modalities"] == {"image": 16, "text": 8}
    assert meta["sha256"] == {
        "syn.inter": sha256_file(root / "ds" / "syn.inter"),
        "image_feat.npy": sha256_file(root / "ds" / "image_feat.npy"),
        "text_feat.npy": sha256_file(root / "ds" / "text_feat.npy"),
    }
    assert meta["recipe"] == {
        "method": "chronological",
        "min_rating": 4,
        "fractions": [0.8, 0.1, 0.1],
        "seed": 0,
        "shadow_share": PARAMS.shadow_share,
    }


def test_chronological_per_user(synthetic):
    _, _, root = synthetic
    train = read(root / "split", "train").groupby("user")["timestamp"].max()
    for s in ("valid", "test"):
        held = read(root / "split", s).groupby("user")["timestamp"].min()
        assert (held >= train.reindex(held.index)).all()
    valid_last = read(root / "split", "valid").groupby("user")["timestamp"].max()
    test_first = read(root / "split", "test").groupby("user")["timestamp"].min()
    both = valid_last.index.intersection(test_first.index)
    assert (test_first[both] >= valid_last[both]).all()


def test_fractions_and_rating_filter(synthetic):
    folder, meta, root = synthetic
    # the fractions are those of the split before its shadow pairs leave the training rows
    realised = dict(meta["fractions"], train=meta["fractions"]["train"] + meta["fractions"]["shadow"])
    for s, target in zip(("train", "valid", "test"), PARAMS.fractions):
        assert abs(realised[s] - target) < 0.03
    inter = folder.interactions
    positives = inter[inter["rating"] >= 4]
    assert sum(meta["counts"].values()) == len(positives)
    assert meta["filtering"]["below_min_rating"] == int((inter["rating"] < 4).sum()) > 0
    kept = pd.concat([read(root / "split", s) for s in ("train", "valid", "test", "shadow")])
    low = set(map(tuple, inter.loc[inter["rating"] < 4, ["userID", "itemID"]].to_numpy()))
    assert not low & set(map(tuple, kept[["user", "item"]].to_numpy()))


def test_same_seed_identical_bytes(synthetic, tmp_path):
    folder, _, root = synthetic
    make_split(folder, PARAMS, 0, tmp_path / "again", root / "ds")
    for name in ("train.parquet", "valid.parquet", "test.parquet", "shadow.parquet", "split.json"):
        assert (tmp_path / "again" / name).read_bytes() == (root / "split" / name).read_bytes(), name


def test_per_user_sizes_ties_and_duplicates(tmp_path):
    rows = []
    rows += [(0, 0, 5, 100)]  # one interaction: train only
    rows += [(1, i, 5, 100 + i) for i in range(5)]  # five: 4 / 0 / 1 (round half to even)
    rows += [(2, i, 5, 100 + i) for i in range(10)]  # ten: 8 / 1 / 1
    rows += [(3, i, 4, 500) for i in range(10)]  # all tied: the seed decides the order
    rows += [(4, 1, 5, 100), (4, 1, 5, 200), (4, 2, 5, 150), (4, 3, 1, 300)]  # repeat and a low rating
    inter = pd.DataFrame(rows, columns=["userID", "itemID", "rating", "timestamp"])
    folder = hand_folder(tmp_path / "ds", inter, n_items=12)
    loose = SplitParams(min_rating=4, fractions=(0.8, 0.1, 0.1), fraction_tolerance=0.5)
    meta = make_split(folder, loose, 0, tmp_path / "s0", "ds")
    # the recipe's training rows: train and the shadow pairs that leave it afterwards
    training = pd.concat([read(tmp_path / "s0", "train"), read(tmp_path / "s0", "shadow")])
    sizes = {s: read(tmp_path / "s0", s).groupby("user").size() for s in ("valid", "test", "shadow")}
    assert training.groupby("user").size().to_dict() == {0: 1, 1: 4, 2: 8, 3: 8, 4: 2}
    assert sizes["valid"].to_dict() == {2: 1, 3: 1}
    assert sizes["test"].to_dict() == {1: 1, 2: 1, 3: 1}
    assert sizes["shadow"].to_dict() == {1: 1, 2: 1, 3: 1, 4: 1}  # at least one; none of a single row
    assert meta["filtering"] == {"input_rows": 30, "below_min_rating": 1, "duplicate_pairs_dropped": 1}
    train4 = training.query("user == 4")
    assert train4.set_index("item")["timestamp"].to_dict() == {1: 100, 2: 150}  # earliest occurrence kept
    tied_test = set()
    for seed in range(8):
        make_split(folder, loose, seed, tmp_path / f"t{seed}", "ds")
        tied_test.add(int(read(tmp_path / f"t{seed}", "test").query("user == 3")["item"].iloc[0]))
    assert len(tied_test) > 1


def test_x_label_is_used_as_given(tmp_path):
    rows = [
        (u, i, 1 if i == 0 else 5, 1000 - i, 0 if i < 2 else (1 if i == 2 else 2)) for u in range(4) for i in range(4)
    ]
    inter = pd.DataFrame(rows, columns=["userID", "itemID", "rating", "timestamp", "x_label"])
    folder = hand_folder(tmp_path / "ds", inter, n_items=6)
    assert folder.has_split
    meta = make_split(folder, PARAMS, 0, tmp_path / "split", "ds")  # 50/25/25: no fraction check
    assert meta["counts"] == {"train": 4, "valid": 4, "test": 4, "shadow": 4}  # a shadow pair of 2 training rows
    assert meta["recipe"] == {"method": "x_label", "shadow_share": PARAMS.shadow_share}
    train = pd.concat([read(tmp_path / "split", "train"), read(tmp_path / "split", "shadow")])
    assert set(train["item"]) == {0, 1}  # the rating-1 rows stay: no filter on a given split
    assert set(read(tmp_path / "split", "valid")["item"]) == {2}
    # the given split is not chronological; it is kept anyway
    assert (read(tmp_path / "split", "test")["timestamp"] < train["timestamp"].min()).all()


def test_shadow_pairs_are_a_random_share_of_each_users_training_rows():
    rng = np.random.default_rng(0)
    sizes = {0: 1, 1: 2, 2: 3, 3: 10, 4: 40, 5: 100, 6: 7}
    train = pd.DataFrame(
        {"user": np.repeat(list(sizes), list(sizes.values())), "item": rng.permutation(sum(sizes.values()))}
    )
    mask = shadow_rows(train, 0.05, seed=3)
    taken = train[mask].groupby("user").size().reindex(list(sizes), fill_value=0).to_dict()
    # max(1, round(share * n)) of a user with n >= 2 rows, never all of them; none of a single row
    assert taken == {0: 0, 1: 1, 2: 1, 3: 1, 4: 2, 5: 5, 6: 1}
    assert all(taken[u] < n for u, n in sizes.items() if n >= 2)
    assert np.array_equal(mask, shadow_rows(train, 0.05, seed=3))  # seeded
    # random, not the first or last rows: another seed takes other rows of the same sizes
    other = shadow_rows(train, 0.05, seed=4)
    assert not np.array_equal(mask, other) and train[other].groupby("user").size().to_dict() == {
        u: k for u, k in taken.items() if k
    }
    assert not shadow_rows(train, 0.0, seed=3).any()
    # any row of a long history can be drawn (not only its first or last ones)
    draws = np.stack([shadow_rows(train, 0.05, seed=s) for s in range(200)])
    assert draws[:, train["user"] == 5].any(0).all()


def test_split_writes_shadow_pairs_outside_train_and_none_for_canary_users(tmp_path):
    from types import SimpleNamespace

    p = SyntheticParams(
        n_users=60,
        n_items=80,
        n_interactions=1500,
        latent_dim=8,
        popularity_exponent=1.0,
        modalities={"image": {"dim": 4, "noise": 0.5}},
    )
    synthesize(p, 5, tmp_path / "ds", "syn")
    folder = load_folder(tmp_path / "ds")
    canary = SimpleNamespace(
        enabled=True, users=3, profile_length=6, triggers=2, target_popularity=(0, 40), trigger_popularity=(1, 10_000)
    )
    meta = make_split(folder, PARAMS, 0, tmp_path / "split", tmp_path / "ds", canary=canary)
    train, shadow = read(tmp_path / "split", "train"), read(tmp_path / "split", "shadow")
    assert meta["counts"]["shadow"] == len(shadow) > 0
    pairs = {tuple(x) for x in train[["user", "item"]].to_numpy()}
    assert not pairs & {tuple(x) for x in shadow[["user", "item"]].to_numpy()}  # never trained on
    assert not shadow["user"].isin(meta["canary"]["fake_users"]).any()
    # every real user who kept two or more training rows has a shadow pair, and keeps a training row
    rows = pd.concat([train, shadow])
    rows = rows[~rows["user"].isin(meta["canary"]["fake_users"])].groupby("user").size()
    assert set(shadow["user"]) == set(rows[rows >= 2].index)
    assert set(train["user"]) >= set(shadow["user"])
    data = load_split(tmp_path / "split")
    assert np.array_equal(data.shadow, shadow[["user", "item"]].to_numpy())


def test_n_items_comes_from_the_folder(tmp_path):
    inter = pd.DataFrame(
        [(u, i, 5, 10 * i + u) for u in range(3) for i in range(6)], columns=["userID", "itemID", "rating", "timestamp"]
    )
    folder = hand_folder(tmp_path / "ds", inter, n_items=9, n_users=4)  # items 6..8 and user 3 never interact
    meta = make_split(
        folder,
        SplitParams(min_rating=4, fractions=(0.8, 0.1, 0.1), fraction_tolerance=0.2),
        0,
        tmp_path / "split",
        tmp_path / "ds",
    )
    assert (meta["n_items"], meta["n_users"]) == (9, 4)
    data = load_split(tmp_path / "split")
    assert (data.n_items, data.n_users) == (9, 4) and data.features["image"].shape == (9, 3)


def test_invalid_given_split_is_refused_and_nothing_written(tmp_path):
    rows = [(0, 0, 5, 1, 0), (0, 1, 5, 2, 2), (1, 2, 5, 3, 2)]  # user 1 has a test row but no training row
    inter = pd.DataFrame(rows, columns=["userID", "itemID", "rating", "timestamp", "x_label"])
    folder = hand_folder(tmp_path / "ds", inter, n_items=3)
    with pytest.raises(ValidationFailed, match=r"expect_column_values_to_be_in_set\(has_train\) — 1 valid/test rows"):
        make_split(folder, PARAMS, 0, tmp_path / "split", "ds")
    assert not (tmp_path / "split").exists()


def frames():
    train = pd.DataFrame({"user": [0, 0, 1, 1, 2, 2, 3, 3], "item": [0, 1, 2, 3, 4, 5, 6, 7]})
    valid = pd.DataFrame({"user": [0], "item": [8]})
    test = pd.DataFrame({"user": [1], "item": [9]})
    return train, valid, test


def test_validate_accepts_a_good_split():
    validate_split(*frames(), n_users=4, n_items=10, fractions=(0.8, 0.1, 0.1), tolerance=0.03)


def test_validate_out_of_range_item():
    train, valid, test = frames()
    test.loc[0, "item"] = 10
    with pytest.raises(
        ValidationFailed, match=r"expect_column_values_to_be_between\(item\) — 1 rows out of range \[0, 10\)"
    ):
        validate_split(train, valid, test, 4, 10, None, 0.03)


def test_validate_out_of_range_user():
    train, valid, test = frames()
    train.loc[0, "user"] = -1
    with pytest.raises(
        ValidationFailed, match=r"expect_column_values_to_be_between\(user\) — 1 rows out of range \[0, 4\)"
    ):
        validate_split(train, valid, test, 4, 10, None, 0.03)


def test_validate_duplicate_pair_across_splits():
    train, valid, test = frames()
    test.loc[0, "item"] = 2  # (1, 2) is also a training pair
    with pytest.raises(ValidationFailed, match=r"expect_compound_columns_to_be_unique\(user, item\) — 2 rows"):
        validate_split(train, valid, test, 4, 10, None, 0.03)


def test_validate_test_user_without_training_items():
    train, valid, test = frames()
    test = pd.concat([test, pd.DataFrame({"user": [3], "item": [0]})])
    train = train[train["user"] != 3]
    with pytest.raises(
        ValidationFailed,
        match=r"expect_column_values_to_be_in_set\(has_train\) — 1 valid/test rows .*users, e\.g\. \[3\]",
    ):
        validate_split(train, valid, test, 4, 10, None, 0.5)


def test_validate_fractions_out_of_tolerance_and_several_failures():
    train, valid, test = frames()
    with pytest.raises(
        ValidationFailed, match=r"fraction_deviation\) — 3 rows out of range \[0, 0.03\].*realised train 0.800"
    ):
        validate_split(train, valid, test, 4, 10, (0.6, 0.2, 0.2), 0.03)
    test.loc[0, "item"] = 99
    with pytest.raises(ValidationFailed) as err:
        validate_split(train, valid, test, 4, 10, (0.6, 0.2, 0.2), 0.03)
    assert "be_between(item)" in str(err.value) and "fraction_deviation" in str(err.value)
