"""A batch's DVC plots: reports/<batch>/plots/*.json, the figures an auditor compares across
models, as the lists of records `dvc plots show` reads (one record per bar).

metrics.json and audit.json hold one nested mapping per model, which `dvc metrics show` reads
but `dvc plots` cannot: DVC plots want one record per point. These files are a second view of
the same numbers, built only from what the evaluate_batch and audit stages write, so a rerun
gives them byte for byte and the evidence manifest hashes them like the other reports.

Every record names its `model` (original, unlearned, retrain); dvc.yaml declares each file with
the `model_bars` template (.dvc/plots/model_bars.json): a bar per model, its value on `x`, a
panel per value of `y`, and whiskers from `ci_low`/`ci_high` where a record has them.
"""

from __future__ import annotations

from pathlib import Path

from tru import paths
from tru.io import write_json

PLOTS = "plots"  # reports/<batch>/plots/
MODELS = ("original", "unlearned", "retrain")  # bar order: before, after, the reference
SPLITS = ("retain", "forget")  # the panels of recall.json, as the gate reads them
# membership.json's panels: the attack on what the model exposes, and the one that also sees
# the original model and the change (audit.json: membership.models / membership.difference)
ATTACKS = (("scores", "models"), ("difference", "difference"))
# backdoor.json's panels: the target's success rate, among trigger users, and the reference it
# is read against (items as popular as the target; the gate's lift is rate minus reference)
BACKDOOR = (
    ("success rate", "asr"),
    ("success rate, trigger users", "asr_trigger_users"),
    ("reference: peer items", "peer_asr"),
)


def plots_dir(batch_id: str) -> Path:
    """reports/<batch>/plots/."""
    return paths.report_dir(batch_id) / PLOTS


def _models(found: dict) -> list[str]:
    """The model names of `found` in bar order; a name this module does not know goes last,
    so a new kind of model is drawn rather than dropped."""
    return [m for m in MODELS if m in found] + sorted(m for m in found if m not in MODELS)


def recall_records(metrics: dict) -> list[dict]:
    """Retain and forget Recall@20 per model, from metrics.json: `x` recall@20, `y` split."""
    return [
        {"model": model, "split": split, "recall@20": metrics[model][split]["recall@20"]}
        for split in SPLITS
        for model in _models({m: v for m, v in metrics.items() if isinstance(v, dict) and split in v})
    ]


def membership_records(membership: dict) -> list[dict]:
    """The best membership attack's balanced accuracy per model (0.5 is chance) with its
    bootstrap 95% interval, from audit.json's `membership`: `x` balanced_accuracy, `y` attack.
    A model whose attack did not run (too few pairs) has no record."""
    out = []
    for attack, key in ATTACKS:
        results = membership.get(key) or {}
        for model in _models(results):
            best = results[model].get("best")
            if best is None:
                continue
            low, high = results[model][best]["balanced_accuracy_ci"]
            out.append(
                {
                    "model": model,
                    "attack": attack,
                    "attacker": best,
                    "balanced_accuracy": results[model][best]["balanced_accuracy"],
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return out


def backdoor_records(backdoor: dict) -> list[dict]:
    """The canary's attack success rate per model (the share of users with the target item in
    their top-20) and its reference, from audit.json's `backdoor`: `x` top20_share, `y` measure.
    Empty when the batch had no canary (production): DVC draws no plot for an empty list, and
    the file still exists, as a declared output must."""
    if not backdoor.get("enabled"):
        return []
    models = backdoor.get("models") or {}
    return [
        {"model": model, "measure": measure, "top20_share": models[model][key]}
        for measure, key in BACKDOOR
        for model in _models(models)
        if key in models[model]
    ]


def write_recall_plot(batch_id: str, metrics: dict) -> Path:
    """reports/<batch>/plots/recall.json from the batch's metrics.json content."""
    path = plots_dir(batch_id) / "recall.json"
    write_json(path, recall_records(metrics))
    return path


def write_audit_plots(batch_id: str, audit: dict) -> list[Path]:
    """reports/<batch>/plots/membership.json and backdoor.json from the batch's audit.json
    content; both are written whatever the audit found, as DVC outputs must be."""
    written = []
    for name, records in (
        ("membership", membership_records(audit.get("membership") or {})),
        ("backdoor", backdoor_records(audit.get("backdoor") or {})),
    ):
        path = plots_dir(batch_id) / f"{name}.json"
        write_json(path, records)
        written.append(path)
    return written
