"""Forget/retain sets over cumulative batches, and the component map."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tru.data.dataset import load_split, read_pairs
from tru.data.mmrec import load_folder
from tru.data.split import make_split
from tru.data.synth import SCALES, synthesize
from tru.models import build_backbone
from tru.requests.catalog import Catalog
from tru.requests.ingest import ingest_files
from tru.requests.sets import build_sets
from tru.train import seed_everything
from tru.unlearning.components import knn_rebuild, map_components

KEY = b"k" * 32


@pytest.fixture(scope="module")
def world(tmp_path_factory, params):
    root = tmp_path_factory.mktemp("world")
    synthesize(SCALES["tiny"], 5, root / "ds", "tiny")
    make_split(load_folder(root / "ds"), params.split, 5, root / "split", root / "ds")
    return root


def write_requests(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def raw(world, kind):
    return pd.read_csv(world / "ds" / f"{kind}_map.tsv", sep="\t", dtype={"raw_id": str})["raw_id"].tolist()


def test_cumulative_sets_over_three_batches(world, tmp_path):
    users, items = raw(world, "user"), raw(world, "item")
    catalog = Catalog.from_dataset(world / "ds", world / "split")
    train = read_pairs(world / "split" / "train.parquet")
    u1, u2 = int(train[0, 0]), int(train[-1, 0])
    item = int(np.bincount(train[:, 1]).argmax())
    pair = train[(train[:, 0] != u1) & (train[:, 0] != u2) & (train[:, 1] != item)][0]
    when = "2026-01-01T00:00:00Z"
    batches = [
        ("b20260101T000000Z", [{"request_id": "r1", "kind": "user", "user_id": users[u1], "received_at": when}]),
        (
            "b20260102T000000Z",
            [
                {"request_id": "r2", "kind": "item", "item_id": items[item], "received_at": when},
                {
                    "request_id": "r3",
                    "kind": "interaction",
                    "user_id": users[pair[0]],
                    "item_id": items[pair[1]],
                    "received_at": when,
                },
                # the same target under a new id: recorded, erased once
                {
                    "request_id": "r3b",
                    "kind": "interaction",
                    "user_id": users[pair[0]],
                    "item_id": items[pair[1]],
                    "received_at": when,
                },
            ],
        ),
        (
            "b20260103T000000Z",
            [
                {"request_id": "r4", "kind": "user", "user_id": users[u2], "received_at": when},
                # already erased in batch 1 (no erased status yet: accepted again, but nothing left)
                {"request_id": "r1", "kind": "user", "user_id": users[u1], "received_at": when},
            ],
        ),
    ]
    prior = world / "split"
    ledger = tmp_path / "ledger"
    original = read_pairs(world / "split" / "train.parquet")

    def keys(p):
        return set(map(tuple, p.tolist()))

    for batch, rows in batches:
        f = write_requests(tmp_path / f"{batch}.jsonl", rows)
        table = ingest_files([f], batch, ledger, catalog, KEY)
        assert len(table) == len(rows)
        out = tmp_path / batch / "sets"
        meta = build_sets(prior, table, batch, out)
        retain = read_pairs(out / "train.parquet")
        forget = read_pairs(out / "forget.parquet")
        before = read_pairs(prior / "train.parquet")
        assert keys(retain) | keys(forget) == keys(before) and not keys(retain) & keys(forget)
        assert meta["batch"]["forget"] == len(forget) and meta["batch"]["retain"] == len(retain)
        prior = out
    # cumulative: the final retain set has nothing of any erased target
    final = load_split(prior, world / "ds")
    assert not np.isin(final.train[:, 0], [u1, u2]).any()
    assert not (final.train[:, 1] == item).any()
    assert not ((final.train[:, 0] == pair[0]) & (final.train[:, 1] == pair[1])).any()
    assert set(final.deleted_users.tolist()) == {u1, u2} and final.deleted_items.tolist() == [item]
    assert item not in final.candidates
    # erased users and items leave evaluation; their held-out rows are kept for the audits
    for split in ("valid", "test"):
        p = final.pairs(split)
        assert not np.isin(p[:, 0], [u1, u2]).any() and not (p[:, 1] == item).any()
    b1 = pd.read_parquet(tmp_path / batches[0][0] / "sets" / "heldout.parquet")
    assert set(b1["user"]) <= {u1} and len(b1) > 0
    # shadow pairs (never trained on) follow the same rule: an erased user's or item's leave the
    # retained shadow set for the batch's heldout_shadow, and none ever enters a training split
    split_shadow = read_pairs(world / "split" / "shadow.parquet")
    assert len(split_shadow) and not keys(split_shadow) & keys(original)
    assert not np.isin(final.shadow[:, 0], [u1, u2]).any() and not (final.shadow[:, 1] == item).any()
    hs = read_pairs(tmp_path / batches[0][0] / "sets" / "heldout_shadow.parquet")
    assert len(hs) and set(hs[:, 0].tolist()) == {u1}
    erased_shadow = np.concatenate([read_pairs(tmp_path / b / "sets" / "heldout_shadow.parquet") for b, _ in batches])
    assert keys(erased_shadow) | keys(final.shadow) == keys(split_shadow)
    for b, _ in batches:
        assert not keys(read_pairs(tmp_path / b / "sets" / "train.parquet")) & keys(split_shadow)
    # batch 2 erased the duplicated interaction once
    f2 = read_pairs(tmp_path / batches[1][0] / "sets" / "forget.parquet")
    assert int(((f2[:, 0] == pair[0]) & (f2[:, 1] == pair[1])).sum()) == 1
    total_forgotten = sum(len(read_pairs(tmp_path / b / "sets" / "forget.parquet")) for b, _ in batches)
    assert total_forgotten + len(final.train) == len(original)


def test_components_map_counts_knn_neighbours_of_a_deleted_item(world, params):
    data = load_split(world / "split", world / "ds")
    seed_everything(0)
    mp = params.model.mgcn.model_copy(update={"embedding_dim": 16, "knn_k": 4}).model_dump()
    model = build_backbone("mgcn", mp, data.n_users, data.n_items, data.features)
    model.set_graph(data.train)
    item = int(np.bincount(data.train[:, 1]).argmax())
    user = int(data.train[0, 0])
    forget = data.train[(data.train[:, 1] == item) | (data.train[:, 0] == user)]
    comp = map_components(
        model, data.train, forget, np.array([item]), {"users": 1, "items": 1, "interactions": 0}, seed=0
    )
    assert comp["counts"]["forget_interactions"] == len(forget)
    assert comp["counts"]["retain_interactions"] == len(data.train) - len(forget)
    assert comp["rebuild"]["item_knn_graphs"] is True
    found = knn_rebuild(model, np.array([item]))
    for modality, graph in model.knn.items():
        dense = graph.to_dense()
        expected = sorted(i for i in range(data.n_items) if i != item and dense[i, item] != 0)
        assert found[modality]["neighbours_of_deleted"] == expected
        own = sorted(j for j in range(data.n_items) if j != item and dense[item, j] != 0)
        assert found[modality]["former_neighbours"][item] == own
        # components.json is committed: it counts them, and names no item of the forget set
        assert comp["rebuild"]["knn"][modality] == {"items_with_new_neighbours": len(expected)}
    # the target item loses all of its engagement; the heat map ranks every module and branch
    targets = comp["target_items"]
    assert targets["count"] == len(np.unique(forget[:, 1])) and targets["fully_removed"] >= 1
    assert set(targets) == {"count", "removed_share_median", "share_under_10pct", "fully_removed"}
    heat = comp["heat_map"]
    assert {r["name"] for r in heat["branches"]} == set(model.branches())
    assert {r["name"] for r in heat["modules"]} == set(model.selection_modules())
    ratios = [r["ratio"] for r in heat["modules"]]
    assert ratios == sorted(ratios, reverse=True) and all(np.isfinite(ratios))
    # the deleted user's own embedding row is pulled by the forget side only
    by_name = {r["name"]: r for r in heat["modules"]}
    assert by_name["user_embedding"]["forget_energy"] > 0


def test_sets_validation_catches_overlap_and_loss():
    from tru.errors import ValidationFailed
    from tru.requests.sets import validate_sets

    prior = pd.DataFrame({"user": [0, 0, 1, 2], "item": [0, 1, 1, 2], "timestamp": [1, 2, 3, 4]})
    forget, retain = prior.iloc[:1], prior.iloc[1:]
    validate_sets(prior, forget, retain, n_items=3)  # a clean partition passes
    with pytest.raises(ValidationFailed, match="exactly one of forget/retain"):
        validate_sets(prior, forget, prior, n_items=3)  # overlap
    with pytest.raises(ValidationFailed, match="differs from the prior retain set"):
        validate_sets(prior, forget, retain.iloc[:-1], n_items=3)  # a pair lost
