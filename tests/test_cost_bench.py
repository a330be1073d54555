"""`tru bench cost` on tiny data: each batch size erased in a process of its own, sizes beyond
the dataset's real users skipped, resumed without re-running a cell, the report generated."""

import pandas as pd

from tests.conftest import copy_repo
from tru.bench.cost import run_cost_bench, write_cost_report
from tru.config import load_params


def test_cost_grows_per_batch_size_and_resumes(base_repo, tmp_path, monkeypatch):
    repo = copy_repo(base_repo, tmp_path / "repo")
    monkeypatch.chdir(repo)
    grid = repo / "grid.yaml"
    grid.write_text(
        "root: data/bench/grid\nout: results.csv\n"
        "datasets:\n  tiny: {label: Tiny, source: pipeline, canary: true}\n"
        "blocks:\n  - {datasets: [tiny], backbones: [mgcn], regimes: [user], methods: [tru], seeds: [1]}\n"
    )
    params = load_params("params.yaml")
    out = tmp_path / "cost.csv"
    said: list[str] = []
    run_cost_bench(params, out, grid, ["tiny"], ["mgcn"], [1, 8, 5000], ["exact"], echo=said.append)
    df = pd.read_csv(out)
    assert list(df["users"]) == [1, 8] and (df["users_erased"] == df["users"]).all()
    assert any("5000 users is more than its" in s for s in said)
    assert (df["seconds"] > 0).all() and (df["peak_rss_mb"] >= df["loaded_rss_mb"]).all()
    assert (df["forget_pairs"].diff().dropna() > 0).all()  # more users, more of their pairs
    assert (df["train_pairs"] > 0).all() and (df["dataset_users"] >= 80).all()
    # resumed: nothing re-run
    rows = run_cost_bench(params, out, grid, ["tiny"], ["mgcn"], [1, 8], ["exact"], echo=said.append)
    assert len(rows) == 2 and len(pd.read_csv(out)) == 2
    md = out.with_suffix(".md").read_text()
    assert (df["threads"] == params.train.threads).all()
    assert "| Tiny (" in md and f"| mgcn | exact | {params.train.threads} |" in md and out.with_suffix(".png").is_file()
    # the sections the docs include: the table, and the pairs each batch held
    table = md.split("[start:table] -->")[1].split("[end:table]")[0]
    assert "| Tiny (" in table
    pairs = md.split("[start:pairs] -->")[1].split("<!--")[0].strip()
    held = df.set_index("users")["forget_pairs"]
    assert pairs.startswith(f"* Tiny: 1, 8 users held {held[1]:,}, {held[8]:,} training pairs (")


def test_the_cost_table_orders_rows_by_dataset_size_then_backbone_whatever_order_they_ran(tmp_path):
    base = {"users": 1, "seed": 1, "users_erased": 1, "forget_pairs": 3, "seconds": 0.5, "wall_seconds": 1.0}
    base |= {"epochs": 0, "peak_rss_mb": 600, "loaded_rss_mb": 500, "dataset_users": 90, "dataset_items": 40}
    base |= {"threads": 2}
    # in the order a resumed run appends them: the small dataset's second backbone last
    ran = [("small", "mgcn", 100), ("large", "mgcn", 900), ("small", "miggt", 100)]
    rows = [
        base | {"dataset": d, "backbone": b, "method": m, "train_pairs": n} for d, b, n in ran for m in ("tru", "exact")
    ]
    md = write_cost_report(rows, tmp_path / "cost.csv").read_text()
    table = md.split("[start:table] -->")[1].split("<!--")[0]
    shown = [
        (cells[0].removeprefix("| ").split(" (")[0], cells[1], cells[2])
        for cells in (
            line.split(" | ") for line in table.splitlines() if line.startswith("| small") or line.startswith("| large")
        )
    ]
    assert shown == [
        ("small", "mgcn", "tru"),
        ("small", "mgcn", "exact"),
        ("small", "miggt", "tru"),
        ("small", "miggt", "exact"),
        ("large", "mgcn", "tru"),
        ("large", "mgcn", "exact"),
    ]
