"""`--executor dask`: cells as Prefect tasks on a real Dask cluster (prefect-dask's DaskTaskRunner)."""

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from distributed import Client, LocalCluster, Security

from flows.ablation import ablation
from flows.cli import main
from flows.dask_executor import (DaskClusterError, check_api_reachable, check_reachable, killed_message,
                                 plain_tcp_warning)
from tests.test_cli import ablate

TINY_RUN = ["--epochs", "1", "--seeds", "1", "--limit", "80"]
PLAIN_TCP = "is unencrypted and unauthenticated"


@pytest.fixture(scope="module")
def two_workers():
    """A real Dask cluster: a scheduler and two single-threaded worker processes, as `dask worker` starts them."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
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
                               "--nthreads", "1", "--resources", "GPU=1", "--name", "gpu-worker",
                               "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"],
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


def test_the_cli_starts_a_local_dask_cluster_listening_on_loopback_only_and_its_workers_log_to_the_run_folder(
        prefect_server, tmp_path):
    command = [sys.executable, "-m", "flows.cli", "run", "--executor", "dask", *TINY_RUN, "--axes", "learning_rate",
               "--out", str(tmp_path)]
    process = subprocess.Popen(command, env=os.environ | {"PREFECT_API_URL": prefect_server},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    listening = listening_sockets_until_exit(process)
    output = process.stdout.read()
    assert process.wait() == 0, output[-2000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    results = pd.read_csv(run_dir / "results.csv")
    assert (results["status"] == "ok").all() and len(results) == 3
    assert results["worker"].str.startswith("tcp://127.0.0.1:").all()
    logs = {f"dask-{w.removeprefix('tcp://').replace(':', '_')}.log" for w in results["worker"]}
    assert logs == {p.name for p in (run_dir / "logs").iterdir()}  # each worker's output goes to the run folder
    # The operating system's view: the scheduler (and its health routes) in the command's process, and a worker
    # process per slot, each listening; every socket of the run's processes on a loopback address.
    workers = {int(worker.rsplit(":", 1)[1]) for worker in results["worker"]}
    assert workers <= {port for _, _, port in listening}
    assert len({pid for pid, _, _ in listening}) >= 1 + len(workers), listening
    assert all(ipaddress.ip_address(ip).is_loopback for _, ip, _ in listening), listening


def listening_sockets_until_exit(process: subprocess.Popen) -> set[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket listening, or UDP socket bound, in ``process`` and its
    descendants, sampled every 0.2 s until it exits."""
    seen = set()
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for member in tree:
            try:
                sockets = member.net_connections(kind="inet")
            except psutil.Error:
                continue
            seen |= {(member.pid, s.laddr.ip, s.laddr.port) for s in sockets
                     if s.status == psutil.CONN_LISTEN or (s.status == psutil.CONN_NONE and not s.raddr)}
        time.sleep(0.2)
    return seen


def test_a_tls_cluster_trains_with_the_certificates_the_flags_give_and_is_refused_without_them(prefect_server,
                                                                                               tmp_path, capsys):
    security = Security.temporary()  # one self-signed certificate for every role, its own CA
    files = {}
    for flag, pem in (("--dask-tls-ca-file", security.tls_ca_file), ("--dask-tls-cert", security.tls_client_cert),
                      ("--dask-tls-key", security.tls_client_key)):
        files[flag] = tmp_path / f"{flag.removeprefix('--dask-tls-')}.pem"
        files[flag].write_text(pem)
    tls = [part for flag, path in files.items() for part in (flag, str(path))]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, protocol="tls", security=security,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        ran = ablate("run", "--dask-address", address, *tls, *TINY_RUN, "--axes", "dropout", "--out",
                     str(tmp_path / "r"), api_url=prefect_server)
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert PLAIN_TCP not in ran.stdout + ran.stderr
        results = pd.read_csv(next((tmp_path / "r").glob("*/results.csv")))
        assert (results["status"] == "ok").all() and results["worker"].str.startswith("tls://127.0.0.1:").all()

        # The refusals, each one line with exit 2 (in this process: no training starts)
        assert main(["run", "--dask-address", address, "--out", str(tmp_path / "r")]) == 2
        assert capsys.readouterr().err.startswith(
            f"ablate: error: --dask-address {address}: TLS needs a CA file and a client certificate; pass "
            "--dask-tls-ca-file and --dask-tls-cert")
        assert main(["run", "--dask-address", address.replace("tls://", "tcp://"), *TINY_RUN, "--out",
                     str(tmp_path / "r")]) == 2
        last = capsys.readouterr().err.splitlines()[-1]
        assert last.startswith("ablate: error: --dask-address tcp://127.0.0.1:")
        assert "could not talk to the Dask scheduler" in last
    assert main(["run", "--dask-address", address, *tls[:-1], str(tmp_path / "nope.pem")]) == 2
    missing = f"ablate: error: --dask-tls-key {tmp_path / 'nope.pem'}: No such file or directory\n"
    assert capsys.readouterr().err == missing
    assert main(["run", "--dask-address", "tcp://127.0.0.1:1", *tls]) == 2
    assert "are for a --dask-address tls://HOST:PORT" in capsys.readouterr().err


def test_a_run_on_a_plain_tcp_scheduler_beyond_loopback_warns_once(prefect_server, tmp_path):
    host = next((a.address for nics in psutil.net_if_addrs().values() for a in nics
                 if a.family.name == "AF_INET" and not ipaddress.ip_address(a.address).is_loopback), None)
    if host is None:
        pytest.skip("this machine has no network address besides loopback to start a scheduler on")
    # The one cluster of the suite beyond loopback, on this machine's own address, for as long as one tiny run.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host=host,
                      dashboard_address=f"{host}:0") as cluster:
        ran = ablate("run", "--dask-address", cluster.scheduler_address, *TINY_RUN, "--axes", "dropout", "--out",
                     str(tmp_path), api_url=prefect_server)
    assert ran.returncode == 0, ran.stderr[-2000:]
    warnings = [line for line in (ran.stdout + ran.stderr).splitlines() if PLAIN_TCP in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and f"--dask-address tcp://{host}:" in warnings[0]
    assert "use tls://" in warnings[0]


def test_only_plain_tcp_beyond_this_machine_is_warned_about():
    assert plain_tcp_warning("tcp://10.1.2.3:8786") and plain_tcp_warning("192.168.1.5:8786")
    assert not plain_tcp_warning("tcp://127.0.0.1:8786") and not plain_tcp_warning("tcp://localhost:8786")
    assert not plain_tcp_warning("tcp://[::1]:8786") and not plain_tcp_warning("tls://10.1.2.3:8786")


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
