"""How training processes start: forked from a process that has imported TensorFlow already, where that is safe.

Importing TensorFlow and Keras costs 2.5-3 s of CPU in every process that does it (`tasks.training.framework`),
more than training a small cell. Started by multiprocessing's forkserver, the slot pool's processes and the model
check import nothing: the forkserver imported the framework once (`tasks.training.preload`), ahead of time
(`warm_up`: `ablate run` calls it as the command starts, beside Prefect's start-up; the flow, after loading the
data, when it has something to train), and forks each of them in milliseconds. One no process came from (the
run found nothing to train) is killed at once (`release_unused`). On 2 cores a run pays one
import, off its critical path, instead of one per process on it. Forked processes also share the framework's
memory pages until they write them.

Forking after the import is safe because the import starts no thread of its own and touches no device
(measured: the process has no thread but OpenBLAS's after it, and OpenBLAS stops its threads before a fork and
starts them again when needed): TensorFlow creates its thread pools and asks for the GPU on first use, in each
forked process, after it has set its device environment.

Where this is used: Linux, CPU slots (no GPU detected), the TensorFlow backend, without --verbose. Otherwise processes
are spawned, each importing for itself, as before: on a GPU machine, because forking after the import has not
been checked on a GPU yet (`benchmarks/gpu_check.py` has never run on one), and CUDA must never be initialised
before a fork; for JAX and PyTorch, whose imports have not been checked; with --verbose, because its point is
the framework's own messages, the import's included; on macOS, because its system frameworks are not safe to
use in a child forked after they were loaded (why Python spawns there by default). The forkserver belongs to this
process and ends with it.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import time

from tasks.training.devices import SlotSpec, detect_gpus

_lock = threading.Lock()
_warmed = False
_used = False  # whether a process was started from the forkserver (it then has children to reap at the end)


def preloaded(backend: str, verbose: bool, devices: list[str]) -> bool:
    """Whether processes for these devices ("cpu", "gpu:0") may be forked from the preloaded forkserver."""
    return (backend == "tensorflow" and not verbose and all(device == "cpu" for device in devices)
            and sys.platform == "linux")


def context(backend: str, verbose: bool, devices: list[str]) -> multiprocessing.context.BaseContext:
    """The multiprocessing context to start processes for ``devices`` with: the preloaded forkserver or spawn."""
    global _used
    if not preloaded(backend, verbose, devices):
        return multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of this process's state
    warm_up()
    _used = True
    return multiprocessing.get_context("forkserver")


def slot_context(slots: list[SlotSpec], verbose: bool) -> multiprocessing.context.BaseContext:
    """`context` for a slot plan (its slots share one backend: `plan_slots`)."""
    return context(slots[0].backend if slots else "", verbose, [slot.device for slot in slots])


def warm_up_for(backend: str, verbose: bool) -> None:
    """Start the forkserver's import now if this machine's training processes will be forked from it (no GPU)."""
    if preloaded(backend, verbose, ["gpu"] if detect_gpus() else ["cpu"]):
        warm_up()


def warm_up() -> None:
    """Start the forkserver now; it imports the framework in the background (this returns at once). Once per
    process: later processes fork from the same one."""
    global _warmed
    with _lock:
        if not _warmed:
            forkserver = multiprocessing.get_context("forkserver")
            forkserver.set_forkserver_preload(["tasks.training.preload"])
            multiprocessing.forkserver.ensure_running()
            _warmed = True


def release_unused() -> None:
    """Stop a forkserver no process was started from (the run found nothing to train): at once, so that its
    import does not take a core the rest of the run could use."""
    if _warmed and not _used:
        stop()


def stop(wait: float = 5.0) -> bool | None:
    """Stop the forkserver and wait for it: at this process's exit (registered once, below), so that nothing of
    a run outlives it. Closing the "alive" pipe is how Python asks its forkserver to stop (its own `_stop`, which
    the standard library's tests use, waits without a limit); a forkserver still running after ``wait`` seconds
    is killed. The training processes were stopped (and reaped) before: the slot pool closes first. One that
    never started a process is killed at once: it has nothing to reap, and it may still be importing (it answers
    the pipe only after). Returns whether it ended by itself (None: none ran)."""
    global _warmed, _used
    server = multiprocessing.forkserver._forkserver
    with _lock, server._lock:
        pid, alive = server._forkserver_pid, server._forkserver_alive_fd
        if pid is None:
            return None
        os.close(alive)
        server._forkserver_pid = server._forkserver_alive_fd = None
        wait = wait if _used else 0.0
        _warmed = _used = False
    deadline = time.monotonic() + wait
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.01)
    return True


atexit.register(stop)  # once, whatever the number of forkservers started (and released) in this process


def started_process() -> None:
    """First thing in a forked process: SIGHUP back to its default (the forkserver ignores it, see
    `tasks.training.preload`), so that a closing terminal stops it as it stops a spawned one."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
