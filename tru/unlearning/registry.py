"""The registry of unlearning methods and the types they share. Every method takes an
`UnlearnContext` and its params and returns an `UnlearnResult` (model, log, seconds), so the
stage, the benchmark and the report treat them alike; `run_method` runs one by name and
times it. The methods register themselves from their own modules (tru/unlearning/__init__.py
imports them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from tru.config import Params
from tru.data.dataset import InteractionData
from tru.errors import ConfigError
from tru.models.base import Recommender
from tru.unlearning.probes import forget_eval, retain_eval, retain_sample

METHODS: dict[str, Callable[[UnlearnContext, Params], UnlearnResult]] = {}


def register_method(name: str):
    """Decorator: registers a method (UnlearnContext, Params) -> UnlearnResult under `name`;
    returns the function unchanged. A name registered twice is an error."""

    def deco(fn):
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = fn
        return fn

    return deco


@dataclass
class UnlearnContext:
    """One deletion batch as a method sees it: theta_0, the data before and after the batch,
    the forgotten, held-out and shadow pairs, the deleted users and items, the seed."""

    base: Recommender  # theta_0 (left untouched; methods work on a copy)
    prior: InteractionData  # the data theta_0 was trained on (its train = D_r + D_f)
    data: InteractionData  # after the batch: train = D_r; valid/test of retained users
    forget: np.ndarray  # D_f
    heldout: np.ndarray  # valid/test rows of deleted users and items (they leave evaluation)
    new_users: np.ndarray  # users deleted by this batch
    new_items: np.ndarray  # items deleted by this batch
    seed: int
    # shadow pairs of the users, items and pairs deleted by this batch (never trained on): with
    # data.shadow, the non-members of the stop rule and the gate
    heldout_shadow: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    # where exact methods keep resume snapshots of their training (fit's, every
    # train.checkpoint_every epochs): a killed run continues to the same model; None: no
    # snapshots. The caller clears the folder once the result is saved.
    resume: Path | None = None
    # the backdoor canary's fake users of the split (tru/audit/canary.py; none without one): the
    # gate's item-side check ranks items for the other users, and so does the stop rule
    fake_users: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # backdoor targets the item-side check always judges (by its declared threshold): the
    # canary's target when this batch deletes the canary's fake users
    targets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # how many retained users the retain checks rank (unlearn.stop.retain_users; 0: all), set
    # from the params by run_method and the repair stage (retain_sample)
    retain_users: int = 0
    # the checkpoint the chain of batches began from (the generation's base model, paths.BASE_MODEL)
    # where it is not theta_0 itself: TRU's stop rule holds retained users' utility to it as well
    # as to theta_0 (unlearn.tru.retain_from_chain_start), so that nightly losses each within
    # tolerance cannot add up over a chain. None: theta_0 is the chain's start, or none is known
    chain_start_path: Path | None = None

    @cached_property
    def chain_start(self) -> Recommender | None:
        """The model at `chain_start_path` on theta_0's graph, in eval mode (None without one)."""
        from tru.checkpoint import load_checkpoint  # why: the registry stays importable without the I/O layer

        if self.chain_start_path is None:
            return None
        model, _ = load_checkpoint(self.chain_start_path, self.prior.features)
        model.set_graph(self.prior.train, self.prior.active_items)
        model.eval()
        return model

    @classmethod
    def of_pairs(
        cls, base: Recommender, prior: InteractionData, data: InteractionData, forget: np.ndarray, seed: int
    ) -> UnlearnContext:
        """A deletion of the pairs `forget` alone: no user or item deleted by it, nothing held
        out (interaction requests; the chain's check pools those of many batches)."""
        empty = np.zeros(0, np.int64)
        heldout = np.zeros((0, 2), np.int64)
        return cls(base, prior, data, forget, heldout, new_users=empty, new_items=empty, seed=seed)

    def resume_folder(self, name: str) -> Path | None:
        """The snapshot folder of the training run `name`, or None without `resume`."""
        return None if self.resume is None else Path(self.resume) / name

    @property
    def non_members(self) -> np.ndarray:
        """Never-trained pairs of the same users and items as the forgotten ones: the shadow
        pairs (tru/data/split.py) of the users, items and pairs this batch deletes, and the
        retained shadow pairs of the retained users who lost interactions. Never valid or test
        rows: those are what utility is reported on."""
        users = np.unique(self.forget[:, 0]) if len(self.forget) else np.zeros(0, np.int64)
        rows = [self.heldout_shadow.reshape(-1, 2), self.data.shadow[np.isin(self.data.shadow[:, 0], users)]]
        return np.unique(np.concatenate(rows), axis=0)

    @property
    def normal_users(self) -> np.ndarray:
        """The retained users the item-side residue check ranks items for: all but the canary's
        fake users."""
        return np.setdiff1d(np.unique(self.data.train[:, 0]), self.fake_users)

    @cached_property
    def residue_users(self) -> np.ndarray:
        """The users the stop rule's item-side check ranks items for: `normal_users`, or a fixed
        sample of `retain_users` of them when there are more (the gate's own check ranks them
        all; the stop rule's z's and its threshold come from the same sample)."""
        users = self.normal_users
        if self.retain_users <= 0 or len(users) <= self.retain_users:
            return users
        return np.sort(np.random.default_rng(self.seed).choice(users, size=self.retain_users, replace=False))

    def pair_users(self, item_users: bool = False) -> np.ndarray:
        """Retained users who lost interactions to this batch's pair-level deletions: a forgotten
        pair of a user who stays, with an item that stays (the interaction requests); with
        `item_users`, also those who lost a pair to a deleted item."""
        if not len(self.forget):
            return np.zeros(0, np.int64)
        f = self.forget
        own = ~np.isin(f[:, 0], self.data.deleted_users)
        if not item_users:
            own &= ~np.isin(f[:, 1], self.data.deleted_items)
        return np.unique(f[own, 0])

    def items_losing(self, share: float, to_deleted_users: bool = False, at_least: int = 1) -> np.ndarray:
        """Items still in the catalogue that lost at least `share` of their training
        interactions to this batch (and at least `at_least` of them); with `to_deleted_users`,
        counting only the interactions of the users it deletes."""
        n = self.data.n_items
        before = np.bincount(self.prior.train[:, 1], minlength=n)
        lost_pairs = self.forget[np.isin(self.forget[:, 0], self.new_users)] if to_deleted_users else self.forget
        removed = np.bincount(lost_pairs[:, 1], minlength=n) if len(lost_pairs) else np.zeros(n, np.int64)
        lost = np.divide(removed, before, out=np.zeros(n), where=before > 0)
        return np.setdiff1d(np.flatnonzero((removed >= max(1, at_least)) & (lost >= share)), self.data.deleted_items)

    @cached_property
    def probes(self) -> tuple:
        """What `probe_metrics` ranks after every epoch (it depends on the batch only, so it is
        built once): the forget and retain-shadow rankings' ground truth and exclusions, and the
        membership pairs with their strata."""
        shadow = retain_sample(retain_eval(self.data, "shadow"), self.retain_users, self.seed)
        return forget_eval(self.data, self.forget), shadow, *self.membership_strata()

    def membership_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Members (forgotten pairs) and non-members (never-trained shadow pairs) of the same
        users or items only (`membership_strata`)."""
        members, non, _, _ = self.membership_strata()
        return members, non

    def membership_strata(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Members and non-members, each with its stratum: a forgotten pair of an item this
        batch deletes is compared with that item's shadow pairs (stratum -1 - item); any other
        with its user's (stratum = user). Only strata with both sides are kept: comparing across
        users would measure how well the model knows the users, not whether it still remembers
        these interactions. Within a stratum, the two sides of an exact retrain are
        exchangeable (both random rows of the same user or item, neither trained on), which
        is what calibrates the test (tru.audit.shadow)."""
        non = self.non_members
        empty = np.zeros(0, np.int64)
        if len(self.forget) == 0 or len(non) == 0:
            return self.forget[:0], non[:0], empty, empty

        def stratum(p: np.ndarray) -> np.ndarray:
            by_item = np.isin(p[:, 1], self.new_items)
            return np.where(by_item, -1 - p[:, 1], p[:, 0])

        sm, sn = stratum(self.forget), stratum(non)
        both = np.intersect1d(sm, sn)
        km, kn = np.isin(sm, both), np.isin(sn, both)
        return self.forget[km], non[kn], sm[km], sn[kn]


@dataclass
class UnlearnResult:
    """A method's output: the unlearned model, its log (JSON-able) and its seconds."""

    model: Recommender
    log: dict = field(default_factory=dict)
    seconds: float = 0.0


def run_method(name: str, ctx: UnlearnContext, params: Params) -> UnlearnResult:
    """Run the registered method `name` on `ctx`; its result with `seconds` set (the erasure's
    own time: setup that belongs to base training left out, a resumed run's earlier seconds in)."""
    if name not in METHODS:
        raise ConfigError(f"unknown unlearning method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    # torch.optim imports torch._dynamo on the first optimiser a process builds (~3 s on a 2-core
    # host): done before the clock starts, so that no method's seconds carry it (in a fresh
    # benchmark process it was a fifth of TRU's interaction-level erasure); stages that only
    # read a context (evaluate, audit) never pay it
    import torch._dynamo  # noqa: F401

    ctx.retain_users = params.unlearn.stop.retain_users
    t0 = time.perf_counter()
    result = METHODS[name](ctx, params)
    # work that belongs to base training, not to the erasure (UltraRE's ensemble of theta_0's
    # data) is left out; training seconds a resumed run's snapshots recorded (earlier processes) count
    result.seconds = (
        time.perf_counter()
        - t0
        - float(result.log.get("setup_seconds", 0.0))
        + float(result.log.get("resumed_seconds", 0.0))
    )
    return result
