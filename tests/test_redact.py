"""The suppression list and redaction: erased users, items and pairs never reach the raw
snapshot, the dataset folder or the split, whatever the source; nothing else changes."""

import numpy as np
import pandas as pd
import pytest

from tru.audit.canary import raw_ids
from tru.data.build import build_dataset
from tru.data.mmrec import load_folder
from tru.errors import ConfigError, DataError
from tru.lifecycle.redact import redact_atomic_files, redact_folder
from tru.lifecycle.suppression import Suppression, extend, read_suppression, suppression_key, write_suppression
from tru.requests.pseudonym import subject

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


def listed(*targets, generation=1) -> Suppression:
    rows = pd.DataFrame(
        [{"kind": k, "subject": subject(KEY, k, u, i)} for k, u, i in targets], columns=["kind", "subject"]
    )
    return extend(Suppression(), rows, generation)


def test_the_mask_drops_listed_users_items_and_pairs_only():
    sup = listed(("user", "7", None), ("item", None, "b"), ("interaction", "3", "c"))
    users = ["7", "7", "3", "3", "4", "4"]
    items = ["a", "c", "c", "a", "b", "c"]
    assert sup.mask(KEY, users, items).tolist() == [True, True, True, False, True, False]
    # a table of users only, or items only
    assert sup.mask(KEY, ["7", "3"], None).tolist() == [True, False]
    assert sup.mask(KEY, None, ["b", "c"]).tolist() == [True, False]
    # another key gives other pseudonyms: nothing matches
    assert not sup.mask(b"another key of 16+ bytes", users, items).any()
    with pytest.raises(DataError, match="pseudonymisation key"):
        sup.mask(None, users, items)


def test_the_list_round_trips_with_stable_bytes_and_grows_by_generation(tmp_path):
    assert read_suppression(tmp_path / "absent.tsv").generation == 0
    sup = listed(("user", "7", None), ("item", None, "b"))
    write_suppression(sup, tmp_path / "a.tsv")
    # the same rows in another order: the same bytes
    write_suppression(Suppression(sup.rows.iloc[::-1].reset_index(drop=True)), tmp_path / "b.tsv")
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    back = read_suppression(tmp_path / "a.tsv")
    assert back.generation == 1 and back.counts() == {"user": 1, "item": 1, "interaction": 0}
    # a subject already listed keeps its first generation
    more = extend(back, pd.DataFrame([{"kind": "user", "subject": subject(KEY, "user", "7", None)}]), 2)
    more = extend(more, pd.DataFrame([{"kind": "user", "subject": subject(KEY, "user", "8", None)}]), 2)
    assert len(more) == 3 and more.generation == 2
    assert more.rows.groupby("generation").size().to_dict() == {1: 2, 2: 1}


def test_a_malformed_list_is_refused_by_name(tmp_path):
    bad = tmp_path / "s.tsv"
    bad.write_text("kind\tsubject\tgeneration\nperson\tab\t1\n")
    with pytest.raises(DataError, match="unknown kind"):
        read_suppression(bad)
    bad.write_text("kind\tsubject\tgeneration\nuser\tab\t0\n")
    with pytest.raises(DataError, match="at least 1"):
        read_suppression(bad)
    bad.write_text("kind\tsubject\nuser\tab\n")
    with pytest.raises(DataError, match="missing column"):
        read_suppression(bad)


def test_an_empty_list_needs_no_key_and_a_listed_one_does(monkeypatch, tmp_path):
    monkeypatch.delenv("TRU_PSEUDONYM_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert suppression_key(Suppression()) is None
    with pytest.raises(ConfigError, match="pseudonymisation key"):
        suppression_key(listed(("user", "7", None)))


def test_atomic_files_lose_the_listed_lines_and_keep_every_other_byte(tmp_path):
    raw = tmp_path / "ml-100k"
    raw.mkdir()
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t3\t{100 + n}\n" for n, (u, i) in enumerate([("7", "a"), ("3", "c"), ("3", "a"), ("4", "b")])
    )
    (raw / "ml-100k.inter").write_text(inter)
    (raw / "ml-100k.user").write_text("user_id:token\tage:token\n7\t20\n3\t30\n4\t40\n")
    (raw / "ml-100k.item").write_text("item_id:token\ttitle:token_seq\na\tA (1990)\nb\tB (1991)\nc\tC (1992)\n")
    kg = "head_id:token\trelation_id:token\ttail_id:token\nm.1\tdirected_by\tm.2\n"
    (raw / "ml-100k.kg").write_text(kg)
    sup = listed(("user", "7", None), ("item", None, "b"), ("interaction", "3", "c"))
    removed = redact_atomic_files(tmp_path, sup, KEY)
    assert removed == {"ml-100k/ml-100k.inter": 3, "ml-100k/ml-100k.user": 1, "ml-100k/ml-100k.item": 1}
    assert (raw / "ml-100k.inter").read_text() == inter.splitlines(keepends=True)[0] + "3\ta\t3\t102\n"
    assert (raw / "ml-100k.user").read_text() == "user_id:token\tage:token\n3\t30\n4\t40\n"
    assert "B (1991)" not in (raw / "ml-100k.item").read_text()
    assert (raw / "ml-100k.kg").read_text() == kg
    # applied again: nothing left to take
    assert redact_atomic_files(tmp_path, sup, KEY) == {}


def _synthetic(params, tmp_path, sup=None):
    p = params.model_copy(
        update={"synthetic": params.synthetic.model_copy(update={"n_users": 40, "n_items": 30, "n_interactions": 600})}
    )
    p = p.model_copy(update={"data": p.data.model_copy(update={"source": "synthetic", "name": "tiny"})})
    out = tmp_path / ("redacted" if sup is not None else "plain")
    manifest = build_dataset(p, tmp_path / "raw", out, (sup, KEY) if sup is not None else (Suppression(), None))
    return load_folder(out), manifest, out


def test_the_dataset_loses_listed_users_items_and_pairs_and_is_renumbered(params, tmp_path):
    plain, plain_manifest, _ = _synthetic(params, tmp_path)
    assert "redaction" not in plain_manifest
    um, im = plain.user_map, plain.item_map
    inter = plain.interactions.assign(u=um["raw_id"].to_numpy()[plain.interactions["userID"]])
    inter = inter.assign(i=im["raw_id"].to_numpy()[inter["itemID"]])
    gone_user, gone_item = str(um["raw_id"][3]), str(im["raw_id"][5])
    pair = inter[(inter["u"] != gone_user) & (inter["i"] != gone_item)].iloc[0]
    sup = listed(("user", gone_user, None), ("item", None, gone_item), ("interaction", pair["u"], pair["i"]))
    red, manifest, out = _synthetic(params, tmp_path, sup)
    expect = inter[
        (inter["u"] != gone_user) & (inter["i"] != gone_item) & ~((inter["u"] == pair["u"]) & (inter["i"] == pair["i"]))
    ]
    # the same interactions, less the listed ones, under new contiguous indices
    got = red.interactions.assign(
        u=red.user_map["raw_id"].to_numpy()[red.interactions["userID"]],
        i=red.item_map["raw_id"].to_numpy()[red.interactions["itemID"]],
    )
    key = ["u", "i", "timestamp"]
    assert sorted(map(tuple, got[key].to_numpy().tolist())) == sorted(map(tuple, expect[key].to_numpy().tolist()))
    assert gone_user not in set(red.user_map["raw_id"]) and gone_item not in set(red.item_map["raw_id"])
    assert red.user_map["userID"].tolist() == list(range(red.n_users)) == sorted(set(red.interactions["userID"]))
    assert red.n_items == plain.n_items - 1 and red.item_map["itemID"].tolist() == list(range(red.n_items))
    # feature rows follow their items
    keep = im["raw_id"] != gone_item
    for m, f in plain.features.items():
        np.testing.assert_array_equal(red.features[m], f[keep.to_numpy()])
    removed = manifest["redaction"]["removed"]
    assert manifest["redaction"]["generation"] == 1
    assert removed["users"] == 1 and removed["items"] == 1 and removed["interactions"] == len(inter) - len(expect)
    assert manifest["counts"]["interactions"] == len(expect)
    # the manifest's hashes are those of the redacted files
    from tru.io import read_json, sha256_file

    on_disk = read_json(out / "manifest.json")
    assert on_disk["sha256"]["tiny.inter"] == sha256_file(out / "tiny.inter")


def test_redacting_a_clean_folder_changes_nothing(params, tmp_path):
    _, _, out = _synthetic(params, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    record = redact_folder(out, listed(("user", "no such user", None)), KEY)
    assert record["removed"] == {"users": 0, "items": 0, "interactions": 0}
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_each_generation_plants_a_canary_of_its_own():
    assert raw_ids(2) == ["canary-0000", "canary-0001"]
    assert raw_ids(2, 3) == ["canary-g3-0000", "canary-g3-0001"]
    assert not set(raw_ids(4)) & set(raw_ids(4, 1))
