"""DVC's own views of the pipeline work as a DVC user expects: `dvc metrics show` holds the
metrics and nothing else (the per-batch wall-clock timings are plain outputs), `dvc plots show`
finds the declared plots and renders offline with dvc_templates/plots_offline.html, and
`dvc dag --mermaid` draws the stages. The commands run on a tiny fake project: a temporary
git + DVC repository with this project's dvc.yaml and params.yaml and small JSON files where
the stages would write them (no stage is run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "evidence" / "reports" / "b20260101T020000Z"
BATCHES = ("b20260101T020000Z", "b20260102T020000Z")
TIMINGS = {"map", "update", "repair", "methods"}  # what the stages write under reports/B/timings/
TEMPLATE = ROOT / "dvc_templates" / "plots_offline.html"


def declared(spec: dict, kind: str) -> dict[str, dict]:
    """path -> its flags, of a stage's `outs`, `metrics` or `plots`."""
    out: dict[str, dict] = {}
    for entry in spec.get(kind) or []:
        if isinstance(entry, str):
            out[entry] = {}
        else:
            (path, flags), *_ = entry.items()
            out[path] = flags or {}
    return out


@pytest.fixture(scope="module")
def stages() -> dict[str, dict]:
    return {name: s.get("do", s) for name, s in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()}


def test_timings_are_plain_outputs_and_metrics_are_metrics(stages):
    metrics = {p for s in stages.values() for p in declared(s, "metrics")}
    assert metrics == {
        "reports/train/metrics.json",
        "reports/${item.id}/metrics.json",
        "reports/${item.id}/audit.json",
    }
    timing_outs = {
        path: flags for s in stages.values() for path, flags in declared(s, "outs").items() if "/timings/" in path
    }
    assert set(timing_outs) == {f"reports/${{item.id}}/timings/{n}.json" for n in TIMINGS}
    # not cached: like every report, they are git's, and the evidence leaves them out
    assert all(flags.get("cache") is False for flags in timing_outs.values())
    for s in stages.values():
        assert not any("/timings/" in p for p in declared(s, "plots"))


def test_the_evidence_still_leaves_the_timings_out():
    from tru.evidence import layout

    for name in TIMINGS:
        assert layout.is_timing(f"reports/{BATCHES[0]}/timings/{name}.json", BATCHES[0])


# --- a fake project ---------------------------------------------------------------------------------


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "COLUMNS": "100000"}
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def without_retrain(obj):
    """A production batch's files: no reference retrain was run (it is a benchmark's)."""
    if isinstance(obj, dict):
        return {k: without_retrain(v) for k, v in obj.items() if k != "retrain"}
    return obj


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dvcproject")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    assert dvc(root, "init", "-q").returncode == 0
    shutil.copy(ROOT / "dvc.yaml", root)
    shutil.copy(ROOT / "params.yaml", root)
    entries, prior, model = [], "data/split", "data/models/base"
    for b in BATCHES:
        entries.append({"id": b, "prior": prior, "base_model": model, "method": "tru"})
        prior, model = f"data/batches/{b}/sets", f"data/batches/{b}/model"
    (root / "batches.yaml").write_text(yaml.safe_dump({"batches": entries}, sort_keys=False))
    write_json(
        root / "reports/train/metrics.json",
        {
            s: {"n_rows": 900, "ndcg@10": 0.1, "ndcg@20": 0.12, "recall@10": 0.1, "recall@20": 0.2}
            for s in ("test", "valid")
        },
    )
    write_json(
        root / "reports/train/train_log.json",
        [{"epoch": e, "loss": 1 / e, "valid_recall@20": 0.1 + e / 100} for e in range(1, 6)],
    )
    for b in BATCHES:
        rep = root / "reports" / b
        for name in ("metrics", "audit", "update_log", "repair_log", "components"):
            src = json.loads((FIXTURE / f"{name}.json").read_text())
            write_json(rep / f"{name}.json", without_retrain(src) if name in ("metrics", "audit") else src)
        # what a retrain leaves: one timing per epoch (what made `dvc metrics show` thousands of columns)
        write_json(
            rep / "timings/update.json", {"total_seconds": 600.0, **{f"epochs[{i}].seconds": 1.2 for i in range(500)}}
        )
        write_json(rep / "timings/map.json", {"map_seconds": 1.8})
        write_json(rep / "timings/repair.json", {"seconds": 6.0})
        write_json(rep / "timings/methods.json", {"repair": 6.0, "update": 600.0})
    return root


def flat_keys(obj, prefix: str = "") -> set[str]:
    if isinstance(obj, dict):
        return {k for key, v in obj.items() for k in flat_keys(v, f"{prefix}.{key}" if prefix else key)}
    return {prefix}


def test_metrics_show_holds_the_metrics_and_no_timing(project):
    r = dvc(project, "metrics", "show", "--json")
    assert r.returncode == 0, r.stderr
    (rev,) = json.loads(r.stdout).values()
    files = rev["data"]
    assert set(files) == {"reports/train/metrics.json"} | {
        f"reports/{b}/{name}.json" for b in BATCHES for name in ("metrics", "audit")
    }
    columns = set().union(*(flat_keys(f["data"]) for f in files.values()))
    assert not any("seconds" in c for c in columns)
    assert len(columns) < 100, len(columns)
    # the figures an auditor compares are there
    assert {"unlearned.forget.recall@20", "original.retain.recall@20", "verdict"} <= columns
    assert "membership.models.unlearned.gbm.balanced_accuracy" in columns
    assert "backdoor.models.unlearned.asr" in columns

    table = dvc(project, "metrics", "show")
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 + 1 + 2 * len(BATCHES)  # header, the base model, metrics + audit per batch
    header = lines[0].split()
    assert header[0] == "Path" and len(header) < 100


def test_plots_show_finds_the_declared_plots(project):
    r = dvc(project, "plots", "show", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert not out.get("errors"), out.get("errors")
    assert set(out["data"]) == {"reports/train/train_log.json"}
    (plot,) = out["data"]["reports/train/train_log.json"]
    assert len(plot["content"]["data"]["values"]) == 5


def test_plots_show_renders_offline_with_the_template(project, tmp_path):
    out = tmp_path / "plots"
    r = dvc(project, "plots", "show", "--html-template", str(TEMPLATE), "-o", str(out))
    assert r.returncode == 0, r.stderr
    page = (out / "index.html").read_text()
    # the plots are in the page, drawn by the template's own vegaEmbed: nothing is loaded
    assert 'id = "reports_train_train_log_json"' in page and "vegaEmbed('#reports_train_train_log_json'" in page
    assert "window.vegaEmbed = function" in page
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link[^>]*\bhref=", page)
    assert "cdn." not in page and "{plot_divs}" not in page

    # DVC's default page does fetch vega from a CDN: what the template is for
    default = tmp_path / "default"
    assert dvc(project, "plots", "show", "-o", str(default)).returncode == 0
    assert "cdn.jsdelivr.net/npm/vega" in (default / "index.html").read_text()


def test_dag_mermaid_draws_the_batch_stages(project):
    r = dvc(project, "dag", "--mermaid")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("flowchart TD")
    for name in ("train", "evaluate", "erase@0", "audit@1", "report@1"):
        assert f'["{name}"]' in r.stdout
