"""`tru bench sensitivity` on tiny data: each knob moved alone around its default, the
references run beside it, development seeds only, resumed without re-running, the report
generated. Figures are recorded by the benchmark, not asserted here."""

import pandas as pd
import pytest

from tests.conftest import copy_repo
from tru.bench.sensitivity import (
    KNOBS,
    knob_default,
    knob_values,
    recipe,
    run_sensitivity_bench,
    with_knob,
    write_sensitivity_report,
)
from tru.bench.unlearn import variant_params
from tru.config import load_params, unlearn_for, with_backbone
from tru.errors import ConfigError

GRID = (
    "root: data/bench/grid\nout: results.csv\n"
    "datasets:\n  ml100k: {label: Tiny, source: pipeline, canary: true}\n"
    "blocks:\n  - {datasets: [ml100k], backbones: [mgcn], regimes: [interaction], methods: [tru], "
    "seeds: [7], development_seeds: [1]}\n"
)


def test_knob_values_centre_on_the_backbones_default(base_repo):
    params = load_params(base_repo / "params.yaml")
    for backbone in ("mgcn", "miggt"):
        p = with_backbone(params, backbone)
        up = unlearn_for(p).unlearn
        # the lr knob is TRU's own reverse step (unlearn.tru.lr), not the baselines' unlearn.lr
        assert up.tru.lr is not None and knob_default(p, "lr") == up.tru.lr
        assert knob_default(p, "capacity_rho") == up.tru.capacity_rho
        for knob in KNOBS:
            values = knob_values(p, knob)
            assert knob_default(p, knob) in values and values == sorted(set(values)) and len(values) >= 3
        assert all(v == int(v) and v >= 1 for v in knob_values(p, "max_epochs"))
        # the re-fit's steps are whole, and 0 (no re-fit) is among them
        assert 0.0 in knob_values(p, "refit_steps") and all(v == int(v) for v in knob_values(p, "refit_steps"))
        assert max(knob_values(p, "capacity_rho")) <= 1.0
        # a knob set last, over the backbone's recipe (variant_params lays it on first)
        _, tru = variant_params(p, "tru")
        moved = with_knob(tru, "lr", 0.123).unlearn
        assert moved.tru.lr == 0.123 and moved.lr == tru.unlearn.lr
        assert with_knob(tru, "gate_lambda", 0.0).unlearn.tru.gate_lambda == 0.0
        assert with_knob(tru, "max_epochs", 2.0).unlearn.max_epochs == 2
        assert with_knob(tru, "refit_steps", 100.0).unlearn.tru.refit_steps == 100
    # Retrain's replicates train again with another seed on the same retain set
    assert variant_params(params, "retrain_r2")[1].seed == params.seed + 1
    assert variant_params(params, "retrain_r3")[1].seed == params.seed + 2
    assert variant_params(params, "retrain")[1].seed == params.seed
    # TRU's re-fit and pre-check offered to the others: no reverse epoch, or no mechanism
    method, exact_refit = variant_params(params, "exact_refit")
    assert method == "tru" and exact_refit.unlearn.max_epochs == 0
    assert exact_refit.unlearn.tru.refit_share > 0 and exact_refit.unlearn.tru.check_before_reverse
    method, rr = variant_params(params, "reverse_repair_refit")
    t = rr.unlearn.tru
    assert method == "tru" and not (t.gate or t.scaling or t.selection) and t.refit_share > 0


def test_sensitivity_moves_one_knob_at_a_time_on_development_seeds_and_resumes(base_repo, tmp_path, monkeypatch):
    repo = copy_repo(base_repo, tmp_path / "repo")
    monkeypatch.chdir(repo)
    grid = repo / "grid.yaml"
    grid.write_text(GRID)
    params = load_params("params.yaml")
    out = tmp_path / "sens.csv"
    with pytest.raises(ConfigError, match="not development seeds.*tuning on evaluation seeds is refused"):
        run_sensitivity_bench(params, out, grid, [("mgcn", "interaction")], [7], ["lr"])
    with pytest.raises(ConfigError, match="unknown \\['rho'\\]"):
        run_sensitivity_bench(params, out, grid, [("mgcn", "interaction")], [1], ["rho"])
    assert not out.exists()

    knobs = ["max_epochs", "scale_gamma"]
    run_sensitivity_bench(params, out, grid, [("mgcn", "interaction")], [1], knobs, echo=lambda s: None)
    df = pd.read_csv(out)
    # original, retrain, TRU as configured, the centre (defaults, pre-check off), the other values
    expect = 4 + sum(len(knob_values(params, k)) - 1 for k in knobs)
    assert len(df) == expect
    assert set(df.knob) == {"original", "retrain", "default", "centre", *knobs}
    assert df.loc[df.knob.isin(["original", "retrain", "default", "centre"]), "value"].isna().all()
    # with the pre-check off at least one loop epoch runs, so the knobs have a reverse step to act in
    assert (df.loc[df.knob.isin(["centre", *knobs]), "epochs"] >= 1).all()
    # the knob reaches the method: TRU runs with it set, over the backbone's recipe
    import tru.unlearning as unlearning
    from tru.bench.sensitivity import sensitivity_cell

    seen, real = [], unlearning.run_method
    monkeypatch.setattr(unlearning, "run_method", lambda name, ctx, p: seen.append((name, p)) or real(name, ctx, p))
    split, ck = "data/split", "data/models/base"
    sensitivity_cell(params.model_dump_json(), split, ck, "interaction", 1, "scale_gamma", 0.5)
    sensitivity_cell(params.model_dump_json(), split, ck, "interaction", 1, "centre", None)
    sensitivity_cell(params.model_dump_json(), split, ck, "interaction", 1, "default", None)
    # the re-fit acts before any reverse epoch: moved with the pre-check as configured
    user = sensitivity_cell(params.model_dump_json(), split, ck, "user", 1, "refit_steps", 7.0)
    assert [n for n, _ in seen] == ["tru", "tru", "tru", "tru"]
    knob, centre, configured, refit = (p.unlearn.tru for _, p in seen)
    assert refit.refit_steps == 7 and refit.check_before_reverse == params.unlearn.tru.check_before_reverse
    # user level with the canary's fake users deleted: the backdoor's attack success rate is measured
    assert 0.0 <= user["backdoor_asr"] <= 1.0 and df["backdoor_asr"].isna().all()
    assert knob.scale_gamma == 0.5 and centre.scale_gamma == configured.scale_gamma == knob_default(
        params, "scale_gamma"
    )
    assert not knob.check_before_reverse and not centre.check_before_reverse
    assert configured.check_before_reverse == params.unlearn.tru.check_before_reverse
    assert df.loc[df.knob == "original", "seconds"].iloc[0] == 0
    # resumed: nothing re-run
    rows = run_sensitivity_bench(params, out, grid, [("mgcn", "interaction")], [1], knobs, echo=lambda s: None)
    assert len(rows) == expect and len(pd.read_csv(out)) == expect
    md = out.with_suffix(".md").read_text()
    assert "development seeds 1 (never the grid's evaluation seeds)" in md
    default_epochs = knob_default(params, "max_epochs")
    assert f"| mgcn · interaction | max_epochs | {default_epochs:g}* |" in md
    assert "| mgcn · interaction | **as configured** (pre-check on) | – |" in md
    assert out.with_suffix(".png").stat().st_size > 0
    # every TRU run records the recipe it ran around; the references none
    assert df.loc[df.knob.isin(["original", "retrain"]), "recipe"].isna().all()
    assert (df.loc[~df.knob.isin(["original", "retrain"]), "recipe"] == recipe(params)).all()
    assert f"mgcn: `{recipe(params)}`" in md
    # a default changed: the runs around the old one move to a table of their own, then run again
    moved = params.model_copy(
        update={"unlearn": params.unlearn.model_copy(update={"max_epochs": params.unlearn.max_epochs + 1})}
    )
    assert recipe(moved) != recipe(params) and "max_epochs=" in recipe(moved)
    rows = pd.read_csv(out).to_dict("records")
    write_sensitivity_report(rows, out, moved)
    text = md_text(out)
    assert "No run around today's defaults yet" in text and "## Around earlier defaults" in text
    earlier = text.split("## Around earlier defaults")[1]
    assert f"mgcn, around `{recipe(params)}`:" in earlier
    assert f"| mgcn · interaction | max_epochs | {default_epochs:g}* |" in earlier
    again = run_sensitivity_bench(moved, out, grid, [("mgcn", "interaction")], [1], ["scale_gamma"], echo=print)
    df2 = pd.read_csv(out)
    assert len(again) == len(df2) == 4 + len(knob_values(moved, "scale_gamma")) - 1  # the old max_epochs runs gone
    assert (df2.loc[~df2.knob.isin(["original", "retrain"]), "recipe"] == recipe(moved)).all()
    # the references did not run again
    kept = df.loc[df.knob.isin(["original", "retrain"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(df2.loc[df2.knob.isin(["original", "retrain"])].reset_index(drop=True), kept)
    assert "Around earlier defaults" not in md_text(out) and f"mgcn: `{recipe(moved)}`" in md_text(out)


def md_text(out):
    return out.with_suffix(".md").read_text()
