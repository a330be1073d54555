"""The comparison grid's vocabulary: the grid file's schema (datasets, blocks of datasets x
backbones x regimes x methods x seeds), its cells, the results CSV's columns and store, what is
left to run (`--only`, `--list`), and the methods' order and labels in the report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from tru import paths
from tru.bench.grid.methods import REFERENCE
from tru.bench.store import ResultsStore
from tru.bench.unlearn import REGIMES, VARIANTS
from tru.config import Section, TrainParams
from tru.errors import ConfigError

KEY = ("dataset", "backbone", "regime", "seed", "method")
COLUMNS = KEY + (
    "retain_recall@20",
    "retain_ndcg@20",
    "forget_recall@20",
    "forget_ndcg@20",
    # user level with the canary: forget Recall@20 of the real deleted users and of the fake ones apart
    "forget_real_recall@20",
    "forget_fake_recall@20",
    # item level: what users are served, the mean number of the deleted items' closest
    # co-occurring retained items in a retained user's top-20 (tru.bench.grid.run.cooccurring_items)
    "served_exposure@20",
    "mia_balanced_accuracy",
    "backdoor_asr",
    "backdoor_lift",
    "seconds",
    "peak_rss_mb",
    "epochs",
    "repair_epochs",
    "forget_pairs",
    "users",
    "items",
    "train_interactions",
)

LABELS = {
    "original": "Original",
    "popularity": "Popularity (no user data)",
    "retrain": "Retrain",
    "retrain_r2": "Retrain, 2nd training seed",
    "retrain_r3": "Retrain, 3rd training seed",
    "ultrare": "UltraRE",
    "exact": "Exact step + repair (no reverse)",
    "exact_refit": "Exact step + TRU's re-fit (no reverse)",
    "reverse_repair_refit": "MMRecUn + TRU's re-fit, pre-check and step",
    "reverse_repair": "MMRecUn (reverse-repair)",
    "gradient_ascent": "Gradient ascent",
    "multidelete": "MultiDelete",
    "scalegun": "ScaleGUN",
    "tru": "**TRU**",
    "tru_no_gate": "TRU w/o gate",
    "tru_no_scaling": "TRU w/o scaling",
    "tru_uniform_lr": "TRU, one lr (scaling's mean)",
    "tru_no_selection": "TRU w/o selection",
    "tru_no_exact": "TRU w/o exact step",
    "reverse_repair_no_exact": "MMRecUn w/o exact step",
}


class DatasetSpec(Section):
    """One dataset of the grid: where it comes from and how its base models are trained."""

    label: str  # the name the report prints
    source: Literal["pipeline", "movielens-100k", "movielens-1m", "synthetic", "mmrec"]
    scale: Literal["tiny", "baby", "params"] = "params"  # synthetic: tru.data.synth.SCALES or params.synthetic
    mmrec_dir: str = ""  # mmrec: an MMRec-format folder
    canary: bool = False  # inject the backdoor canary into this dataset's split
    # per backbone, `train` keys laid over params.yaml's recipe for this dataset's base model,
    # its Retrain and UltraRE's shards (e.g. MIG-GT's own large-dataset recipe)
    train: dict[Literal["mgcn", "miggt"], dict[str, Any]] = {}

    @model_validator(mode="after")
    def _needs(self) -> DatasetSpec:
        if self.source == "mmrec" and not self.mmrec_dir:
            raise ValueError("source mmrec needs mmrec_dir")
        for backbone, over in self.train.items():
            unknown = sorted(set(over) - set(TrainParams.model_fields))
            if unknown:
                raise ValueError(
                    f"train.{backbone}: unknown key(s) {unknown}; choose from {sorted(TrainParams.model_fields)}"
                )
        return self


class Block(Section):
    """A block of the grid: every combination of its datasets, backbones, regimes, methods and seeds."""

    datasets: list[str] = Field(min_length=1)
    backbones: list[Literal["mgcn", "miggt"]] = Field(min_length=1)
    regimes: list[str] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    # evaluation seeds: the report's tables and claims rest on these, and no knob is ever tuned on them
    seeds: list[int] = Field(min_length=1)
    # development seeds: where knobs may be tuned (any method's, any setting's); the report shows
    # a setting's development rows until its evaluation seeds have a row for every method its
    # development seeds have (report.shown_rows), and says so
    development_seeds: list[int] = []

    @model_validator(mode="after")
    def _disjoint(self) -> Block:
        both = sorted(set(self.seeds) & set(self.development_seeds))
        if both:
            raise ValueError(
                f"seed(s) {both} are both evaluation and development seeds: a seed tuned on is no evidence"
            )
        return self

    @field_validator("regimes")
    @classmethod
    def _regimes(cls, v: list[str]) -> list[str]:
        bad = [r for r in v if r not in REGIMES]
        if bad:
            raise ValueError(f"unknown regime(s) {bad}; choose from {sorted(REGIMES)}")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in REFERENCE and m not in VARIANTS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(REFERENCE + tuple(VARIANTS))}")
        return v


class Grid(Section):
    """The grid file: where prepared datasets and results go, the datasets, and the blocks."""

    root: str = str(paths.BENCH_SCRATCH / "grid")  # prepared datasets and base models (not committed)
    out: str = str(paths.BENCH_REPORTS / "results.csv")
    datasets: dict[str, DatasetSpec]
    blocks: list[Block] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_datasets(self) -> Grid:
        for b in self.blocks:
            missing = [d for d in b.datasets if d not in self.datasets]
            if missing:
                raise ValueError(f"block names dataset(s) {missing} not under `datasets`")
        roles: dict[tuple[str, int], str] = {}
        for b in self.blocks:
            for d in b.datasets:
                for role, seeds in (("evaluation", b.seeds), ("development", b.development_seeds)):
                    for seed in seeds:
                        if roles.setdefault((d, seed), role) != role:
                            raise ValueError(
                                f"dataset {d!r}: seed {seed} is an evaluation seed in one block and a "
                                "development seed in another"
                            )
        return self

    def seed_role(self, dataset: str, seed: int) -> str:
        """ "evaluation" or "development": what `seed` is for on `dataset` (a seed no block
        names is reported as evaluation, the stricter reading of a row)."""
        for b in self.blocks:
            if dataset in b.datasets and int(seed) in b.development_seeds:
                return "development"
        return "evaluation"

    def seeds_by_role(self) -> dict[str, dict[str, list[int]]]:
        """Per dataset, its evaluation and development seeds (sorted): what the report states."""
        out: dict[str, dict[str, list[int]]] = {}
        for b in self.blocks:
            for d in b.datasets:
                have = out.setdefault(d, {"evaluation": [], "development": []})
                have["evaluation"] = sorted(set(have["evaluation"]) | set(b.seeds))
                have["development"] = sorted(set(have["development"]) | set(b.development_seeds))
        return out

    def cells(self) -> list[tuple]:
        """Every cell once, in the file's order (evaluation seeds, then development seeds); the
        references (`original`, the base model measured, and `popularity`) first in each setting
        so that the report always has them."""
        seen, out = set(), []
        for b in self.blocks:
            for d in b.datasets:
                for bb in b.backbones:
                    for seed in b.seeds + b.development_seeds:
                        for r in b.regimes:
                            for m in list(REFERENCE) + [m for m in b.methods if m not in REFERENCE]:
                                key = (d, bb, r, seed, m)
                                if key not in seen:
                                    seen.add(key)
                                    out.append(key)
        return out


def load_grid(path: str | Path) -> Grid:
    """The grid file at `path`, validated; a missing, malformed or invalid file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: grid file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return Grid.model_validate(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    except ValidationError as err:
        raise ConfigError(f"{path}: {validation_reasons(err)}") from None


def validation_reasons(err: ValidationError) -> str:
    """A validation error in one line: `field.path: message` per error, `; `-separated."""
    return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in err.errors())


# --------------------------------------------------------------------------- results


def _fixed(v: float | None, k: int = 4) -> str:
    """`v` with `k` decimals, "-" for None."""
    return "-" if v is None else f"{v:.{k}f}"


def _progress(row: dict) -> str:
    """The line printed when a cell's row is recorded."""
    return (
        f"{row['dataset']:8s} {row['backbone']:6s} {row['regime']:12s} seed {row['seed']} {row['method']:24s} "
        f"retain R@20 {_fixed(row['retain_recall@20'])}  forget R@20 {_fixed(row['forget_recall@20'])}  "
        f"MIA BA {_fixed(row['mia_balanced_accuracy'], 3)}  {row['seconds']:.1f} s"
    )


def results_store(out: str | Path) -> ResultsStore:
    """The grid's results CSV at `out`: one row per cell, COLUMNS in order, empty fields as None."""
    return ResultsStore(Path(out), KEY, _progress, columns=COLUMNS, blank_as_none=True)


def timings_path(out: str | Path) -> Path:
    """Where the grid records how long each part took: beside its CSV, `<out>.timings.json`."""
    return Path(out).with_suffix(".timings.json")


def bases_path(out: str | Path) -> Path:
    """Where the grid records which base model each seed's cells started from: beside its CSV,
    `<out>.bases.json` (tru.bench.grid.run.check_bases)."""
    return Path(out).with_suffix(".bases.json")


def read_results(out: str | Path) -> list[dict]:
    """The grid's finished rows in the CSV at `out` (none while it does not exist)."""
    return results_store(out).read()


def pending(grid: Grid, done: list[dict], only: dict[str, list[str]] | None = None) -> list[tuple]:
    """The grid's cells without a row in `done` yet (matching `only`), in run order. A value in
    `only` that no cell of the grid has is an error naming it (a typo would otherwise run nothing)."""
    cells = grid.cells()
    for key, allowed in (only or {}).items():
        have = {str(c[KEY.index(key)]) for c in cells}
        unknown = [v for v in allowed if str(v) not in have]
        if unknown:
            raise ConfigError(
                f"--only {key}={'+'.join(map(str, allowed))}: the grid has no {key} "
                f"{', '.join(map(repr, unknown))} (it has {', '.join(sorted(have))})"
            )
    finished = results_store(grid.out).finished(done)
    return [c for c in cells if c not in finished and cell_matches(c, only)]


def measured_seconds(done: list[dict]) -> dict[tuple, float]:
    """Per dataset x backbone x regime x method: the median of its cells' recorded seconds over
    the seeds that ran (rows without seconds left out); what a cell of it is expected to take."""
    seen: dict[tuple, list[float]] = {}
    for r in done:
        if r.get("seconds") is not None:
            seen.setdefault((r["dataset"], r["backbone"], r["regime"], r["method"]), []).append(float(r["seconds"]))
    return {k: float(np.median(v)) for k, v in seen.items()}


def expected_seconds(cell: tuple, measured: dict[tuple, float]) -> tuple[float | None, str | None]:
    """What `cell` (a KEY tuple) is expected to take by `measured` (measured_seconds), and the
    method whose seconds stand in for it: its own method's on the same dataset, backbone and
    regime (None stands in), else those of the method it varies (a Retrain replicate counts at
    Retrain's, an ablation at TRU's), else (None, None): never measured."""
    d, bb, r, _, m = cell
    base = VARIANTS.get(m, (m,))[0]
    if (d, bb, r, m) in measured:
        return measured[(d, bb, r, m)], None
    if (d, bb, r, base) in measured:
        return measured[(d, bb, r, base)], base
    return None, None


def minutes(seconds: float) -> str:
    """`seconds` in seconds below a minute and a half, in hours from an hour and a half on, else in minutes."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def pending_table(todo: list[tuple], done: Sequence[dict] = ()) -> str:
    """What is left to run, one line per dataset x backbone x regime x seed: the methods, and
    what they are expected to take by the seconds `done` recorded for the same dataset, backbone,
    regime and method on other seeds (measured_seconds). A variant never measured there counts
    at the seconds of the method it varies (a Retrain replicate at Retrain's, an ablation at
    TRU's), and says so; a method with neither is named as never measured. The seconds are each
    cell's own: data preparation and base models (once per dataset and backbone on a machine),
    UltraRE's shards (trained once, before its first cell) and the evaluation around each cell
    come on top, as the last line says."""
    measured = measured_seconds(list(done))
    groups: dict[tuple, list[str]] = {}
    for c in todo:
        groups.setdefault(c[:4], []).append(c[4])
    total, unmeasured, lines = 0.0, 0, []
    for (d, bb, r, seed), ms in groups.items():
        seconds, missing = 0.0, []
        stand_in: dict[str, list[str]] = {}
        for m in ms:
            expected, base = expected_seconds((d, bb, r, seed, m), measured)
            if expected is None:
                missing.append(m)
                continue
            seconds += expected
            if base is not None:
                stand_in.setdefault(base, []).append(m)
        total, unmeasured = total + seconds, unmeasured + len(missing)
        notes = [f"about {minutes(seconds)}"] if len(missing) < len(ms) else []
        notes += [f"{', '.join(v)} at {base}'s seconds" for base, v in stand_in.items()]
        notes += [f"{', '.join(missing)} never measured"] if missing else []
        lines.append(f"  {d} {bb} {r} seed {seed}: {', '.join(ms)} ({'; '.join(notes)})")
    if not todo:
        return "0 cell(s) to run"
    if unmeasured == len(todo):
        head = f"{len(todo)} cell(s) to run (none of them measured on another seed yet)"
    else:
        head = f"{len(todo)} cell(s) to run: about {minutes(total)} of cell time"
        head += " by the seconds measured on other seeds"
        head += f" ({unmeasured} cell(s) never measured)" if unmeasured else ""
    foot = (
        "  (cell seconds only: preparing a dataset and training its base models, UltraRE's shards "
        "and each cell's evaluation come on top)"
    )
    return "\n".join([head, *lines, foot])


def cell_matches(cell: tuple, only: dict[str, list[str]] | None) -> bool:
    """Whether `cell` (a KEY tuple) has one of the allowed values in every column of `only`
    (values compared as text; no `only`: every cell matches)."""
    if not only:
        return True
    values = dict(zip(KEY, cell))
    return all(str(values[k]) in {str(x) for x in allowed} for k, allowed in only.items())


def parse_only(text: str) -> dict[str, list[str]]:
    """`dataset=ml100k,backbone=mgcn+miggt` -> {"dataset": ["ml100k"], "backbone": ["mgcn", "miggt"]}."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        key, sep, values = part.partition("=")
        if not sep or key not in KEY or not values:
            raise ConfigError(f"--only {text!r}: expected column=value[+value] with column one of {', '.join(KEY)}")
        out[key] = values.split("+")
    return out
