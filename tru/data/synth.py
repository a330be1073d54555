"""Seeded synthetic multimodal dataset, written as an MMRec folder.

The generative model (every draw comes from one `np.random.default_rng(seed)`, so the
same params and seed give byte-identical files with the same numpy build; a different
BLAS could change the last bit of a matrix product, hence of a feature value):

- latent factors: users U [n_users, d] and items V [n_items, d], i.i.d. N(0, 1);
  affinity a(u, i) = <U_u, V_i> / sqrt(d) (about unit variance);
- popularity: item i gets a random popularity rank r_i (a permutation, so item index and
  popularity are unrelated) and log-weight -popularity_exponent * log(r_i) (Zipf);
- profile lengths: every user gets at least MIN_PROFILE items; the remaining
  n_interactions - MIN_PROFILE * n_users are spread over users with heavy-tailed (Pareto)
  weights, capped at n_items per user, so the total is exactly n_interactions;
- items: each user draws its profile without replacement from
  softmax(AFFINITY_SCALE * a(u, .) + log popularity), using the Gumbel-top-k trick on
  chunks of users (vectorised; memory bounded by the chunk size times n_items);
- ratings 1-5: rising with the affinity plus noise, most of them >= 4, so that the
  implicit-feedback filter of the split (rating >= 4) has something to remove;
- timestamps: each user is active over a random window; each interaction gets a uniform
  time inside it (seconds), independent of the sampling order, so the chronological split
  is not a preference split;
- features: modality m gets V @ P_m + noise_m * N(0, 1) with P_m ~ N(0, 1/d) [d, dim_m],
  so the signal part of every coordinate has unit variance and `noise` is the
  noise-to-signal standard-deviation ratio; float32.

Infeasible sizes (fewer than MIN_PROFILE * n_users or more than n_users * n_items
interactions, or fewer than MIN_PROFILE items) raise DataError instead of silently
producing a different number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tru.config import ModalitySpec, SyntheticParams
from tru.data.mmrec import FEAT_SUFFIX, write_folder
from tru.errors import DataError
from tru.io import atomic_path, sha256_file, write_json

MIN_PROFILE = 5  # interactions per user, as in the 5-core Amazon sets
AFFINITY_SCALE = 1.5  # weight of the latent affinity against log popularity in the sampler
PROFILE_TAIL = 2.0  # Pareto shape of the profile-length weights (smaller = heavier tail)
USER_CHUNK_CELLS = 1 << 22  # users per sampling chunk = this / n_items (about 32 MB of float64)
ITEM_CHUNK_CELLS = 1 << 23  # feature rows per noise chunk = this / dim
T0 = 1_356_998_400  # 2013-01-01 UTC: timestamps start here
HORIZON = 3 * 365 * 86_400  # users start within three years
MAX_ACTIVE = 2 * 365 * 86_400  # and stay active up to two years


@dataclass
class SyntheticData:
    """What `generate` draws: the MMRec interactions, features, id maps, and the latent
    factors they came from."""

    interactions: pd.DataFrame  # userID, itemID, rating, timestamp (sorted by user, timestamp, item)
    features: dict[str, np.ndarray]  # modality -> [n_items, dim] float32
    user_factors: np.ndarray  # [n_users, latent_dim] float64
    item_factors: np.ndarray  # [n_items, latent_dim] float64
    item_map: pd.DataFrame  # itemID, raw_id, title
    user_map: pd.DataFrame  # userID, raw_id


def _check_feasible(p: SyntheticParams) -> None:
    if p.n_items < MIN_PROFILE:
        raise DataError(f"synthetic: n_items={p.n_items} is below the minimum profile length {MIN_PROFILE}")
    low, high = MIN_PROFILE * p.n_users, p.n_users * p.n_items
    if not low <= p.n_interactions <= high:
        raise DataError(
            f"synthetic: n_interactions={p.n_interactions} is not feasible for {p.n_users} users x {p.n_items} items "
            f"with at least {MIN_PROFILE} distinct items per user (must lie in [{low}, {high}])"
        )


def _profile_lengths(rng: np.random.Generator, n_users: int, n_items: int, total: int) -> np.ndarray:
    """Heavy-tailed lengths >= MIN_PROFILE, <= n_items, summing exactly to `total`."""
    lengths = np.full(n_users, MIN_PROFILE, dtype=np.int64)
    weights = rng.pareto(PROFILE_TAIL, n_users) + 1e-3
    left = total - MIN_PROFILE * n_users
    while left > 0:  # a few rounds at most: only the capped users' overflow is re-spread
        room = n_items - lengths
        w = np.where(room > 0, weights, 0.0)
        extra = rng.multinomial(left, w / w.sum())
        extra = np.minimum(extra, room)
        lengths += extra
        left -= int(extra.sum())
    return lengths


def _sample_profiles(
    rng: np.random.Generator, U: np.ndarray, V: np.ndarray, log_pop: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gumbel-top-k without replacement; returns (users, items, affinity) of every draw."""
    n_users, d = U.shape
    n_items = V.shape[0]
    order = np.argsort(lengths, kind="stable")  # similar lengths per chunk keep the top-k small
    chunk = max(1, USER_CHUNK_CELLS // n_items)
    users, items, affin = [], [], []
    Vt = V.T / np.sqrt(d)
    log_pop = log_pop.astype(np.float32)
    for start in range(0, n_users, chunk):
        rows = order[start : start + chunk]
        k = lengths[rows]
        kmax = int(k.max())
        aff = U[rows] @ Vt  # [c, n_items]
        # Gumbel-top-k on negated keys: log E - logit with E ~ Exp(1) (-log E is Gumbel);
        # float32 halves the cost of the c x n_items noise, the dominant step
        neg_keys = rng.standard_exponential(aff.shape, dtype=np.float32)
        with np.errstate(divide="ignore"):
            np.log(neg_keys, out=neg_keys)
        neg_keys -= AFFINITY_SCALE * aff.astype(np.float32)
        neg_keys -= log_pop
        if kmax < n_items:
            top = np.argpartition(neg_keys, kmax - 1, axis=1)[:, :kmax]
        else:
            top = np.broadcast_to(np.arange(n_items), (len(rows), n_items))
        top_keys = np.take_along_axis(neg_keys, top, axis=1)
        top = np.take_along_axis(top, np.argsort(top_keys, axis=1, kind="stable"), axis=1)
        keep = np.arange(kmax)[None, :] < k[:, None]
        r, c = np.nonzero(keep)
        it = top[r, c]
        users.append(rows[r])
        items.append(it)
        affin.append(aff[r, it])
    return np.concatenate(users), np.concatenate(items), np.concatenate(affin)


def _raw_ids(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    # distinct numbers in [n, 11n): never equal to the 0-based index, so code that
    # confuses raw ids with indices fails loudly
    numbers = rng.permutation(10 * n)[:n] + n
    width = max(5, len(str(11 * n)))
    return [f"{prefix}{x:0{width}d}" for x in numbers]


def _features(rng: np.random.Generator, V: np.ndarray, dim: int, noise: float) -> np.ndarray:
    n_items, d = V.shape
    proj = rng.standard_normal((d, dim)) / np.sqrt(d)
    out = np.empty((n_items, dim), dtype=np.float32)
    step = max(1, ITEM_CHUNK_CELLS // dim)
    for s in range(0, n_items, step):
        block = V[s : s + step] @ proj
        block = block.astype(np.float32)
        block += np.float32(noise) * rng.standard_normal(block.shape, dtype=np.float32)
        out[s : s + step] = block
    return out


def _scale(
    n_users: int, n_items: int, n_interactions: int, modalities: dict[str, tuple[int, float]]
) -> SyntheticParams:
    return SyntheticParams(
        n_users=n_users,
        n_items=n_items,
        n_interactions=n_interactions,
        latent_dim=32,
        popularity_exponent=1.0,
        modalities={m: ModalitySpec(dim=dim, noise=noise) for m, (dim, noise) in modalities.items()},
    )


# Named sizes for `tru synth --scale`: tiny for tests, baby = Amazon-Baby as MMRec ships it
# (19,445 users, 7,050 items, 160,792 interactions, 4096-d image and 384-d text features).
SCALES: dict[str, SyntheticParams] = {
    "tiny": _scale(200, 120, 3000, {"image": (32, 0.5), "text": (16, 1.0)}),
    "baby": _scale(19_445, 7_050, 160_792, {"image": (4096, 2.0), "text": (384, 1.0)}),
}


def generate(params: SyntheticParams, seed: int) -> SyntheticData:
    """The synthetic dataset in memory (see the module docstring for the model)."""
    _check_feasible(params)
    rng = np.random.default_rng(seed)
    n_u, n_i, d = params.n_users, params.n_items, params.latent_dim
    U = rng.standard_normal((n_u, d))
    V = rng.standard_normal((n_i, d))
    pop_rank = rng.permutation(n_i) + 1
    log_pop = -params.popularity_exponent * np.log(pop_rank)

    lengths = _profile_lengths(rng, n_u, n_i, params.n_interactions)
    users, items, aff = _sample_profiles(rng, U, V, log_pop, lengths)

    ratings = np.clip(np.rint(3.9 + 0.8 * aff + 0.8 * rng.standard_normal(len(aff))), 1, 5).astype(np.int64)
    start = rng.integers(0, HORIZON, n_u)
    active = rng.integers(30 * 86_400, MAX_ACTIVE, n_u)
    timestamps = T0 + start[users] + (rng.random(len(users)) * active[users]).astype(np.int64)

    inter = pd.DataFrame({"userID": users, "itemID": items, "rating": ratings, "timestamp": timestamps})
    inter = inter.sort_values(["userID", "timestamp", "itemID"], kind="stable", ignore_index=True)

    features = {m: _features(rng, V, spec.dim, spec.noise) for m, spec in params.modalities.items()}
    item_raw = _raw_ids(rng, n_i, "i")
    user_raw = _raw_ids(rng, n_u, "u")
    item_map = pd.DataFrame(
        {"itemID": np.arange(n_i), "raw_id": item_raw, "title": [f"Synthetic item {r}" for r in item_raw]}
    )
    user_map = pd.DataFrame({"userID": np.arange(n_u), "raw_id": user_raw})
    return SyntheticData(inter, features, U, V, item_map, user_map)


def synthesize(params: SyntheticParams, seed: int, out_dir: Path, name: str) -> dict:
    """Write the synthetic dataset as an MMRec folder at `out_dir` (atomically).

    The .inter file has no x_label: the split stage applies its own recipe (rating filter,
    per-user chronological split). Returns the manifest also written as manifest.json.
    """
    data = generate(params, seed)
    ratings = data.interactions["rating"].value_counts().sort_index()
    with atomic_path(out_dir) as tmp:
        write_folder(tmp, name, data.interactions, data.features, data.item_map, data.user_map)
        files = [f"{name}.inter", "item_map.tsv", "user_map.tsv"] + [f"{m}{FEAT_SUFFIX}" for m in data.features]
        manifest = {
            "name": name,
            "source": "synthetic",
            "seed": seed,
            "counts": {"users": params.n_users, "items": params.n_items, "interactions": len(data.interactions)},
            "ratings": {str(int(r)): int(c) for r, c in ratings.items()},
            "modalities": {m: int(a.shape[1]) for m, a in data.features.items()},
            "params": params.model_dump(mode="json"),
            "generator": {
                "min_profile": MIN_PROFILE,
                "affinity_scale": AFFINITY_SCALE,
                "profile_tail": PROFILE_TAIL,
            },
            "sha256": {f: sha256_file(tmp / f) for f in sorted(files)},
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest
