"""The report's charts drawn while the cells train, into the charts cache where the report then finds them
(`tasks.report.plots.kept_in`), so that after the last cell the report draws only what needs every result.

One thread draws them all, because pyplot is not safe to use from two threads at once: first the pixel-value
histogram (it needs only the data, and drawing it pays matplotlib's import and first figure, about 1 s), then
each axis's learning curves as soon as every first-round cell of that axis and of the baseline has finished (the
4 charts of the default grid took 0.58 s of the report's 1.0-1.1 s). A kept chart is reused only for the very
same inputs, so the curves are computed as the report computes them (`summarise` for the table's order and
names, `mean_curves`), from the same records in the grid's order; where a later round adds seeds, they differ
and the report draws that axis's chart itself. So does it where anything here fails.

The drawing takes CPU beside the training processes: where they fill every core (2 slots on 2 cores) the wall
time shrinks by less than the report's time does; where the cells train on GPUs, by all of it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path

from tasks.data.datasets import Dataset
from tasks.report.aggregate import mean_curves, results_table, summarise
from tasks.report.diagnose import broken_variants
from tasks.report.page import axis_curves
from tasks.report.plots import curves_png, kept_in
from tasks.report.thumbnails import ImageDrawer
from tasks.training.grid import AA_AXIS, BASELINE_AXIS, Cell


class ChartsAhead:
    """Draws the report's charts on a thread of its own as their inputs become known; `join` before drawing
    anything else."""

    def __init__(self, data: Dataset, charts: Path, cells: list[Cell] | None = None, classes: int = 0):
        """``cells``: the first round's cells in the grid's order, whose records `finished` then receives (None,
        e.g. with seeds in rounds: the histogram alone). ``classes``: the dataset's class count, as the report's
        summary is given it."""
        ids = [(cell.axis, cell.variant, cell.config.seed) for cell in cells or []]
        self._order = {cell: i for i, cell in enumerate(ids)}
        baseline = {cell for cell in ids if cell[0] == BASELINE_AXIS}
        shown = dict.fromkeys(axis for axis, _, _ in ids if axis not in (BASELINE_AXIS, AA_AXIS))
        self._waiting = {axis: baseline | {cell for cell in ids if cell[0] == axis} for axis in shown}
        self._classes = classes
        self._records: queue.SimpleQueue[dict | None] = queue.SimpleQueue()
        self._data: Dataset | None = data  # dropped once drawn from: not held while the records come
        self._thread = threading.Thread(target=self._draw, args=(charts,), name="report-charts-ahead", daemon=True)
        self._thread.start()

    def finished(self, record: dict) -> None:
        """A cell's record, trained or reused, from any thread (the ones of no first-round cell are ignored)."""
        self._records.put(record)

    def close(self) -> None:
        """No more records: the thread draws what it can from those it has and ends (this returns at once)."""
        self._records.put(None)

    def join(self) -> None:
        """Close, and wait for the charts being drawn."""
        self.close()
        self._thread.join()

    def _draw(self, charts: Path) -> None:
        with kept_in(charts):
            _quietly(self._histogram)
            finished: dict[tuple, dict] = {}  # by (axis, variant, seed), as the cells are told apart
            while (record := self._records.get()) is not None:
                finished[(record["axis"], record["variant"], record["seed"])] = record
                for axis, cells in list(self._waiting.items()):
                    if cells <= finished.keys():
                        del self._waiting[axis]
                        records = [finished[cell] for cell in sorted(cells, key=self._order.__getitem__)]
                        # Every cell reused: the run that trained them kept this chart (or the report draws it).
                        if any(not done.get("cached") for done in records):
                            _quietly(self._curves, axis, records)

    def _histogram(self) -> None:
        data, self._data = self._data, None
        ImageDrawer(data).histogram()

    def _curves(self, axis: str, records: list[dict]) -> None:
        summary = summarise(results_table(records), None, broken_variants(records, self._classes))
        curves_png(axis_curves(axis, summary, mean_curves(records)))


def _quietly(draw: Callable[..., object], *args) -> None:
    """A chart that fails here is the report's to draw (and to report, if it fails there too)."""
    try:
        draw(*args)
    except Exception:  # noqa: BLE001, S110 - see above
        pass
