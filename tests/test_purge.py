"""Consolidation and purge without DVC runs: which objects a purge may remove (never one the
lineage in service or a generation still in its window names), and a consolidation or purge
killed half-way resumes to the same end."""

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import ROOT
from tru.config import load_params
from tru.errors import ConfigError
from tru.lifecycle import consolidate as cons
from tru.lifecycle import purge as pg
from tru.lifecycle.suppression import read_suppression
from tru.requests.pseudonym import subject
from tru.requests.schema import LEDGER_SCHEMA

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
NOW = datetime(2026, 12, 1, tzinfo=UTC)
B1 = "b20261101T020000Z"


def put(store, md5, data=b"x"):
    path = store / "files" / "md5" / md5[:2] / md5[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def lock(path, outs):
    path.parent.mkdir(parents=True, exist_ok=True)
    stages = {f"s{k}": {"cmd": "x", "outs": [{"path": p, "md5": m}]} for k, (p, m) in enumerate(outs.items())}
    path.write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))


def md5(c):
    return c * 32


def ended_generation(project, outs, **extra):
    """Generation 0's lock naming `outs` (path -> md5), nothing in service, its window closed
    yesterday; the generations record written and returned."""
    lock(project / "lifecycle/locks/generation-0.dvc.lock", outs)
    lock(project / "dvc.lock", {})
    gens = [
        {"generation": 1, "state": "done", "batches": [], "previous_lock": "lifecycle/locks/generation-0.dvc.lock",
         "retain_until": (NOW - timedelta(days=1)).isoformat(), "finished_at": "x", **extra},
    ]  # fmt: skip
    cons.write_generations(gens)
    return gens


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()
    return tmp_path


def test_a_purge_removes_only_what_no_lineage_in_use_names(project):
    cache = project / ".dvc" / "cache"
    a, b, c, d, e = md5("a"), md5("b"), md5("c"), md5("d"), md5("e")
    x = md5("f") + ".dir"
    for m in (a, b, c, d, e):
        put(cache, m)
    # a folder listing of the ended generation: one member of its own, one shared with the lineage in service
    put(cache, x, json.dumps([{"md5": d, "relpath": "train.parquet"}, {"md5": b, "relpath": "kept.npy"}]).encode())
    lock(project / "lifecycle/locks/generation-0.dvc.lock", {"data/raw": a, "data/models/base": b, "data/split": x})
    lock(project / "lifecycle/locks/generation-1.dvc.lock", {"data/split": c})  # the window still open
    lock(project / "dvc.lock", {"data/models/base": b})
    past, future = NOW - timedelta(days=1), NOW + timedelta(days=10)
    gens = [
        {"generation": 1, "state": "done", "batches": [], "previous_lock": "lifecycle/locks/generation-0.dvc.lock",
         "retain_until": past.isoformat()},
        {"generation": 2, "state": "done", "batches": [], "previous_lock": "lifecycle/locks/generation-1.dvc.lock",
         "retain_until": future.isoformat()},
    ]  # fmt: skip
    # an object the scan found holding the subjects, also named by the open window: kept
    plan = pg.make_plan(gens, NOW, project, scan_finds={e: "an earlier version", c: "data/split"})
    assert set(plan["objects"]) == {a, x, d, e}
    assert plan["objects"][d]["held"] == "data/split/train.parquet"
    assert plan["generations"] == [0] and plan["consolidations"] == [1]
    assert plan["kept_in_use"] == 2  # b (in service) and c (open window)
    # nothing due yet at the consolidation's own time
    assert pg.due(gens, past - timedelta(days=1)) == []


def test_a_purge_killed_half_way_resumes_from_its_plan(project, monkeypatch):
    cache = project / ".dvc" / "cache"
    objs = [md5(c) for c in "abcd"]
    for m in objs:
        put(cache, m)
    ended_generation(project, {f"data/x{k}": m for k, m in enumerate(objs)})
    real_unlink = type(project).unlink
    calls = {"n": 0}

    def dying_unlink(self, *args, **kwargs):
        if "files/md5" in self.as_posix():
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("killed")
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(type(project), "unlink", dying_unlink)
    with pytest.raises(KeyboardInterrupt):
        pg.purge(NOW, project, scan=False, echo=lambda _: None)
    monkeypatch.setattr(type(project), "unlink", real_unlink)
    assert (project / pg.PLAN).is_file() and not (project / pg.TOMBSTONES).exists()
    assert sum(any(f.is_file() for f in pg.object_files(cache, m)) for m in objs) == 2
    plan = pg.purge(NOW, project, scan=False, echo=lambda _: None)
    assert plan is not None and not (project / pg.PLAN).exists()
    assert not any(f.is_file() for m in objs for f in pg.object_files(cache, m))
    stones = [json.loads(line) for line in (project / pg.TOMBSTONES).read_text().splitlines()]
    assert sorted(s["object"] for s in stones) == sorted(objs)
    assert all(s["removed_from"] == ["dvc cache"] and s["generation"] == 0 for s in stones)
    assert cons.read_generations()[0]["purged_objects"] == 4
    # the certificate of sanitization lists every object; unverified without a scan, and says so
    facts = json.loads((project / plan["certificate"]).with_suffix(".json").read_text())
    assert sorted(o["object"] for o in facts["objects"]) == sorted(objs)
    assert facts["verified"] is None and facts["verification_label"] == "NOT VERIFIED"
    assert (project / plan["certificate"]).read_bytes().startswith(b"%PDF-")
    assert pg.purge(NOW, project, scan=False, echo=lambda _: None) is None  # nothing left to do


def ledger(project, batch, rows):
    cols = {name: [] for name in LEDGER_SCHEMA.names}
    for k, (kind, user, item, status) in enumerate(rows):
        row = {name: None for name in LEDGER_SCHEMA.names}
        row.update(
            batch_id=batch, source="r.jsonl", line=k + 1, request_id=f"r{k}", kind=kind, user_id=user,
            item_id=item, user_index=-1, item_index=-1, subject=subject(KEY, kind, user, item), status=status,
            received_at="2026-11-01T00:00:00Z", recorded_at="2026-11-01T02:00:00Z",
        )  # fmt: skip
        for name in cols:
            cols[name].append(row[name])
    path = project / "data/ledger" / batch / "requests.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table(cols, schema=LEDGER_SCHEMA), path)


def test_a_consolidation_killed_in_its_retrain_resumes_and_loses_nothing(project):
    params = load_params(ROOT / "params.yaml")
    (project / "batches.yaml").write_text(
        yaml.safe_dump(
            {"batches": [{"id": B1, "prior": "data/split", "base_model": "data/models/base", "method": "tru"}]}
        )
    )
    (project / "reports" / B1).mkdir(parents=True)
    (project / "reports" / B1 / "audit.json").write_text(json.dumps({"verdict": "pass"}))
    ledger(
        project,
        B1,
        [("user", "7", None, "accepted"), ("interaction", "3", "c", "accepted"), ("user", "9", None, "rejected")],
    )
    from tru.requests.ledger import append_status

    append_status(project / "data/ledger", B1, "audit", ["r0", "r1"], "erased", NOW)
    lock(project / "dvc.lock", {"data/models/base": md5("a"), "data/batches/x/model": md5("b")})
    lock_doc = yaml.safe_load((project / "dvc.lock").read_text())
    lock_doc["stages"]["erase@0"] = lock_doc["stages"].pop("s1")
    (project / "dvc.lock").write_text(yaml.safe_dump(lock_doc))

    def killed(targets):
        raise KeyboardInterrupt("killed during dvc repro")

    with pytest.raises(KeyboardInterrupt):
        cons.consolidate(params, NOW, repro=killed, echo=lambda _: None)
    (entry,) = cons.read_generations()
    assert entry["state"] == "started" and entry["batches"] == [B1]
    sup = read_suppression("lifecycle/suppression.tsv")
    assert sup.counts() == {"user": 1, "item": 0, "interaction": 1} and sup.generation == 1
    assert yaml.safe_load((project / "batches.yaml").read_text())["batches"] == []
    assert "erase@0" not in yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert "erase@0" in yaml.safe_load((project / "lifecycle/locks/generation-0.dvc.lock").read_text())["stages"]

    def retrain(targets):
        assert targets == ["evaluate"]
        (project / "reports/train").mkdir(parents=True, exist_ok=True)
        (project / "reports/train/metrics.json").write_text(json.dumps({"test": {"recall@20": 0.2}}))

    later = NOW + timedelta(hours=1)
    done = cons.consolidate(params, later, repro=retrain, echo=lambda _: None)
    assert done["state"] == "done" and done["test_recall@20"] == 0.2 and done["started_at"] == "2026-12-01T00:00:00Z"
    assert done["retain_until"] == "2026-12-31T01:00:00Z"  # retention_days 30 after it finished
    # the list did not grow twice
    assert len(read_suppression("lifecycle/suppression.tsv")) == 2
    with pytest.raises(cons.NothingToConsolidate):
        cons.consolidate(params, later, repro=retrain, echo=lambda _: None)


def test_a_batch_awaiting_review_is_not_consolidated(project):
    params = load_params(ROOT / "params.yaml")
    (project / "batches.yaml").write_text(yaml.safe_dump({"batches": [{"id": B1}]}))
    (project / "reports" / B1).mkdir(parents=True)
    (project / "reports" / B1 / "audit.json").write_text(json.dumps({"verdict": "fail"}))
    from tru.errors import DataError

    with pytest.raises(DataError, match="awaits review"):
        cons.consolidate(params, NOW, repro=lambda t: None, echo=lambda _: None)
    assert cons.read_generations() == [] and not (project / "lifecycle/suppression.tsv").exists()


def test_the_lifecycle_flows_run_the_same_steps_and_say_when_there_is_nothing_to_do(project, harness):
    import shutil

    from flows.lifecycle import data_consolidation, data_purge

    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    (project / "batches.yaml").write_text("batches: []\n")
    assert data_consolidation(params_path="params.yaml")["status"] == "nothing"
    assert data_purge(params_path="params.yaml") == {"status": "nothing"}
    assert not (project / "lifecycle/generations.yaml").exists()


def test_where_a_batchs_data_is_follows_the_lifecycle(project):
    from tru.lifecycle.where import where_lines

    assert where_lines(B1) == []  # a batch nobody knows
    (project / "batches.yaml").write_text(yaml.safe_dump({"batches": [{"id": B1}]}))
    before = " ".join(where_lines(B1))
    assert "until the next consolidation" in before and "raw ids, kept until that purge" in before
    entry = {"generation": 1, "state": "done", "batches": [B1], "finished_at": "2026-12-01T00:00:00Z",
             "retain_until": "2026-12-31T00:00:00Z"}  # fmt: skip
    cons.write_generations([entry])
    kept = " ".join(where_lines(B1))
    assert "left out of the data since generation 1 (consolidated 2026-12-01)" in kept
    assert "kept for audit until 2026-12-31" in kept
    cons.write_generations([{**entry, "purged_at": "2026-12-31T04:00:00Z", "purged_objects": 7}])
    gone = " ".join(where_lines(B1))
    assert "purged 2026-12-31: 7 object(s)" in gone and "raw ids and reasons dropped" in gone


def test_a_purge_removes_objects_from_a_remote_through_dvc_and_lists_what_a_remote_kept(tmp_path, monkeypatch):
    """A remote that is not a local folder goes through DVC's own object store for it: here a
    folder DVC opens as a remote, handed to the purge as if it were S3 (the same calls), holding
    one object in DVC 3's layout and one in DVC 2's. A second remote DVC cannot reach (HTTP,
    nothing listening) is named with why, and the certificate says INCOMPLETE, never VERIFIED."""
    from dvc.repo import Repo

    from tru.lifecycle import scan

    project = tmp_path / "p"
    project.mkdir()
    monkeypatch.chdir(project)
    Repo.init(str(project), no_scm=True).close()
    far, dead = tmp_path / "far", "http://127.0.0.1:9/store"
    with (project / ".dvc" / "config").open("a") as f:
        f.write(f"['remote \"far\"']\n    url = {far}\n['remote \"ro\"']\n    url = {dead}\n")
    real = scan.dvc_locations

    def as_if_cloud(root):
        cache, remotes = real(root)
        return cache, [
            r if r["name"] != "far" else {"name": "far", "url": "s3://bucket/tru", "scheme": "s3"} for r in remotes
        ]

    monkeypatch.setattr(scan, "dvc_locations", as_if_cloud)
    a, b, c = md5("a"), md5("b"), md5("c")
    put(far, a)
    legacy = far / b[:2] / b[2:]  # DVC 2's layout
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"x")
    put(far, c)  # named by the lineage in service: stays
    put(project / ".dvc" / "cache", a)
    lock(project / "lifecycle/locks/generation-0.dvc.lock", {"data/raw": a, "data/split": b, "data/models/base": c})
    lock(project / "dvc.lock", {"data/models/base": c})
    gens = [
        {"generation": 1, "state": "done", "batches": [], "previous_lock": "lifecycle/locks/generation-0.dvc.lock",
         "retain_until": (NOW - timedelta(days=1)).isoformat(), "finished_at": "x", "retention_days": 0},
    ]  # fmt: skip
    cons.write_generations(gens)
    plan = pg.make_plan(gens, NOW, project)
    assert plan["objects"][a]["remotes"] == ["far"] and plan["objects"][b] == {
        "held": "data/split", "in": [], "remotes": ["far"]
    }  # fmt: skip
    assert c not in plan["objects"] and plan["far_remotes"] == ["far"]
    (ro,) = plan["not_purged"]
    assert ro["remote"] == "ro" and ro["why"]
    done = pg.purge(NOW, project, scan=False, echo=lambda _: None)
    assert not any(f.is_file() for m in (a, b) for f in pg.object_files(far, m))
    assert any(f.is_file() for f in pg.object_files(far, c))
    stones = {s["object"]: s for s in map(json.loads, (project / pg.TOMBSTONES).read_text().splitlines())}
    assert stones[a]["removed_from"] == ["dvc cache", "remote far"] and stones[b]["removed_from"] == ["remote far"]
    facts = json.loads((project / done["certificate"]).with_suffix(".json").read_text())
    assert facts["verification_label"] == "INCOMPLETE" and facts["verified"] is False
    assert "ro" in facts["not_purged"] and "remote far" in facts["stores"]


def test_an_object_a_remote_refuses_to_delete_is_recorded_not_hidden(project, monkeypatch):
    a = md5("a")
    put(project / ".dvc" / "cache", a)
    gens = ended_generation(project, {"data/raw": a})
    plan = pg.make_plan(gens, NOW, project)
    plan["objects"][a]["remotes"] = ["far"]  # as planned when the remote held it
    (project / pg.PLAN).write_text(json.dumps(plan))

    def refuses(root, remotes):
        return {}, {r["name"]: "PermissionError: read-only remote" for r in remotes}

    monkeypatch.setattr(pg, "remote_odbs", refuses)
    monkeypatch.setattr(
        pg,
        "_stores",
        lambda root: ([project / ".dvc" / "cache"], [{"name": "far", "url": "s3://b", "scheme": "s3"}], {}),
    )
    done = pg.purge(NOW, project, scan=False, echo=lambda _: None)
    assert done["left_on_remotes"] == {a: {"remote far": "PermissionError: read-only remote"}}
    (stone,) = map(json.loads, (project / pg.TOMBSTONES).read_text().splitlines())
    assert stone["removed_from"] == ["dvc cache"]
    assert stone["not_removed_from"] == {"remote far": "PermissionError: read-only remote"}
    facts = json.loads((project / done["certificate"]).with_suffix(".json").read_text())
    assert facts["verification_label"] == "INCOMPLETE" and "far" in facts["not_purged"]


def test_the_nightly_flow_consolidates_when_its_policy_says_so(project):
    """Each trigger of lifecycle.consolidate_when on its own, over the batches whose gate passed."""
    from tru.lifecycle.policy import consolidation_due, policy_line

    b2, b3 = "b20261102T020000Z", "b20261103T020000Z"
    (project / "batches.yaml").write_text(yaml.safe_dump({"batches": [{"id": b} for b in (B1, b2, b3)]}))
    for b, verdict, ratio in ((B1, "pass", 0.98), (b2, "inconclusive", 0.96), (b3, "fail", 0.5)):
        (project / "reports" / b).mkdir(parents=True)
        audit = {"verdict": verdict, "promoted": verdict == "inconclusive"}
        if b == b2:  # the last batch served: the chain's membership check it recorded (tru.audit.chain)
            audit["chain"] = {"flagged": True, "verdict": "residue", "auc": 0.571, "threshold": 0.557,
                              "members": 345, "original_auc": 0.563}  # fmt: skip
        if b == B1:
            audit["chain"] = {"flagged": False, "verdict": "no power", "auc": 0.6, "threshold": 0.65, "members": 12}
        (project / "reports" / b / "audit.json").write_text(json.dumps(audit))
        metrics = {
            "original": {"retain_valid": {"recall@20": 0.2}},
            "unlearned": {"retain_valid": {"recall@20": 0.2 * ratio}},
        }
        (project / "reports" / b / "metrics.json").write_text(json.dumps(metrics))
    # 20 real users and the canary's fake accounts in service; B1 erased 1 real user and a fake one, b3 (refused) 5
    ledger(
        project,
        B1,
        [("user", "7", None, "erased"), ("user", "canary-0001", None, "erased"), ("user", "8", None, "rejected")],
    )
    refused = [("user", str(u), None, "accepted") for u in range(10, 15)] + [("item", None, "i9", "accepted")]
    ledger(project, b3, refused)
    ledger(project, b2, [("item", None, "i4", "erased"), ("item", None, "i5", "rejected")])
    users = ["raw_id"] + [str(u) for u in range(20)] + ["canary-0000", "canary-0001"]
    (project / "data/datasets/tiny").mkdir(parents=True)
    (project / "data/datasets/tiny/user_map.tsv").write_text(
        "\n".join(f"{k}\t{u}" if k else f"userID\t{u}" for k, u in enumerate(users)) + "\n"
    )
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base["data"]["dataset_dir"] = "data/datasets/tiny"

    def due(**when):
        off = {"batches": 0, "erased_user_share": 0.0, "retain_drop": 0.0, "interaction_residue": False,
               "erased_items": {}}  # fmt: skip
        base["lifecycle"]["consolidate_when"] = off | when
        (project / "params.yaml").write_text(yaml.safe_dump(base))
        return consolidation_due(load_params(project / "params.yaml"), project)

    assert due() == []  # every trigger off
    assert due(batches=2) and due(batches=3) == []  # the refused batch does not count
    (reason,) = due(erased_user_share=0.05)  # 1 of 20 real users: the fake account is not one
    assert "1 of 20 users (5.0%)" in reason
    assert due(erased_user_share=0.06) == []
    (reason,) = due(retain_drop=0.05)  # 0.98 * 0.96 = 94.1%: the refused batch's model is not served
    assert "94.1%" in reason
    assert due(retain_drop=0.06) == []
    (reason,) = due(interaction_residue=True)  # read from the last batch served (b2), not the refused b3
    assert "flags residue" in reason and "AUC 0.571 against the threshold 0.557 on 345 interactions" in reason
    line = policy_line(load_params(project / "params.yaml"), project)  # `tru status`
    assert "residue on the interactions erased so far (now residue: AUC 0.571" in line
    audit2 = project / "reports" / b2 / "audit.json"
    audit2.write_text(json.dumps({"verdict": "inconclusive", "promoted": True}))  # an audit without the check
    assert due(interaction_residue=True) == []
    assert len(due(batches=1, erased_user_share=0.01, retain_drop=0.01)) == 3
    # items erased, counted for the backbone in service only: b2 erased i4 (i5 was rejected, b3's i9 refused)
    base["model"]["backbone"] = "miggt"
    (reason,) = due(erased_items={"miggt": 1})
    assert "1 item(s) erased since the last consolidation" in reason and "erased_items.miggt: 1" in reason
    assert "1 item(s) erased (now 1)" in policy_line(load_params(project / "params.yaml"), project)
    assert due(erased_items={"miggt": 2}) == [] and due(erased_items={"miggt": 0}) == []
    assert due(erased_items={"mgcn": 1}) == []  # another backbone's count
    with pytest.raises(ConfigError, match="erased_items"):
        due(erased_items={"miggt": -1})
