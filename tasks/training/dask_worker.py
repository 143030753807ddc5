"""Train a cell inside a Dask worker process: the worker is the long-lived training process.

With ``--executor dask`` there is no slot pool: each Dask worker imports Keras once, on its first cell, and
trains one cell at a time (the cells ask for one ``GPU`` resource on clusters whose workers have GPUs, and
local workers have one thread). A worker that dies (out of memory, a segfault) is restarted by its nanny and
Dask reschedules the cell; a time limit is checked between batches, since a worker cannot be killed for one.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from tasks.training.output import send_output_to, tf_log_level

_prepared: dict[str, str] = {}  # "backend": Keras backend this process was set up with; "log": its log file
_lock = threading.Lock()


class BackendMismatch(RuntimeError):
    """This worker already runs Keras on another backend (Keras picks its backend once per process)."""


def train_here(payload: dict, backend: str, time_limit: float | None = None, log_dir: str | None = None,
               verbose: bool = False) -> dict:
    """Set up Keras in this process on first use, train the cell, and say which worker trained it.

    With ``log_dir`` (workers of a cluster started for this run only) the worker's output goes to a file there
    from now on, as a slot pool process's does (TensorFlow's INFO lines too with ``verbose``); a shared
    cluster's workers keep their own logging.
    """
    if log_dir and "log" not in _prepared:
        path = Path(log_dir) / f"dask-{_safe(worker_name())}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        send_output_to(str(path))
        _prepared["log"] = str(path)
    prepare(backend, verbose)
    from tasks.training import train

    record = train.train_cell(**payload, time_limit=time_limit)
    return record | {"worker": worker_name()}


def prepare(backend: str, verbose: bool = False) -> None:
    """Select the backend before Keras is first imported, then set threads and GPU memory growth, once."""
    with _lock:
        if _prepared.get("backend") == backend:
            return
        if "backend" in _prepared:
            raise BackendMismatch(f"this Dask worker already trains with Keras on {_prepared['backend']}; start "
                                  f"separate workers for --backend {backend}")
        os.environ["KERAS_BACKEND"] = backend
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX: share the GPU with other workers
        if verbose:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = tf_log_level(verbose)
        else:  # a shared cluster's worker may have its own setting
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", tf_log_level(verbose))
        from tasks.training import train

        threads = int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count() or 1
        train.init_process(threads)
        import keras

        if keras.backend.backend() != backend:  # Keras was imported before, by something else in this worker
            raise BackendMismatch(f"this Dask worker already imported Keras on {keras.backend.backend()}; "
                                  f"start separate workers for --backend {backend}")
        _prepared["backend"] = backend


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name.removeprefix("tcp://"))


def worker_name() -> str:
    """The Dask worker's address (``tcp://host:port``), or host and process id outside a worker."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"
