"""The evidence's sections, as a registry: each has a title (the PDF's h2), a template under
templates/sections/, and a function that turns the collected evidence into that template's
context. Reading the inputs defensively happens here, so templates stay plain.

Adding a section: write its template and register a builder with `@section(...)`.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from tru.evidence import plots
from tru.evidence.collect import MAX_REQUEST_ROWS
from tru.evidence.manifest import ROLE_ORDER

MODELS = ("original", "unlearned", "retrain")
MODEL_LABELS = {"original": "original (before erasure)", "unlearned": "unlearned (TRU)", "retrain": "retrain (reference)"}
ATTACKS = {"lr": "logistic regression", "gbm": "gradient boosting"}
STATUS_LABELS = {"erased": "erased", "needs_review": "needs review", "accepted": "pending", "already_erased": "already erased",
                 "rejected": "rejected"}
OPS = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "="}


def _status_order(statuses: list[str]) -> list[str]:
    """Statuses in reading order: what was done first, then what was not."""
    known = [s for s in STATUS_LABELS if s in statuses]
    return known + [s for s in statuses if s not in STATUS_LABELS]


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    build: Callable[[dict], dict]

    @property
    def template(self) -> str:
        return f"sections/{self.key}.html.j2"


SECTIONS: list[Section] = []


def section(key: str, title: str):
    def deco(fn: Callable[[dict], dict]):
        if any(s.key == key for s in SECTIONS):
            raise ValueError(f"evidence section {key!r} registered twice")
        SECTIONS.append(Section(key, title, fn))
        return fn

    return deco


def get(obj: Any, *keys, default=None):
    """obj[k1][k2]... or `default` when any level is missing or not a mapping."""
    for k in keys:
        found = (isinstance(obj, dict) and k in obj) or (
            isinstance(obj, list) and isinstance(k, int) and -len(obj) <= k < len(obj))
        if not found:
            return default
        obj = obj[k]
    return obj


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _epochs(ev: dict) -> list[dict]:
    rows = get(ev, "update_log", "epochs", default=[]) or []
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("epoch"), int)]


def _checks(audit: dict) -> list[dict]:
    rows = []
    for c in get(audit, "checks", default=[]) or []:
        if isinstance(c, dict) and "name" in c:
            op = str(c.get("op") or "")
            rows.append({"name": str(c["name"]), "description": c.get("description") or "", "value": c.get("value"),
                         "threshold": c.get("threshold"), "op": OPS.get(op, op), "passed": c.get("passed")})
    return rows


def _component_counts(ev: dict) -> list[tuple[str, Any]]:
    comp = get(ev, "components", "counts", default={}) or {}
    return [
        ("users affected", comp.get("affected_users")),
        ("interactions erased (forget set)", comp.get("forget_interactions")),
        ("interactions retained", comp.get("retain_interactions")),
    ]


# ---------------------------------------------------------------------------------- sections


@section("summary", "Summary")
def summary(ev: dict) -> dict:
    audit = ev["audit"] or {}
    checks = _checks(audit)
    failed_names = list(get(audit, "failed", default=None) or [c["name"] for c in checks if c["passed"] is False])
    verdict = str(audit.get("verdict", "")).lower()
    counts = ev["request_counts"]
    comp = get(ev, "components", "counts", default={}) or {}
    erased_kinds = [(k, counts["table"][k].get("erased", 0)) for k in counts["kinds"] if counts["table"][k].get("erased", 0)]
    m = ev["metrics"] or {}
    run = _runtime_numbers(ev)
    return {
        "verdict": {"pass": "PASS", "fail": "FAIL"}.get(verdict, "UNKNOWN"),
        "failed": [next((c for c in checks if c["name"] == n), {"name": n, "description": "", "value": None,
                                                                 "threshold": None, "op": "", "passed": False})
                   for n in failed_names],
        "n_checks": len(checks),
        "method": audit.get("method") or get(ev, "update_log", "method") or "not run",
        "promoted": audit.get("promoted"),
        "current_model": audit.get("current_model"),
        "total": counts["total"],
        "erased_kinds": erased_kinds,
        "others": [(STATUS_LABELS.get(st, st), n) for st in _status_order(counts["statuses"])
                   if st != "erased" and (n := counts["by_status"].get(st, 0))],
        "comp": {k: comp.get(k) for k in ("affected_users", "target_items", "forget_interactions", "retain_interactions")},
        "erased_rows": get(ev, "update_log", "erased_rows"),
        "metric_rows": [
            (label, number(get(m, "original", split, "recall@20")), number(get(m, "unlearned", split, "recall@20")),
             number(get(m, "retrain", split, "recall@20")))
            for split, label in (("retain", "retain Recall@20 (utility kept)"), ("forget", "forget Recall@20 (erased pairs)"))
        ],
        "tru_seconds": run["tru"], "retrain_seconds": run["s"]["retrain"], "speedup": run["speedup"],
    }


@section("requests", "Requests")
def requests(ev: dict) -> dict:
    counts = ev["request_counts"]
    rows = ev["requests"]
    return {
        "kinds": [k for k in counts["kinds"] if sum(counts["table"][k].values()) or k != "invalid"],
        "statuses": _status_order(counts["statuses"]),
        "status_labels": STATUS_LABELS,
        "table": counts["table"],
        "by_status": counts["by_status"],
        "total": counts["total"],
        "rows": rows[:MAX_REQUEST_ROWS],
        "hidden": max(0, counts["total"] - len(rows[:MAX_REQUEST_ROWS])),
    }


@section("components", "Component map")
def components(ev: dict) -> dict:
    comp = ev["components"] or {}
    targets = comp.get("target_items") or {}
    rebuild = comp.get("rebuild") or {}
    knn = [{"modality": m, "neighbours": len(get(v, "neighbours_of_deleted", default=[]) or []),
            "deleted": len(get(v, "former_neighbours", default={}) or {})}
           for m, v in sorted((rebuild.get("knn") or {}).items())]
    heat = comp.get("heat_map") or {}
    heat_modules = [m for m in (heat.get("modules") or []) if isinstance(m, dict) and number(m.get("ratio")) is not None]
    shift = get(ev, "audit", "parameter_shift", default={}) or {}
    modules = [m for m in (shift.get("modules") or []) if isinstance(m, dict) and "module" in m]
    return {
        "counts": _component_counts(ev),
        "requests": get(comp, "counts", "requests", default={}) or {},
        "targets": {"count": targets.get("count"), "median": targets.get("removed_share_median"),
                    "under_10": targets.get("share_under_10pct"), "fully": targets.get("fully_removed")},
        "rebuild_graph": rebuild.get("user_item_graph"),
        "rebuild_knn": rebuild.get("item_knn_graphs"),
        "knn": knn,
        "branches": [b for b in (heat.get("branches") or []) if isinstance(b, dict)],
        "probe_size": heat.get("probe_size"),
        "heat_plot": plots.energy_heat_map([m for m in heat_modules if m["ratio"] > 0]),
        "no_forget_gradient": [m.get("name") for m in heat_modules if m["ratio"] <= 0],
        "shift_plot": plots.parameter_shift(modules),
        "shift_rows": modules,
        "flag_ratio": shift.get("flag_ratio"),
    }


@section("selection", "Branch scales and layer selection")
def selection(ev: dict) -> dict:
    log = ev["update_log"]
    epochs = _epochs(ev)
    heat = get(ev, "components", "heat_map", "modules", default=[]) or []
    heat_modules = [m.get("name") for m in heat if isinstance(m, dict)]
    stop = next((e.get("stop") for e in epochs if e.get("stop")), None)
    return {
        "ran": log is not None,
        "method": get(log, "method"),
        "mechanisms": get(log, "mechanisms"),
        "epochs": epochs,
        "before": get(log, "probe_before"),
        "stop": stop,
        "max_epoch": max((e["epoch"] for e in epochs), default=0),
        "scales_plot": plots.branch_scales(epochs),
        "selection_plot": plots.layer_selection(epochs, [m for m in heat_modules if m]),
    }


@section("gate", "Ranking gate and exposure")
def gate(ev: dict) -> dict:
    exposure = get(ev, "audit", "exposure", default={}) or {}
    models = exposure.get("models") or {}
    epochs = _epochs(ev)
    return {
        "ran": ev["update_log"] is not None,
        "gate_on": get(ev, "update_log", "mechanisms", "gate"),
        "gate_plot": plots.gate_activity(epochs),
        "has_exposure": bool(models),
        "target_items": exposure.get("target_items"),
        "min_removed_share": exposure.get("min_removed_share"),
        "exposure": [(MODEL_LABELS[m], get(models, m)) for m in MODELS],
    }


METRIC_ROWS = (
    ("retain", "recall@20", "Retain Recall@20", "higher is better: utility kept"),
    ("retain", "ndcg@20", "Retain NDCG@20", "higher is better"),
    ("forget", "recall@20", "Forget Recall@20", "lower is better: erased pairs no longer recommended"),
    ("forget", "ndcg@20", "Forget NDCG@20", "lower is better"),
)


@section("metrics", "Metrics")
def metrics(ev: dict) -> dict:
    m = ev["metrics"] or {}
    rows = []
    for split, metric, label, hint in METRIC_ROWS:
        rows.append({"label": label, "hint": hint, "values": [number(get(m, model, split, metric)) for model in MODELS]})
    repair = ev["repair_log"]
    return {"rows": rows, "present": [isinstance(m.get(model), dict) for model in MODELS],
            "models": [MODEL_LABELS[x] for x in MODELS], "repair": repair,
            "repair_epochs": get(repair, "epochs_run")}


def _attack_rows(models: dict, names: tuple[str, ...], labels: dict[str, str]) -> list[dict]:
    rows = []
    for model in names:
        entry = get(models, model)
        if not isinstance(entry, dict):
            rows.append({"model": labels[model], "attack": None, "missing": True})
            continue
        for j, attack in enumerate(sorted(k for k, v in entry.items() if isinstance(v, dict))):
            a = entry[attack]
            rows.append({
                "model": labels[model] if j == 0 else "", "attack": ATTACKS.get(attack, attack),
                "best": entry.get("best") == attack,
                "missing": False,
                "cells": [(a.get(k), a.get(f"{k}_ci")) for k in ("balanced_accuracy", "auc", "tpr_at_1pct_fpr")],
            })
    return rows


@section("audits", "Audits")
def audits(ev: dict) -> dict:
    audit = ev["audit"] or {}
    mem = audit.get("membership") or {}
    backdoor = audit.get("backdoor") or {}
    diff_labels = {"unlearned": "unlearned vs original", "retrain": "retrain vs original"}
    return {
        "has_membership": bool(mem.get("models")),
        "n_members": mem.get("n_members"), "n_non_members": mem.get("n_non_members"),
        "sample_per_class": mem.get("sample_per_class"),
        "mia": _attack_rows(mem.get("models") or {}, MODELS, MODEL_LABELS),
        "difference": _attack_rows(mem.get("difference") or {}, ("unlearned", "retrain"), diff_labels)
        if mem.get("difference") else [],
        "backdoor_on": bool(backdoor.get("enabled")),
        "backdoor": backdoor,
        "backdoor_rows": [(MODEL_LABELS[m], get(backdoor, "models", m)) for m in MODELS],
        "checks": _checks(audit),
    }


def _seconds(ev: dict) -> dict:
    t = ev["timings"]
    methods = t.get("methods") or {}

    def pick(name, *keys):
        v = number(methods.get(name))
        if v is None:
            rec = t.get(name) or {}
            v = next((number(rec.get(k)) for k in keys if number(rec.get(k)) is not None), None)
        return v

    return {"map": number(get(t, "map", "map_seconds")), "update": pick("update", "total_seconds", "seconds"),
            "repair": pick("repair", "seconds", "total_seconds"), "retrain": pick("retrain", "total_seconds", "seconds")}


def _runtime_numbers(ev: dict) -> dict:
    s = _seconds(ev)
    tru = (s["update"] or 0.0) + (s["repair"] or 0.0) if s["update"] is not None or s["repair"] is not None else None
    speedup = s["retrain"] / tru if s["retrain"] is not None and tru else None
    return {"s": s, "tru": tru, "speedup": speedup}


@section("runtime", "Runtime")
def runtime(ev: dict) -> dict:
    run = _runtime_numbers(ev)
    s = run["s"]
    return {**run, "plot": plots.runtime({"update": s["update"], "repair": s["repair"]}, s["retrain"], run["speedup"])}


@section("manifest", "Artifact manifest")
def manifest(ev: dict) -> dict:
    man = ev["manifest"]
    by_role: dict[str, list] = {}
    for f in man["files"]:
        by_role.setdefault(f["role"], []).append(f)
    groups = []
    for role in sorted(by_role, key=lambda r: (ROLE_ORDER.index(r) if r in ROLE_ORDER else len(ROLE_ORDER), r)):
        files = by_role[role]
        paths = [PurePosixPath(f["path"]) for f in files]
        folder = PurePosixPath(posixpath.commonpath([p.as_posix() for p in paths]))
        if len(paths) == 1 or folder in paths:
            folder = folder.parent
        groups.append({"role": role, "folder": folder.as_posix(),
                       "files": [{**f, "name": PurePosixPath(f["path"]).relative_to(folder).as_posix()} for f in files]})
    return {"groups": groups, "n_files": len(man["files"]),
            "total_bytes": sum(f["bytes"] for f in man["files"]), "commit": man["git_commit"],
            "stages": man["dvc_lock"], "paths": ev["paths"], "base_model": man.get("base_model")}


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, dict):
        out = []
        for k in sorted(obj):
            out += _flatten(obj[k], f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, obj if isinstance(obj, str) else json.dumps(obj))]


@section("reproduce", "How to reproduce")
def reproduce(ev: dict) -> dict:
    b, commit = ev["batch"], ev["git_commit"]
    stages = ev["repro_stages"]
    rev = commit if commit != "unknown" else "<commit>"
    url = ev["repo_url"]
    return {
        "commit": commit, "rev": rev, "url": url, "stages": stages, "batch": b, "paths": ev["paths"],
        "params_source": ev["params"]["source"], "params": _flatten(ev["params"]["values"]),
    }


@section("limits", "Limits")
def limits(ev: dict) -> dict:
    mem = get(ev, "audit", "membership", default={}) or {}
    return {
        "retrain_ran": isinstance(get(ev, "metrics", "retrain"), dict),
        "median_share": get(ev, "components", "target_items", "removed_share_median"),
        "n_members": mem.get("n_members"), "n_non_members": mem.get("n_non_members"),
        "sample_per_class": mem.get("sample_per_class"),
    }
