import copy

import pytest
import yaml
from conftest import ROOT

from tru.config import load_params, parse_params
from tru.errors import ConfigError


def raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_repo_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.model.backbone == "mgcn" and p.split.fractions == (0.8, 0.1, 0.1)


def test_unknown_key_is_named():
    r = raw()
    r["train"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"unknown key 'train.learning_rate'"):
        parse_params(r)


def test_missing_key_is_named():
    r = raw()
    del r["model"]["mgcn"]["knn_k"]
    with pytest.raises(ConfigError, match=r"missing key 'model.mgcn.knn_k'"):
        parse_params(r)


def test_wrong_type_and_bad_values_are_named():
    r = raw()
    r["train"]["batch_size"] = "many"
    with pytest.raises(ConfigError, match=r"'train.batch_size'"):
        parse_params(r)
    r = raw()
    r["split"]["fractions"] = [0.5, 0.1, 0.1]
    with pytest.raises(ConfigError, match="split.fractions"):
        parse_params(r)


def test_mmrec_source_needs_a_folder():
    r = copy.deepcopy(raw())
    r["data"]["source"] = "mmrec"
    r["data"]["mmrec_dir"] = ""
    with pytest.raises(ConfigError, match="mmrec_dir"):
        parse_params(r)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_miggt_section():
    r = raw()
    assert parse_params(r).model.miggt.hops == r["model"]["miggt"]["hops"]
    r["model"]["backbone"] = "miggt"
    assert parse_params(r).model.backbone == "miggt"
    r["model"]["miggt"]["hops"]["text"] = -1
    with pytest.raises(ConfigError, match=r"'model.miggt.hops'.*non-negative"):
        parse_params(r)
    r = raw()
    r["model"]["miggt"]["dropout"]["edge"] = 0.1  # the key is `edges`
    with pytest.raises(ConfigError, match=r"unknown key 'model.miggt.dropout.edge'"):
        parse_params(r)
    r = raw()
    r["model"]["backbone"] = "miggt"
    del r["model"]["miggt"]
    with pytest.raises(ConfigError, match=r"model.miggt is needed when model.backbone is miggt"):
        parse_params(r)
    r = raw()
    r["model"]["backbone"] = "lightgcn"
    with pytest.raises(ConfigError, match=r"'model.backbone'"):
        parse_params(r)
    r = raw()
    del r["model"]["miggt"]  # optional while mgcn is the backbone
    assert parse_params(r).model.miggt is None


def test_unlearn_recipe_per_backbone_lays_its_values_over_the_shared_ones():
    from tru.config import unlearn_for

    r = raw()
    r["unlearn"]["backbones"] = {"miggt": {"lr": 0.0005, "max_epochs": 5}}
    p = parse_params(r)
    assert unlearn_for(p) is p  # the pipeline's backbone (mgcn) has no entry: shared values
    mig = p.model_copy(update={"model": p.model.model_copy(update={"backbone": "miggt"})})
    got = unlearn_for(mig).unlearn
    assert (got.lr, got.max_epochs) == (0.0005, 5)
    assert got.repair_lr == p.unlearn.repair_lr and got.forget_batch_size == p.unlearn.forget_batch_size
    assert unlearn_for(unlearn_for(mig)).unlearn == got  # idempotent
    # TRU's own step size (unlearn.tru.lr) has its per-backbone value too: tru_lr
    r["unlearn"]["tru"]["lr"] = 0.00075
    r["unlearn"]["backbones"] = {"miggt": {"lr": 0.0005, "tru_lr": 0.0004}}
    p = parse_params(r)
    mig = p.model_copy(update={"model": p.model.model_copy(update={"backbone": "miggt"})})
    got = unlearn_for(mig).unlearn
    assert (got.lr, got.tru.lr, p.unlearn.tru.lr) == (0.0005, 0.0004, 0.00075)
    assert got.tru.gate_k == p.unlearn.tru.gate_k  # the rest of unlearn.tru as shared
    assert unlearn_for(unlearn_for(mig)).unlearn == got
    # ... and whether its retain condition is held to the chain's start: tru_retain_from_chain_start
    r["unlearn"]["tru"]["retain_from_chain_start"] = True
    r["unlearn"]["backbones"] = {"miggt": {"tru_retain_from_chain_start": False}}
    p = parse_params(r)
    mig = p.model_copy(update={"model": p.model.model_copy(update={"backbone": "miggt"})})
    assert unlearn_for(mig).unlearn.tru.retain_from_chain_start is False
    assert unlearn_for(p) is p and p.unlearn.tru.retain_from_chain_start is True
    r["unlearn"]["backbones"] = {"lightgcn": {"lr": 0.1}}
    with pytest.raises(ConfigError, match=r"unlearn.backbones"):
        parse_params(r)
    r["unlearn"]["backbones"] = {"miggt": {"learning_rate": 0.1}}
    with pytest.raises(ConfigError, match=r"unknown key 'unlearn.backbones.miggt.learning_rate'"):
        parse_params(r)


def test_gate_keys_of_the_old_gate_and_a_bad_policy_are_named():
    """A params.yaml written for the gate before shadow pairs fails loudly, naming the key."""
    for section, key, value in (
        ("audit.gate", "min_mia_pairs", 200),
        ("audit.gate", "max_forget_recall_ratio", 0.5),
        ("unlearn.stop", "mia_auc_margin", 0.05),
    ):
        r = raw()
        node = r
        for part in section.split("."):
            node = node[part]
        node[key] = value
        with pytest.raises(ConfigError, match=rf"unknown key '{section}.{key}'"):
            parse_params(r)
    r = raw()
    r["audit"]["gate"]["inconclusive"] = "promote"
    with pytest.raises(ConfigError, match=r"'audit.gate.inconclusive'"):
        parse_params(r)
    r = raw()
    del r["audit"]["gate"]["membership_quantile"]
    with pytest.raises(ConfigError, match=r"missing key 'audit.gate.membership_quantile'"):
        parse_params(r)
