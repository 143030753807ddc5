"""A slot pool of long-lived training processes, one per slot, each pinned to a device.

Why not one process per cell: importing TensorFlow + Keras costs ~5.5 s, more than training one small cell, so
each process trains many cells. Why processes at all: TensorFlow keeps GPU memory until its process exits, and a
crash (out of memory, a segfault in a kernel) must cost one cell, not the run. A dead process is reported to the
caller as `WorkerCrashed` and replaced before the slot is used again.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import weakref
from pathlib import Path

from tasks.training.devices import SlotSpec
from tasks.training.output import send_output_to, tf_log_level
from tasks.training.processes import slot_context, started_process

_OPEN_POOLS: weakref.WeakSet = weakref.WeakSet()
READY = "ready"  # a training process's first message: its imports are done, time it from here


class WorkerCrashed(RuntimeError):
    """The training process died while working on a cell; ``log_tail`` holds the last lines of its log."""

    def __init__(self, message: str, log_tail: str = "", exitcode: int | None = None):
        super().__init__(message)
        self.log_tail, self.exitcode = log_tail, exitcode

    @property
    def killed(self) -> bool:
        """SIGKILL: on Linux most often the kernel's out-of-memory killer."""
        return self.exitcode == -9


class CellTimedOut(WorkerCrashed):
    """The cell ran past its time limit; its training process was killed (and replaced)."""


class PoolClosed(WorkerCrashed):
    """The pool was closed (the run was interrupted) before or while the cell trained."""

    def __init__(self):
        super().__init__("stopped: the run was interrupted")


class SlotPool:
    """Run ``tasks.training.train.train_cell`` calls on a fixed set of processes; thread-safe ``run``."""

    def __init__(self, slots: list[SlotSpec], log_dir: Path, verbose: bool = False):
        """Each process's output goes to ``log_dir/slot-N.log``; with ``verbose``, TensorFlow's INFO lines too."""
        self._verbose = verbose
        # Forked from the preloaded forkserver where that is safe, else spawned (`tasks.training.processes`); never
        # forked from this process, which would copy its threads and locks.
        self._context = slot_context(slots, verbose)
        self._log_dir = Path(log_dir)
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._free: queue.Queue[SlotSpec] = queue.Queue()
        self._workers: dict[int, tuple] = {}
        self._lock = threading.RLock()  # re-entrant: close_all may run in a signal handler on the same thread
        self._closed = False
        _OPEN_POOLS.add(self)
        self._ready: set[int] = set()
        self._active, self._to_retire = len(slots), 0
        for slot in slots:
            self._start(slot)  # start all now: their imports overlap with each other and the first cells
            self._free.put(slot)

    def pids(self) -> dict[int, int]:
        """Process id per slot index (for logs and tests)."""
        with self._lock:
            return {index: process.pid for index, (process, _) in self._workers.items()}

    def log_path(self, slot: SlotSpec) -> Path:
        return self._log_dir / f"slot-{slot.index}.log"

    def run(self, payload: dict, timeout: float | None = None) -> tuple[dict, SlotSpec]:
        """Train one cell on the next free slot; returns its record and the slot it ran on.

        ``timeout`` counts from when the process is ready (its Keras import done), so a slot's first cell is
        not charged for start-up. Past it, the process is killed and replaced: CellTimedOut.
        """
        slot = self._free.get()
        try:
            with self._lock:
                if self._closed:
                    raise PoolClosed()
                process, conn = self._workers[slot.index]
            if not process.is_alive():
                process, conn = self._start(slot)
            try:
                if slot.index not in self._ready:
                    self._wait(process, conn)
                    if conn.recv() != READY:
                        raise EOFError
                    self._ready.add(slot.index)
                conn.send(payload)
                if not self._wait(process, conn, timeout):
                    process.kill()
                    process.join()
                    tail = self._tail(slot)  # before the new process writes its first line
                    self._start(slot)
                    raise CellTimedOut(f"timed out after {timeout:g} s (--cell-timeout); its training process "
                                       "was stopped", tail)
                return conn.recv(), slot  # EOFError when the process died: its end of the pipe is closed
            except (EOFError, OSError):
                process.join(5)
                if self._closed:
                    raise PoolClosed() from None
                tail = self._tail(slot)
                self._start(slot)
                raise WorkerCrashed(_death_reason(process.exitcode), tail, process.exitcode) from None
        finally:
            self._release(slot)

    @property
    def size(self) -> int:
        """Slots in use: the processes training at once."""
        with self._lock:
            return self._active

    def shrink(self) -> int:
        """Halve the number of processes training at once (at least one stays), for the rest of the run: the
        answer to a process killed for lack of memory, so that its retry does not meet the same conditions.
        Free slots stop now, busy ones when their cell ends. Returns the new number."""
        with self._lock:
            target = max(1, self._active // 2)
            self._to_retire += self._active - target
            self._active = target
        while True:
            try:
                slot = self._free.get_nowait()
            except queue.Empty:
                break
            if not self._release(slot):  # nothing left to retire: it went back
                break
        return target

    def _release(self, slot: SlotSpec) -> bool:
        """Put a slot back in the free queue, or stop its process if the pool is shrinking; True if stopped."""
        worker = None
        with self._lock:
            retire = self._to_retire > 0
            if retire:
                self._to_retire -= 1
                worker = self._workers.pop(slot.index, None)
        if not retire:
            self._free.put(slot)
            return False
        if worker is not None:
            _stop([worker], wait=10.0)
        return True

    @staticmethod
    def _wait(process, conn, timeout: float | None = None) -> bool:
        """Wait for a message or the process's death; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not conn.poll(0.5) and process.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    def _tail(self, slot: SlotSpec, lines: int = 5) -> str:
        """The last lines of a slot's log: what the process said before it died."""
        try:
            return "\n".join(self.log_path(slot).read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    @staticmethod
    def close_all() -> None:
        """Kill every open pool's processes at once (from a Ctrl-C or SIGTERM handler): whatever the main
        thread was doing when the signal came, no training process outlives the interrupt."""
        for pool in list(_OPEN_POOLS):
            pool.close(wait=0)

    def close(self, wait: float = 10.0) -> None:
        """Ask every process to finish, and kill any still running after ``wait`` seconds: no orphans."""
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
            self._workers.clear()
        _stop(workers, wait)

    def __enter__(self) -> SlotPool:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(wait=0 if exc_type else 10.0)  # on an error or Ctrl-C, do not wait for cells to finish

    def _start(self, slot: SlotSpec) -> tuple:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(child, slot, str(self.log_path(slot)), self._verbose),
            name=f"ablation-slot-{slot.index}", daemon=True,
        )
        process.start()
        child.close()
        with self._lock:
            self._workers[slot.index] = (process, parent)
            self._ready.discard(slot.index)  # a new process announces itself once its imports are done
        return process, parent


def _stop(workers: list[tuple], wait: float) -> None:
    """Ask each (process, pipe) to finish, and kill any still running after ``wait`` seconds."""
    for process, conn in workers:
        try:
            conn.send(None)
        except OSError:
            pass
    for process, conn in workers:
        process.join(wait)
        if process.is_alive():
            process.kill()
            process.join()
        conn.close()


def _death_reason(exitcode: int | None) -> str:
    if exitcode == -9:
        return "training process was killed (SIGKILL: most often the machine ran out of memory)"
    if exitcode is not None and exitcode < 0:
        return f"training process died from signal {-exitcode}"
    return f"training process exited unexpectedly (exit code {exitcode})"


def _worker_main(conn, slot: SlotSpec, log_path: str, verbose: bool = False) -> None:
    """Body of a training process: set the device environment, import once, then train cells until told to stop."""
    started_process()
    os.environ.update(slot.env())
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = tf_log_level(verbose)
    send_output_to(log_path)
    print(f"training process {os.getpid()}: slot {slot.index} on {slot.device}, {slot.threads} thread(s)", flush=True)
    from tasks.training import train

    train.init_process(slot.threads)
    conn.send(READY)
    while True:
        try:
            payload = conn.recv()
        except (EOFError, OSError):  # the parent is gone: nothing left to do
            return
        if payload is None:
            return
        cell = payload["cell"]
        print(f"cell {cell['axis']}/{cell['variant']}/seed{cell['seed']}: started", flush=True)  # who died, if it does
        conn.send(train.train_cell(**payload))
