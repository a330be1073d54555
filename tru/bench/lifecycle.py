"""`tru bench lifecycle`: the data lifecycle measured on a project after `make run` (the demo
batch erased): how long a consolidation and a purge take, what the scan finds before, between
and after them, and whether the consolidated base model's test Recall@20 lies in the range the
comparison grid's exact retrains reach on the same dataset and backbone.

It runs the commands a user runs (`tru scan`, `tru consolidate`, `tru purge`), in the project
folder it is given, with a zero-day retention window: it consolidates and purges that project.
Run it on a scratch clone, never on a project whose history you keep. The subjects it scans
for are the batches' requests, written to a file outside the project before anything changes
(after the purge the ledger no longer holds their raw ids).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from tru.errors import ConfigError
from tru.io import read_json, write_json


def _tru(project: Path, *args: str, expect: tuple[int, ...] = (0,)) -> tuple[str, float]:
    t0 = time.perf_counter()
    tru = Path(sys.executable).parent / "tru"  # the console script installed beside this interpreter
    res = subprocess.run([str(tru), *args], cwd=project, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode not in expect:
        raise ConfigError(f"tru {' '.join(args)} exited {res.returncode} in {project}: {res.stderr.strip()[-500:]}")
    return res.stdout, seconds


def _holding(report: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for loc in report["locations"]:
        if loc["kind"] in ("work tree", "dvc cache", "remote"):
            out[loc["location"]] = len(loc.get("holding", []))
    return out


def grid_retrain_range(results: Path, dataset: str, backbone: str) -> tuple[float, float, int] | None:
    """(min, max, cells) of the grid's exact retrains' retain Recall@20 on `dataset`/`backbone`."""
    if not results.is_file():
        return None
    df = pd.read_csv(results)
    r = df[(df["dataset"] == dataset) & (df["backbone"] == backbone) & (df["method"] == "retrain")]
    if r.empty:
        return None
    return float(r["retain_recall@20"].min()), float(r["retain_recall@20"].max()), len(r)


def run_lifecycle_bench(project: Path, out: Path, results: Path, dataset: str = "ml100k") -> dict:
    """Measure the lifecycle in `project` (see the module docstring); writes `out` (JSON) and
    its README section (`out` with .md). ConfigError when `project` is the current folder or has
    no batch to consolidate."""
    project = project.resolve()
    if project == Path.cwd().resolve():
        raise ConfigError("--project is this project: the benchmark consolidates and purges it; give a scratch clone")
    entries = (yaml.safe_load((project / "batches.yaml").read_text()) or {}).get("batches") or []
    if not entries:
        raise ConfigError(f"{project}: no erasure batch to consolidate (run `make run` there first)")
    scratch = out.parent / (out.stem + ".scratch")
    scratch.mkdir(parents=True, exist_ok=True)
    subjects = (scratch / "subjects.csv").resolve()
    ledger = [pd.read_parquet(project / "data/ledger" / b["id"] / "requests.parquet") for b in entries]
    led = pd.concat(ledger, ignore_index=True)
    led[led["status"] != "rejected"][["kind", "user_id", "item_id"]].to_csv(subjects, index=False)

    def scan(name: str) -> dict:
        path = (scratch / f"{name}.json").resolve()
        _, seconds = _tru(project, "scan", "--subjects", str(subjects), "--out", str(path), expect=(0, 6))
        report = read_json(path)
        return {"holding": _holding(report), "holds_subjects": report["holds_subjects"], "seconds": round(seconds, 1)}

    base_before = read_json(project / "reports/train/metrics.json")["test"]["recall@20"]
    before = scan("before")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["lifecycle"] = {**(params.get("lifecycle") or {}), "retention_days": 0}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _, consolidate_s = _tru(project, "consolidate")
    between = scan("between")
    _, purge_s = _tru(project, "purge")
    after = scan("after")
    gens = yaml.safe_load((project / "lifecycle/generations.yaml").read_text())["generations"]
    g = gens[-1]
    backbone = params["model"]["backbone"]
    rng = grid_retrain_range(results, dataset, backbone)
    record = {
        "dataset": dataset,
        "backbone": backbone,
        "batches": len(entries),
        "suppressed": g.get("suppressed"),
        "consolidate_seconds": round(consolidate_s, 1),
        "consolidate_retrain_seconds": g.get("seconds"),
        "purge_seconds": round(purge_s, 1),
        "purged_objects": g.get("purged_objects"),
        "test_recall@20_before": base_before,
        "test_recall@20_consolidated": g.get("test_recall@20"),
        "grid_retrain_retain_recall@20": None if rng is None else {"min": rng[0], "max": rng[1], "cells": rng[2]},
        "scan": {"before": before, "between": between, "after": after},
        # the host's 1-minute load at the end: above the core count, the seconds were contended
        "load_average": round(os.getloadavg()[0], 2),
    }
    write_json(out, record)
    write_lifecycle_report(record, out.with_suffix(".md"))
    return record


def write_lifecycle_report(r: dict, md: Path) -> Path:
    """The README section of the lifecycle benchmark (generated)."""
    rng = r["grid_retrain_retain_recall@20"]
    inside = rng is not None and rng["min"] <= r["test_recall@20_consolidated"] <= rng["max"]
    lines = [
        "# The data lifecycle: consolidation and purge (generated by `tru bench lifecycle`)",
        "",
        f"{r['dataset']}, {r['backbone']}: after `make run` and {r['batches']} erasure batch(es), "
        "`tru consolidate` then `tru purge` with a zero-day retention window; `tru scan` for the batches' "
        "subjects before, between and after.",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| consolidate (fetch, featurize, split, train, evaluate on the redacted data) | {r['consolidate_seconds']} |",
        f"| purge ({r['purged_objects']} objects) | {r['purge_seconds']} |",
        "",
        f"The host's 1-minute load average at the end: {r.get('load_average', '?')} ({os.cpu_count()} cores).",
        "",
        "| scan | " + " | ".join(r["scan"]["before"]["holding"]) + " | holds the subjects |",
        "|---|" + "---|" * (len(r["scan"]["before"]["holding"]) + 1),
    ]
    for name in ("before", "between", "after"):
        s = r["scan"][name]
        lines.append(f"| {name} | " + " | ".join(str(v) for v in s["holding"].values()) + f" | {s['holds_subjects']} |")
    lines += [
        "",
        f"Test Recall@20: {r['test_recall@20_before']:.4f} before, {r['test_recall@20_consolidated']:.4f} after the "
        "consolidation"
        + (
            f"; the grid's exact retrains (retain Recall@20, {rng['cells']} cells): {rng['min']:.4f} to "
            f"{rng['max']:.4f}, {'inside' if inside else 'outside'} that range."
            if rng
            else "."
        ),
    ]
    md.write_text("\n".join(lines) + "\n")
    return md
