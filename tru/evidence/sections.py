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
MODEL_LABELS = {
    "original": "original (before erasure)",
    "unlearned": "unlearned (TRU)",
    "retrain": "retrain (reference)",
}
ATTACKS = {"lr": "logistic regression", "gbm": "gradient boosting"}
STATUS_LABELS = {
    "erased": "erased",
    "needs_review": "needs review",
    "accepted": "pending",
    "already_erased": "already erased",
    "rejected": "rejected",
}
OPS = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "="}


def _status_order(statuses: list[str]) -> list[str]:
    """Statuses in reading order: what was done first, then what was not."""
    known = [s for s in STATUS_LABELS if s in statuses]
    return known + [s for s in statuses if s not in STATUS_LABELS]


@dataclass(frozen=True)
class Section:
    """One registered section: its key (and template name), its title, and `build`, which
    turns the collected evidence into the template's context."""

    key: str
    title: str
    build: Callable[[dict], dict]
    part: str = "people"  # PARTS: who the section is for

    @property
    def template(self) -> str:
        """The section's template, relative to the templates folder."""
        return f"sections/{self.key}.html.j2"


SECTIONS: list[Section] = []
# The document's two parts, in order: what a data-protection officer, an auditor or the person
# who asked reads (what was erased, what the checks found, the limits), then the appendix an
# engineer checks it with (maps, scales, hashes, lineage, params)
PARTS = {
    "people": "What was erased, and what the checks found",
    "engineers": "Appendix for engineers: how it was done, and how to check it",
}


def section(key: str, title: str, part: str = "people"):
    """Decorator: register the decorated builder (evidence dict -> context dict) as section
    `key` with `title` in `part` (PARTS), in definition order within its part; ValueError when
    `key` is taken or `part` unknown."""

    def deco(fn: Callable[[dict], dict]):
        if any(s.key == key for s in SECTIONS):
            raise ValueError(f"evidence section {key!r} registered twice")
        if part not in PARTS:
            raise ValueError(f"evidence section {key!r}: unknown part {part!r} (one of {', '.join(PARTS)})")
        SECTIONS.append(Section(key, title, fn, part))
        return fn

    return deco


def ordered_sections() -> list[Section]:
    """The sections in the document's order: part by part, each in definition order."""
    parts = list(PARTS)
    return sorted(SECTIONS, key=lambda s: parts.index(s.part))


def get(obj: Any, *keys, default=None):
    """`obj[k1][k2]...`, or `default` when any level is missing or not a mapping."""
    for k in keys:
        found = (isinstance(obj, dict) and k in obj) or (
            isinstance(obj, list) and isinstance(k, int) and -len(obj) <= k < len(obj)
        )
        if not found:
            return default
        obj = obj[k]
    return obj


def number(value: Any) -> float | None:
    """`value` as a float when it is an int or float (not a bool), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _epochs(ev: dict) -> list[dict]:
    rows = get(ev, "update_log", "epochs", default=[]) or []
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("epoch"), int)]


def _checks(audit: dict) -> list[dict]:
    rows = []
    for c in get(audit, "checks", default=[]) or []:
        if isinstance(c, dict) and "name" in c:
            op = str(c.get("op") or "")
            rows.append(
                {
                    "name": str(c["name"]),
                    "description": c.get("description") or "",
                    "value": c.get("value"),
                    "threshold": c.get("threshold"),
                    "op": OPS.get(op, op),
                    "passed": c.get("passed"),
                    "judged": c.get("judged", c.get("passed") is not None),
                    "power": c.get("power"),
                    "original": c.get("original"),
                    "kind": c.get("kind") or "",
                    "note": c.get("note"),  # why not judged, why no power, or what a judged value rests on
                }
            )
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
    """Context of the summary: the gate's verdict and failed checks, the requests by status, what
    was erased, and retain/forget Recall@20 per model."""
    audit = ev["audit"] or {}
    checks = _checks(audit)
    failed_names = list(get(audit, "failed", default=None) or [c["name"] for c in checks if c["passed"] is False])
    verdict = str(audit.get("verdict", "")).lower()
    counts = ev["request_counts"]
    comp = get(ev, "components", "counts", default={}) or {}
    erased_kinds = [
        (k, counts["table"][k].get("erased", 0)) for k in counts["kinds"] if counts["table"][k].get("erased", 0)
    ]
    m = ev["metrics"] or {}
    return {
        "verdict": {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}.get(verdict, "UNKNOWN"),
        "policy": audit.get("policy"),
        "failed": [
            next(
                (c for c in checks if c["name"] == n),
                {"name": n, "description": "", "value": None, "threshold": None, "op": "", "passed": False},
            )
            for n in failed_names
        ],
        "n_checks": len(checks),
        "n_judged": sum(bool(c["judged"]) for c in checks),
        # what the verdict rests on: the checks with power that passed, why it is inconclusive, or
        # why a batch erased by an exact retrain passes (tru/audit/gate.py)
        "basis": audit.get("basis"),
        "method": audit.get("method") or get(ev, "update_log", "method") or "not run",
        "promoted": audit.get("promoted"),
        "current_model": audit.get("current_model"),
        "total": counts["total"],
        "erased_kinds": erased_kinds,
        "others": [
            (STATUS_LABELS.get(st, st), n)
            for st in _status_order(counts["statuses"])
            if st != "erased" and (n := counts["by_status"].get(st, 0))
        ],
        "comp": {
            k: comp.get(k) for k in ("affected_users", "target_items", "forget_interactions", "retain_interactions")
        },
        "erased_rows": get(ev, "update_log", "erased_rows"),
        # the chain's membership check (tru/audit/chain.py): not part of the verdict
        "chain": audit.get("chain"),
        "metric_rows": [
            (
                label,
                number(get(m, "original", split, "recall@20")),
                number(get(m, "unlearned", split, "recall@20")),
                number(get(m, "retrain", split, "recall@20")),
            )
            for split, label in (
                ("retain", "retain Recall@20 (utility kept)"),
                ("forget", "forget Recall@20 (erased pairs)"),
            )
        ],
        "work": _work(ev),
    }


@section("requests", "Requests")
def requests(ev: dict) -> dict:
    """Context of the requests section: counts by kind and status, and the first rows of the public
    ledger view."""
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


@section("components", "Component map", part="engineers")
def components(ev: dict) -> dict:
    """Context of the component map: the counts, targets and graph rebuilds of components.json,
    with the heat-map and parameter-shift plots."""
    comp = ev["components"] or {}
    targets = comp.get("target_items") or {}
    rebuild = comp.get("rebuild") or {}
    knn = [
        {"modality": m, "neighbours": get(v, "items_with_new_neighbours")}
        for m, v in sorted((rebuild.get("knn") or {}).items())
    ]
    heat = comp.get("heat_map") or {}
    heat_modules = [
        m for m in (heat.get("modules") or []) if isinstance(m, dict) and number(m.get("ratio")) is not None
    ]
    shift = get(ev, "audit", "parameter_shift", default={}) or {}
    modules = [m for m in (shift.get("modules") or []) if isinstance(m, dict) and "module" in m]
    return {
        "counts": _component_counts(ev),
        "requests": get(comp, "counts", "requests", default={}) or {},
        "targets": {
            "count": targets.get("count"),
            "median": targets.get("removed_share_median"),
            "under_10": targets.get("share_under_10pct"),
            "fully": targets.get("fully_removed"),
        },
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


def _stop(log, epochs: list[dict]) -> str | None:
    """Why the reverse-repair loop stopped: before its first epoch (the log's own `stop`) or
    after one (that epoch's)."""
    if isinstance(log, dict) and log.get("stop"):
        return log["stop"]
    return next((e.get("stop") for e in epochs if e.get("stop")), None)


@section("selection", "Branch scales and layer selection", part="engineers")
def selection(ev: dict) -> dict:
    """Context of the branch-scale and layer-selection section: the update log's epochs, probes and
    stop reason, with their plots."""
    log = ev["update_log"]
    epochs = _epochs(ev)
    heat = get(ev, "components", "heat_map", "modules", default=[]) or []
    heat_modules = [m.get("name") for m in heat if isinstance(m, dict)]
    stop = _stop(log, epochs)
    refit = get(log, "refit", "steps")
    return {
        "ran": log is not None,
        "method": get(log, "method"),
        "mechanisms": get(log, "mechanisms"),
        "epochs": epochs,
        "before": get(log, "probe_before"),
        # the model the reverse epochs start from, when the item refit moved it (tru/unlearning/reverse_repair.py)
        "start": get(log, "probe_start") if refit else None,
        "refit": get(log, "refit") if refit else None,
        "stop": stop,
        "max_epoch": max((e["epoch"] for e in epochs), default=0),
        "scales_plot": plots.branch_scales(epochs),
        "selection_plot": plots.layer_selection(epochs, [m for m in heat_modules if m]),
    }


@section("gate", "Ranking gate and exposure", part="engineers")
def gate(ev: dict) -> dict:
    """Context of the ranking gate and exposure section: the gate's plot and the target items'
    exposure per model."""
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


@section("metrics", "Metrics", part="engineers")
def metrics(ev: dict) -> dict:
    """Context of the metrics section: Recall/NDCG@20 on retain and forget per model, and the final
    repair's log."""
    m = ev["metrics"] or {}
    rows = []
    for split, metric, label, hint in METRIC_ROWS:
        rows.append(
            {"label": label, "hint": hint, "values": [number(get(m, model, split, metric)) for model in MODELS]}
        )
    repair = ev["repair_log"]
    return {
        "rows": rows,
        "present": [isinstance(m.get(model), dict) for model in MODELS],
        "models": [MODEL_LABELS[x] for x in MODELS],
        "repair": repair,
        "repair_epochs": get(repair, "epochs_run"),
    }


def _attack_rows(models: dict, names: tuple[str, ...], labels: dict[str, str]) -> list[dict]:
    rows: list[dict[str, Any]] = []
    for model in names:
        entry = get(models, model)
        if not isinstance(entry, dict):
            rows.append({"model": labels[model], "attack": None, "missing": True})
            continue
        for j, attack in enumerate(sorted(k for k, v in entry.items() if isinstance(v, dict))):
            a = entry[attack]
            rows.append(
                {
                    "model": labels[model] if j == 0 else "",
                    "attack": ATTACKS.get(attack, attack),
                    "best": entry.get("best") == attack,
                    "missing": False,
                    "cells": [(a.get(k), a.get(f"{k}_ci")) for k in ("balanced_accuracy", "auc", "tpr_at_1pct_fpr")],
                }
            )
    return rows


@section("audits", "Audits")
def audits(ev: dict) -> dict:
    """Context of the audits section: the membership attacks per model (and the difference
    attacks), the backdoor canary and the gate's checks."""
    audit = ev["audit"] or {}
    mem = audit.get("membership") or {}
    backdoor = audit.get("backdoor") or {}
    diff_labels = {"unlearned": "unlearned vs original", "retrain": "retrain vs original"}
    return {
        "has_membership": bool(mem.get("models")),
        "n_members": mem.get("n_members"),
        "n_non_members": mem.get("n_non_members"),
        "sample_per_class": mem.get("sample_per_class"),
        "mia": _attack_rows(mem.get("models") or {}, MODELS, MODEL_LABELS),
        "difference": _attack_rows(mem.get("difference") or {}, ("unlearned", "retrain"), diff_labels)
        if mem.get("difference")
        else [],
        "backdoor_on": bool(backdoor.get("enabled")),
        "backdoor": backdoor,
        "backdoor_rows": [(MODEL_LABELS[m], get(backdoor, "models", m)) for m in MODELS],
        "checks": _checks(audit),
    }


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _span(values: list) -> tuple | None:
    """(smallest, largest) of the numbers in `values`, or None when there is none."""
    found = [v for v in values if number(v) is not None]
    return (min(found), max(found)) if found else None


def _work(ev: dict) -> dict:
    """What each step did, counted from the batch's logs (deterministic: a rerun gives the
    same counts, unlike wall-clock seconds): epochs, the training pairs its gradient steps
    went over, and which parameters they updated."""
    counts = get(ev, "components", "counts", default={}) or {}
    forget, retain = _count(counts.get("forget_interactions")), _count(counts.get("retain_interactions"))
    heat = get(ev, "components", "heat_map", default={}) or {}
    n_modules = len([m for m in heat.get("modules") or [] if isinstance(m, dict)]) or None

    log = ev["update_log"]
    update = None
    if isinstance(log, dict):
        epochs = _epochs(ev)
        method = log.get("method")
        # passes over the forget set (reverse step, gradient ascent) or, for a retrain, the retained set
        forget_passes = sum(1 for e in epochs if "reverse_loss" in e or "ascent_loss" in e)
        repair = [_count(e.get("repair_pairs")) for e in epochs if "repair_pairs" in e]
        selected = [e["selected_modules"] for e in epochs if isinstance(e.get("selected_modules"), list)]
        update = {
            "method": method,
            "epochs": len(epochs),
            # unlearn.max_epochs bounds the reverse–repair loop (other methods have their own bound)
            "max_epochs": get(ev, "params", "values", "unlearn", "max_epochs")
            if method in ("tru", "reverse_repair")
            else None,
            "stop": _stop(log, epochs),
            "forget_pairs": forget * forget_passes if forget is not None and forget_passes else None,
            "forget_passes": forget_passes,
            "repair_pairs": sum(n for n in repair if n is not None) if repair and None not in repair else None,
            "retain_pairs": retain * len(epochs) if method == "retrain" and retain is not None else None,
            "modules": _span([len(m) for m in selected]),
            "modules_ever": len({m for s in selected for m in s}) or None,
            "n_modules": n_modules,
            "coverage": _span([e.get("capacity_covered") for e in epochs]),
        }
    repair_log = ev["repair_log"]
    final = (
        None
        if not isinstance(repair_log, dict)
        else {
            "epochs": _count(repair_log.get("epochs_run")),
            "max_epochs": get(ev, "params", "values", "repair", "max_epochs"),
            "reason": repair_log.get("reason"),
        }
    )
    retrain_log = ev.get("retrain_log")
    retrain = None
    if isinstance(retrain_log, dict):
        n = len([e for e in retrain_log.get("epochs") or [] if isinstance(e, dict)])
        retrain = {
            "epochs": n,
            "best_epoch": _count(retrain_log.get("best_epoch")),
            "pairs": retain * n if retain is not None else None,
        }
    return {
        "probe_size": heat.get("probe_size"),
        "forget": forget,
        "retain": retain,
        "unlearning": update,
        "repair": final,
        "retrain": retrain,
        "retrain_ran": isinstance(get(ev, "metrics", "retrain"), dict),
    }


@section("work", "Work done", part="engineers")
def work(ev: dict) -> dict:
    """Context of the work-done section: what each step did (`_work`) and the evidence's paths."""
    return {**_work(ev), "paths": ev["paths"]}


@section("manifest", "Artifact manifest", part="engineers")
def manifest(ev: dict) -> dict:
    """Context of the manifest section: the manifest's files grouped by role and folder, totals,
    code digest and dvc.lock stages."""
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
        groups.append(
            {
                "role": role,
                "folder": folder.as_posix(),
                "files": [{**f, "name": PurePosixPath(f["path"]).relative_to(folder).as_posix()} for f in files],
            }
        )
    return {
        "groups": groups,
        "n_files": len(man["files"]),
        "total_bytes": sum(f["bytes"] for f in man["files"]),
        "code_digest": man["code_digest"],
        "renderer": man.get("renderer"),  # absent from manifests made before it was recorded
        "signing_key": ev.get("signing_key"),
        "stages": man["dvc_lock"],
        "paths": ev["paths"],
        "base_model": man.get("base_model"),
    }


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, dict):
        out = []
        for k in sorted(obj):
            out += _flatten(obj[k], f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, obj if isinstance(obj, str) else json.dumps(obj))]


@section("reproduce", "How to reproduce", part="engineers")
def reproduce(ev: dict) -> dict:
    """Context of the how-to-reproduce section: the DVC stages, paths, code digest and the params
    flattened to dotted keys."""
    return {
        "batch": ev["batch"],
        "stages": ev["repro_stages"],
        "paths": ev["paths"],
        "code_digest": ev["code_digest"],
        "report_dir": ev["paths"]["pdf"].rsplit("/", 1)[0],
        "sidecar_name": ev["paths"]["sidecar"].rsplit("/", 1)[1],
        "params_source": ev["params"]["source"],
        "params": _flatten(ev["params"]["values"]),
    }


def _retention_days(ev: dict) -> int | None:
    """lifecycle.retention_days as params.yaml sets it (the report stage depends on it), else None."""
    days = (ev.get("lifecycle") or {}).get("retention_days")
    return None if days is None else int(days)


@section("where", "Where this data still exists")
def where(ev: dict) -> dict:
    """Context of the section on the copies the erasure did not remove yet (docs/lifecycle.md):
    whether the model was promoted, the model the batch started from, the retention window."""
    audit = ev.get("audit") or {}
    return {
        "promoted": audit.get("promoted"),
        "base_model": get(ev, "components", "base_model"),
        "retention_days": _retention_days(ev),
    }


@section("limits", "Limits")
def limits(ev: dict) -> dict:
    """Context of the limits section: whether a retrain ran, the targets' median removed share and
    the membership sample sizes."""
    mem = get(ev, "audit", "membership", default={}) or {}
    return {
        "retrain_ran": isinstance(get(ev, "metrics", "retrain"), dict),
        "median_share": get(ev, "components", "target_items", "removed_share_median"),
        "n_members": mem.get("n_members"),
        "n_non_members": mem.get("n_non_members"),
        "sample_per_class": mem.get("sample_per_class"),
    }
