"""How training processes start: forked from a process that has imported TensorFlow already, where that is safe.

Importing TensorFlow and Keras costs about 5.5 s of CPU in every process that does it, more than training a
small cell. Started by multiprocessing's forkserver, the slot pool's processes and the model check import
nothing: the forkserver imported the framework once (`tasks.training.preload`), ahead of time (`warm_up`, called
while the data loads and the gate runs), and forks each of them in milliseconds. On 2 cores a run pays one
import, off its critical path, instead of one per process on it. Forked processes also share the framework's
memory pages until they write them.

Forking after the import is safe because the import starts no thread of its own and touches no device
(measured: the process has no thread but BLAS's after it): TensorFlow creates its thread pools and asks for the
GPU on first use, in each forked process, after it has set its device environment.

Where this is used: CPU slots (no GPU detected), the TensorFlow backend, without --verbose. Otherwise processes
are spawned, each importing for itself, as before: on a GPU machine, because forking after the import has not
been checked on a GPU yet (`benchmarks/gpu_check.py` has never run on one), and CUDA must never be initialised
before a fork; for JAX and PyTorch, whose imports have not been checked; with --verbose, because its point is
the framework's own messages, the import's included. The forkserver belongs to this process and ends with it.
"""

from __future__ import annotations

import multiprocessing
import threading

from tasks.training.devices import SlotSpec, detect_gpus

_lock = threading.Lock()
_warmed = False


def preloaded(backend: str, verbose: bool, devices: list[str]) -> bool:
    """Whether processes for these devices ("cpu", "gpu:0") may be forked from the preloaded forkserver."""
    return (backend == "tensorflow" and not verbose and all(device == "cpu" for device in devices)
            and "forkserver" in multiprocessing.get_all_start_methods())


def context(backend: str, verbose: bool, devices: list[str]) -> multiprocessing.context.BaseContext:
    """The multiprocessing context to start processes for ``devices`` with: the preloaded forkserver or spawn."""
    if not preloaded(backend, verbose, devices):
        return multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of this process's state
    warm_up()
    return multiprocessing.get_context("forkserver")


def slot_context(slots: list[SlotSpec], verbose: bool) -> multiprocessing.context.BaseContext:
    backends = {slot.backend for slot in slots}
    return context(backends.pop() if len(backends) == 1 else "", verbose, [slot.device for slot in slots])


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
