"""`--executor dask`: cells as Prefect tasks on a real Dask cluster (prefect-dask's DaskTaskRunner)."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client, LocalCluster

from flows.ablation import ablation
from flows.cli import main
from flows.dask_executor import DaskClusterError, check_api_reachable, check_reachable, killed_message


@pytest.fixture(scope="module")
def two_workers():
    """A real Dask cluster: a scheduler and two single-threaded worker processes, as `dask worker` starts them."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


def test_cells_run_as_prefect_tasks_on_both_dask_workers_and_resume(prefect_server, tmp_path, two_workers):
    workers = set(two_workers.scheduler_info["workers"])
    assert len(workers) == 2
    summary = ablation(dataset="digits", epochs=1, seeds=2, limit=100, axes=["dropout"], out=tmp_path,
                       executor="dask", dask_address=two_workers.scheduler_address)
    run_dir = tmp_path / summary["run_dir"].split("/")[-1]
    results = pd.read_csv(run_dir / "results.csv")
    assert len(results) == summary["cells"] == 6 and (results["status"] == "ok").all()
    assert set(results["worker"]) == workers  # every cell names its worker; both workers trained some
    assert len(list((run_dir / "cells").glob("*/history.csv"))) == 6  # written by the workers
    assert not (run_dir / "logs").exists()  # a shared cluster's workers keep their own logging
    assert completed_train_task_runs(summary["flow_run_id"]) == 6  # recorded in this flow run's Prefect API

    again = ablation(dataset="digits", epochs=1, seeds=2, limit=100, axes=["dropout"], out=tmp_path,
                     executor="dask", dask_address=two_workers.scheduler_address)
    assert again["cached"] == 6  # the same cache as the local executor: nothing trains again


def test_on_a_cluster_with_a_gpu_worker_every_cell_asks_for_a_gpu(prefect_server, tmp_path, two_workers):
    """A worker started as docs/scaling-out.md says for a GPU machine (`--resources GPU=1`) joins the two CPU workers:
    cells are annotated with resources={"GPU": 1}, so it alone trains them."""
    worker = subprocess.Popen([str(Path(sys.executable).parent / "dask"), "worker", two_workers.scheduler_address,
                               "--nthreads", "1", "--resources", "GPU=1", "--name", "gpu-worker"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = Client(two_workers.scheduler_address, timeout=30)
        client.wait_for_workers(3, timeout=60)
        gpu_address = next(address for address, info in client.scheduler_info(n_workers=-1)["workers"].items()
                           if info["resources"].get("GPU"))
        client.close()
        summary = ablation(dataset="digits", epochs=1, seeds=1, limit=100, axes=["dropout"], out=tmp_path,
                           executor="dask", dask_address=two_workers.scheduler_address)
        results = pd.read_csv(tmp_path / summary["run_dir"].split("/")[-1] / "results.csv")
        assert (results["status"] == "ok").all() and set(results["worker"]) == {gpu_address}
    finally:
        worker.terminate()
        worker.wait(30)


def test_the_cli_starts_a_local_dask_cluster_and_its_workers_log_to_the_run_folder(prefect_server, tmp_path):
    assert main(["run", "--executor", "dask", "--epochs", "1", "--seeds", "1", "--limit", "80", "--axes",
                 "learning_rate", "--out", str(tmp_path)]) == 0
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    results = pd.read_csv(run_dir / "results.csv")
    assert (results["status"] == "ok").all() and len(results) == 3
    assert results["worker"].str.startswith("tcp://").all()
    logs = {f"dask-{w.removeprefix('tcp://').replace(':', '_')}.log" for w in results["worker"]}
    assert logs == {p.name for p in (run_dir / "logs").iterdir()}  # each worker's output goes to the run folder


def test_a_bad_dask_address_is_one_line_and_exit_2(capsys):
    assert main(["run", "--dask-address", "tcp://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.startswith("ablate: error: --dask-address tcp://127.0.0.1:1: no Dask scheduler")
    assert main(["run", "--dask-address", "not an address"]) == 2
    assert "expected tcp://HOST:PORT" in capsys.readouterr().err
    assert main(["run", "--executor", "local", "--dask-address", "tcp://127.0.0.1:1"]) == 2
    assert "needs --executor dask" in capsys.readouterr().err


def test_remote_workers_cannot_report_to_a_loopback_prefect_api():
    check_api_reachable("http://127.0.0.1:4200/api", ["127.0.0.1"])  # all on this machine: fine
    check_api_reachable("http://prefect.internal:4200/api", ["10.1.2.3"])  # a real server: fine
    with pytest.raises(DaskClusterError, match="10.1.2.3 cannot reach"):
        check_api_reachable("http://127.0.0.1:4200/api", ["127.0.0.1", "10.1.2.3"])
    with pytest.raises(DaskClusterError):
        check_reachable("tcp://127.0.0.1")  # no port


def test_a_cell_whose_workers_all_died_is_explained_in_one_line():
    from distributed import KilledWorker

    message = killed_message(KilledWorker("train_cell_dask_step-1", "tcp://10.0.0.7:4000", 1))
    assert message == ("its Dask worker died before the cell finished on each of 2 attempts (out of memory, "
                       "killed or crashed); last on tcp://10.0.0.7:4000, whose log says more")


def completed_train_task_runs(flow_run_id: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sum(run.name.startswith("train ") and run.state.is_completed() for run in runs)
