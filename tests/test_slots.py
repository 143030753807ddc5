import os
import signal
import threading
import time

import pytest

from tasks.data.datasets import load_dataset
from tasks.data.store import save_cache
from tasks.training.devices import BackendError, SlotSpec, check_backend, detect_gpus, plan_slots
from tasks.training.grid import expand_grid
from tasks.training.slots import CellTimedOut, SlotPool, WorkerCrashed


def test_cpu_plan_is_one_slot_per_core_with_threads_shared():
    slots = plan_slots(cells=27, cpus=2, gpus=[])
    assert [s.device for s in slots] == ["cpu", "cpu"] and {s.threads for s in slots} == {1}
    assert slots[0].env()["CUDA_VISIBLE_DEVICES"] == ""


def test_gpu_plan_packs_several_processes_per_gpu_each_pinned():
    slots = plan_slots(cells=100, cpus=16, gpus=["0", "1"], per_gpu=4)
    assert len(slots) == 8 and [s.env()["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0"] * 4 + ["1"] * 4
    assert slots[0].threads == 2 and slots[0].env()["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


def test_never_more_slots_than_cells():
    assert len(plan_slots(cells=1, cpus=8, gpus=[])) == 1


def test_cuda_visible_devices_decides_the_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert detect_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpus() == []


def test_a_killed_training_process_costs_one_cell_is_replaced_and_the_pool_can_shrink_for_the_retry(tmp_path):
    dataset = str(save_cache(load_dataset("digits", limit=40), tmp_path / "cache"))
    short, long = (expand_grid(["dropout"], seeds=1, epochs=e)[0].to_dict() for e in (1, 10_000))
    long["patience"] = 10_000
    outcome = {}
    with SlotPool([SlotSpec(0, "cpu", 1), SlotSpec(1, "cpu", 1)], tmp_path / "logs") as pool:
        first_pid = pool.pids()[0]

        def run_long():
            try:
                pool.run({"cell": long, "dataset_path": dataset})  # the first free slot: slot 0
            except WorkerCrashed as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=run_long)
        thread.start()
        time.sleep(14)  # the processes import Keras (~6 s each, side by side) and the endless training starts
        os.kill(first_pid, signal.SIGKILL)
        thread.join(30)
        assert "killed" in str(outcome["error"]) and outcome["error"].killed
        assert pool.size == 2 and pool.shrink() == 1 and pool.size == 1  # what a killed cell's retry does
        assert len(pool.pids()) == 1  # the other process stopped: its memory is free for the retry
        record, slot = pool.run({"cell": short, "dataset_path": dataset})
        assert record["status"] == "ok" and pool.pids()[slot.index] != first_pid
        assert pool.shrink() == 1  # never below one
    assert (tmp_path / "logs" / "slot-0.log").exists()


def test_a_cell_past_its_timeout_is_stopped_and_its_process_replaced(tmp_path):
    dataset = str(save_cache(load_dataset("digits", limit=40), tmp_path / "cache"))
    short, long = (expand_grid(["dropout"], seeds=1, epochs=e)[0].to_dict() for e in (1, 10_000))
    long["patience"] = 10_000
    with SlotPool([SlotSpec(0, "cpu", 1)], tmp_path / "logs") as pool:
        first_pid = pool.pids()[0]
        started = time.monotonic()
        with pytest.raises(CellTimedOut, match="timed out after 3 s") as timed_out:
            pool.run({"cell": long, "dataset_path": dataset}, timeout=3)
        # The limit counts from the end of the process's start-up, so the whole wait is start-up + 3 s.
        assert 3 <= time.monotonic() - started < 30
        tail = timed_out.value.log_tail  # the log's last lines come with it
        assert tail and tail.splitlines()[-1] in (tmp_path / "logs" / "slot-0.log").read_text()
        assert not os.path.exists(f"/proc/{first_pid}") or open(f"/proc/{first_pid}/stat").read().split()[2] == "Z"
        record, _ = pool.run({"cell": short, "dataset_path": dataset}, timeout=120)
        assert record["status"] == "ok" and pool.pids()[0] != first_pid


def test_fewer_slots_on_a_gpu_with_little_memory_and_the_backend_in_every_process():
    slots = plan_slots(cells=100, cpus=16, gpus=["0", "1"], per_gpu=8, gpu_memory_mib={"0": 81559, "1": 8192},
                       backend="jax")
    assert [s.device for s in slots].count("gpu:0") == 8 and [s.device for s in slots].count("gpu:1") == 4
    assert {s.env()["KERAS_BACKEND"] for s in slots} == {"jax"}


def test_a_missing_or_unknown_backend_is_a_clear_error(monkeypatch):
    from tasks.training import devices

    check_backend("tensorflow")
    with pytest.raises(BackendError, match="choose from tensorflow, jax, torch"):
        check_backend("theano")
    monkeypatch.setitem(devices.BACKEND_MODULES, "jax", "no_such_module_for_this_test")
    with pytest.raises(BackendError, match="no_such_module_for_this_test is not installed") as error:
        check_backend("jax")
    assert error.value.exit_code == 2


def test_a_log_follower_hands_on_each_whole_line_of_every_log_file_once(tmp_path):
    from tasks.training.output import LogFollower

    seen = []
    follower = LogFollower(tmp_path, lambda name, line: seen.append((name, line)))
    (tmp_path / "slot-0.log").write_text("first\nhalf a li")
    follower.read_new()
    assert seen == [("slot-0", "first")]  # the unfinished line waits for its end
    with open(tmp_path / "slot-0.log", "a") as log:
        log.write("ne\n")
    (tmp_path / "slot-1.log").write_text("from a process started later\n")
    (tmp_path / "notes.txt").write_text("not a log\n")
    follower.read_new()
    follower.read_new()
    assert seen == [("slot-0", "first"), ("slot-0", "half a line"), ("slot-1", "from a process started later")]


def test_processes_sets_the_number_in_all_on_the_cpu_or_spread_over_the_gpus():
    assert [s.device for s in plan_slots(cells=27, cpus=2, gpus=[], processes=8)] == ["cpu"] * 8
    assert plan_slots(cells=27, cpus=2, gpus=[], processes=8)[0].threads == 1
    on_gpus = plan_slots(cells=27, cpus=16, gpus=["0", "1"], processes=3)
    assert [s.device for s in on_gpus] == ["gpu:0", "gpu:1", "gpu:0"]


def test_cpu_training_processes_fork_from_one_preloaded_server_and_train_as_spawned_ones_do(tmp_path):
    """Without --verbose, CPU slots are forked from the forkserver that imported TensorFlow once; with it, each is
    spawned and imports for itself. A cell trains to the same record either way."""
    import psutil

    dataset = str(save_cache(load_dataset("digits", limit=60), tmp_path / "cache"))
    cell = expand_grid(["dropout"], seeds=1, epochs=2)[0].to_dict()
    records, parents = {}, {}
    for verbose in (False, True):
        with SlotPool([SlotSpec(0, "cpu", 1)], tmp_path / f"logs-{verbose}", verbose=verbose) as pool:
            parents[verbose] = psutil.Process(pool.pids()[0]).parent()
            records[verbose], _ = pool.run({"cell": cell, "dataset_path": dataset})
    assert parents[True].pid == os.getpid()
    assert parents[False].pid != os.getpid() and "forkserver" in " ".join(parents[False].cmdline())
    assert parents[False].parent().pid == os.getpid()  # the forkserver belongs to this process
    assert any("libtensorflow" in m.path for m in parents[False].memory_maps())  # and has imported TensorFlow
    # It does not hold this process's output open: a pipe reading a command's output ends when the command does.
    assert {os.readlink(f"/proc/{parents[False].pid}/fd/{fd}") for fd in (1, 2)} == {os.devnull}
    # At the end of the run's process it is asked to stop, and ends by itself (without tearing TensorFlow down).
    from tasks.training.processes import stop

    assert stop() is True and not psutil.pid_exists(parents[False].pid)
    forked, spawned = records[False], records[True]
    assert forked["status"] == spawned["status"] == "ok"
    assert forked["test_accuracy"] == spawned["test_accuracy"] and forked["history"] == spawned["history"]


def test_a_forkserver_started_ahead_that_no_process_came_from_is_stopped_at_once_mid_import():
    """`ablate run` starts the forkserver with the command; a run with nothing to train stops it right away,
    while it is still importing TensorFlow (it answers the stop request only after that), not seconds later."""
    import multiprocessing.forkserver

    import psutil

    from tasks.training.processes import release_unused, warm_up

    warm_up()
    pid = multiprocessing.forkserver._forkserver._forkserver_pid
    assert psutil.pid_exists(pid)
    began = time.monotonic()
    release_unused()
    assert not psutil.pid_exists(pid) and time.monotonic() - began < 1  # killed, not asked and waited for
    release_unused()  # none runs now: nothing to do


def test_only_cpu_tensorflow_processes_without_verbose_are_forked():
    from tasks.training.processes import preloaded

    assert preloaded("tensorflow", False, ["cpu", "cpu"])
    assert not preloaded("tensorflow", True, ["cpu"])  # --verbose: the import's own messages are the point
    assert not preloaded("tensorflow", False, ["gpu:0", "cpu"])  # not yet checked on a GPU
    assert not preloaded("jax", False, ["cpu"])
