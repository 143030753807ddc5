"""Progress of the grid being trained: the shared status line, and a live one-line display for terminals.

`train_grid` reports into ``GRID`` (start, each finished cell, stop); the CLI's `LiveDisplay` redraws
"[12/27] 2 running | 1 failed | 3 cached | 48 s elapsed, ~55 s left" in place twice a second while a terminal
is attached. Log lines still print as before: the display clears its line before each one and redraws after.
Without a terminal (CI, a pipe, a file) nothing is drawn: the per-cell log lines are the progress.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from typing import TextIO

CLEAR = "\r\x1b[K"  # carriage return, erase to the end of the line


def status(done: int, total: int, failed: int, cached: int, running: int, elapsed: float) -> str:
    """"2 running | 1 failed | 3 cached | 48 s elapsed, ~55 s left": the remaining time extrapolates the
    cells trained so far (cached cells take no time and are not counted in ``done`` or ``total``)."""
    parts = [f"{running} running"] if running else []
    parts += [f"{failed} failed"] if failed else []
    parts += [f"{cached} cached"] if cached else []
    left = f", ~{elapsed / done * (total - done):.0f} s left" if 0 < done < total else ""
    parts.append(f"{elapsed:.0f} s elapsed{left}")
    return " | ".join(parts)


class GridProgress:
    """The grid this process is training, if any; written by the flow, read by the display thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state: dict | None = None

    def start(self, total: int, cached: int, slots: int) -> None:
        with self._lock:
            self._state = {"total": total, "cached": cached, "slots": slots, "done": 0, "failed": 0,
                           "started": time.monotonic()}

    def finished(self, failed: bool) -> None:
        with self._lock:
            if self._state:
                self._state["done"] += 1
                self._state["failed"] += failed

    def stop(self) -> None:
        with self._lock:
            self._state = None

    def line(self) -> str | None:
        """The live status line, or None when no grid is training."""
        with self._lock:
            if self._state is None:
                return None
            s = dict(self._state)
        running = min(s["slots"], s["total"] - s["done"])
        elapsed = time.monotonic() - s["started"]
        return f"[{s['done']}/{s['total']}] " + status(s["done"], s["total"], s["failed"], s["cached"], running,
                                                       elapsed)


GRID = GridProgress()


class LiveDisplay:
    """Redraw ``progress.line()`` in place on ``stream`` while it is a terminal; a no-op otherwise."""

    def __init__(self, progress: GridProgress = GRID, stream: TextIO | None = None, interval: float = 0.5):
        import sys

        self.progress, self.stream, self.interval = progress, stream or sys.stderr, interval
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()  # one writer at a time: the display thread or a log line
        self._stop = threading.Event()
        self._drawn = False
        self._quiet_until = 0.0  # a log line is being printed: do not draw over it
        self._filter = _ClearBeforeLog(self)

    def __enter__(self) -> LiveDisplay:
        if self.enabled:
            for handler in _console_handlers(self.stream):
                handler.addFilter(self._filter)
            threading.Thread(target=self._loop, name="live-progress", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._stop.set()
            for handler in _console_handlers(self.stream):
                handler.removeFilter(self._filter)
            self.clear()

    def draw(self) -> None:
        line = self.progress.line()
        with self._lock:
            if time.monotonic() < self._quiet_until:
                return
            if line is None:
                self._clear_unlocked()
                return
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write(CLEAR + line[:width])
            self.stream.flush()
            self._drawn = True

    def clear(self, quiet: float = 0.0) -> None:
        """Erase the status line; with ``quiet``, do not redraw it for that many seconds."""
        with self._lock:
            self._quiet_until = time.monotonic() + quiet
            self._clear_unlocked()

    def _clear_unlocked(self) -> None:
        if self._drawn:
            self.stream.write(CLEAR)
            self.stream.flush()
            self._drawn = False

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.draw()


class _ClearBeforeLog(logging.Filter):
    """On the console handler: erase the status line before a log line is printed over it."""

    def __init__(self, display: LiveDisplay):
        super().__init__()
        self.display = display

    def filter(self, record: logging.LogRecord) -> bool:
        self.display.clear(quiet=0.2)  # the handler prints the line right after this returns
        return True


def _console_handlers(stream: TextIO) -> list[logging.Handler]:
    """Every logging handler that writes to ``stream`` (Prefect's console handler among them)."""
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger)]
    return list({id(h): h for logger in loggers for h in logger.handlers
                 if getattr(h, "stream", None) is stream}.values())
