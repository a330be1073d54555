"""The chain's membership check (tru.audit.chain) on hand-built score models: the interactions
erased since the generation began are pooled (deleted users' and items' pairs left out), a model
that still ranks them like trained pairs is flagged, one that never saw them is not, and a
handful of pairs gives no power."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from tru.audit.chain import chain_membership, erased_interactions
from tru.config import load_params
from tru.data.dataset import InteractionData

N_USERS, N_ITEMS, PER_USER, SHADOW = 80, 120, 14, 3


class Scores:
    """A fixed user x item score matrix."""

    def __init__(self, s: np.ndarray):
        self.s = torch.as_tensor(s, dtype=torch.float32)
        self.n_items = s.shape[1]

    def score_fn(self):
        return lambda users: self.s[users]


@pytest.fixture(scope="module")
def world():
    """The generation's base split (train and shadow rows per user) and, after a few nights,
    the data in service: each user erased 2 interactions, user 0 and item 0 deleted outright."""
    rng = np.random.default_rng(3)
    rows, shadow = [], []
    for u in range(N_USERS):
        items = rng.choice(N_ITEMS, PER_USER + SHADOW, replace=False)
        rows += [(u, int(i)) for i in items[:PER_USER]]
        shadow += [(u, int(i)) for i in items[PER_USER:]]
    train, shadow_a = np.array(rows, np.int64), np.array(shadow, np.int64)
    empty = np.zeros((0, 2), np.int64)
    base = InteractionData("tiny", N_USERS, N_ITEMS, train, empty, empty, {}, shadow=shadow_a)
    erased = np.zeros(len(train), bool)
    for u in range(N_USERS):  # two interaction requests per user
        erased[np.flatnonzero(train[:, 0] == u)[:2]] = True
    gone = erased | (train[:, 0] == 0) | (train[:, 1] == 0)
    data = replace(
        base,
        train=train[~gone],
        shadow=shadow_a[(shadow_a[:, 0] != 0) & (shadow_a[:, 1] != 0)],
        deleted_users=np.array([0]),
        deleted_items=np.array([0]),
    )
    taste = rng.normal(size=(N_USERS, N_ITEMS))

    def model(remembered: np.ndarray) -> Scores:
        """Taste plus a lift on the pairs it trained on (`remembered`)."""
        s = taste.copy()
        s[remembered[:, 0], remembered[:, 1]] += 2.0
        return Scores(s)

    own = erased & (train[:, 0] != 0) & (train[:, 1] != 0)  # erased for users and items still in service
    return base, data, own, model


def gate():
    return load_params(ROOT / "params.yaml").audit.gate


def test_the_pooled_pairs_are_the_erased_interactions_of_users_and_items_still_in_service(world):
    base, data, erased, _ = world
    pairs = erased_interactions(base, data)
    expected = base.train[erased]
    assert len(pairs) == len(expected) > 2 * (N_USERS - 1) - 10  # user 0's and item 0's pairs left out
    assert {tuple(p) for p in pairs.tolist()} == {tuple(p) for p in expected.tolist()}
    assert not np.isin(pairs[:, 0], data.deleted_users).any() and not np.isin(pairs[:, 1], data.deleted_items).any()
    # nothing erased: nothing to test
    assert len(erased_interactions(base, replace(base))) == 0


def test_a_model_that_remembers_the_erased_pairs_is_flagged_and_one_that_never_saw_them_is_not(world):
    base, data, _, model = world
    original = model(base.train)
    chain = model(base.train)  # still lifts every pair it was trained on, the erased ones too
    exact = model(data.train)  # trained on the retained pairs only
    flagged = chain_membership(chain, original, base, data, gate(), seed=1)
    assert flagged["verdict"] == "residue" and flagged["flagged"] and flagged["power"]
    assert flagged["pairs"] == flagged["members"] > 100 and flagged["auc"] > flagged["threshold"]
    clean = chain_membership(exact, original, base, data, gate(), seed=1)
    assert clean["verdict"] == "clean" and not clean["flagged"] and clean["power"]
    assert clean["auc"] <= clean["threshold"] == flagged["threshold"]  # one null: it depends on the strata only


def test_a_few_erased_pairs_give_the_check_no_power(world):
    base, data, erased, model = world
    keep_erased = np.flatnonzero(erased)[:3]  # only 3 interactions erased since the generation began
    back = np.ones(len(base.train), bool)
    back[keep_erased] = False
    few = replace(data, train=base.train[back & (base.train[:, 0] != 0) & (base.train[:, 1] != 0)])
    out = chain_membership(model(base.train), model(base.train), base, few, gate(), seed=1)
    assert out["pairs"] == 3 and not out["flagged"] and out["verdict"] == "no power"
