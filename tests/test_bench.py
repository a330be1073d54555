"""Benchmark plumbing (no figures are asserted here: benchmarks record, tests check)."""

import json

import tru.bench.unlearn as unlearn
from tru.io import sha256_tree


def test_a_cached_bench_base_model_is_retrained_when_its_inputs_change(params, tmp_path, monkeypatch):
    split = tmp_path / "split"
    split.mkdir()
    (split / "train.parquet").write_bytes(b"one split")
    trained = []
    monkeypatch.setattr(unlearn, "in_child", lambda fn, *args: trained.append(args))
    p = params.model_copy(update={"model": params.model.model_copy(update={"backbone": "miggt"})})
    root = tmp_path / "bench"
    out = root / "base-miggt"

    def cache(**changes):
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.safetensors").write_bytes(b"weights")
        meta = {
            "seed": p.seed,
            "train": p.train.recipe(),
            "data": {"split_sha256": sha256_tree(split)},
            "model": {"params": p.model.miggt.model_dump()},
        }
        meta.update(changes)
        (out / "checkpoint.json").write_text(json.dumps(meta))

    assert unlearn.bench_base_model(p, split, root) == str(out) and len(trained) == 1  # nothing cached yet
    cache()
    unlearn.bench_base_model(p, split, root)
    assert len(trained) == 1  # up to date: reused
    cache(seed=p.seed + 1)
    unlearn.bench_base_model(p, split, root)
    assert len(trained) == 2
    cache()
    (split / "train.parquet").write_bytes(b"another split")
    unlearn.bench_base_model(p, split, root)
    assert len(trained) == 3
    cache(model={"params": {**p.model.miggt.model_dump(), "hidden_dim": 7}})
    unlearn.bench_base_model(p, split, root)
    assert len(trained) == 4 and trained[-1][1:] == (str(split), str(out))
