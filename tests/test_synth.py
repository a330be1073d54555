import numpy as np
import pytest

from tru.config import SyntheticParams
from tru.data.mmrec import load_folder
from tru.data.synth import MIN_PROFILE, generate, synthesize
from tru.errors import DataError
from tru.io import read_json, sha256_file


def tiny(**over) -> SyntheticParams:
    spec = dict(
        n_users=60,
        n_items=80,
        n_interactions=900,
        latent_dim=8,
        popularity_exponent=1.0,
        modalities={"image": {"dim": 16, "noise": 0.3}, "text": {"dim": 8, "noise": 1.0}},
    )
    spec.update(over)
    return SyntheticParams(**spec)


def hashes(folder):
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    p = tiny()
    synthesize(p, 3, tmp_path / "a", "syn")
    synthesize(p, 3, tmp_path / "b", "syn")
    synthesize(p, 4, tmp_path / "c", "syn")
    a, b, c = hashes(tmp_path / "a"), hashes(tmp_path / "b"), hashes(tmp_path / "c")
    assert a == b
    assert set(a) == {"syn.inter", "image_feat.npy", "text_feat.npy", "item_map.tsv", "user_map.tsv", "manifest.json"}
    for name in ("syn.inter", "image_feat.npy", "text_feat.npy", "item_map.tsv", "user_map.tsv"):
        assert a[name] != c[name], name


def test_folder_shapes_counts_and_manifest(tmp_path):
    p = tiny()
    manifest = synthesize(p, 1, tmp_path / "ds", "syn")
    folder = load_folder(tmp_path / "ds")
    inter = folder.interactions
    assert not folder.has_split  # the split recipe applies, not a given x_label
    assert (folder.n_users, folder.n_items, len(inter)) == (60, 80, 900)
    assert {m: a.shape for m, a in folder.features.items()} == {"image": (80, 16), "text": (80, 8)}
    assert all(a.dtype == np.float32 for a in folder.features.values())
    assert not inter.duplicated(["userID", "itemID"]).any()
    assert inter.groupby("userID").size().min() >= MIN_PROFILE
    assert inter["userID"].nunique() == 60
    assert inter["rating"].between(1, 5).all() and (inter["rating"] >= 4).mean() > 0.6
    assert (inter["rating"] < 4).any()  # the implicit-feedback filter has something to drop
    assert inter["timestamp"].gt(1_000_000_000).all()
    # raw ids are strings, distinct, and never the index in disguise
    for table, prefix in ((folder.item_map, "i"), (folder.user_map, "u")):
        raw = table["raw_id"]
        assert raw.str.match(rf"^{prefix}\d{{5}}$").all() and raw.is_unique
        assert (raw.str[1:].astype(int) != table.iloc[:, 0]).all()
    assert manifest == read_json(tmp_path / "ds" / "manifest.json")
    assert manifest["source"] == "synthetic" and manifest["counts"]["interactions"] == 900
    assert manifest["modalities"] == {"image": 16, "text": 8}
    assert manifest["sha256"]["syn.inter"] == sha256_file(tmp_path / "ds" / "syn.inter")


def test_exact_count_when_profiles_hit_the_catalogue_size():
    p = tiny(n_users=10, n_items=12, n_interactions=115)
    inter = generate(p, 0).interactions
    sizes = inter.groupby("userID").size()
    assert len(inter) == 115 and sizes.max() <= 12 and sizes.min() >= MIN_PROFILE
    assert not inter.duplicated(["userID", "itemID"]).any()


@pytest.mark.parametrize("n_interactions", [60 * MIN_PROFILE - 1, 60 * 80 + 1])
def test_infeasible_size_is_an_error(n_interactions):
    with pytest.raises(DataError, match="not feasible"):
        generate(tiny(n_interactions=n_interactions), 0)


def top_decile_share(p, seed=0):
    counts = generate(p, seed).interactions["itemID"].value_counts().to_numpy()
    counts = np.sort(np.concatenate([counts, np.zeros(p.n_items - len(counts))]))[::-1]
    return counts[: p.n_items // 10].sum() / counts.sum()


def test_popularity_is_a_power_law():
    p = tiny(n_users=300, n_items=400, n_interactions=4000)
    skewed = top_decile_share(p)
    flat = top_decile_share(tiny(n_users=300, n_items=400, n_interactions=4000, popularity_exponent=0.0))
    assert skewed > 0.35  # uniform popularity would give about 0.1
    assert skewed > flat + 0.15


def held_out_r2(features: np.ndarray, target: np.ndarray) -> float:
    """R^2 of a least-squares map features -> target, fitted on half the items, scored on the rest."""
    x = np.hstack([features.astype(np.float64), np.ones((len(features), 1))])
    half = len(x) // 2
    coef, *_ = np.linalg.lstsq(x[:half], target[:half], rcond=None)
    resid = target[half:] - x[half:] @ coef
    return 1.0 - (resid**2).sum() / ((target[half:] - target[half:].mean(0)) ** 2).sum()


def test_less_noisy_modality_reveals_the_latent_factors_better():
    p = tiny(
        n_items=400,
        n_interactions=1000,
        modalities={
            "clean": {"dim": 24, "noise": 0.2},
            "mid": {"dim": 24, "noise": 1.0},
            "noisy": {"dim": 24, "noise": 3.0},
        },
    )
    data = generate(p, 5)
    r2 = {m: held_out_r2(f, data.item_factors) for m, f in data.features.items()}
    assert r2["clean"] > r2["mid"] > r2["noisy"]
    assert r2["clean"] > 0.9
