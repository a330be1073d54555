"""The benchmarks' results store: runs that share one CSV (two `--only` parts side by side)
lose none of each other's rows nor each other's updates of a row, an empty key field is one
cell however it was read, and a rewrite replaces the file."""

import multiprocessing

import pandas as pd

from tru.bench.store import ResultsStore

KEY = ("backbone", "seed", "knob", "value")


def store(path) -> ResultsStore:
    return ResultsStore(path, KEY, lambda r: f"{r['knob']} {r['seed']}")


def row(seed: int, knob: str, value=None, x: float = 0.5) -> dict:
    return {"backbone": "mgcn", "seed": seed, "knob": knob, "value": value, "x": x}


def test_two_runs_sharing_a_file_keep_each_others_rows(tmp_path):
    path = tmp_path / "results.csv"
    s = store(path)
    a, b = s.read(), s.read()  # both started on an empty file
    s.record(b, row(1, "retrain"))
    s.record(a, row(2, "retrain"))
    s.record(b, row(1, "lr", 0.001))
    df = pd.read_csv(path)
    assert sorted(zip(df.seed, df.knob, strict=True)) == [(1, "lr"), (1, "retrain"), (2, "retrain")]
    # each run's rows so far include the other's, so its report sees the whole file
    assert {(r["seed"], r["knob"]) for r in a} == {(1, "retrain"), (2, "retrain")}
    assert len(b) == 3
    # a reference row's empty value reads back as NaN: still the same cell, never taken in twice
    c = s.read()
    assert s.finished(c) == s.finished(b)
    s.record(c, row(3, "retrain"))
    s.record(b, row(3, "lr", 0.002))
    assert len(pd.read_csv(path)) == 5 and len(b) == 5
    # the same cell recorded by two runs: one row, the later one's
    s.record(a, row(2, "retrain", x=0.7))
    df = pd.read_csv(path)
    assert len(df) == 5 and df.loc[(df.seed == 2) & (df.knob == "retrain"), "x"].tolist() == [0.7]
    # a row filled in by one run (a measure added after the fact) survives another run's
    # recording with its older copy of that row
    filled = dict(b[0], x=0.9)
    s.record(b, filled)
    s.record(a, row(4, "retrain"))
    df = pd.read_csv(path)
    assert df.loc[(df.seed == filled["seed"]) & (df.knob == filled["knob"]), "x"].tolist() == [0.9]
    assert len(df) == 6 and len(a) == 6
    assert list(zip(df.seed, df.knob, strict=True))[:2] == [(1, "retrain"), (2, "retrain")]  # in its place
    # a rewrite replaces the file
    s.rewrite([row(9, "retrain")])
    assert pd.read_csv(path).seed.tolist() == [9]


def _record_many(path, start: int, n: int) -> None:
    s = store(path)
    done = s.read()
    for i in range(start, start + n):
        s.record(done, row(i, "retrain"))


def test_concurrent_processes_lose_no_row(tmp_path):
    path = tmp_path / "results.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(path, start, 25)) for start in (0, 100)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    df = pd.read_csv(path)
    assert sorted(df.seed) == list(range(25)) + list(range(100, 125))
