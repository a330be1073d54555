"""The chain's own membership check: is anything erased since the data generation began still
remembered by the model in service? (docs: Audits and evidence, "The chain's check").

Each batch's gate judges that batch's deletion alone, and a night's batch is rarely large
enough for the membership test to have power: most nights are INCONCLUSIVE. Interaction
requests (a pair erased for a user who stays) are where a chain keeps residue that no single
night shows (the many-nights benchmark, `tru bench stream`): the model keeps those pairs in
their users' top 20 about as often as the untouched original does, where an exact retrain of
the same data keeps them less often. Pooled over every night since the generation began (the
last consolidation, or the base model), they are enough pairs for the test to see it.

So after every batch the audit stage runs the calibrated membership test (tru.audit.shadow) on
every interaction erased since the generation began whose user and item are both still in
service, against the shadow pairs of the same users (never trained on), with the generation's
base model as the test's power reference. The check *flags* residue when the test exceeds its
threshold and has power (the base model, which trained on every one of those pairs, exceeds it
too). Pairs of deleted users and items are left out: their rows are re-drawn by the exact
step, and their shadow pairs leave with them.

It does not judge the batch (its gate does); it is the reference-free reading of the chain that
`lifecycle.consolidate_when.interaction_residue` starts a consolidation on. A chain checked night
after night is tested many times: an exact model exceeds the threshold on a share of nights
near the test's size (`audit.gate.membership_quantile`) each time, and a false alarm costs one
consolidation (one retrain), earlier than the weekly one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: the audit package imports no unlearning code at load
    from tru.config import GateParams
    from tru.data.dataset import InteractionData
    from tru.models.base import Recommender


def pairs_gone(before: np.ndarray, after: np.ndarray, n_items: int) -> np.ndarray:
    """The (user, item) rows of `before` that `after` no longer has, in `before`'s order."""
    kept = np.isin(before[:, 0] * n_items + before[:, 1], after[:, 0] * n_items + after[:, 1])
    return before[~kept]


def erased_interactions(base: InteractionData, data: InteractionData) -> np.ndarray:
    """The training pairs of `base` (the generation's split) gone from `data` (the data in
    service) whose user and item are both still in service: the interaction requests erased
    since the generation began, sorted."""
    gone = pairs_gone(base.train, data.train, max(base.n_items, data.n_items))
    own = ~np.isin(gone[:, 0], data.deleted_users) & ~np.isin(gone[:, 1], data.deleted_items)
    out = gone[own]
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def chain_membership(
    model: Recommender, original: Recommender, base: InteractionData, data: InteractionData, gate: GateParams, seed: int
) -> dict:
    """The check (module docstring) of `model` (the model in service after the batch) on
    `data`, against the generation's base split `base` and base model `original`. Returns the
    membership test's fields (auc, threshold, original_auc, power, members, non_members, ...)
    with `pairs` (interactions erased since the generation began), `flagged` and `verdict`:
    residue (flagged), clean (below the threshold, with power), no power (below, but the base
    model is too), or nothing to test (no pair with a shadow pair of its user)."""
    from tru.unlearning import UnlearnContext  # why: the audit package imports no unlearning code at load
    from tru.unlearning.probes import shadow_membership

    pairs = erased_interactions(base, data)
    ctx = UnlearnContext.of_pairs(original, base, data, pairs, seed)
    test = shadow_membership(model, ctx, gate, reference=original)
    flagged = bool(test.get("exceeds") and test.get("power"))
    if test.get("auc") is None:
        verdict = "nothing to test"
    elif flagged:
        verdict = "residue"
    elif test.get("exceeds") or not test.get("power"):
        verdict = "no power"
    else:
        verdict = "clean"
    return {"pairs": int(len(pairs)), **test, "flagged": flagged, "verdict": verdict}
