import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MPLCONFIGDIR", "/tmp/tru-mplconfig")

from pathlib import Path

import numpy as np
import pytest

from tru.config import load_params
from tru.data.dataset import InteractionData

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def params():
    return load_params(ROOT / "params.yaml")


def make_tiny_data(seed: int = 0, n_users: int = 60, n_items: int = 40, per_user: int = 10) -> InteractionData:
    """Users prefer items of their own latent cluster; modality `signal` reveals the cluster,
    modality `noise` is pure noise. Small enough for a training run in a second."""
    rng = np.random.default_rng(seed)
    clusters = 4
    item_c = np.arange(n_items) % clusters
    user_c = rng.integers(0, clusters, n_users)
    rows = []
    for u in range(n_users):
        mine = np.flatnonzero(item_c == user_c[u])
        other = np.flatnonzero(item_c != user_c[u])
        items = np.concatenate([rng.choice(mine, size=per_user - 2, replace=False), rng.choice(other, size=2, replace=False)])
        rng.shuffle(items)
        rows.extend((u, int(i)) for i in items)
    pairs = np.array(rows, dtype=np.int64)
    per = pairs.reshape(n_users, per_user, 2)
    train = per[:, :8].reshape(-1, 2)
    valid = per[:, 8:9].reshape(-1, 2)
    test = per[:, 9:].reshape(-1, 2)
    onehot = np.eye(clusters, dtype=np.float32)[item_c]
    features = {
        "signal": np.concatenate([onehot, rng.normal(scale=0.1, size=(n_items, 4))], 1).astype(np.float32),
        "noise": rng.normal(size=(n_items, 6)).astype(np.float32),
    }
    return InteractionData("tiny", n_users, n_items, train, valid, test, features)


@pytest.fixture
def tiny_data():
    return make_tiny_data()
