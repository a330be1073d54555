"""`tru bench sensitivity`: TRU's knobs one at a time around their defaults (docs: Benchmarks).

The article reports how TRU responds to its hyper-parameters; this is ours. For each setting
(backbone x deletion regime on ML-100k) and each development seed, the deletion is drawn as
the grid draws it, then TRU erases it as configured (`default`), and, with its check before
the first reverse epoch switched off, once with the defaults (`centre`) and once per other
value of each knob, every other knob at its default. The knobs all act inside reverse epochs;
as configured, TRU often runs none (the stop rule already holds after the exact step and the
re-fit), and then no knob could act: switching the pre-check off makes at least one reverse
epoch run, so the curves say what each knob does to the reverse step when it runs, and the
`default` row what the configured method does. Each run is measured as the grid measures a cell
(retain and forget Recall@20, epochs, seconds) next to the setting's own references run here:
the untouched original and an exact retrain on the same retain set. What a knob does is read
as the gap of forget Recall@20 to Retrain's (nearer is better, over- and under-forgetting
alike) and retain Recall@20 as a share of the original's.

Tuning is what this benchmark is for, so it runs on development seeds only: a seed the grid
file names as an evaluation seed of the dataset is refused. Resumable (one CSV row per run, in
a fresh child process); the table and one plot panel per knob are generated from the CSV.
Every TRU run records the recipe it ran around (`recipe`: each knob's default and a digest of
the rest of TRU's recipe): once a default changes, the runs around the old ones no longer
count as done; the report shows them apart, under the defaults they ran around (the evidence
for the change), until the setting is run again around today's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tru.bench.store import ResultsStore
from tru.config import Params, with_backbone
from tru.errors import ConfigError

KEY = ("backbone", "regime", "seed", "knob", "value")
# knob -> (where it lives: "unlearn" or "tru", its values as factors of the backbone's default)
KNOBS: dict[str, tuple[str, tuple[float, ...]]] = {
    "capacity_rho": ("tru", (1 / 3, 2 / 3, 1.0, 5 / 3, 3.0)),  # rho 0.3: 0.1, 0.2, 0.3, 0.5, 0.9
    "scale_gamma": ("tru", (0.0, 0.5, 1.0, 2.0)),
    "gate_lambda": ("tru", (0.0, 0.2, 1.0, 4.0)),
    "lr": ("tru", (0.25, 0.5, 1.0, 2.0, 4.0)),  # TRU's reverse step: unlearn.tru.lr, else unlearn.lr
    "max_epochs": ("unlearn", (0.2, 0.5, 1.0, 2.0)),
    # the item re-fit, before any reverse epoch (items that lost >= refit_share of their pairs)
    "refit_steps": ("tru", (0.0, 1 / 3, 1.0, 10 / 3, 10.0)),  # 30: 0 (none), 10, 30, 100, 300
    "refit_lr": ("tru", (0.5, 1.0, 2.0, 4.0)),
}
# knobs that act before the reverse epochs: moved with TRU as configured (the pre-check on), their
# default's point is TRU as configured (`default`), not the centre
BEFORE_REVERSE = frozenset({"refit_steps", "refit_lr"})
WHOLE = frozenset({"max_epochs", "refit_steps"})  # counts: run at whole values
REFERENCES = ("original", "retrain")  # run per setting and seed, knob = the reference's name
# TRU as configured (`default`), and the curves' centre: the defaults with the pre-check off
CONFIGURED, CENTRE = "default", "centre"


def knob_default(params: Params, knob: str) -> float:
    """The knob's value in the backbone's recipe (unlearn_for: the backbone's overrides laid on)."""
    from tru.config import unlearn_for

    where, _ = KNOBS[knob]
    up = unlearn_for(params).unlearn
    if knob == "lr":  # the step TRU reverses with
        from tru.unlearning.reverse_repair import reverse_lr

        return float(reverse_lr(up, up.tru))
    return float(getattr(up.tru if where == "tru" else up, knob))


# the loop's settings TRU runs with besides `unlearn.tru` (the baselines' own sections and step are not)
_LOOP = ("exact_erasure", "rebuild_graphs", "max_epochs", "forget_batch_size", "reverse_sample")
_LOOP_REPAIR = ("repair_lr", "repair_sample", "repair_batch_size", "stop")


def recipe(params: Params) -> str:
    """The recipe a TRU run's knobs move around, for the backbone `params` names: every knob's
    default, readable, then a digest of the rest of what TRU runs with (its own section and the
    loop's settings, the backbone's overrides laid on). A recorded run whose digest differs from
    the current one's ran around other defaults (current)."""
    from tru.config import unlearn_for

    up = unlearn_for(params).unlearn
    rest = up.model_dump(mode="json", include={"tru", *_LOOP, *_LOOP_REPAIR})
    digest = hashlib.sha256(repr(sorted(_flat(rest))).encode()).hexdigest()[:10]
    return " ".join(f"{k}={knob_default(params, k):g}" for k in KNOBS) + f" #{digest}"


def _flat(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in d.items():
        out += _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", repr(v))]
    return out


def current(row: dict, recipes: dict[str, str]) -> bool:
    """Whether a recorded row counts: a reference (no knob acts in it), or a TRU run around the
    recipe its backbone has now (`recipes`: backbone -> recipe), compared by its digest (the
    readable part grows when a knob is added)."""
    if row["knob"] in REFERENCES:
        return True
    r, now = row.get("recipe"), recipes.get(row["backbone"])
    return isinstance(r, str) and now is not None and r.rsplit("#", 1)[-1] == now.rsplit("#", 1)[-1]


def knob_values(params: Params, knob: str) -> list[float]:
    """The values a knob is run at: its factors times the backbone's default, rho capped at 1,
    epochs whole and at least 1; duplicates dropped, in increasing order."""
    default = knob_default(params, knob)
    out = []
    for f in KNOBS[knob][1]:
        v = default * f
        if knob == "capacity_rho":
            v = min(1.0, v)
        if knob in WHOLE:
            v = float(max(1 if knob == "max_epochs" else 0, round(v)))
        out.append(round(v, 6))
    return sorted(set(out))


def with_knob(params: Params, knob: str, value: float) -> Params:
    """The params TRU runs with (the backbone's recipe already laid on) with one knob set."""
    where, _ = KNOBS[knob]
    up = params.unlearn
    v: float | int = int(value) if knob in WHOLE else float(value)
    if where == "tru":
        up = up.model_copy(update={"tru": up.tru.model_copy(update={knob: v})})
    else:
        up = up.model_copy(update={knob: v})
    return params.model_copy(update={"unlearn": up})


def without_precheck(params: Params) -> Params:
    """`params` with TRU's check before the first reverse epoch off: at least one reverse epoch runs."""
    up = params.unlearn
    return params.model_copy(
        update={"unlearn": up.model_copy(update={"tru": up.tru.model_copy(update={"check_before_reverse": False})})}
    )


def sensitivity_cell(
    params_json: str, split_dir: str, checkpoint: str, regime: str, seed: int, knob: str, value: float | None
) -> dict:
    """One run, in the process that runs it: the deletion drawn with `seed`, erased by TRU with
    `knob` at `value` and the pre-check off (on for a knob that acts before the reverse epochs;
    knob "centre": every knob at its default, the pre-check off; "default": TRU as configured;
    "original" / "retrain": that reference); its metrics, with the backdoor's attack success rate
    where the deletion takes the canary's fake users (user level)."""
    from tru.audit.canary import load as load_canary
    from tru.bench.unlearn import erase_variant, regime_context
    from tru.stages.context import batch_metrics

    params = Params.model_validate_json(params_json)
    canary = load_canary(split_dir)
    ctx = regime_context(params, regime, seed, split_dir, checkpoint, delete_canary=bool(canary) and regime == "user")
    variant = knob if knob in REFERENCES else "tru"
    tune: Callable[[Params], Params] | None = None
    if knob == CENTRE:
        tune = without_precheck
    elif knob in KNOBS and value is not None:
        knob_value = float(value)

        def knob_tune(p: Params) -> Params:
            moved = with_knob(p, knob, knob_value)
            return moved if knob in BEFORE_REVERSE else without_precheck(moved)

        tune = knob_tune
    run = erase_variant(params, ctx, variant, tune=tune)
    model = run["model"]
    if variant != "original":
        model.set_graph(ctx.data.train, ctx.data.active_items)
    m = batch_metrics(model, ctx)
    asr = None
    if canary and regime == "user":
        from tru.bench.unlearn import canary_backdoor

        model.eval()
        asr = canary_backdoor(model, ctx, canary, params.audit.k).get("asr")
    return {
        "retain_recall@20": m["retain"]["recall@20"],
        "forget_recall@20": m["forget"]["recall@20"],
        "backdoor_asr": asr,
        "epochs": run["epochs"],
        "repair_epochs": run["repair_epochs"],
        "seconds": round(float(run["seconds"]), 2),
    }


def _line(row: dict) -> str:
    value = "" if row["value"] is None or row["value"] != row["value"] else f" = {row['value']:g}"
    return (
        f"  {row['backbone']} {row['regime']} seed {row['seed']} {row['knob']}{value}: retain R@20 "
        f"{row['retain_recall@20']:.4f}, forget R@20 {row['forget_recall@20']:.4f}, {row['epochs']} epoch(s), "
        f"{row['seconds']:.1f} s" + ("" if row.get("backdoor_asr") is None else f", ASR {row['backdoor_asr']:.3f}")
    )


def sensitivity_store(out: str | Path) -> ResultsStore:
    return ResultsStore(Path(out), KEY, _line)


def _key(row: dict) -> tuple:
    """A row's cell, the reference rows' empty value as None (CSV reads it as NaN)."""
    v = row["value"]
    v = None if v is None or v != v else round(float(v), 6)
    return row["backbone"], row["regime"], int(row["seed"]), row["knob"], v


def run_sensitivity_bench(
    params: Params,
    out: str | Path,
    grid_file: str | Path,
    settings: list[tuple[str, str]],
    seeds: list[int],
    knobs: list[str],
    echo: Callable[[str], None] = print,
) -> list[dict]:
    """Every run not yet in the CSV at `out` (module docstring); then the report beside it."""
    from tru.bench.grid.run import base_checkpoint, prepare_dataset, with_train
    from tru.bench.grid.spec import load_grid
    from tru.bench.process import in_child
    from tru.bench.unlearn import REGIMES

    grid = load_grid(grid_file)
    dataset = "ml100k"
    if dataset not in grid.datasets:
        raise ConfigError(f"{grid_file}: no dataset {dataset!r} to tune on")
    evaluation = sorted(s for s in seeds if grid.seed_role(dataset, s) != "development")
    if evaluation:
        raise ConfigError(
            f"--seeds: {evaluation} are not development seeds of {dataset} in {grid_file}; tuning on evaluation "
            f"seeds is refused (development seeds: {grid.seeds_by_role()[dataset]['development'] or 'none'})"
        )
    bad = sorted(set(knobs) - set(KNOBS))
    if bad:
        raise ConfigError(f"--knobs: unknown {bad}; choose from {', '.join(KNOBS)}")
    for backbone, regime in settings:
        if backbone not in ("mgcn", "miggt") or regime not in REGIMES:
            raise ConfigError(
                f"--settings: {backbone}:{regime} is not backbone:regime (mgcn|miggt : {sorted(REGIMES)})"
            )
    out = Path(out)
    store = sensitivity_store(out)
    done = store.read()
    spec = grid.datasets[dataset]
    p, split = prepare_dataset(params, dataset, spec, grid.root)
    recipes = {b: recipe(with_backbone(p, b)) for b, _ in settings}
    stale = [r for r in done if (r["backbone"], r["regime"]) in settings and not current(r, recipes)]
    if stale:  # run around other defaults: superseded by the runs below (the old ones stay in git)
        echo(f"{len(stale)} recorded run(s) ran around other defaults than {recipes}: running them again")
        done = [r for r in done if not any(r is x for x in stale)]
        store.rewrite(done)  # before the first record, which would take them in again from the file
    finished = {_key(r) for r in done}
    for backbone, regime in settings:
        pb = with_train(with_backbone(p, backbone), spec)  # the recipe the grid trains this backbone with
        checkpoint = base_checkpoint(pb, dataset, spec, split, grid.root, params.model.backbone)
        runs: list[tuple[str, float | None]] = [(r, None) for r in REFERENCES]
        runs += [(CONFIGURED, None), (CENTRE, None)]
        runs += [(k, v) for k in knobs for v in knob_values(pb, k) if v != knob_default(pb, k)]
        for seed in seeds:
            for knob, value in runs:
                if (backbone, regime, seed, knob, value) in finished:
                    continue
                cell = in_child(
                    sensitivity_cell, pb.model_dump_json(), str(split), str(checkpoint), regime, seed, knob, value
                )
                row = {"backbone": backbone, "regime": regime, "seed": seed, "knob": knob, "value": value}
                row |= {"recipe": None if knob in REFERENCES else recipes[backbone]}
                store.record(done, row | cell)
    write_sensitivity_report(done, out, params)
    return done


def _table(rows: list[dict], defaults: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Per setting, knob and value (a knob's default value, from `defaults`: backbone -> knob ->
    value, is measured by the `centre` runs, or by TRU as configured for a knob that acts before
    the reverse epochs; TRU as configured is knob `default`): mean over seeds of the forget gap
    to that seed's Retrain, of retain as a % of the original's, and of the backdoor's attack
    success rate minus Retrain's (where measured)."""
    df = pd.DataFrame(rows)
    if "backdoor_asr" not in df:
        df["backdoor_asr"] = np.nan
    df["backdoor_asr"] = pd.to_numeric(df["backdoor_asr"], errors="coerce")
    setting = ["backbone", "regime", "seed"]
    ref = df[df.knob.isin(REFERENCES)].pivot_table(
        index=setting, columns="knob", values=["retain_recall@20", "forget_recall@20", "backdoor_asr"], dropna=False
    )
    runs = df[~df.knob.isin(REFERENCES)].copy()
    runs.loc[runs.knob == CONFIGURED, "value"] = 0.0  # one row per setting: the value is a placeholder
    expanded = [runs[runs.knob != CENTRE]]
    for (backbone, _), g in runs.groupby(["backbone", "regime"]):
        for knob in sorted(set(g.knob) - {CENTRE, CONFIGURED}):
            d = g[g.knob == (CONFIGURED if knob in BEFORE_REVERSE else CENTRE)].copy()
            d["knob"], d["value"] = knob, defaults[backbone][knob]
            expanded.append(d)
    runs = pd.concat(expanded, ignore_index=True)
    idx = pd.MultiIndex.from_frame(runs[setting])
    retrain_asr = ref[("backdoor_asr", "retrain")] if ("backdoor_asr", "retrain") in ref else None
    runs["asr_gap"] = (
        np.nan if retrain_asr is None else runs["backdoor_asr"].to_numpy() - retrain_asr.reindex(idx).to_numpy()
    )
    runs["forget_gap"] = (
        runs["forget_recall@20"].to_numpy() - ref[("forget_recall@20", "retrain")].reindex(idx).to_numpy()
    )
    runs["retain_pct"] = (
        100 * runs["retain_recall@20"].to_numpy() / ref[("retain_recall@20", "original")].reindex(idx).to_numpy()
    )
    runs["abs_gap"] = runs["forget_gap"].abs()
    runs = runs.dropna(subset=["abs_gap", "retain_pct"])  # a seed whose references are missing
    g = runs.groupby(["backbone", "regime", "knob", "value"])
    table = g.agg(
        abs_gap=("abs_gap", "mean"),
        gap_min=("abs_gap", "min"),
        gap_max=("abs_gap", "max"),
        forget_gap=("forget_gap", "mean"),
        retain_pct=("retain_pct", "mean"),
        retain_min=("retain_pct", "min"),
        asr_gap=("asr_gap", "mean"),
        epochs=("epochs", "mean"),
        seconds=("seconds", "mean"),
        seeds=("seed", "nunique"),
    ).reset_index()
    return table


def _signed(v: float) -> str:
    return "–" if v != v else f"{v:+.4f}"


def _recipes(params: Params, df: pd.DataFrame) -> dict[str, str]:
    return {b: recipe(with_backbone(params, b)) for b in df["backbone"].unique()}


def write_sensitivity_report(rows: list[dict], out: Path, params: Params) -> Path:
    """The report (`out` with .md) and the plot (`out` with .png) from the CSV rows: the runs
    around today's recipe first (the plot draws them), then, each in a table of its own, the
    runs recorded around earlier defaults (a study that changed a default ran around the old
    one), with the defaults they ran around."""
    md = out.with_suffix(".md")
    lines = ["# TRU's knobs, one at a time (generated by `tru bench sensitivity`)", ""]
    df = pd.DataFrame(rows)
    if df.empty or not set(REFERENCES) <= set(df.knob) or not df.knob.isin([CENTRE, CONFIGURED]).any():
        md.write_text("\n".join(lines + ["No setting has its references and a default run yet.", ""]))
        return md
    recipes = _recipes(params, df)
    refs = [r for r in rows if r["knob"] in REFERENCES]
    now = [r for r in rows if r["knob"] not in REFERENCES and current(r, recipes)]
    earlier: dict[tuple[str, str], list[dict]] = {}  # (backbone, digest) -> runs
    texts: dict[tuple[str, str], str] = {}  # the fullest recipe text of each (a knob added later names more)
    for r in rows:
        if r["knob"] not in REFERENCES and not current(r, recipes):
            text = str(r.get("recipe"))
            key = (r["backbone"], text.rsplit("#", 1)[-1])
            earlier.setdefault(key, []).append(r)
            texts[key] = max(texts.get(key, ""), text, key=len)
    seeds = ", ".join(str(s) for s in sorted(df["seed"].unique()))
    lines += [
        f"ML-100k, development seeds {seeds} (never the grid's evaluation seeds). Per setting, each knob is "
        "moved alone, the others at their defaults (the backbone's recipe, marked *), with TRU's check "
        "before the first reverse epoch off, so that the reverse step the knobs act in runs at least once. "
        "The first row per setting is TRU as configured (the pre-check on): where its epochs are 0, the "
        "stop rule held after the exact step and the re-fit, and no reverse-epoch knob acts in the configured "
        "method. The item re-fit's knobs (refit_steps, refit_lr) act before any reverse epoch: they are moved "
        "with the pre-check on, TRU as configured is their default's point. |gap|: the distance of TRU's "
        "forget Recall@20 from the same deletion's exact Retrain (mean "
        "over seeds, min-max; nearer is better, over-forgetting counts as much as residue); gap: its sign "
        "(above 0: residue); retain: Recall@20 as a % of the untouched original's. Epochs: the loop's "
        "epochs run (reverse, or repair only once the erasure checks hold). ASR gap: at user level, where the "
        "deletion takes the backdoor canary's fake users, the target's attack success rate minus the same "
        "deletion's Retrain's (below 0: the target is buried deeper than a retrain leaves it; – not measured).",
        "",
        "Today's defaults, which the knobs move around (`recipe` in the CSV; after #, a digest of the rest of "
        "TRU's recipe): " + "; ".join(f"{b}: `{r}`" for b, r in sorted(recipes.items())) + ".",
        "",
    ]
    today = {b: _defaults(r) for b, r in recipes.items()}
    t = _table(refs + now, today) if now else None
    if t is not None and not t.empty:
        lines += _table_lines(t, today)
        lines += ["", f"![sensitivity per knob]({out.with_suffix('.png').name})", ""]
        _plot(t, out.with_suffix(".png"), today)
    else:
        lines += ["No run around today's defaults yet: `tru bench sensitivity` runs them.", ""]
    if earlier:
        lines += [
            "## Around earlier defaults",
            "",
            "Runs recorded before a default changed, kept as the evidence for that change: each table ran "
            "around the defaults above it, with the same references. `tru bench sensitivity` runs a setting "
            "again around today's defaults, and then drops these.",
            "",
        ]
        for (backbone, digest), group in sorted(earlier.items()):
            text = texts[(backbone, digest)]
            then = {backbone: _defaults(text)}
            t = _table(refs + group, then)
            if t.empty:
                continue
            lines += [f"{backbone}, around `{text}`:", ""] + _table_lines(t, then) + [""]
    md.write_text("\n".join(lines))
    return md


def _defaults(recipe_text: str) -> dict[str, float]:
    """The knob defaults a recipe string names (`knob=value` words; recipe())."""
    return {k: float(v) for k, v in re.findall(r"(\w+)=([-+.\deE]+)", recipe_text) if k in KNOBS}


def _table_lines(t: pd.DataFrame, defaults: dict[str, dict[str, float]]) -> list[str]:
    """The Markdown table of `_table`'s rows; a knob's default (from `defaults`) marked *."""
    lines = [
        "| setting | knob | value | \\|gap\\| (min-max) | gap | retain % (min) | ASR gap | epochs | seconds | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    t = t.assign(order=(t["knob"] != CONFIGURED).astype(int)).sort_values(
        ["backbone", "regime", "order"], kind="stable"
    )
    for (backbone, regime, knob), g in t.groupby(["backbone", "regime", "knob"], sort=False):
        if knob == CONFIGURED:
            r = g.iloc[0]
            lines.append(
                f"| {backbone} · {regime} | **as configured** (pre-check on) | – | {r.abs_gap:.4f} ({r.gap_min:.4f}-"
                f"{r.gap_max:.4f}) | {r.forget_gap:+.4f} | {r.retain_pct:.1f} ({r.retain_min:.1f}) | "
                f"{_signed(r.asr_gap)} | {r.epochs:.1f} | {r.seconds:.1f} | {r.seeds} |"
            )
            continue
        default = defaults.get(backbone, {}).get(knob, np.nan)
        for r in g.sort_values("value").itertuples():
            star = "*" if np.isclose(r.value, default) else ""
            lines.append(
                f"| {backbone} · {regime} | {knob} | {r.value:g}{star} | {r.abs_gap:.4f} ({r.gap_min:.4f}-"
                f"{r.gap_max:.4f}) | {r.forget_gap:+.4f} | {r.retain_pct:.1f} ({r.retain_min:.1f}) | "
                f"{_signed(r.asr_gap)} | {r.epochs:.1f} | {r.seconds:.1f} | {r.seeds} |"
            )
    return lines


def _plot(t: pd.DataFrame, path: Path, defaults: dict[str, dict[str, float]]) -> None:
    """One column per knob: |forget gap| to Retrain (top) and retain % of the original (bottom)
    against the knob's value, one line per setting (mean over seeds, bars min-max); the default
    is the open marker."""
    from matplotlib.ticker import NullFormatter

    from tru.bench.process import pyplot

    plt = pyplot()
    knobs = [k for k in dict.fromkeys(t["knob"]) if k != CONFIGURED]
    fig, axes = plt.subplots(2, len(knobs), figsize=(3.2 * len(knobs), 5.6), squeeze=False)
    for j, knob in enumerate(knobs):
        for (backbone, regime), g in t[t.knob == knob].groupby(["backbone", "regime"], sort=False):
            g = g.sort_values("value")
            default = defaults[backbone][knob]
            label = f"{backbone} · {regime}"
            err = [g["abs_gap"] - g["gap_min"], g["gap_max"] - g["abs_gap"]]
            line = axes[0][j].errorbar(g["value"], g["abs_gap"], yerr=err, marker="o", capsize=2, label=label)
            axes[1][j].plot(g["value"], g["retain_pct"], marker="o", color=line[0].get_color(), label=label)
            d = g[np.isclose(g["value"], default)]
            for ax, col in ((axes[0][j], "abs_gap"), (axes[1][j], "retain_pct")):
                ax.plot(d["value"], d[col], "o", markersize=11, mfc="none", color=line[0].get_color())
        axes[0][j].set_title(knob, fontsize=10)
        axes[1][j].set_xlabel(knob)
        if knob == "lr":
            for ax in (axes[0][j], axes[1][j]):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # the minor labels overlap
    axes[0][0].set_ylabel("|forget R@20 - Retrain's|")
    axes[1][0].set_ylabel("retain R@20, % of original")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(
        "TRU's knobs one at a time, pre-check off (ML-100k, development seeds; open marker: default)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
