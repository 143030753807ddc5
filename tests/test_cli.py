"""The `ablate` command as a user runs it: a subprocess, its exit code, and what it prints."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from PIL import Image

from tests.conftest import write_image_folder, write_npz


def ablate(*args, api_url=None, timeout=300, cwd=None):
    env = os.environ | ({"PREFECT_API_URL": api_url} if api_url else {})
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


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


def problem_folder(root):
    """RGB images with one of each folder-level problem: a corrupt file, an odd size, a greyscale image, the same
    image in train and test, and a symlink to a file outside the dataset."""
    write_image_folder(root, classes=3, per_class=10, size=16, mode="RGB")
    (root / "test" / "class_2" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (64, 40, 3), dtype=np.uint8)).save(root / "train" / "class_0" / "big.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / "train" / "class_1" / "grey.png")
    shutil.copy(root / "train" / "class_1" / "img_3.png", root / "test" / "class_1" / "copy.png")
    outside = root.parent / "outside.png"
    shutil.copy(root / "train" / "class_2" / "img_0.png", outside)
    (root / "train" / "class_2" / "link.png").symlink_to(outside)
    return root


def test_validate_names_every_problem_in_gate_json_and_exits_1(prefect_server, tmp_path):
    root = problem_folder(tmp_path / "d")
    result = ablate("validate", str(root), "--out", str(tmp_path / "r"), api_url=prefect_server)
    assert_one_line_error(result, 1, "readable files, train/test leakage")
    (run_dir,) = (tmp_path / "r").glob("*-d")
    gate = json.loads((run_dir / "gate.json").read_text())
    found = {c["name"]: c for c in gate["checks"] if not c["success"]}
    assert gate["status"] == "fail" and gate["suite"]["name"] == "image-gate"
    assert found["readable_files"]["offending"] == ["test/class_2/cut.png"]
    assert found["readable_files"]["severity"] == "critical"
    assert sorted(found["train_test_leakage"]["offending"]) == ["test/class_1/copy.png", "train/class_1/img_3.png"]
    assert found["odd_sizes"]["offending"] == ["train/class_0/big.png"] and found["odd_sizes"]["severity"] == "warning"
    assert found["one_channel_count"]["offending"] == ["train/class_1/grey.png"]
    assert found["unfollowed_symlinks"]["offending"] == ["train/class_2/link.png"]
    assert set(found) == {"readable_files", "train_test_leakage", "odd_sizes", "odd_aspect_ratios",
                          "one_channel_count", "unfollowed_symlinks"}
    page = (run_dir / "index.html").read_text()
    assert page.index("readable files") < page.index("one channel count")  # critical before warnings
    assert "<figcaption>test/class_1/copy.png</figcaption>" in page and (run_dir / "data_docs" / "index.html").exists()


def test_validate_passes_with_warnings_and_exits_0(prefect_server, tmp_path):
    root = write_image_folder(tmp_path / "d", classes=2, per_class=10, size=16, mode="RGB")
    Image.fromarray(np.zeros((16, 16), np.uint8) + 90).save(root / "train" / "class_0" / "grey.png")
    result = ablate("validate", str(root), "--out", str(tmp_path / "r"), api_url=prefect_server)
    assert result.returncode == 0, result.stderr[-2000:]
    gate = json.loads(next((tmp_path / "r").glob("*/gate.json")).read_text())
    failed = {c["name"] for c in gate["checks"] if not c["success"]}
    assert gate["status"] == "warn" and failed == {"one_channel_count", "constant_images", "low_information"}


def test_suite_option_selects_another_suite_and_a_bad_one_is_exit_2(prefect_server, tmp_path):
    root = problem_folder(tmp_path / "d")
    suite = tmp_path / "mine.toml"
    suite.write_text('name = "mine"\nversion = 7\n[readable_files]\nseverity = "warning"\n'
                     '[train_test_leakage]\nseverity = "off"\n')
    result = ablate("validate", str(root), "--suite", str(suite), "--out", str(tmp_path / "r"), api_url=prefect_server)
    assert result.returncode == 0, result.stderr[-2000:]
    gate = json.loads(next((tmp_path / "r").glob("*/gate.json")).read_text())
    assert gate["status"] == "warn" and gate["suite"]["version"] == 7 and len(gate["checks"]) == 1
    suite.write_text('version = 1\n[readable_file]\nseverity = "warning"\n')
    assert_one_line_error(ablate("validate", str(root), "--suite", str(suite)), 2, "unknown check [readable_file]")


@pytest.mark.parametrize("args", [["run", "--epochs", "0"], ["run", "--axes", "height"], ["run", "--image-size", "x"],
                                  ["validate", "--image-size", "100000"], ["run", "--test-fraction", "1.5"],
                                  ["run", "--seeds", "many"], ["run", "--seeds", "auto", "--max-seeds", "2"],
                                  ["run", "--set", "dropout=2"], ["run", "--set", "lr=0.1"], ["frobnicate"]])
def test_usage_errors_exit_2(args):
    result = ablate(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, text", [
    (["--max-seeds", "8"], "--max-seeds needs --seeds auto"),
    (["--set", "warmup_epochs=2"], "warmup_epochs needs lr_schedule = \"cosine\""),
    (["--set", "epochs=4", "--epochs", "3"], "epochs is set twice"),
    (["--grid", "examples/ablation.toml", "--set", "dropout=0.5"], "drop --set"),
    (["--grid", "examples/ablation.toml", "--seeds", "auto"], "drop --seeds"),
    (["--next", "no/such/folder/next.toml"], "--next no/such/folder/next.toml: its folder is missing"),
])
def test_rounds_baseline_settings_and_the_follow_up_file_are_checked_before_anything_starts(tmp_path, args, text):
    result = ablate("run", *args, "--out", str(tmp_path / "r"))
    assert_one_line_error(result, 2, text)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_help_documents_the_exit_codes():
    result = ablate("run", "--help")
    assert result.returncode == 0 and "1  the data-quality gate found critical problems" in result.stdout


@pytest.mark.parametrize("sig, code, how", [
    # Ctrl-C at a terminal signals the whole foreground process group, and a user has no PREFECT_API_URL: the
    # local server (or, with --ephemeral, the temporary one) must survive it (the temporary one once died with the
    # group, and the run took two minutes to end).
    (signal.SIGINT, 130, "the command's process group, as a terminal's Ctrl-C does"),
    (signal.SIGHUP, 129, "the command's process group, as a terminal closing does, --ephemeral"),
    (signal.SIGTERM, 143, "the command's process, as `kill` or a scheduler does"),
])
def test_an_interrupt_stops_the_training_processes_and_keeps_finished_cells(prefect_server, tmp_path, sig, code,
                                                                            how):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    if sig == signal.SIGTERM:
        env["PREFECT_API_URL"] = prefect_server
    command = [sys.executable, "-m", "flows.cli", "run", "--limit", "60", "--epochs", "40", "--seeds", "10",
               "--axes", "dropout", "--out", str(tmp_path)] + (["--ephemeral"] if "--ephemeral" in how else [])
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # a process group of its own, like a terminal's job
    deadline = time.time() + 120
    finished = []
    while time.time() < deadline and not finished:  # wait until at least one cell has finished
        finished = [line for path in tmp_path.glob("*/cells.jsonl") for line in path.read_text().splitlines()]
        time.sleep(0.5)
    assert finished, "no cell finished within two minutes"
    pids = [int(re.search(r"training process (\d+)", log.read_text()).group(1))
            for log in tmp_path.glob("*/logs/*.log")]
    descendants = psutil.Process(process.pid).children(recursive=True)  # training processes, a temporary server
    signalled = time.time()
    if sig == signal.SIGTERM:
        process.send_signal(sig)
    else:
        os.killpg(process.pid, sig)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # leave nothing behind
        pytest.fail(f"still running a minute after a signal to {how}")
    assert process.returncode == code and "Traceback" not in stderr, stderr[-2000:]
    assert time.time() - signalled < 20, f"{time.time() - signalled:.0f} s to stop after a signal to {how}"
    time.sleep(1)
    assert pids and not [pid for pid in pids if os.path.exists(f"/proc/{pid}")], "training processes left running"
    left = [p.cmdline() for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    local_server = [command for command in left if "flows.local_server" in command]
    assert not [command for command in left if command not in local_server], f"left running after {how}: {left}"
    if sig == signal.SIGINT:  # the local server outlives the command, as it should, and still answers
        status = ablate("server", "stop", "--out", str(tmp_path))
        assert local_server and status.returncode == 0 and "stopped the local Prefect server" in status.stdout
    finished = [json.loads(line) for line in next(tmp_path.glob("*/cells.jsonl")).read_text().splitlines()]
    kept = list((tmp_path / ".cache" / "cells").glob("*.json"))
    assert finished and len(kept) == sum(r["status"] != "failed" for r in finished)  # a rerun reuses them


@pytest.mark.parametrize("out, text", [("file", "is a file, not a folder"), ("file/reports", "Not a directory")])
def test_an_unusable_out_is_one_line_and_exit_2_before_anything_starts(tmp_path, out, text):
    (tmp_path / "file").write_text("not a folder")
    result = ablate("validate", "digits", "--limit", "10", "--out", str(tmp_path / out))
    assert_one_line_error(result, 2, text)
    assert "Starting temporary server" not in result.stderr + result.stdout


def test_the_time_split_says_when_every_cell_was_reused():
    from flows.cli import _time_split

    reused = _time_split({"loading": 0.5, "gate": 1.0, "report": 1.0, "training (wall)": 0.0,
                          "training (inside processes, summed)": 0.0, "training (slowest slot)": 0.0,
                          "slots": 0.0}, 10.0)
    assert "training none (every cell reused)" in reused and reused.endswith("orchestration overhead 7.5 s")
    trained = _time_split({"loading": 0.5, "gate": 1.0, "report": 1.0, "training (wall)": 50.0,
                           "training (inside processes, summed)": 90.0, "training (slowest slot)": 46.0,
                           "slots": 2.0}, 60.0)
    assert "training 90.0 s inside 2 training process(es) (slowest slot 46.0 s, wall 50.0 s)" in trained
    assert trained.endswith("orchestration overhead 11.5 s")
    # a gate that validated while the first cells trained counts only for what the run waited for it
    beside = _time_split({"loading": 0.5, "gate": 4.0, "gate (waited for)": 0.0, "report": 1.0,
                          "training (wall)": 50.0, "training (inside processes, summed)": 90.0,
                          "training (slowest slot)": 46.0, "slots": 2.0}, 50.0)
    assert "gate 4.0 s alongside training (0.0 s waited for)" in beside
    assert beside.endswith("orchestration overhead 2.5 s")


def test_a_run_where_nothing_could_be_compared_exits_3_and_its_first_screen_says_why(prefect_server, tmp_path):
    # Every cell passes a 0.01 s time limit, so none is scored: a run with no verdict to give.
    result = ablate("run", "--dataset", "digits", "--limit", "40", "--axes", "dropout", "--epochs", "1", "--seeds",
                    "1", "--cell-timeout", "0.01", "--out", str(tmp_path), api_url=prefect_server)
    assert_one_line_error(result, 3, "Nothing could be compared: every training run failed (timed out after")
    (page,) = tmp_path.glob("*/index.html")
    headline = re.search(r"<p class=headline>(.*?)</p>", page.read_text()).group(1)
    assert headline.startswith("Nothing could be compared: every training run failed (timed out after 0.01 s")


def test_a_temporary_server_that_starts_too_slowly_is_stopped_not_left_running():
    # On a loaded machine the early start can pass Prefect's wait; the process it started must not outlive the
    # command (it once held a finished command's output open, and its caller waited for ever).
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    from flows.cli import _quietly

    with socket.socket() as probe:  # a port of its own: port=None would be the session's running server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    def servers_on_this_port():  # other tests' servers (this session's own, for one) are not this test's business
        children = psutil.Process().children(recursive=True)
        return [p for p in children if "uvicorn" in " ".join(p.cmdline()) and str(port) in p.cmdline()]

    server = SubprocessASGIServer(port=port)
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 0}):
        _quietly(server)  # times out: the server process is started, and Prefect waits 0 s for it to answer
    assert server.server_process is None and not server.running
    assert servers_on_this_port() == []


def test_a_validation_share_that_leaves_nothing_to_validate_on_is_exit_2_before_any_training(tmp_path, prefect_server):
    result = ablate("run", "--dataset", "digits", "--limit", "20", "--val-fraction", "0.01", "--axes", "dropout",
                    "--epochs", "1", "--seeds", "1", "--out", str(tmp_path), api_url=prefect_server)
    assert_one_line_error(result, 2, "--val-fraction 0.01 leaves no image to validate on among 20 training images")
    assert (tmp_path / ".cache" / "datasets").is_dir() and not (tmp_path / ".cache" / "cells").exists()
    assert not list(tmp_path.glob("*/index.html"))  # stopped before the run folder, the gate and any training
