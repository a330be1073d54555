"""DVC's own views of the pipeline work as a DVC user expects: `dvc metrics show` holds the
metrics and nothing else (the per-batch wall-clock timings are plain outputs), `dvc plots show`
finds the declared plots (the base model's training curve, and per batch Recall@20, the
membership attacks and the backdoor canary) and renders them offline with
dvc_templates/plots_offline.html, `dvc dag --mermaid` draws the stages, and `dvc get --rev`
fetches a batch's evidence PDF from the DVC remote. The commands run on tiny fake projects: a
temporary git + DVC repository with this project's dvc.yaml, params.yaml and DVC plot template
and small JSON files where the stages would write them (no stage is run)."""

from __future__ import annotations

import hashlib
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
EVIDENCE = ROOT / "tests" / "fixtures" / "evidence"
FIXTURE = EVIDENCE / "reports" / "b20260101T020000Z"
BATCHES = ("b20260101T020000Z", "b20260102T020000Z")
TIMINGS = {"map", "update", "repair", "methods"}  # what the stages write under reports/B/timings/
TEMPLATE = ROOT / "dvc_templates" / "plots_offline.html"
PLOT_TEMPLATES = ROOT / ".dvc" / "plots"  # where DVC looks up `template: <name>` from any folder
# the per-batch plots: file -> the stage that writes it (tru/stages/plotdata.py)
BATCH_PLOTS = {"recall": "evaluate_batch", "membership": "audit", "backdoor": "audit"}


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


def test_the_batch_plots_are_declared_where_the_stages_write_them(stages):
    from tru.stages.plotdata import plots_dir

    plots = {path: (name, flags) for name, s in stages.items() for path, flags in declared(s, "plots").items()}
    assert set(plots) == {"reports/train/train_log.json"} | {
        f"reports/${{item.id}}/plots/{name}.json" for name in BATCH_PLOTS
    }
    for name, stage in BATCH_PLOTS.items():
        path = (plots_dir("${item.id}") / f"{name}.json").as_posix()
        owner, flags = plots[path]
        assert owner == stage
        # git's like every report (no DVC cache), drawn as a bar per model by the project's template
        assert flags["cache"] is False and flags["template"] == "model_bars" and flags["x"] and flags["y"]
        assert (PLOT_TEMPLATES / f"{flags['template']}.json").is_file()
        # the PDF's manifest hashes them: the report reruns when they change
        assert path in stages["report"]["deps"]


# --- a fake project ---------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


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


def fake_project(root: Path) -> Path:
    """A git + DVC repository at `root` with this project's dvc.yaml, params.yaml and plot
    templates, two batches in batches.yaml and the reports their stages would write: batch 1
    with the backdoor canary, batch 2 a production batch without it. Nothing is committed."""
    from tru.stages.plotdata import backdoor_records, membership_records, recall_records

    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    assert dvc(root, "init", "-q").returncode == 0
    shutil.copy(ROOT / "dvc.yaml", root)
    shutil.copy(ROOT / "params.yaml", root)
    shutil.copytree(PLOT_TEMPLATES, root / ".dvc" / "plots")
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
            if name in ("metrics", "audit"):
                src = without_retrain(src)
            if name == "audit" and b == BATCHES[1]:
                src["backdoor"] = {"enabled": False}
            write_json(rep / f"{name}.json", src)
        metrics, audit = (json.loads((rep / f"{name}.json").read_text()) for name in ("metrics", "audit"))
        write_json(rep / "plots/recall.json", recall_records(metrics))
        write_json(rep / "plots/membership.json", membership_records(audit["membership"]))
        write_json(rep / "plots/backdoor.json", backdoor_records(audit["backdoor"]))
        # what a retrain leaves: one timing per epoch (what made `dvc metrics show` thousands of columns)
        write_json(
            rep / "timings/update.json", {"total_seconds": 600.0, **{f"epochs[{i}].seconds": 1.2 for i in range(500)}}
        )
        write_json(rep / "timings/map.json", {"map_seconds": 1.8})
        write_json(rep / "timings/repair.json", {"seconds": 6.0})
        write_json(rep / "timings/methods.json", {"repair": 6.0, "update": 600.0})
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return fake_project(tmp_path_factory.mktemp("dvcproject"))


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


def div_id(path: str) -> str:
    """The id of a plot's <div> in DVC's page (dvc_render: special characters become `_`)."""
    return re.sub(r"[^A-Za-z0-9-]", "_", path)


def test_plots_show_finds_the_declared_plots(project):
    r = dvc(project, "plots", "show", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert not out.get("errors"), out.get("errors")
    batch_plots = {f"reports/{b}/plots/{name}.json" for b in BATCHES for name in BATCH_PLOTS}
    assert set(out["data"]) == {"reports/train/train_log.json"} | batch_plots
    (plot,) = out["data"]["reports/train/train_log.json"]
    assert len(plot["content"]["data"]["values"]) == 5

    def values(path: str) -> list[dict]:
        (plot,) = out["data"][path]
        return plot["content"]["data"]["values"]

    b1, b2 = BATCHES
    # a bar per model and split: original and unlearned (a production batch has no retrain)
    recall = values(f"reports/{b1}/plots/recall.json")
    assert [(v["split"], v["model"]) for v in recall] == [
        ("retain", "original"),
        ("retain", "unlearned"),
        ("forget", "original"),
        ("forget", "unlearned"),
    ]
    assert recall[3]["recall@20"] == 0.0517  # unlearned forget Recall@20, as metrics.json has it
    # the best attack per model with its interval; the difference attack has no original
    membership = values(f"reports/{b1}/plots/membership.json")
    assert [(v["attack"], v["model"]) for v in membership] == [
        ("scores", "original"),
        ("scores", "unlearned"),
        ("difference", "unlearned"),
    ]
    assert all(v["ci_low"] <= v["balanced_accuracy"] <= v["ci_high"] for v in membership)
    backdoor = values(f"reports/{b1}/plots/backdoor.json")
    assert {(v["measure"], v["model"]): v["top20_share"] for v in backdoor}[("success rate", "unlearned")] == 0.012
    # the batch without a canary: an empty list, so no plot and no error
    assert out["data"][f"reports/{b2}/plots/backdoor.json"] == []
    assert len(values(f"reports/{b2}/plots/recall.json")) == 4


def test_plots_show_renders_offline_with_the_template(project, tmp_path):
    out = tmp_path / "plots"
    r = dvc(project, "plots", "show", "--html-template", str(TEMPLATE), "-o", str(out))
    assert r.returncode == 0, r.stderr
    page = (out / "index.html").read_text()
    # the plots are in the page, drawn by the template's own vegaEmbed: nothing is loaded
    for path in ["reports/train/train_log.json"] + [
        f"reports/{b}/plots/{name}.json" for b in BATCHES for name in ("recall", "membership")
    ]:
        assert f'id = "{div_id(path)}"' in page and f"vegaEmbed('#{div_id(path)}'" in page
    assert "window.vegaEmbed = function" in page
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link[^>]*\bhref=", page)
    assert "cdn." not in page and "{plot_divs}" not in page

    # DVC's default page does fetch vega from a CDN: what the template is for
    default = tmp_path / "default"
    assert dvc(project, "plots", "show", "-o", str(default)).returncode == 0
    assert "cdn.jsdelivr.net/npm/vega" in (default / "index.html").read_text()


# Runs the page's scripts with a stand-in for the few DOM calls the template makes, and prints
# what each plot's <div> received: element counts and the SVG's texts.
DOM_STANDIN = r"""
const fs = require("fs");
const html = fs.readFileSync(process.argv[1], "utf8");
function node(tag) {
  return {tag, attrs: {}, children: [], textContent: "",
          setAttribute(k, v) { this.attrs[k] = String(v); },
          appendChild(c) { this.children.push(c); return c; }};
}
const hosts = {};
globalThis.window = globalThis;
globalThis.document = {
  createElement: node,
  createElementNS: (ns, tag) => node(tag),
  querySelector: (sel) => (hosts[sel] = hosts[sel] || node("div")),
};
for (const m of html.matchAll(/<script[^>]*>([\s\S]*?)<\/script>/g)) { (0, eval)(m[1]); }
function walk(n, seen) {
  seen.count[n.tag] = (seen.count[n.tag] || 0) + 1;
  if (n.tag === "text") { seen.texts.push(n.textContent); }
  n.children.forEach((c) => walk(c, seen));
  return seen;
}
const out = {};
for (const [sel, host] of Object.entries(hosts)) { out[sel.slice(1)] = walk(host, {count: {}, texts: []}); }
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_the_offline_page_draws_a_bar_per_model_and_the_training_curve(project, tmp_path):
    out = tmp_path / "plots"
    assert dvc(project, "plots", "show", "--html-template", str(TEMPLATE), "-o", str(out)).returncode == 0
    r = subprocess.run(["node", "-e", DOM_STANDIN, str(out / "index.html")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    drawn = json.loads(r.stdout)
    b1, b2 = BATCHES
    curve = drawn[div_id("reports/train/train_log.json")]["count"]
    assert curve["polyline"] == 1 and curve["circle"] == 5
    recall = drawn[div_id(f"reports/{b1}/plots/recall.json")]
    # a bar per record, a panel per split, each bar's value written at its end
    assert recall["count"]["rect"] == 4
    assert {"retain", "forget", "original", "unlearned", "0.0517", "recall@20"} <= set(recall["texts"])
    membership = drawn[div_id(f"reports/{b1}/plots/membership.json")]
    assert membership["count"]["rect"] == 3
    assert membership["count"]["line"] >= 3 * 3  # a whisker and its two caps per bar
    assert {"scores", "difference"} <= set(membership["texts"])
    backdoor = drawn[div_id(f"reports/{b1}/plots/backdoor.json")]
    assert backdoor["count"]["rect"] == 6 and "reference: peer items" in backdoor["texts"]
    # the batch without a canary: DVC passes an empty spec, the page says there is nothing to draw
    assert "svg" not in drawn[div_id(f"reports/{b2}/plots/backdoor.json")]["count"]


def test_dag_mermaid_draws_the_batch_stages(project):
    r = dvc(project, "dag", "--mermaid")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("flowchart TD")
    for name in ("train", "evaluate", "erase@0", "audit@1", "report@1"):
        assert f'["{name}"]' in r.stdout


# --- the evidence ---------------------------------------------------------------------------------


def test_the_batch_plots_are_evidence_like_the_other_reports(tmp_path, monkeypatch):
    """The manifest hashes every file under reports/<batch>/ but the wall-clock timings: the
    plot files the stages write are in it, so `tru evidence verify` names an edited one."""
    from conftest import TEST_SIGNING_KEY

    from tru.evidence import build_manifest, verify, write_manifest
    from tru.evidence.manifest import write_sidecar
    from tru.evidence.signing import load_private_key, sign
    from tru.stages.plotdata import write_audit_plots, write_recall_plot

    b = BATCHES[0]
    root = shutil.copytree(EVIDENCE, tmp_path / "project")
    monkeypatch.chdir(root)  # the stages write relative to the project root
    rep = Path("reports") / b
    write_recall_plot(b, json.loads((rep / "metrics.json").read_text()))
    write_audit_plots(b, json.loads((rep / "audit.json").read_text()))
    manifest = build_manifest(b, root)
    roles = {f["path"]: f["role"] for f in manifest["files"]}
    assert all(roles[f"reports/{b}/plots/{name}.json"] == "reports" for name in BATCH_PLOTS)
    write_manifest(b, root, manifest)
    if not (root / rep / "evidence.pdf").is_file():  # the fixture has no rendered PDF: a stand-in
        (root / rep / "evidence.pdf").write_bytes(b"%PDF-1.7 stand-in")
    write_sidecar(b, root)
    sign(b, root, key=load_private_key(env={"TRU_SIGNING_KEY": TEST_SIGNING_KEY}))  # as the flows do
    assert verify(b, root) == []
    plot = root / rep / "plots" / "recall.json"
    plot.write_text(plot.read_text().replace("0.0517", "0.0101"))
    assert [p.split(" (")[0] for p in verify(b, root)] == [f"reports/{b}/plots/recall.json: changed"]


def remote_folder(repo: Path, tmp_path: Path) -> tuple[str, Path]:
    """The name and the folder of the default DVC remote of `repo` (its committed .dvc/config).
    A remote outside `tmp_path` (an S3 bucket, a folder elsewhere) becomes a folder inside it,
    still committed as the default: nothing is pushed outside the test's own folder."""
    name = dvc(repo, "remote", "default").stdout.strip()
    assert name, ".dvc/config names no default remote: `dvc get --rev` cannot fetch the evidence PDF"
    url = dvc(repo, "config", f"remote.{name}.url").stdout.strip()  # a folder: absolute, as DVC resolves it
    folder = Path(url)
    if "://" in url or not folder.is_absolute() or not folder.is_relative_to(tmp_path):
        folder = tmp_path / "dvc-store"
        assert dvc(repo, "remote", "modify", name, "url", str(folder)).returncode == 0
    return name, folder


def test_dvc_get_fetches_a_batch_evidence_pdf_at_a_revision(tmp_path):
    """An auditor without a checkout: `dvc get --rev <commit> <repo> reports/<batch>/evidence.pdf`
    downloads the PDF from the DVC remote, and evidence.sha256 (git's) checks it. `dvc get`
    reads the DVC config *of that revision*, so the project's default remote is committed in
    .dvc/config. A revision committed before any remote was configured fails ("unexpected
    error - No storage files available"), and so does a relative remote folder once `dvc get`
    clones a URL into a temporary folder; naming the remote on the command line fixes both."""
    b = BATCHES[0]
    repo = fake_project(tmp_path / "repo")
    rep = repo / "reports" / b
    pdf = b"%PDF-1.7\n% a stand-in for the evidence of the batch\n"
    (rep / "evidence.pdf").write_bytes(pdf)
    (rep / "manifest.json").write_text("{}\n")
    (rep / "evidence.sha256").write_text(f"{hashlib.sha256(pdf).hexdigest()}  evidence.pdf\n")
    # stand-ins for what the report stage depends on: `dvc commit` hashes whatever it finds
    report = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["report"]["do"]
    for dep in report["deps"]:
        path = repo / dep.replace("${item.id}", b)
        if not path.exists() and path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
        elif not path.exists():
            path.mkdir(parents=True)
            (path / "stand-in").write_text("x\n")
    r = dvc(repo, "commit", "-f", "-q", "report@0")  # the PDF goes to the DVC cache, its md5 to dvc.lock
    assert r.returncode == 0, r.stderr
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "batch 1 and its evidence, before any DVC remote")
    before_remote = git(repo, "rev-parse", "HEAD")

    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # the project's DVC remote
    name, store = remote_folder(repo, tmp_path)
    r = dvc(repo, "push", "-q")
    assert r.returncode == 0, r.stderr
    git(repo, "add", ".dvc/config")
    git(repo, "commit", "-qm", "the default DVC remote")
    rev = git(repo, "rev-parse", "HEAD")
    # a clone beside the repository, as an auditor's: no DVC cache, so the PDF comes from the remote
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    got = tmp_path / "got"
    got.mkdir()

    def get(url: str, rev: str, file: str, *extra: str) -> subprocess.CompletedProcess:
        return dvc(got, "get", "--rev", rev, url, f"reports/{b}/{file}", "-o", file, "-f", *extra)

    for file in ("evidence.pdf", "evidence.sha256"):
        r = get(str(clone), rev, file)
        assert r.returncode == 0, r.stderr
    digest, _, file = (got / "evidence.sha256").read_text().strip().partition("  ")
    assert file == "evidence.pdf" and hashlib.sha256((got / file).read_bytes()).hexdigest() == digest

    # from a URL: DVC clones it into a temporary folder; the remote named with its absolute location
    (got / "evidence.pdf").unlink()
    r = get(clone.as_uri(), rev, "evidence.pdf", "--remote-config", f"url={store}")
    assert r.returncode == 0, r.stderr
    assert (got / "evidence.pdf").read_bytes() == pdf

    # the revision before the remote was committed: its config names none
    (got / "evidence.pdf").unlink()
    r = get(str(clone), before_remote, "evidence.pdf")
    assert r.returncode != 0 and not (got / "evidence.pdf").exists()
    r = get(str(clone), before_remote, "evidence.pdf", "--remote", name, "--remote-config", f"url={store}")
    assert r.returncode == 0, r.stderr
    assert (got / "evidence.pdf").read_bytes() == pdf
