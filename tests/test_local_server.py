"""The local Prefect server that `ablate` commands share (`flows/local_server.py`), run as a user runs it: no
PREFECT_API_URL, real commands, a real server in the background."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil

from benchmarks.bench_startup import imported_packages
from tests.test_cli import assert_one_line_error


def without_api_url(**extra):
    return {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "ABLATE_EPHEMERAL")} | extra


def run(*args, env):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def record(out):
    return json.loads((out / ".prefect" / "server.json").read_text())


def query(port, what):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/{what}/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def gone(pid, within=30):
    deadline = time.time() + within
    while time.time() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.2)
    return False


def test_commands_share_one_background_server_and_an_unchanged_gate_is_not_validated_again(tmp_path):
    out, env = tmp_path / "reports", without_api_url()
    first = run("validate", "digits", "--limit", "60", "--out", str(out), env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    server = record(out)
    # The second command: the same server, and the gate's result from the first (no Great Expectations import).
    second = subprocess.run([sys.executable, "-X", "importtime", "-m", "flows.cli", "validate", "digits", "--limit",
                             "60", "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert record(out)["pid"] == server["pid"] and psutil.pid_exists(server["pid"])
    assert "were validated before; their result is reused" in second.stderr
    imported = imported_packages(second.stderr)
    assert not set(imported) & {"great_expectations", "sklearn", "scipy", "keras", "tensorflow", "dask"}, imported
    first_dir, second_dir = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert json.loads((second_dir / "gate.json").read_text())["checks"] == \
        json.loads((first_dir / "gate.json").read_text())["checks"]
    assert (second_dir / "data_docs" / "index.html").exists()
    # Both commands' flow runs are on that one server, so its UI shows them.
    runs = query(server["port"], "flow_runs")
    assert sorted(r["state"]["type"] for r in runs) == ["COMPLETED", "COMPLETED"]
    # ... with their logs to the last line: the commands drain Prefect's log worker before they exit.
    finished = [log["flow_run_id"] for log in query(server["port"], "logs") if "Finished in state" in log["message"]]
    assert {r["id"] for r in runs} <= set(finished)
    # The server listens on loopback only.
    listening = [c.laddr for c in psutil.Process(server["pid"]).net_connections() if c.status == psutil.CONN_LISTEN]
    assert listening and all(address.ip == "127.0.0.1" for address in listening)

    status = run("server", "status", "--out", str(out), env=env)
    assert status.returncode == 0 and f"pid {server['pid']}" in status.stdout and str(server["port"]) in status.stdout
    stopped = run("server", "stop", "--out", str(out), env=env)
    assert stopped.returncode == 0 and f"pid {server['pid']}" in stopped.stdout
    assert gone(server["pid"]) and not (out / ".prefect" / "server.json").exists()
    after = run("server", "status", "--out", str(out), env=env)
    assert after.returncode == 1 and "no local Prefect server runs" in after.stdout


def test_a_crashed_or_hung_server_is_replaced_and_an_idle_one_stops_itself(tmp_path):
    out, env = tmp_path / "reports", without_api_url(ABLATE_SERVER_IDLE_MINUTES="0.1")
    # Two commands at once on a folder with no server: one starts it, the other waits for it to boot.
    together = [subprocess.Popen([sys.executable, "-m", "flows.cli", "server", "start", "--out", str(out)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    assert [p.wait(timeout=180) for p in together] == [0, 0], [p.stdout.read()[-2000:] for p in together]
    servers = [p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    crashed = record(out)
    assert [p.pid for p in servers] == [crashed["pid"]]
    os.kill(crashed["pid"], signal.SIGKILL)  # a crash: the record stays behind, naming a dead process
    assert gone(crashed["pid"])
    replaced = run("server", "start", "--out", str(out), env=env)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    hung = record(out)
    assert hung["pid"] != crashed["pid"] and psutil.pid_exists(hung["pid"])

    os.kill(hung["pid"], signal.SIGSTOP)  # alive, port open, never answers
    began = time.time()
    status = run("server", "start", "--out", str(out), env=env)
    assert status.returncode == 0, status.stderr[-2000:]
    assert time.time() - began < 45, "a hung server must be replaced, not waited on"
    fresh = record(out)
    assert fresh["pid"] != hung["pid"] and gone(hung["pid"], within=10)

    # No command holds it and nothing calls it: it stops itself after the idle time (6 s here) and says so.
    assert gone(fresh["pid"], within=60), "the idle server did not stop itself"
    assert not (out / ".prefect" / "server.json").exists()
    assert "idle for" in (out / ".prefect" / "server.log").read_text()


def test_ephemeral_runs_on_a_temporary_server_and_leaves_nothing_running(tmp_path):
    result = run("validate", "digits", "--limit", "40", "--ephemeral", "--out", str(tmp_path), env=without_api_url())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Stopping temporary server" in result.stderr + result.stdout
    assert "Error logging to API" not in result.stderr  # logs drained before the server stops, not after
    assert not (tmp_path / ".prefect" / "server.json").exists()


def test_a_bad_idle_time_is_one_line_and_exit_2(tmp_path):
    result = run("validate", "digits", "--limit", "10", "--out", str(tmp_path),
                 env=without_api_url(ABLATE_SERVER_IDLE_MINUTES="soon"))
    assert_one_line_error(result, 2, "ABLATE_SERVER_IDLE_MINUTES must be a number of minutes, got 'soon'")
