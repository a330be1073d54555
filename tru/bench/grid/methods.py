"""The grid's methods, in the order its tables and plots show them. A module of its own, with
no imports: `tru bench --help` lists the erasure methods from it without loading torch."""

from __future__ import annotations

REFERENCE = ("original", "popularity")  # measured in every setting; not erasure methods
METHOD_ORDER = [
    "original",
    "popularity",
    "retrain",
    "retrain_r2",
    "retrain_r3",
    "ultrare",
    "exact",
    "exact_refit",
    "reverse_repair",
    "reverse_repair_refit",
    "gradient_ascent",
    "multidelete",
    "scalegun",
    "tru",
    "tru_no_gate",
    "tru_no_scaling",
    "tru_uniform_lr",
    "tru_no_selection",
    "tru_no_exact",
    "reverse_repair_no_exact",
]
# Retrain again with other training seeds: the grid's noise floor, not a method of its own
REPLICATES = ("retrain_r2", "retrain_r3")
RETRAINS = ("retrain", *REPLICATES)  # the reference's mean and its noise floor (tru.bench.grid.claims)
# every erasure method and ablation: what `tru bench unlearn --methods` runs by default
UNLEARN_METHODS = tuple(m for m in METHOD_ORDER if m not in REFERENCE + REPLICATES)
# the cells that do not start from the setting's base model (trained from scratch, or no model):
# every other cell of a seed is compared with the seed's others only if they share that model.
# UltraRE's shards are trained from scratch; only its partition of the users into shards is
# drawn from the base model's user embeddings, so its cell is another draw of its recipe
BASE_FREE = (*RETRAINS, "ultrare", "popularity")
