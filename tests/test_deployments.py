"""The deployments against real Prefect components: `prefect server start` on a loopback port with its own
PREFECT_HOME (SQLite), a process work pool, `prefect deploy --all --prefect-file deployments/prefect.yaml` and
`prefect worker start`; runs triggered through the API. Torn down afterwards, also when a test fails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from flows.serving import load_deployments, load_flow, runner_deployments
from tests.conftest import write_npz

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")
NIGHTLY, GATE = "ablation/ablation-nightly", "data-quality-gate/data-quality-gate"


def test_every_deployment_loads_its_entrypoint_and_has_the_documented_schedule():
    entries = {entry["name"]: entry for entry in load_deployments()}
    assert set(entries) == {"ablation-nightly", "data-quality-gate"}
    assert load_flow(entries["ablation-nightly"]["entrypoint"]).name == "ablation"
    assert load_flow(entries["data-quality-gate"]["entrypoint"]).name == "data-quality-gate"
    assert entries["ablation-nightly"]["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC"}]
    assert entries["data-quality-gate"]["schedules"] == [{"interval": 3600, "timezone": "UTC"}]
    docs = (ROOT / "docs" / "deployments.md").read_text()
    assert "`0 2 * * *` (02:00 UTC, nightly)" in docs and "every hour (interval 3600 s)" in docs
    for entry in entries.values():
        assert entry["work_pool"]["name"] == "ablation-pool" and entry["concurrency_limit"]["limit"] == 1
    served = {d.name: d for d in runner_deployments()}  # `ablate serve` builds the same ones
    assert served["ablation-nightly"].schedules[0].schedule.cron == "0 2 * * *"
    assert served["data-quality-gate"].schedules[0].schedule.interval.total_seconds() == 3600
    assert served["ablation-nightly"].parameters == entries["ablation-nightly"]["parameters"]


def test_a_bad_parameter_fails_the_flow_run_at_once_naming_it(prefect_server):
    from flows.ablation import ablation

    state = ablation(epochs=0, axes=["height"], return_state=True)
    assert state.is_failed()
    assert "epochs: Input should be greater than or equal to 1" in state.message and "axes.0" in state.message


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory):
    """A real server, the pool, the deployments and a worker; yields the API URL."""
    home = tmp_path_factory.mktemp("prefect-home")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PWD": str(ROOT),
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",  # only the runs the tests trigger
                        "PREFECT_WORKER_QUERY_SECONDS": "1"}
    started: list[subprocess.Popen] = []
    log = open(home / "stack.log", "w")
    try:
        started.append(subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        _wait_healthy(url, started[0], home / "stack.log")
        _prefect(env, "work-pool", "create", "ablation-pool", "--type", "process")
        _prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
        started.append(subprocess.Popen([PREFECT, "worker", "start", "--pool", "ablation-pool"], env=env, cwd=home,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        yield {"url": url, "worker": started[1]}
    finally:
        for process in reversed(started):  # worker first, then the server: whole process groups
            _stop(process)
        log.close()


def test_deployments_run_on_a_real_server_and_worker(prefect_stack, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    x = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1)).astype(np.uint8)
    mixed = write_npz(tmp_path / "mixed.npz", x_train=(x / 255).astype(np.float32), y_train=np.arange(40) % 2,
                      x_test=x[:20].astype(np.float32), y_test=np.arange(20) % 2)  # train 0-1, test 0-255
    with temporary_settings({PREFECT_API_URL: prefect_stack["url"]}):
        with get_client(sync_client=True) as client:
            nightly = client.read_deployment_by_name(NIGHTLY)
            assert nightly.schedules[0].schedule.cron == "0 2 * * *" and nightly.work_pool_name == "ablation-pool"
            assert nightly.global_concurrency_limit.limit == 1  # runs of one deployment never overlap
            assert nightly.concurrency_options.collision_strategy == "ENQUEUE"
            assert nightly.pull_steps[0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)
        runs = {
            "gate": run_deployment(GATE, parameters={"dataset": "digits", "limit": 60, "out": str(tmp_path / "r")},
                                   timeout=0),
            "bad gate": run_deployment(GATE, parameters={"dataset": str(mixed), "out": str(tmp_path / "r")},
                                       timeout=0),
            # the British spelling of an axis, as the UI accepts it: the report uses the project's own
            "ablation": run_deployment(NIGHTLY, parameters={"dataset": "digits", "epochs": 1, "seeds": 1,
                                                            "limit": 100, "axes": ["normalisation"],
                                                            "out": str(tmp_path / "r")}, timeout=0),
        }
        final = {name: _wait_final(run.id) for name, run in runs.items()}
        assert final["gate"].state.is_completed(), final["gate"].state
        assert final["bad gate"].state.is_failed() and "one pixel scale" in final["bad gate"].state.message.lower()
        assert final["ablation"].state.is_completed(), final["ablation"].state
        with get_client(sync_client=True) as client:
            def artifacts(run) -> set[str]:
                flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
                return {a.key for a in client.read_artifacts(flow_run_filter=flow_runs)}

            assert {"data-quality-gate", "data-quality-gate-summary", "data-quality-gate-docs"} <= artifacts(
                final["gate"])
            assert {"ablation-verdict", "ablation-report", "ablation-results", "ablation-progress"} <= artifacts(
                final["ablation"])
    reports = tmp_path / "r"
    pages = sorted(p.parent.name for p in reports.glob("*/index.html"))
    assert len(pages) == 3 and (reports / "index.html").exists()  # three runs, and the index of runs
    assert len(list(reports.glob("*/results.csv"))) == 1 and len(list(reports.glob("*/gate.json"))) == 3
    results = next(reports.glob("*/results.csv")).read_text()
    assert "normalization,raw 0-255" in results and "normalisation" not in results


def test_ablate_serve_runs_the_same_deployments_from_one_process(prefect_stack, tmp_path):
    """After the worker test, with the worker stopped and the deployments deleted: `ablate serve` registers
    them again, served from its own process, and runs a triggered one."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _stop(prefect_stack["worker"])  # from now on only the serving process can run anything
    with temporary_settings({PREFECT_API_URL: prefect_stack["url"]}), get_client(sync_client=True) as client:
        for name in (NIGHTLY, GATE):  # serve instead of deploy, as on a machine without a worker
            client.delete_deployment(client.read_deployment_by_name(name).id)
    env = os.environ | {"PREFECT_API_URL": prefect_stack["url"], "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen([str(Path(sys.executable).parent / "ablate"), "serve"], env=env, cwd=tmp_path,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "deployments are being served" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        with temporary_settings({PREFECT_API_URL: prefect_stack["url"]}), get_client(sync_client=True) as client:
            nightly = client.read_deployment_by_name(NIGHTLY)
            assert nightly.schedules[0].schedule.cron == "0 2 * * *"
            run = run_deployment(GATE, parameters={"dataset": "digits", "limit": 40, "out": str(tmp_path / "r")},
                                 timeout=0)
            assert _wait_final(run.id, timeout=180).state.is_completed(), log.read_text()[-2000:]
        assert len(list((tmp_path / "r").glob("*/gate.json"))) == 1
    finally:
        _stop(server)


def _wait_final(flow_run_id, timeout: float = 600):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            time.sleep(1)
    raise TimeoutError(f"flow run {flow_run_id} did not finish in {timeout} s")


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"prefect server not healthy after {timeout} s: {log.read_text()[-2000:]}")


def _prefect(env: dict, *args: str) -> None:
    done = subprocess.run([PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"


def _stop(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
