"""The `ablate` command as a user runs it: a subprocess, its exit code, and what it prints."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import write_image_folder, write_npz


def ablate(*args, api_url=None, timeout=300):
    env = os.environ | ({"PREFECT_API_URL": api_url} if api_url else {})
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def assert_one_line_error(result, code, text):
    assert result.returncode == code, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ablate: ")]
    assert len(errors) == 1 and text in errors[0], result.stderr[-2000:]


@pytest.mark.parametrize("make, text", [
    (lambda p: str(p / "nope"), "dataset not found"),
    (lambda p: (p / "empty").mkdir() or str(p / "empty"), "no class folders"),
    (lambda p: str(write_npz(p / "d.npz", x_test=None)), "lacks x_test"),
])
def test_bad_input_is_one_line_and_exit_2_before_anything_starts(tmp_path, make, text):
    assert_one_line_error(ablate("run", "--dataset", make(tmp_path), "--out", str(tmp_path / "r")), 2, text)


def test_corrupt_image_is_one_line_and_exit_2(prefect_server, tmp_path):
    root = write_image_folder(tmp_path / "d")
    (root / "test" / "class_2" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    result = ablate("run", "--dataset", str(root), "--out", str(tmp_path / "r"), api_url=prefect_server)
    assert_one_line_error(result, 2, "test/class_2/cut.png")


def test_validate_exit_1_on_critical_failure_and_0_on_clean_data(prefect_server, tmp_path):
    x = np.full((20, 6, 6, 1), 200, np.uint8)
    nan_npz = write_npz(tmp_path / "nan.npz", x_train=x.astype(np.float32), y_train=np.arange(20) % 2,
                        x_test=np.where(np.eye(6)[None, ..., None] > 0, np.nan, 100.0)[[0] * 4].astype(np.float32),
                        y_test=np.arange(4) % 2)
    failed = ablate("validate", str(nan_npz), "--out", str(tmp_path / "r"), api_url=prefect_server)
    assert_one_line_error(failed, 1, "no NaN pixels")
    passed = ablate("validate", "digits", "--limit", "30", "--out", str(tmp_path / "r"), api_url=prefect_server)
    assert passed.returncode == 0 and "report: " in passed.stdout


@pytest.mark.parametrize("args", [["run", "--epochs", "0"], ["run", "--axes", "width"], ["run", "--image-size", "x"],
                                  ["run", "--val-fraction", "1.5"], ["frobnicate"]])
def test_usage_errors_exit_2(args):
    result = ablate(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_help_documents_the_exit_codes():
    result = ablate("run", "--help")
    assert result.returncode == 0 and "1  the data-quality gate found critical problems" in result.stdout


def test_ctrl_c_stops_the_training_processes_and_keeps_finished_cells(prefect_server, tmp_path):
    env = os.environ | {"PREFECT_API_URL": prefect_server}
    command = [sys.executable, "-m", "flows.cli", "run", "--limit", "60", "--epochs", "40", "--seeds", "10",
               "--axes", "dropout", "--out", str(tmp_path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    finished = []
    while time.time() < deadline and not finished:  # wait until at least one cell has finished
        finished = [line for path in tmp_path.glob("*/cells.jsonl") for line in path.read_text().splitlines()]
        time.sleep(0.5)
    assert finished, "no cell finished within two minutes"
    pids = [int(re.search(r"training process (\d+)", log.read_text()).group(1)) for log in tmp_path.glob("*/logs/*.log")]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr
    time.sleep(1)
    assert pids and not [pid for pid in pids if os.path.exists(f"/proc/{pid}")], "training processes left running"
    assert len(next(tmp_path.glob("*/cells.jsonl")).read_text().splitlines()) >= 1


def test_flows_run_as_modules(prefect_server, tmp_path):
    env = os.environ | {"PREFECT_API_URL": prefect_server}
    result = subprocess.run([sys.executable, "-m", "flows.data_quality_gate", "digits", "--limit", "20", "--out",
                             str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and (tmp_path / "index.html").exists(), result.stderr[-2000:]


def test_unwritable_out_is_one_line_and_exit_2(prefect_server, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = ablate("validate", "digits", "--limit", "10", "--out", str(blocker / "reports"), api_url=prefect_server)
    assert_one_line_error(result, 2, "file")
