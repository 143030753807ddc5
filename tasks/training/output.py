"""Where a training process's output goes: its log file, always; and for ``--verbose``, a reader in the run's own
process that follows the log files and hands each new line on to be printed there.

TensorFlow, XLA and CUDA log from C++ straight to the process's file descriptors, and some of it ("I0000 ...
oneDNN custom operations are on", "E0000 ... failed call to cuInit") is printed before TensorFlow reads its
log-level setting, so the only way to keep it out of the user's terminal is to point the descriptors elsewhere
before the framework is imported. The log file is written directly, so a process that is killed still leaves
its last lines there (the slot pool quotes them in the cell's failure). Echoing is done by the run's process,
not by each training process writing to the terminal, so that every line reaches the terminal through one
place, above the live progress display and never through it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path


def tf_log_level(verbose: bool) -> str:
    """TensorFlow's C++ log level (TF_CPP_MIN_LOG_LEVEL) for a training process: 2 keeps errors and warnings
    in its log file without INFO's noise; with --verbose, 0 keeps everything."""
    return "0" if verbose else "2"


def send_output_to(log_path: str) -> None:
    """Point this process's stdout and stderr (Python's and the C++ libraries') at ``log_path``, appending."""
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


class LogFollower:
    """Follow every ``*.log`` file in ``folder`` (those that appear later too) from its start, and call
    ``emit(name, line)`` for each complete line, ``name`` being the file's stem ("slot-0"). A background thread
    reads twice a second; `stop` reads what is left, then returns."""

    def __init__(self, folder: Path, emit: Callable[[str, str], None], interval: float = 0.5):
        self.folder, self.emit, self.interval = Path(folder), emit, interval
        self._read: dict[Path, tuple[int, bytes]] = {}  # offset, and a line not finished yet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-follower", daemon=True)

    def __enter__(self) -> LogFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.read_new()
        self.read_new()

    def read_new(self) -> None:
        for path in sorted(self.folder.glob("*.log")):
            offset, pending = self._read.get(path, (0, b""))
            try:
                with open(path, "rb") as log:
                    log.seek(offset)
                    chunk = log.read()
            except OSError:
                continue
            *lines, pending = (pending + chunk).split(b"\n")
            self._read[path] = (offset + len(chunk), pending)
            for line in lines:
                self.emit(path.stem, line.decode(errors="replace"))
