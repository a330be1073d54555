"""The comparison grid's plumbing: the grid file, a tiny grid end to end (cells, resume,
--only, the report). Figures are recorded by the benchmark, not asserted here."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

import tru.bench.grid.run as grid_run
from tru.bench.grid.claims import claim_check, claim_verdicts, common_seed_rows, over_exact, retrain_floors
from tru.bench.grid.methods import REFERENCE
from tru.bench.grid.report import parts_markdown, report_markdown, shown_rows, summarise, write_report
from tru.bench.grid.run import cooccurring_items
from tru.bench.grid.spec import (
    COLUMNS,
    KEY,
    DatasetSpec,
    cell_matches,
    load_grid,
    measured_seconds,
    parse_only,
    pending,
    pending_table,
)
from tru.bench.process import host_cpu
from tru.config import parse_params
from tru.errors import ConfigError, DataError
from tru.io import read_json, sha256_file, sha256_tree


def write_grid(path, **changes):
    g = {
        "root": "grid",
        "out": "out/results.csv",
        "datasets": {"tiny": {"label": "Tiny (synthetic)", "source": "synthetic", "canary": True}},
        "blocks": [
            {
                "datasets": ["tiny"],
                "backbones": ["mgcn"],
                "regimes": ["user", "interaction"],
                "methods": ["retrain", "tru"],
                "seeds": [1],
            }
        ],
    }
    g.update(changes)
    path.write_text(yaml.safe_dump(g))
    return path


def test_the_repo_grid_is_valid_and_every_setting_starts_with_its_reference():
    g = load_grid(ROOT / "reports/bench/grid.yaml")
    cells = g.cells()
    assert len(cells) == len(set(cells))
    ml = [c for c in cells if c[0] == "ml100k"]
    # backbones x (5 evaluation + 3 development seeds) x regimes x (original + popularity + 16 methods)
    assert len(ml) == 2 * 8 * 3 * 18
    assert {c[3] for c in ml if g.seed_role("ml100k", c[3]) == "development"} == {1, 2, 3}
    assert {c[4] for c in ml} >= {
        "exact",
        "exact_refit",
        "reverse_repair_refit",
        "retrain_r2",
        "retrain_r3",
        "tru_uniform_lr",
    }
    assert {c[4] for c in cells} >= {"original", "popularity", "retrain", "reverse_repair", "multidelete", "tru"}
    # every setting offers TRU's re-fit and pre-check to the exact step and to MMRecUn's loop,
    # so the report can tell the re-fit from the reverse loop everywhere
    methods_by_setting = {}
    for c in cells:
        methods_by_setting.setdefault(c[:3], set()).add(c[4])
    for setting, methods in methods_by_setting.items():
        assert {"exact", "exact_refit", "reverse_repair_refit", "retrain_r2", "retrain_r3"} <= methods, setting
    heads = {}
    for c in cells:
        heads.setdefault(c[:4], []).append(c[4])
    assert {tuple(h[:2]) for h in heads.values()} == {("original", "popularity")}


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {
                "blocks": [
                    {"datasets": ["nope"], "backbones": ["mgcn"], "regimes": ["user"], "methods": ["tru"], "seeds": [1]}
                ]
            },
            "dataset\\(s\\) \\['nope'\\] not under `datasets`",
        ),
        (
            {
                "blocks": [
                    {
                        "datasets": ["tiny"],
                        "backbones": ["mgcn"],
                        "regimes": ["users"],
                        "methods": ["tru"],
                        "seeds": [1],
                    }
                ]
            },
            "unknown regime",
        ),
        (
            {
                "blocks": [
                    {
                        "datasets": ["tiny"],
                        "backbones": ["mgcn"],
                        "regimes": ["user"],
                        "methods": ["tru", "magic"],
                        "seeds": [1],
                    }
                ]
            },
            "unknown method",
        ),
        ({"datasets": {"tiny": {"label": "x", "source": "mmrec"}}}, "mmrec needs mmrec_dir"),
        ({"colour": "blue"}, "colour"),
        (
            {
                "blocks": [
                    {
                        "datasets": ["tiny"],
                        "backbones": ["mgcn"],
                        "regimes": ["user"],
                        "methods": ["tru"],
                        "seeds": [1, 2],
                        "development_seeds": [2],
                    }
                ]
            },
            "seed\\(s\\) \\[2\\] are both evaluation and development seeds",
        ),
        (
            {
                "blocks": [
                    {
                        "datasets": ["tiny"],
                        "backbones": ["mgcn"],
                        "regimes": ["user"],
                        "methods": ["tru"],
                        "seeds": [1],
                    },
                    {
                        "datasets": ["tiny"],
                        "backbones": ["miggt"],
                        "regimes": ["user"],
                        "methods": ["tru"],
                        "seeds": [5],
                        "development_seeds": [1],
                    },
                ]
            },
            "seed 1 is an evaluation seed in one block and a development seed in another",
        ),
        (
            {"datasets": {"tiny": {"label": "x", "source": "synthetic", "train": {"miggt": {"batch": 8000}}}}},
            "train.miggt: unknown key\\(s\\) \\['batch'\\]",
        ),
        (
            {"datasets": {"tiny": {"label": "x", "source": "synthetic", "train": {"lightgcn": {"lr": 0.01}}}}},
            "lightgcn",
        ),
    ],
)
def test_a_bad_grid_file_is_refused_with_the_reason(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_grid(write_grid(tmp_path / "grid.yaml", **change))


def test_only_selects_cells_by_column():
    only = parse_only("dataset=ml100k,method=tru+retrain,seed=2")
    assert only == {"dataset": ["ml100k"], "method": ["tru", "retrain"], "seed": ["2"]}
    assert cell_matches(("ml100k", "mgcn", "user", 2, "tru"), only)
    assert not cell_matches(("ml100k", "mgcn", "user", 1, "tru"), only)
    assert not cell_matches(("baby", "mgcn", "user", 2, "tru"), only)
    with pytest.raises(ConfigError, match="column=value"):
        parse_only("flavour=sweet")


def test_pending_skips_finished_cells_and_refuses_an_only_value_the_grid_lacks(tmp_path):
    g = load_grid(write_grid(tmp_path / "grid.yaml"))
    done = [
        {"dataset": "tiny", "backbone": "mgcn", "regime": "user", "seed": "1", "method": m}
        for m in ("original", "retrain")
    ]
    todo = pending(g, done)
    assert todo == [
        ("tiny", "mgcn", "user", 1, "popularity"),
        ("tiny", "mgcn", "user", 1, "tru"),
        ("tiny", "mgcn", "interaction", 1, "original"),
        ("tiny", "mgcn", "interaction", 1, "popularity"),
        ("tiny", "mgcn", "interaction", 1, "retrain"),
        ("tiny", "mgcn", "interaction", 1, "tru"),
    ]
    assert pending(g, done, parse_only("regime=user,method=tru")) == [("tiny", "mgcn", "user", 1, "tru")]
    table = pending_table(todo).splitlines()  # nothing measured: no estimate
    assert table[0] == "6 cell(s) to run (none of them measured on another seed yet)"
    assert table[1:3] == [
        "  tiny mgcn user seed 1: popularity, tru (popularity, tru never measured)",
        "  tiny mgcn interaction seed 1: original, popularity, retrain, tru"
        " (original, popularity, retrain, tru never measured)",
    ]
    assert "come on top" in table[3] and pending_table([]) == "0 cell(s) to run"
    with pytest.raises(ConfigError, match="the grid has no method 'trv'.*retrain"):
        pending(g, done, parse_only("method=tru+trv"))
    with pytest.raises(ConfigError, match="no seed '2'"):
        pending(g, done, parse_only("seed=2"))


def test_the_list_sizes_each_part_by_the_seconds_measured_on_other_seeds():
    def row(seed, method, seconds, regime="user"):
        return dict(dataset="d", backbone="mgcn", regime=regime, seed=seed, method=method, seconds=seconds)

    done = [
        row(1, "retrain", 600.0),
        row(2, "retrain", 1200.0),
        row(3, "retrain", 900.0),  # median 900
        row(1, "tru", 30.0),
        row(1, "tru", None),  # a row without seconds counts for nothing
        row(1, "scalegun", 5000.0, regime="item"),  # another regime: not scalegun's user-level time
    ]
    assert measured_seconds(done)[("d", "mgcn", "user", "retrain")] == 900.0
    todo = [("d", "mgcn", "user", 4, m) for m in ("retrain", "retrain_r2", "tru_no_gate", "scalegun")]
    head, line, foot = pending_table(todo, done).splitlines()
    # 900 + 900 (the replicate at Retrain's) + 30 (the ablation at TRU's) = 1830 s
    assert head == (
        "4 cell(s) to run: about 30 min of cell time by the seconds measured on other seeds (1 cell(s) never measured)"
    )
    assert line == (
        "  d mgcn user seed 4: retrain, retrain_r2, tru_no_gate, scalegun "
        "(about 30 min; retrain_r2 at retrain's seconds; tru_no_gate at tru's seconds; scalegun never measured)"
    )
    assert "base models" in foot and "UltraRE's shards" in foot
    many = [("d", "mgcn", "user", s, "retrain") for s in range(4, 10)]  # 6 x 900 s = 1.5 h
    assert pending_table(many, done).startswith("6 cell(s) to run: about 1.5 h of cell time")


def test_grid_list_prints_what_is_left_and_runs_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tru.cli import app

    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path / "grid.yaml")
    monkeypatch.setattr(grid_run, "run_grid", lambda *a, **k: pytest.fail("--list ran the grid"))
    res = CliRunner().invoke(app, ["bench", "grid", "--grid", "grid.yaml", "--list", "--only", "regime=user"])
    assert res.exit_code == 0, res.output
    assert (
        "4 cell(s) to run" in res.output and "tiny mgcn user seed 1: original, popularity, retrain, tru" in res.output
    )
    assert not (tmp_path / "grid").exists() and not (tmp_path / "out").exists()  # nothing prepared or written
    res = CliRunner().invoke(app, ["bench", "grid", "--grid", "grid.yaml", "--list", "--only", "backbone=lightgcn"])
    assert res.exit_code != 0 and "the grid has no backbone 'lightgcn'" in res.output


@pytest.fixture
def tiny_grid_params():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["synthetic"].update({"n_users": 80, "n_items": 50, "n_interactions": 1600})
    raw["model"]["mgcn"].update({"embedding_dim": 16, "knn_k": 5})
    raw["train"].update({"max_epochs": 3, "batch_size": 256, "threads": 1, "checkpoint_every": 1})
    raw["unlearn"].update({"max_epochs": 2})
    raw["canary"].update(
        {
            "users": 4,
            "profile_length": 8,
            "triggers": 2,
            "target_popularity": [0, 40],
            "trigger_popularity": [1, 10_000],
        }
    )
    raw["audit"]["mia"].update({"bootstrap": 5, "folds": 2})
    return parse_params(raw)


def test_a_prepared_dataset_is_reused_while_its_inputs_are_unchanged(tiny_grid_params, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = load_grid(write_grid(tmp_path / "grid.yaml")).datasets["tiny"]
    _, split = grid_run.prepare_dataset(tiny_grid_params, "tiny", spec, "grid")
    assert "preparing dataset tiny" in capsys.readouterr().out
    digest = sha256_tree(split)
    # the params hold tuples (split fractions, canary ranges): the stamp still matches its file
    assert grid_run.prepare_dataset(tiny_grid_params, "tiny", spec, "grid")[1] == split
    assert "preparing" not in capsys.readouterr().out and sha256_tree(split) == digest
    # a training recipe override does not touch the data: the prepared dataset stays
    trained = spec.model_copy(update={"train": {"miggt": {"batch_size": 8000}}})
    assert grid_run.prepare_dataset(tiny_grid_params, "tiny", trained, "grid")[1] == split
    assert "preparing" not in capsys.readouterr().out
    changed = tiny_grid_params.model_copy(update={"seed": tiny_grid_params.seed + 1})
    grid_run.prepare_dataset(changed, "tiny", spec, "grid")
    assert "preparing dataset tiny" in capsys.readouterr().out


def test_a_dataset_trains_a_backbone_with_its_own_recipe(tiny_grid_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    over = {"mgcn": {"batch_size": 128, "lr": 0.01, "lr_decay_every": 1}}
    spec = load_grid(
        write_grid(
            tmp_path / "grid.yaml",
            datasets={"tiny": {"label": "Tiny (synthetic)", "source": "synthetic", "canary": True, "train": over}},
        )
    ).datasets["tiny"]
    p = grid_run.with_train(tiny_grid_params, spec)
    assert p.train.batch_size == 128 and p.train.lr == 0.01 and p.train.lr_decay_every == 1
    assert p.train.model_dump(exclude={"batch_size", "lr", "lr_decay_every"}) == tiny_grid_params.train.model_dump(
        exclude={"batch_size", "lr", "lr_decay_every"}
    )
    # another backbone keeps params.yaml's recipe
    from tru.config import with_backbone

    miggt = with_backbone(tiny_grid_params, "miggt")
    assert grid_run.with_train(miggt, spec).train == tiny_grid_params.train
    # the base model is trained with the dataset's recipe, and again when it changes
    p, split = grid_run.prepare_dataset(tiny_grid_params, "tiny", spec, "grid")
    ck = grid_run.base_checkpoint(grid_run.with_train(p, spec), "tiny", spec, split, "grid", "mgcn")
    meta = read_json(Path(ck) / "checkpoint.json")
    assert meta["train"]["batch_size"] == 128 and meta["train"]["lr"] == 0.01
    assert meta["train"] == grid_run.with_train(p, spec).train.recipe()
    # a pipeline dataset with an override for the pipeline's backbone does not reuse its model
    pipe = DatasetSpec(label="p", source="pipeline", train=over)
    assert grid_run.base_checkpoint(grid_run.with_train(p, pipe), "p", pipe, split, "grid", "mgcn") == str(
        Path("data/bench/base-mgcn")
    )


def test_a_bad_train_override_value_names_the_key(tiny_grid_params, tmp_path):
    spec = DatasetSpec(label="x", source="synthetic", train={"mgcn": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="train.mgcn: batch_size"):
        grid_run.with_train(tiny_grid_params, spec)


def test_cells_are_never_added_to_a_seed_whose_recorded_cells_came_from_another_base_model(
    tiny_grid_params, tmp_path, monkeypatch
):
    from safetensors.torch import load_file, save_file

    monkeypatch.chdir(tmp_path)

    def grid(methods):
        blocks = [{"datasets": ["tiny"], "backbones": ["mgcn"], "regimes": ["user"], "methods": methods, "seeds": [1]}]
        return load_grid(write_grid(tmp_path / "grid.yaml", blocks=blocks))

    grid_run.run_grid(tiny_grid_params, grid(["exact"]), report=False)
    bases = read_json(tmp_path / "out/results.bases.json")
    weights = Path("grid/tiny/base-mgcn/model.safetensors")
    assert bases == {"tiny/mgcn/user/1": sha256_file(weights)[:16]}
    # the base model trained again elsewhere: another model under the same folder and recipe
    meta_path = weights.with_name("checkpoint.json")
    original, meta = weights.read_bytes(), meta_path.read_text()
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 0.5

    def retrained() -> None:
        save_file(tensors, weights)
        meta_path.write_text(json.dumps(json.loads(meta) | {"weights_sha256": sha256_file(weights)}))

    retrained()
    rows_before = (tmp_path / "out/results.csv").read_text()
    with pytest.raises(DataError, match="tiny/mgcn/user/1: the base model .* is not the one this seed's recorded"):
        grid_run.run_grid(tiny_grid_params, grid(["exact", "tru"]), report=False)
    # rows recorded before the record of bases existed: the seed's original is scored again
    (tmp_path / "out/results.bases.json").unlink()
    with pytest.raises(DataError, match=r"original re-scored against the recorded: retain_recall@20 \d\.\d{4} against"):
        grid_run.run_grid(tiny_grid_params, grid(["exact", "tru"]), report=False)
    # nothing was run or recorded from the other model
    assert (tmp_path / "out/results.csv").read_text() == rows_before
    assert not (tmp_path / "out/results.bases.json").exists()
    # with the model the rows came from, the check passes, records it and the new cell runs
    weights.write_bytes(original)
    meta_path.write_text(meta)
    rows = grid_run.run_grid(tiny_grid_params, grid(["exact", "tru"]), report=False)
    assert {r["method"] for r in rows} == {"original", "popularity", "exact", "tru"}
    assert read_json(tmp_path / "out/results.bases.json") == bases
    # cells that start from no base model (here Retrain) are not held to it
    retrained()
    rows = grid_run.run_grid(tiny_grid_params, grid(["exact", "tru", "retrain"]), report=False)
    assert "retrain" in {r["method"] for r in rows}
    # the way out with the other model: the seed's rows that started from the base removed, the
    # grid runs them again from this one and records it
    df = pd.read_csv(tmp_path / "out/results.csv")
    df[df.method.isin(["popularity", "retrain"])].to_csv(tmp_path / "out/results.csv", index=False)
    rows = grid_run.run_grid(tiny_grid_params, grid(["exact", "tru", "retrain"]), report=False)
    assert {r["method"] for r in rows} == {"original", "popularity", "exact", "tru", "retrain"}
    assert read_json(tmp_path / "out/results.bases.json") == {"tiny/mgcn/user/1": sha256_file(weights)[:16]}


def test_a_tiny_grid_runs_resumes_and_reports(tiny_grid_params, tmp_path, monkeypatch, harness):
    monkeypatch.chdir(tmp_path)
    blocks = [
        {
            "datasets": ["tiny"],
            "backbones": ["mgcn"],
            "regimes": ["user", "item", "interaction"],
            "methods": ["retrain", "tru"],
            "seeds": [1],
        }
    ]
    g = load_grid(write_grid(tmp_path / "grid.yaml", blocks=blocks))
    rows = grid_run.run_grid(tiny_grid_params, g)
    df = pd.read_csv(tmp_path / "out/results.csv")
    assert len(df) == 12 and set(df.method) == {"original", "popularity", "retrain", "tru"}
    assert list(df.columns) == list(COLUMNS) and len(rows) == 12
    # user level with the canary: forget of the real deleted users and of the fakes apart, the
    # mixed figure their mean over users (Recall@20 is a per-user mean)
    from tru.audit.canary import load as load_canary
    from tru.bench.unlearn import regime_context

    uctx = regime_context(tiny_grid_params, "user", 1, "grid/tiny/split", "grid/tiny/base-mgcn", delete_canary=True)
    fake = np.asarray(load_canary("grid/tiny/split")["fake_users"])
    users = np.unique(uctx.forget[:, 0])
    n_fake, n_real = int(np.isin(users, fake).sum()), int((~np.isin(users, fake)).sum())
    assert n_fake and n_real
    for r in df[df.regime == "user"].to_dict("records"):
        real, fk = r["forget_real_recall@20"], r["forget_fake_recall@20"]
        assert (n_real * real + n_fake * fk) / (n_real + n_fake) == pytest.approx(r["forget_recall@20"], abs=1e-5)
    other = df[df.regime != "user"]
    assert other["forget_real_recall@20"].isna().all() and other["forget_fake_recall@20"].isna().all()
    # item level: what retained users are served from the deleted items' co-occurring items
    item_models = df[(df.regime == "item") & (df.method != "popularity")]
    assert item_models["served_exposure@20"].between(0, 20).all()
    assert df.loc[df.regime != "item", "served_exposure@20"].isna().all()
    assert df.loc[(df.regime == "item") & (df.method == "popularity"), "served_exposure@20"].isna().all()
    models, pop = df[df.method != "popularity"], df[df.method == "popularity"]
    # (the tiny item-level deletion has too few pairs for the attack: it is left blank there)
    assert models.loc[models.regime != "item", "mia_balanced_accuracy"].between(0, 1).all()
    user, inter = models[models.regime == "user"], models[models.regime != "user"]
    assert user["backdoor_asr"].notna().all() and inter["backdoor_asr"].isna().all()  # the canary goes with users
    ref = df.method.isin(REFERENCE)
    assert (df.loc[ref, "seconds"] == 0).all() and (df.loc[~ref, "seconds"] > 0).all()
    # the popularity reference: no model, so no attack; its ranking metrics, checked by hand
    assert pop["mia_balanced_accuracy"].isna().all() and pop["backdoor_asr"].isna().all()
    for regime in ("user", "item", "interaction"):
        got = pop[pop.regime == regime].iloc[0]
        want = _popularity_by_hand(tiny_grid_params, regime)
        assert got["retain_recall@20"] == pytest.approx(want["retain"], abs=1e-6)
        assert got["forget_recall@20"] == pytest.approx(want["forget"], abs=1e-6)
    assert (tmp_path / "grid/tiny/split/split.json").is_file() and (tmp_path / "grid/tiny/base-mgcn").is_dir()
    readme = (tmp_path / "out/README.md").read_text()
    assert "## Tiny (synthetic) · MGCN · user-level (1 seed)" in readme and "| **TRU** |" in readme
    pop_line = next(x for x in readme.splitlines() if x.startswith("| Popularity (no user data) |")).split("|")
    # the user-level table has the real / fake users' forget columns (6, 7); then MIA, ASR, lift; time
    assert [c.strip() for c in pop_line[8:11]] == ["–", "–", "–"] and pop_line[12].strip() == "–"
    assert "| Method | Retain R@20 | Retain N@20 | Forget R@20 | Forget N@20 | Forget R@20 real users |" in readme
    assert "Co-item exposure@20 |" in readme
    assert (tmp_path / "out/results_frontier.png").stat().st_size > 0 and (tmp_path / "out/results_time.png").is_file()
    # Retrain snapshotted its training under grid/resume/<cell> (every epoch here) and the
    # finished cell cleared it
    assert (tmp_path / "grid/resume").is_dir() and not any((tmp_path / "grid/resume").iterdir())

    # resumable: finished cells are not run again; --only runs a part of what is left, here as
    # Prefect tasks on the thread runner (the scale-out path; Dask is tested in test_deployment.py)
    from flows.bench import grid_cells_runner

    ran, folders = [], []
    monkeypatch.setattr(
        grid_run,
        "grid_cell",
        lambda pj, split, ck, cell, resume=None: ran.append(cell) or folders.append(resume) or _fake_row(cell),
    )
    grid_run.run_grid(tiny_grid_params, g)
    assert ran == []
    g2 = load_grid(
        write_grid(
            tmp_path / "grid.yaml",
            blocks=[
                {
                    "datasets": ["tiny"],
                    "backbones": ["mgcn"],
                    "regimes": ["user", "interaction"],
                    "methods": ["retrain", "tru"],
                    "seeds": [1, 2],
                }
            ],
        )
    )
    grid_run.run_grid(tiny_grid_params, g2, parse_only("seed=2,regime=user"), run_cells=grid_cells_runner("thread", 2))
    methods = ("original", "popularity", "retrain", "tru")
    assert sorted(ran) == sorted(("tiny", "mgcn", "user", 2, m) for m in methods)
    assert sorted(folders) == sorted(str(Path("grid/resume") / f"tiny-mgcn-user-2-{m}") for m in methods)
    assert len(pd.read_csv(tmp_path / "out/results.csv")) == 16
    # how long each part took: one entry per run that ran cells (the resumed run that found
    # nothing to do adds none), with its --only filter, in the timings file and the report
    parts = json.loads((tmp_path / "out/results.timings.json").read_text())
    assert [(p["part"], p["cells"]) for p in parts] == [("(all)", 12), ("seed=2,regime=user", 4)]
    assert all(p["seconds"] >= 0 and p["threads"] == tiny_grid_params.train.threads for p in parts)
    # the host each part ran on (wall times compare only on the same kind of CPU), and the time
    # it took before its cells preparing the dataset and base model (the first part trained it)
    assert all(p["host"] == host_cpu() and p["host"].endswith(f", {os.cpu_count()} CPUs") for p in parts)
    assert parts[0]["prepare_seconds"] > 0 and parts[1]["prepare_seconds"] >= 0
    readme = (tmp_path / "out/README.md").read_text()
    assert "## How long each part took" in readme and "| `seed=2,regime=user` | 4 |" in readme
    # a note written into an entry by hand (a part run beside other jobs) is shown beside it
    parts[1]["note"] = "beside other jobs"
    (tmp_path / "out/results.timings.json").write_text(json.dumps(parts))
    grid_run.run_grid(tiny_grid_params, g2, parse_only("seed=2,regime=user"), run_cells=grid_cells_runner("thread", 2))
    readme = (tmp_path / "out/README.md").read_text()
    host = re.escape(host_cpu())
    row = rf"\| `seed=2,regime=user` \| 4 \| [0-9.]+ min \| [0-9.]+ min \| [0-9]+ \| {host} \| beside other jobs \|"
    assert re.search(row, readme)
    # a part recorded before the host was: a dash, not a guess
    del parts[0]["host"], parts[0]["prepare_seconds"]
    assert re.search(r"\| `\(all\)` \| 12 \| [0-9.]+ min \| – \| [0-9]+ \| – \|", "\n".join(parts_markdown(parts)))


def test_cooccurring_items_are_each_deleted_items_closest_by_shared_users():
    # users 0-2 had item 0 (to be deleted); item 1 shares 3 of them, item 2 two, item 3 one,
    # item 4 none; item 5 is deleted too and never counts
    train = np.array([[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1], [0, 2], [1, 2], [2, 3], [3, 4], [0, 5]])
    assert cooccurring_items(train, np.array([0, 5]), 6, per_item=2).tolist() == [1, 2]
    assert cooccurring_items(train, np.array([0]), 6, per_item=10).tolist() == [1, 2, 3, 5]
    assert cooccurring_items(train, np.array([4]), 6).tolist() == []  # its one user has nothing else
    assert cooccurring_items(train, np.zeros(0, np.int64), 6).tolist() == []


def _popularity_by_hand(params, regime):
    """Recall@20 of the retained items' counts (ties: lower item first), each user's retained
    training items masked, on the retained test rows and on the forgotten pairs."""
    import numpy as np

    from tru.bench.unlearn import regime_context

    ctx = regime_context(params, regime, 1, "grid/tiny/split", "grid/tiny/base-mgcn", delete_canary=regime == "user")
    train = ctx.data.train
    order = np.lexsort((np.arange(ctx.data.n_items), -np.bincount(train[:, 1], minlength=ctx.data.n_items)))

    def recall(pairs):
        out = []
        for u in np.unique(pairs[:, 0]):
            seen = set(train[train[:, 0] == u, 1].tolist())
            truth = set(pairs[pairs[:, 0] == u, 1].tolist()) - seen
            if truth:
                top = [i for i in order if i not in seen][:20]
                out.append(len(truth & set(top)) / len(truth))
        return float(np.mean(out))

    return {"retain": recall(ctx.data.test), "forget": recall(ctx.forget)}


def _fake_row(cell):
    return dict(zip(KEY, cell)) | {c: 0.0 for c in COLUMNS[5:]}


def test_the_report_says_where_tru_beats_the_other_approximate_methods_and_where_not():
    def row(seed, method, retain, forget):
        return {
            **dict(zip(KEY, ("d", "mgcn", "user", seed, method))),
            **{c: 0.0 for c in COLUMNS[5:]},
            "retain_recall@20": retain,
            "forget_recall@20": forget,
            "seconds": 1.0,
        }

    rows = []
    for seed, jitter in ((1, 0.0), (2, 0.002)):
        rows += [
            row(seed, "original", 0.20, 0.80),
            row(seed, "popularity", 0.10, 0.03),
            row(seed, "retrain", 0.20, 0.05),
            row(seed, "tru", 0.199 + jitter, 0.06 + jitter),
            row(seed, "reverse_repair", 0.150 + jitter, 0.061 - jitter),  # TRU: far ahead on retain, tie on forget
            row(seed, "scalegun", 0.170, 0.042 - jitter),  # over-forgets: lowest forget
            # not one of the article's baselines: in the tables, never the one TRU is judged against
            row(seed, "gradient_ascent", 0.300, 0.001),
        ]
    checks = claim_check(summarise(rows))
    assert len(checks) == 1
    c = checks[0]
    assert c["retain_best_other"] == "scalegun" and c["retain_margin"] == pytest.approx(0.030)
    assert c["forget_best_other"] == "scalegun" and c["forget_margin"] == pytest.approx(0.020)
    assert (
        c["forget_retrain"] == pytest.approx(0.05) and c["forget_popularity"] == pytest.approx(0.03) and c["seeds"] == 2
    )
    # nearest Retrain's forget (0.05): ScaleGUN (gap 0.008 and 0.010: 0.009), then MMRecUn, then TRU (0.010
    # and 0.012: 0.011), farther than ScaleGUN by 0.002 on both seeds
    assert c["retrain_gap_tru"] == pytest.approx(0.011) and c["retrain_gap_closest_other"] == "scalegun"
    assert c["retrain_gap_best_other"] == pytest.approx(0.009)
    text = report_markdown(rows)
    line = next(x for x in text.splitlines() if x.startswith("| d · mgcn · user (2)"))
    assert line.split("|")[2].strip() == "yes" and line.split("|")[4].strip() == "**no**"
    assert line.split("|")[6].strip() == "0.0610 / 0.0500 / 0.0300"  # TRU / Retrain / Popularity forget
    assert line.split("|")[7].strip() == "–"  # no replicates: no noise floor
    assert line.split("|")[8].strip().startswith("**no** (gap 0.0110 vs 0.0090, ScaleGUN)")
    assert line.split("|")[9].strip() == "–"  # no exact step in the grid
    # and in a few lines under the table: per axis, the count of settings and those TRU is behind in
    tally = text[text.index("In short, over 1 setting,") :].splitlines()
    assert tally[2] == "* keeps retain Recall@20 higher: ahead in 1, level in 0, behind in 0."
    assert tally[3] == "* has lower forget Recall@20: ahead in 0, level in 0, behind in 1 (d · mgcn · user)."
    assert (
        tally[4] == "* lands nearest Retrain's forget Recall@20: ahead in 0, level in 0, behind in 1 (d · mgcn · user)."
    )
    # a setting without TRU or without another approximate method is not judged
    assert claim_check(summarise([r for r in rows if r["method"] != "tru"])) == []

    # Retrain's replicates (other training seeds, same retain set): the reference is their mean
    # and their pooled spread the noise floor; a gap within it is a tie. The exact step alone
    # lands 0.013 from it: TRU (0.011) is no nearer beyond the floor
    rows += [row(1, "retrain_r2", 0.20, 0.060), row(2, "retrain_r2", 0.20, 0.040)]
    rows += [row(1, "retrain_r3", 0.20, 0.055), row(2, "retrain_r3", 0.20, 0.045)]
    rows += [row(1, "exact", 0.20, 0.063), row(2, "exact", 0.20, 0.063)]
    floors = retrain_floors(rows)
    # per seed the three retrains' sample variance: {0.05, 0.06, 0.055} and {0.05, 0.04, 0.045}
    assert floors[("d", "mgcn", "user")] == {"floor": pytest.approx(0.005), "retrains": 3, "seeds": 2}
    c = claim_check(summarise(rows), floors)[0]
    assert c["forget_retrain"] == pytest.approx(0.05) and c["retrain_floor"] == pytest.approx(0.005)
    assert c["exact_gap"] == pytest.approx(0.013)
    v = claim_verdicts(c)
    assert v["nearest"] == "tie" and v["over_exact"] == "tie"  # 0.011 vs 0.009 and vs 0.013: within 0.005
    far = claim_verdicts(c | {"exact_gap": 0.030})
    assert far["over_exact"] == "yes"
    text = report_markdown(rows)
    line = next(x for x in text.splitlines() if x.startswith("| d · mgcn · user (2)"))
    assert line.split("|")[7].strip() == "0.0050"
    assert line.split("|")[9].strip() == "tie (gap 0.0110 vs 0.0130, Exact step + repair (no reverse))"
    assert "* lands nearer Retrain's forget Recall@20 than the exact step (no reverse epoch)" in text
    # with TRU's re-fit offered to the exact step, TRU is judged against that: its reverse epochs
    rows += [row(1, "exact_refit", 0.20, 0.080), row(2, "exact_refit", 0.20, 0.080)]
    c = claim_check(summarise(rows), retrain_floors(rows))[0]
    assert c["exact_baseline"] == "exact_refit" and c["exact_gap"] == pytest.approx(0.030)
    assert claim_verdicts(c)["over_exact"] == "yes"


def test_the_claim_compares_means_only_over_the_seeds_every_compared_method_has_run(tmp_path, monkeypatch):
    # a grid part-way through seed 3: TRU and ScaleGUN ran on it, Retrain not yet
    def row(seed, method, forget, retain=0.2):
        return {
            **dict(zip(KEY, ("d", "mgcn", "user", seed, method))),
            **{c: 0.0 for c in COLUMNS[5:]},
            "retain_recall@20": retain,
            "forget_recall@20": forget,
            "seconds": 1.0,
        }

    rows = []
    for seed in (1, 2):
        rows += [row(seed, "original", 0.8), row(seed, "popularity", 0.3), row(seed, "retrain", 0.05)]
        rows += [row(seed, "tru", 0.06), row(seed, "scalegun", 0.07)]
    complete = claim_check(summarise(rows))[0]
    partial = rows + [row(3, "original", 0.8), row(3, "popularity", 0.3), row(3, "tru", 0.50), row(3, "scalegun", 0.5)]
    # summarised over every seed, TRU's mean would take in seed 3's 0.50 while Retrain's has no seed 3
    assert claim_check(summarise(partial))[0]["forget_tru"] == pytest.approx((0.06 + 0.06 + 0.50) / 3)
    common = common_seed_rows(partial)
    assert {r["seed"] for r in common} == {1, 2} and len(common) == len(rows)
    assert claim_check(summarise(common))[0] == complete
    text = report_markdown(partial)
    assert "| Retrain (2 of 3 seeds) |" in text  # the table shows every seed, and says so
    line = next(x for x in text.splitlines() if x.startswith("| d · mgcn · user (2 of 3 seeds"))
    assert line.startswith("| d · mgcn · user (2 of 3 seeds: those every compared method has run) |")
    assert line.split("|")[6].strip() == "0.0600 / 0.0500 / 0.3000"  # TRU / Retrain / Popularity: seeds 1-2
    # so do the plots that set the methods' means side by side
    plotted = {}
    monkeypatch.setattr("tru.bench.grid.report.plot_frontier", lambda s, path: plotted.setdefault("s", s))
    write_report(partial, None, tmp_path)
    tru = plotted["s"].set_index("method").loc["tru"]
    assert tru["seeds"] == 2 and tru["forget_recall@20_mean"] == pytest.approx(0.06)
    # once every compared method has run on seed 3, the claim takes it in
    text = report_markdown(partial + [row(3, "retrain", 0.45)])
    assert "| d · mgcn · user (3) |" in text
    # a method of the tables that is not compared (gradient ascent) does not hold a seed back
    assert {r["seed"] for r in common_seed_rows(partial + [row(3, "retrain", 0.45), row(1, "gradient_ascent", 0)])} == {
        1,
        2,
        3,
    }


def test_the_gap_to_retrain_is_measured_per_seed_so_misses_either_side_do_not_cancel():
    # two deletions, their two retrains' means at 0.301 and 0.401: TRU lands 0.03 above the first and 0.03
    # below the second (its mean over seeds equals Retrain's: 0.351); ScaleGUN 0.01 above both
    def row(seed, method, forget):
        return {
            **dict(zip(KEY, ("d", "mgcn", "user", seed, method))),
            **{c: 0.0 for c in COLUMNS[5:]},
            "retain_recall@20": 0.2,
            "forget_recall@20": forget,
            "seconds": 1.0,
        }

    rows = []
    for seed, ref, miss in ((1, 0.30, +0.03), (2, 0.40, -0.03)):
        rows += [row(seed, "original", 0.8), row(seed, "retrain", ref), row(seed, "retrain_r2", ref + 0.002)]
        rows += [row(seed, "tru", ref + 0.001 + miss), row(seed, "scalegun", ref + 0.011)]
        rows += [row(seed, "exact", ref + 0.001 - miss)]
    s = summarise(rows).set_index("method")
    assert s.loc["tru", "forget_recall@20_mean"] == pytest.approx(0.351)  # = Retrain's mean: the gap of the means is 0
    assert s.loc["tru", "retrain_distance_mean"] == pytest.approx(0.03)
    assert s.loc["scalegun", "retrain_distance_mean"] == pytest.approx(0.01)
    c = claim_check(summarise(rows), retrain_floors(rows))[0]
    assert c["forget_retrain"] == pytest.approx(0.351)
    assert c["retrain_gap_tru"] == pytest.approx(0.03) and c["exact_gap"] == pytest.approx(0.03)
    assert c["retrain_gap_closest_other"] == "scalegun" and c["retrain_gap_best_other"] == pytest.approx(0.01)
    # ScaleGUN nearer by 0.02, beyond the retrains' floor (about 0.0014): TRU is not the nearest
    assert claim_verdicts(c)["nearest"] == "no"
    line = next(x for x in report_markdown(rows).splitlines() if x.startswith("| d · mgcn · user (2)"))
    assert line.split("|")[8].strip() == "**no** (gap 0.0300 vs 0.0100, ScaleGUN)"


def test_a_gap_beyond_the_floor_is_a_win_or_a_loss_only_where_its_interval_over_seeds_excludes_0():
    def row(regime, seed, method, forget):
        return {
            **dict(zip(KEY, ("d", "mgcn", regime, seed, method))),
            **{c: 0.0 for c in COLUMNS[5:]},
            "retain_recall@20": 0.2,
            "forget_recall@20": forget,
            "seconds": 1.0,
        }

    rows = []
    for seed, ref in ((1, 0.30), (2, 0.40), (3, 0.35)):
        rows += [row(r, seed, "original", 0.8) for r in ("user", "item")]
        # the retrains within 0.002 of each other: a floor of about 0.002
        rows += [row(r, seed, m, ref + d) for r in ("user", "item") for m, d in RETRAIN_JITTER]
        rows += [row(r, seed, "exact_refit", ref + 0.05) for r in ("user", "item")]
        rows += [row(r, seed, "scalegun", ref + 0.03) for r in ("user", "item")]
        # user: TRU lands on the retrain on two seeds and 0.12 off on the third: its mean gap, 0.04, is
        # 0.01 under the exact step's and 0.01 over ScaleGUN's, both beyond the floor, but the seeds point both ways
        rows += [row("user", seed, "tru", ref + (0.12 if seed == 3 else 0.0))]
        # item: TRU 0.010-0.012 off on every seed: nearer than both on each one
        rows += [row("item", seed, "tru", ref + 0.009 + 0.001 * seed)]
    floors = retrain_floors(rows)
    found = {r["regime"]: r for r in claim_check(summarise(rows), floors, rows)}
    user, item = found["user"], found["item"]
    assert user["retrain_gap_tru"] == pytest.approx(0.04) and user["exact_gap"] == pytest.approx(0.05)
    assert user["retrain_gap_closest_other"] == "scalegun" and user["retrain_gap_best_other"] == pytest.approx(0.03)
    # per seed: TRU's distance minus the exact step's is -0.05, -0.05, +0.07; minus ScaleGUN's -0.03, -0.03, +0.09
    # (sample std 0.0693, t at 2 degrees of freedom 4.303: mean 0.01 +- 0.1721 against ScaleGUN)
    mean, low, high = user["over_exact_interval"]
    assert mean == pytest.approx(-0.01) and low < 0 < high
    mean, low, high = user["nearest_interval"]
    assert mean == pytest.approx(0.01) and low < 0 < high
    # the means alone would call TRU nearer than the exact step and farther than ScaleGUN
    unpaired = {k: v for k, v in user.items() if not k.endswith("_interval")}
    assert claim_verdicts(unpaired)["over_exact"] == "yes" and claim_verdicts(unpaired)["nearest"] == "no"
    assert claim_verdicts(user)["over_exact"] == "tie" and claim_verdicts(user)["nearest"] == "tie"
    # the same gaps with seeds that agree stay a win on both
    assert claim_verdicts(item)["over_exact"] == "yes" and claim_verdicts(item)["nearest"] == "yes"
    lines = report_markdown(rows).splitlines()
    cells = {r: next(x for x in lines if x.startswith(f"| d · mgcn · {r} (3)")).split("|") for r in ("user", "item")}
    assert cells["user"][8].strip() == (
        "tie (gap 0.0400 vs 0.0300, ScaleGUN; per seed +0.0100 [-0.1621, +0.1821], an interval that reaches 0)"
    )
    assert cells["user"][9].strip().startswith("tie (gap 0.0400 vs 0.0500, Exact step + TRU's re-fit (no reverse); ")
    assert cells["item"][8].strip() == "yes (gap 0.0110 vs 0.0300, ScaleGUN)"
    assert "lands nearer Retrain's forget Recall@20 than the exact step (no reverse epoch): ahead in 1, level in 1" in (
        "\n".join(lines)
    )


def test_with_one_seed_the_claims_margins_are_not_judged_for_want_of_a_spread():
    def row(regime, seed, method, retain, forget):
        return {
            **dict(zip(KEY, ("d", "mgcn", regime, seed, method))),
            **{c: 0.0 for c in COLUMNS[5:]},
            "retain_recall@20": retain,
            "forget_recall@20": forget,
            "seconds": 1.0,
        }

    # user level ran one seed, item level two: on both, TRU's retain is 0.003 under ScaleGUN's and its
    # forget 0.002 over it, with seeds that agree
    rows = []
    for regime, seeds in (("user", (1,)), ("item", (1, 2))):
        for seed in seeds:
            j = 0.0001 * seed
            rows += [
                row(regime, seed, "original", 0.2, 0.8),
                row(regime, seed, "retrain", 0.2, 0.05),
                row(regime, seed, "scalegun", 0.200 + j, 0.050 + j),
                row(regime, seed, "tru", 0.197 + j, 0.052 + j),
            ]
    found = {r["regime"]: r for r in claim_check(summarise(rows))}
    one, two = found["user"], found["item"]
    assert one["retain_margin"] == pytest.approx(-0.003) and one["forget_margin"] == pytest.approx(0.002)
    assert one["retain_spread"] != one["retain_spread"]  # NaN: one seed, no spread
    # one seed says nothing of how far either method moves from one deletion to the next
    v = claim_verdicts(one)
    assert v["retain"] == "–" and v["forget"] == "–"
    # two seeds that agree: the same margins are losses
    v = claim_verdicts(two)
    assert v["retain"] == "no" and v["forget"] == "no"
    text = report_markdown(rows)
    cells = next(x for x in text.splitlines() if x.startswith("| d · mgcn · user (1)")).split("|")
    assert cells[2].strip() == "not judged (one seed)" and cells[3].strip() == "-0.0030 (ScaleGUN)"
    assert cells[4].strip() == "not judged (one seed)" and cells[5].strip() == "+0.0020 (ScaleGUN)"
    # the tally counts the two-seed setting and says the other one was not judged
    assert (
        "* keeps retain Recall@20 higher: ahead in 0, level in 0, behind in 1 (d · mgcn · item), "
        "not judged in 1 (one seed)." in text
    )
    assert (
        "* has lower forget Recall@20: ahead in 0, level in 0, behind in 1 (d · mgcn · item), "
        "not judged in 1 (one seed)." in text
    )


def test_what_tru_adds_over_the_exact_step_is_paired_by_seed_with_an_interval(tmp_path):
    def row(regime, seed, method, forget, retain=0.2, epochs=0):
        return {
            **dict(zip(KEY, ("d", "mgcn", regime, seed, method))),
            **{c: 0.0 for c in COLUMNS[5:]},
            "retain_recall@20": retain,
            "forget_recall@20": forget,
            "epochs": epochs,
            "seconds": 1.0,
        }

    rows = []
    for seed, ref in ((1, 0.30), (2, 0.40), (3, 0.35), (4, 0.32)):
        # the retrains land within 0.002 of each other: a floor of about 0.002
        rows += [row(r, seed, m, ref + d) for r in ("interaction", "user") for m, d in RETRAIN_JITTER]
        # interaction: the exact step under-forgets by 0.05, TRU's reverse epochs leave 0.010-0.013
        # (a seed-to-seed difference that still excludes 0), at a retain cost of 0.004
        rows += [row("interaction", seed, "exact_refit", ref + 0.05)]
        rows += [row("interaction", seed, "tru", ref + 0.01 + 0.001 * seed, retain=0.196, epochs=3)]
        # user: TRU's stop rule held on every seed; it is the same model as the baseline
        rows += [row("user", seed, "exact_refit", ref + 0.02), row("user", seed, "tru", ref + 0.02)]
    found = {r["regime"]: r for r in over_exact(rows, retrain_floors(rows))}
    inter, user = found["interaction"], found["user"]
    assert inter["baseline"] == "exact_refit" and inter["seeds"] == 4 and inter["loop_seeds"] == 4
    # per seed: |TRU - ref| - |exact_refit - ref| = (0.011, 0.012, 0.013, 0.014) - 0.05 (ref: the retrains' mean)
    assert inter["gap_diff"] == pytest.approx(-0.0375, abs=1e-9)
    assert inter["gap_diff_low"] < inter["gap_diff"] < inter["gap_diff_high"] < 0
    assert inter["retain_diff"] == pytest.approx(-0.004) and inter["verdict"] == "nearer"
    assert user["loop_seeds"] == 0 and user["same_model_seeds"] == 4
    assert user["gap_diff"] == pytest.approx(0.0) and user["verdict"] == "no measurable difference"
    # which way each seed went: TRU nearer on all four interaction seeds; level on every user seed
    assert (inter["nearer_seeds"], inter["farther_seeds"]) == (4, 0)
    assert (user["nearer_seeds"], user["farther_seeds"]) == (0, 0)
    # a difference whose interval excludes 0 but stays within Retrain's floor is no difference
    assert over_exact(rows, {("d", "mgcn", "interaction"): {"floor": 0.05}})[0]["verdict"] == "no measurable difference"
    # the report says it plainly, per setting
    text = report_markdown(rows)
    assert "## What TRU adds over the exact step (paired by seed)" in text
    assert (
        "* **d · mgcn · user**: TRU ran no reverse epoch on any seed (its stop rule held after the exact step and the "
        "re-fit): there it is the exact step with its re-fit (the same model as `exact_refit` on every seed), and "
        "its gate, scaling and selection add nothing" in text
    )
    assert (
        "* **d · mgcn · interaction**: TRU's loop (on 4 of 4 seeds; on 0 its model scored exactly as the "
        "baseline's) brings forget Recall@20 nearer the retrain's than the exact step does, beyond the retrain's "
        "own noise; retain Recall@20 falls by 0.0040 against it." in text
    )
    # every seed nearer, the mean past the floor, but one seed's gain dwarfs the others' so the
    # interval reaches 0: no measurable difference, and the report says which way the seeds went
    uneven = [
        r | {"forget_recall@20": r["forget_recall@20"] + (0.25 if r["method"] == "exact_refit" else -0.01)}
        if (r["regime"], r["seed"]) == ("interaction", 4) and r["method"] in ("exact_refit", "tru")
        else r
        for r in rows
    ]
    got = {r["regime"]: r for r in over_exact(uneven, retrain_floors(uneven))}["interaction"]
    assert got["gap_diff_low"] < 0 < got["gap_diff_high"] and got["beyond_floor"]
    assert (got["nearer_seeds"], got["farther_seeds"]) == (4, 0) and got["verdict"] == "no measurable difference"
    assert (
        "the baseline's) leaves forget Recall@20 nearer the retrain's than the exact step does on every seed, by "
        f"{abs(got['gap_diff']):.4f} on average (beyond the retrain's own noise), but the seeds vary too much for "
        "the interval to exclude 0: not measured yet, more seeds would have to tell" in report_markdown(uneven)
    )
    assert "| 4 of 4 (0) | 4 / 0 | " in text
    # seeds that went both ways: counted, and no claim either way
    mixed = [
        r | {"forget_recall@20": r["forget_recall@20"] + 0.1}
        if (r["regime"], r["seed"], r["method"]) == ("interaction", 1, "tru")
        else r
        for r in rows
    ]
    got = {r["regime"]: r for r in over_exact(mixed, retrain_floors(mixed))}["interaction"]
    assert (got["nearer_seeds"], got["farther_seeds"], got["verdict"]) == (3, 1, "no measurable difference")
    assert "can tell apart (nearer on 3 of 4 seeds, farther on 1); retain" in report_markdown(mixed)
    # the other way round (the loop over-forgets past the retrain): farther, and said so
    swapped = [r | {"forget_recall@20": r["forget_recall@20"] - 0.09} if r["method"] == "tru" else r for r in rows]
    assert {r["regime"]: r["verdict"] for r in over_exact(swapped, retrain_floors(rows))}["interaction"] == "farther"
    # one seed: no interval, so not judged, however large the difference
    one = [r for r in rows if r["seed"] == 1]
    assert {r["regime"]: r["verdict"] for r in over_exact(one)}["interaction"] == "not judged (one seed)"
    # rows read back from a CSV hold None where a value is missing: that seed drops out of the retain
    # difference only, and a baseline with no forget value at all is no baseline (exact is used)
    holes = [r | {"retain_recall@20": None} if (r["method"], r["seed"]) == ("tru", 4) else r for r in rows]
    got = {r["regime"]: r for r in over_exact(holes)}["interaction"]
    assert got["seeds"] == 4 and got["retain_diff"] == pytest.approx(-0.004)
    blank = [r | {"forget_recall@20": None} if r["method"] == "exact_refit" else r for r in rows]
    blank += [row("interaction", s, "exact", 0.5) for s in (1, 2, 3, 4)]
    assert {r["regime"]: r["baseline"] for r in over_exact(blank)}["interaction"] == "exact"
    # no reverse epoch, but only the exact step alone to compare with: TRU's model differs from it by
    # the re-fit, and the report says that is what moved it, not the reverse loop
    no_refit = [r for r in rows if r["method"] != "exact_refit"]
    no_refit += [row("user", seed, "exact", ref + 0.05) for seed, ref in ((1, 0.30), (2, 0.40), (3, 0.35), (4, 0.32))]
    got = {r["regime"]: r for r in over_exact(no_refit, retrain_floors(no_refit))}["user"]
    assert (got["baseline"], got["loop_seeds"], got["same_model_seeds"], got["verdict"]) == ("exact", 0, 0, "nearer")
    assert (
        "* **d · mgcn · user**: TRU ran no reverse epoch on any seed (its stop rule held after the exact step and "
        "the re-fit), so its reverse loop adds nothing there; what differs from the exact step is TRU's re-fit, "
        "which this setting has no `exact_refit` row to show on its own: with it TRU lands nearer the retrain than "
        "the exact step alone, beyond the retrain's own noise." in report_markdown(no_refit)
    )
    # no reverse epoch, the exact step alone to compare with, and TRU's re-fit changed nothing measured
    level = [r for r in rows if r["method"] != "exact_refit"]
    level += [row("user", seed, "exact", ref + 0.02) for seed, ref in ((1, 0.30), (2, 0.40), (3, 0.35), (4, 0.32))]
    assert (
        "there it is the exact step (the same model on every seed: its re-fit changed nothing measured), and its "
        "gate, scaling and selection add nothing" in report_markdown(level)
    )
    # no reverse epoch, yet TRU's model differs from exact_refit's (the same computation, run on
    # another host): the report does not credit TRU, nor say the setting lacks the re-fit row
    drift = [
        r | {"forget_recall@20": r["forget_recall@20"] + 1e-4}
        if (r["method"], r["regime"], r["seed"]) == ("exact_refit", "user", 2)
        else r
        for r in rows
    ]
    said = report_markdown(drift)
    assert (
        "TRU ran no reverse epoch on any seed, so it is the same computation as `exact_refit`, yet their models "
        "scored differently on 1 of 4 seeds" in said
    )
    assert "has no `exact_refit` row" not in said
    assert "![what TRU adds over the exact step](results_over_exact.png)" in text
    write_report(rows, None, tmp_path)
    assert (tmp_path / "results_over_exact.png").stat().st_size > 0
    # without an exact baseline (or a retrain) on the same seeds there is nothing to pair
    assert over_exact([r for r in rows if r["method"] != "exact_refit"]) == []
    assert over_exact([]) == []


RETRAIN_JITTER = (("retrain", 0.0), ("retrain_r2", 0.002), ("retrain_r3", -0.002))


def seeds_grid(path, methods):
    """A tiny grid of `methods` at user and interaction level: evaluation seeds 11 and 12, development seed 1."""
    block = {"datasets": ["tiny"], "backbones": ["mgcn"], "regimes": ["user", "interaction"], "methods": methods}
    return load_grid(write_grid(path, blocks=[{**block, "seeds": [11, 12], "development_seeds": [1]}]))


def test_the_report_rests_on_evaluation_seeds_and_marks_a_setting_shown_from_development_seeds(tmp_path):
    g = seeds_grid(tmp_path / "grid.yaml", ["retrain", "tru", "scalegun"])
    assert {c[3] for c in g.cells()} == {1, 11, 12}
    assert g.seed_role("tiny", 1) == "development" and g.seed_role("tiny", 11) == "evaluation"

    def row(regime, seed, method, forget):
        return {
            **dict(zip(KEY, ("tiny", "mgcn", regime, seed, method))),
            **{c: 0.0 for c in COLUMNS[5:]},
            "retain_recall@20": 0.2,
            "forget_recall@20": forget,
            "seconds": 1.0,
        }

    methods = ("original", "retrain", "tru", "scalegun")
    # user level: a development row that would change the mean if it counted (forget 0.9)
    rows = [row("user", 1, m, 0.9) for m in methods] + [row("user", s, m, 0.1) for s in (11, 12) for m in methods]
    # interaction level: development seeds only so far
    rows += [row("interaction", 1, m, 0.3) for m in methods]
    shown, dev = shown_rows(rows, g)
    assert {(r["regime"], r["seed"]) for r in shown} == {("user", 11), ("user", 12), ("interaction", 1)}
    assert dev == {("tiny", "mgcn", "interaction")}
    text = report_markdown(rows, g)
    assert "* Tiny (synthetic): evaluation 11, 12; development 1" in text
    assert "shown from them until its evaluation seeds have a row for every method its development" in text
    assert "## Tiny (synthetic) · MGCN · user-level (2 seeds)" in text
    assert "## Tiny (synthetic) · MGCN · interaction-level (1 development seed)" in text
    assert text.count("Development seeds only: knobs were tuned on these rows") == 1
    assert "(1 of them from development seeds only: tuning, not evidence)" in text
    user = text[text.index("user-level (2 seeds)") :]
    assert "| Retrain | 0.2000 ± 0.0000 | 0.0000 ± 0.0000 | 0.1000 ± 0.0000 |" in user  # the 0.9 row left out
    # an evaluation seed part-way through (TRU not run yet at interaction level) keeps the
    # development view: a table never loses methods while the grid runs
    partial = rows + [row("interaction", 11, m, 0.2) for m in ("original", "retrain")]
    assert shown_rows(partial, g)[1] == {("tiny", "mgcn", "interaction")}
    done = partial + [row("interaction", 11, m, 0.2) for m in ("tru", "scalegun")]
    assert shown_rows(done, g)[1] == set()
    # a method that has run on fewer of the shown seeds says so beside its name
    later = rows + [row("user", 13, m, 0.1) for m in ("original", "retrain", "tru")]
    g.blocks[0].seeds.append(13)
    user = report_markdown(later, g).split("user-level (3 seeds)")[1].split("##")[0]
    assert "| **TRU** | 0.2000 ± 0.0000 |" in user and "| ScaleGUN (2 of 3 seeds) | 0.2000 ± 0.0000 |" in user


def test_the_time_plot_grows_in_rows_of_panels_not_in_width(tmp_path):
    """One small panel per setting, three to a row: ten settings of fifteen methods make a
    figure as wide as three do (it once grew a bar group per setting to the right, some metres
    of page at the grid's size), only taller."""
    from matplotlib.image import imread

    from tru.bench.grid.methods import METHOD_ORDER, RETRAINS
    from tru.bench.grid.plots import plot_time

    def summary(n_settings: int) -> pd.DataFrame:
        rows = [
            {"dataset": f"d{k}", "backbone": "mgcn", "regime": "user", "method": m, "time_pct_of_retrain_mean": 0.1 + j}
            for k in range(n_settings)
            for j, m in enumerate(METHOD_ORDER)
        ]
        s = pd.DataFrame(rows)
        s.loc[s.method.isin(REFERENCE + RETRAINS), "time_pct_of_retrain_mean"] = np.nan  # not plotted
        return s

    sizes = {}
    for n in (3, 10):
        plot_time(summary(n), tmp_path / f"time-{n}.png")
        h, w = imread(tmp_path / f"time-{n}.png").shape[:2]
        sizes[n] = (w, h)
    assert sizes[10][0] == sizes[3][0] <= 1400  # three panels of 4.2 in at 110 dpi
    assert sizes[10][1] > 3 * sizes[3][1]  # four rows of panels against one


def test_the_report_lists_the_cells_not_run_yet_with_their_expected_time_and_filter(tmp_path):
    g = seeds_grid(tmp_path / "grid.yaml", ["retrain", "retrain_r2", "tru"])

    def row(regime, seed, method, seconds):
        return {
            **dict(zip(KEY, ("tiny", "mgcn", regime, seed, method))),
            **{c: 0.0 for c in COLUMNS[5:]},
            "seconds": seconds,
        }

    refs = [row(r, s, m, 1.0) for r in ("user", "interaction") for s in (1, 11, 12) for m in REFERENCE]
    rows = refs + [row(r, s, "tru", 20.0) for r in ("user", "interaction") for s in (1, 11, 12)]
    # Retrain: 600 s and 1200 s at user level; at interaction level only seed 12 is missing
    rows += [row("user", 1, "retrain", 600.0), row("user", 11, "retrain", 1200.0)]
    rows += [row("interaction", s, "retrain", 300.0) for s in (1, 11)]
    text = report_markdown(rows, g)
    section = text[text.index("## Cells not run yet") :].splitlines()
    assert f"The grid file names {len(g.cells())} cells; 8 have no row yet." in section[2]
    table = [x for x in section if x.startswith("| Tiny")]
    # one line per method and seed role, in the grid's order; the replicate never measured counts at
    # Retrain's seconds (the median 900 s at user level, 300 s at interaction level)
    assert table == [
        "| Tiny (synthetic) · MGCN | Retrain, 2nd training seed | evaluation 11, 12 | user, interaction | 4 "
        "| about 40 min | `dataset=tiny,backbone=mgcn,regime=user+interaction,seed=11+12,method=retrain_r2` |",
        "| Tiny (synthetic) · MGCN | Retrain | evaluation 12 | user, interaction | 2 | about 20 min "
        "| `dataset=tiny,backbone=mgcn,regime=user+interaction,seed=12,method=retrain` |",
        "| Tiny (synthetic) · MGCN | Retrain, 2nd training seed | development 1 | user, interaction | 2 "
        "| about 20 min | `dataset=tiny,backbone=mgcn,regime=user+interaction,seed=1,method=retrain_r2` |",
    ]
    # each filter selects exactly the cells of its line
    for line in table:
        only = parse_only(line.split("`")[1])
        assert len(pending(g, rows, only)) == int(line.split("|")[5])
    # seeds missing different regimes get a line each
    later = report_markdown(rows + [row("user", 11, "retrain_r2", 700.0)], g)
    assert [x.split("|")[3:6] for x in later.splitlines() if x.startswith("| Tiny") and "evaluation" in x] == [
        [" evaluation 11 ", " interaction ", " 1 "],
        [" evaluation 12 ", " user, interaction ", " 2 "],
        [" evaluation 12 ", " user, interaction ", " 2 "],
    ]
    # with every cell run, or without a grid, there is no such section
    assert "Cells not run yet" not in report_markdown(rows)
    finished = rows + [row(c[2], c[3], c[4], 5.0) for c in pending(g, rows)]
    assert "Cells not run yet" not in report_markdown(finished, g)
