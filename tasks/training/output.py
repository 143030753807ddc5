"""Where a training process's output goes: its log file always, and the terminal too when the user asks to see
the frameworks' own messages (``--verbose``).

TensorFlow, XLA and CUDA log from C++ straight to the process's file descriptors, and some of it ("I0000 ...
oneDNN custom operations are on", "E0000 ... failed call to cuInit") is printed before TensorFlow reads its
log-level setting, so the only way to keep it out of the user's terminal is to point the descriptors elsewhere
before the framework is imported. The log file is written directly, so a process that is killed still leaves
its last lines there (the slot pool quotes them in the cell's failure).
"""

from __future__ import annotations

import os
import sys
import threading
import time

# TensorFlow's C++ log level in a training process: 2 keeps errors and warnings out of INFO's noise in the log
# file; with --verbose, 0 shows everything.
QUIET_TF_LOG_LEVEL, VERBOSE_TF_LOG_LEVEL = "2", "0"


def send_output_to(log_path: str, echo_as: str | None = None) -> None:
    """Point this process's stdout and stderr (Python's and the C++ libraries') at ``log_path``, appending.

    With ``echo_as`` (a name such as "slot-0"), every line written there is also copied to the terminal this
    process started with, prefixed with that name, by a background thread (best effort: a line written just
    before the process dies may reach the log and not the terminal).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.dup(2) if echo_as else None
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    if terminal is not None:
        start = os.path.getsize(log_path)  # before anything new is written: the thread copies from here
        threading.Thread(target=_echo, args=(log_path, start, terminal, echo_as), name="echo-output",
                         daemon=True).start()


def _echo(log_path: str, start: int, terminal: int, name: str) -> None:
    """Copy what is appended to ``log_path`` after ``start`` to the ``terminal`` descriptor, line by line, each
    line prefixed with ``name``."""
    with open(log_path, "rb") as log:
        log.seek(start)
        pending = b""
        while True:
            chunk = log.read(65536)
            if not chunk:
                time.sleep(0.2)
                continue
            *lines, pending = (pending + chunk).split(b"\n")
            if lines:
                os.write(terminal, b"".join(f"[{name}] ".encode() + line + b"\n" for line in lines))
