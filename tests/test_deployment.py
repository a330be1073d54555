"""The nightly deployment on a real Prefect server on loopback (cron schedule, concurrency limit,
a manual run executed by `tru serve`) and the benchmark grid's cells as Prefect tasks on a Dask
cluster, each on its own copy of a trained tiny project."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pandas as pd
import pytest
from conftest import BIN, copy_repo, run
from conftest import tool_env as env


@pytest.fixture(scope="module")
def repo(base_repo, tmp_path_factory):
    return copy_repo(base_repo, tmp_path_factory.mktemp("deployrepo"))


def dvc_status(repo) -> str:
    return run([str(BIN / "dvc"), "status"], repo)


# --- the deployment on a real Prefect server ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cron_deployment_on_a_real_server_runs_the_flow(repo, tmp_path):
    from prefect import get_client
    from prefect.deployments import run_deployment

    from flows.deployments import local_server

    port = free_port()
    home = tmp_path / "prefect-home"
    os.environ["PREFECT_HOME"] = str(home)  # the server's SQLite database lives here, not in ~/.prefect
    try:
        with local_server(port=port, log=str(tmp_path / "server.log")) as url:
            served = subprocess.Popen(
                [str(BIN / "tru"), "serve", "--cron", "30 3 * * *", "--timezone", "Europe/Berlin"],
                cwd=repo,
                env=env(PREFECT_API_URL=url, PREFECT_HOME=str(home)),
                stdout=open(tmp_path / "serve.log", "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                with get_client(sync_client=True) as client:
                    deadline = time.monotonic() + 120
                    while True:
                        try:  # both deployments: `tru serve` registers them one after the other
                            dep = client.read_deployment_by_name("erasure-batch/nightly")
                            review = client.read_deployment_by_name("erasure-review/review")
                            weekly = client.read_deployment_by_name("data-consolidation/weekly")
                            daily = client.read_deployment_by_name("data-purge/daily")
                            break
                        except Exception:
                            assert served.poll() is None, (tmp_path / "serve.log").read_text()
                            assert time.monotonic() < deadline, "the deployment was never registered"
                            time.sleep(1)
                    assert [s.schedule.cron for s in dep.schedules] == ["30 3 * * *"]
                    assert dep.schedules[0].schedule.timezone == "Europe/Berlin"
                    assert dep.global_concurrency_limit is not None and dep.global_concurrency_limit.limit == 1
                    assert dep.parameters == {"params_path": "params.yaml"}
                    # the way out of a refusal, served beside it: no schedule, a person runs it
                    assert review.schedules == [] and review.parameters == {"params_path": "params.yaml"}
                    # the data lifecycle, on schedules of their own in the same time zone
                    assert [s.schedule.cron for s in weekly.schedules] == ["0 3 * * 0"]
                    assert [s.schedule.cron for s in daily.schedules] == ["0 4 * * *"]
                    assert daily.schedules[0].schedule.timezone == "Europe/Berlin"
                # a manual run of the deployment, executed by the serving process
                fr = run_deployment("erasure-batch/nightly", timeout=300)
                assert fr.state is not None and fr.state.is_completed(), (tmp_path / "serve.log").read_text()[-3000:]
                # nothing awaits review: the review run fails at once, saying so, and changes nothing
                fr = run_deployment("erasure-review/review", timeout=300)
                assert fr.state is not None and fr.state.is_failed()
                assert "no batch awaits review" in (fr.state.message or ""), fr.state.message
                # no retention window has closed: the purge has nothing to do, and says so
                fr = run_deployment("data-purge/daily", timeout=300)
                assert fr.state is not None and fr.state.is_completed(), (tmp_path / "serve.log").read_text()[-3000:]
            finally:
                os.killpg(served.pid, signal.SIGINT)
                try:
                    served.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(served.pid, signal.SIGKILL)
    finally:
        os.environ.pop("PREFECT_HOME", None)
    assert "up to date" in dvc_status(repo)


# --- scale-out: benchmark cells as Prefect tasks ---------------------------------------------------


def test_benchmark_cells_run_in_parallel_on_a_dask_cluster(repo, harness, monkeypatch, tmp_path):
    """The scale-out path: the grid's cells as Prefect tasks on prefect-dask's local cluster
    (two worker processes); the thread runner takes the same path with another runner."""
    runner = "dask"
    from flows.bench import grid_runner
    from tru.bench.unlearn import bench_unlearn
    from tru.config import load_params

    monkeypatch.chdir(repo)
    params = load_params(repo / "params.yaml")
    out = tmp_path / "grid.csv"
    rows = bench_unlearn(params, out, [1], ["user"], ["gradient_ascent"], run_cells=grid_runner(runner, 2))
    got = pd.read_csv(out)
    assert len(rows) == len(got) == 2  # original + gradient_ascent, each cell once
    assert set(got["method"]) == {"original", "gradient_ascent"} and (got["seed"] == 1).all()
    assert (got["backbone"] == "mgcn").all() and got["retain_recall@20"].between(0, 1).all()
    # resumable: a second call finds every cell done and runs nothing
    again = bench_unlearn(params, out, [1], ["user"], ["gradient_ascent"], run_cells=grid_runner(runner, 2))
    assert len(again) == 2 and pd.read_csv(out).equals(got)
    # the same cells, one after another, give the same figures (only the timings differ)
    seq = tmp_path / "seq.csv"
    bench_unlearn(params, seq, [1], ["user"], ["gradient_ascent"])
    cols = ["seed", "method", "retain_recall@20", "forget_recall@20"]
    pd.testing.assert_frame_equal(
        pd.read_csv(seq)[cols].sort_values(cols[:2]).reset_index(drop=True),
        got[cols].sort_values(cols[:2]).reset_index(drop=True),
    )
