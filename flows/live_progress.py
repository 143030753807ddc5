"""Progress of a folder being decoded and of the grid being trained, and a live display for terminals (rich).

`train_grid` reports into ``GRID`` (start, each finished cell, stop). While a grid trains and a terminal is
attached, the CLI's `LiveDisplay` keeps a bar and "[12/27] 2 running | 1 failed | 3 cached | 48 s elapsed,
~55 s left" below the log lines, redrawn twice a second by `rich.live.Live`. Log lines still print as before,
above it: every logging handler that writes to the terminal prints through the display's rich Console while it
is shown (Prefect's console handler is itself a rich Console, which the display then uses). Without a terminal
(CI, a pipe, a file) nothing is drawn: the per-cell log lines are the progress.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from rich.console import Console
from rich.file_proxy import FileProxy
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

REFRESH_PER_SECOND = 2
BAR_WIDTH, MIN_BAR_WIDTH = 30, 10  # the bar gives way to the status line on a narrow terminal


def status(done: int, total: int, failed: int, cached: int, running: int, elapsed: float) -> str:
    """"2 running | 1 failed | 3 cached | 48 s elapsed, ~55 s left": the remaining time extrapolates the
    cells trained so far (cached cells take no time and are not counted in ``done`` or ``total``)."""
    parts = [f"{running} running"] if running else []
    parts += [f"{failed} failed"] if failed else []
    parts += [f"{cached} cached"] if cached else []
    left = f", ~{elapsed / done * (total - done):.0f} s left" if 0 < done < total else ""
    parts.append(f"{elapsed:.0f} s elapsed{left}")
    return " | ".join(parts)


class _Source:
    """Progress the display listens to: state behind a lock (written by the flow's thread, read by the display's),
    and listeners (objects with started() and stopped()) told when it starts and stops."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state: dict | None = None
        self.listeners: list = []

    def stop(self) -> None:
        with self._lock:
            running, self._state = self._state is not None, None
        if running:
            self._tell("stopped")

    def _tell(self, event: str) -> None:
        for listener in list(self.listeners):
            getattr(listener, event)()

    def _copy(self) -> dict | None:
        with self._lock:
            return None if self._state is None else dict(self._state)


class GridProgress(_Source):
    """The grid this process is training, if any: written by the flow, read by the display."""

    def start(self, total: int, cached: int, slots: int, label: str = "") -> None:
        """A fan-out of ``total`` cells begins (``label``: its round, "round 2 of 4", or "")."""
        with self._lock:
            self._state = {"total": total, "cached": cached, "slots": slots, "done": 0, "failed": 0,
                           "started": time.monotonic(), "label": label}
        self._tell("started")

    def finished(self, failed: bool) -> None:
        with self._lock:
            if self._state:
                self._state["done"] += 1
                self._state["failed"] += failed

    def snapshot(self) -> tuple[int, int, str] | None:
        """(cells done, cells to train, the status line "[3/10] 2 running | ..."), or None when no grid trains."""
        if (s := self._copy()) is None:
            return None
        running = min(s["slots"], s["total"] - s["done"])
        line = status(s["done"], s["total"], s["failed"], s["cached"], running, time.monotonic() - s["started"])
        label = f" {s['label']} |" if s["label"] else ""
        return s["done"], s["total"], f"[{s['done']}/{s['total']}]{label} {line}"


GRID = GridProgress()


class LoadProgress(_Source):
    """How far the reading and decoding of an image folder is: written by the load step's progress callback."""

    def update(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            first = self._state is None
            if first or self._state["stage"] != stage:
                self._state = {"stage": stage, "started": time.monotonic()}
            self._state |= {"done": done, "total": total}
        if first:
            self._tell("started")

    def snapshot(self) -> tuple[int, int, str] | None:
        """(files done, files in all, "decoding 1,200/25,000 images | 1,480 images/s | ~16 s left")."""
        if (s := self._copy()) is None:
            return None
        elapsed = time.monotonic() - s["started"]
        line = f"{s['stage']} {s['done']:,}/{s['total']:,} images"
        if s["done"] and elapsed > 0:
            rate = s["done"] / elapsed
            line += f" | {rate:,.0f} images/s | ~{(s['total'] - s['done']) / rate:.0f} s left"
        return s["done"], s["total"], line


LOADING = LoadProgress()


class LiveDisplay:
    """Show ``sources`` live on ``stream`` (a folder being decoded, then the grid training), if ``stream`` is a
    terminal; a no-op otherwise. One source is active at a time."""

    def __init__(self, sources: tuple = (LOADING, GRID), stream: TextIO | None = None):
        self.sources, self.stream = sources, stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._restore: list = []  # (handler, attribute, value) to put back when the display stops

    def __enter__(self) -> LiveDisplay:
        if self.enabled:
            for source in self.sources:
                source.listeners.append(self)
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            for source in self.sources:
                source.listeners.remove(self)
            self.stopped()

    def started(self) -> None:
        with self._lock:
            if self._live is not None:
                return
            handlers = _console_handlers(self.stream)
            console = next((h.console for h in handlers if isinstance(getattr(h, "console", None), Console)),
                           None) or Console(file=self.stream, force_terminal=True)
            for handler in handlers:  # every log line goes through the one console, above the display
                if isinstance(getattr(handler, "console", None), Console):
                    self._restore.append((handler, "console", handler.console))
                    handler.console = console
                else:
                    self._restore.append((handler, "stream", handler.stream))
                    handler.setStream(FileProxy(console, self.stream))
            self._live = Live(console=console, get_renderable=self._render, refresh_per_second=REFRESH_PER_SECOND,
                              transient=True)
            self._live.start(refresh=True)

    def stopped(self) -> None:
        with self._lock:
            if self._live is None:
                return
            self._live.stop()  # erases the display (transient)
            self._live = None
            for handler, attribute, value in reversed(self._restore):
                if attribute == "stream":
                    handler.setStream(value)
                else:
                    setattr(handler, attribute, value)
            self._restore.clear()

    def _render(self):
        """The status line, after a bar as wide as the terminal leaves room for (none on a narrow one)."""
        snapshot = next(filter(None, (source.snapshot() for source in self.sources)), None)
        if snapshot is None or self._live is None:
            return Text("")
        done, total, line = snapshot
        text = Text(line, no_wrap=True, overflow="ellipsis")
        room = min(BAR_WIDTH, self._live.console.width - len(line) - 1)
        if room < MIN_BAR_WIDTH:
            return text
        row = Table.grid(padding=(0, 1))
        # Colours by name: Prefect's console, which the display may use, has no theme to look bar styles up in.
        bar = ProgressBar(total=max(total, 1), completed=done, width=room, style="bright_black",
                          complete_style="green", finished_style="green", pulse_style="green")
        row.add_row(bar, text)
        return row


def _console_handlers(stream: TextIO) -> list[logging.Handler]:
    """Every logging handler that writes to ``stream`` (Prefect's console handler among them)."""
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger)]
    return list({id(h): h for logger in loggers for h in logger.handlers
                 if getattr(h, "stream", None) is stream}.values())
