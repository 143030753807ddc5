"""A rough training-time estimate for a grid, before anything trains (`ablate grid`)."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.paths import cache_dir
from tasks.training.devices import cpu_count, detect_gpus, plan_slots
from tasks.training.grid import Cell

# Digits (1,438 images of 32x32) at batch 32, one TensorFlow thread, this project's 2-core CPU machine: 27 cells
# of 10 epochs spent 185 s training (benchmarks/bench_grid.py), about 0.8 s per epoch once early stops count.
ASSUMED_SECONDS_PER_EPOCH = 0.8
FIXED_SECONDS = 15  # Prefect start-up, the gate, process imports and the report on a small dataset


def seconds_per_epoch(reports_dir: Path) -> tuple[float, int]:
    """Mean training seconds per epoch over the finished cells in the store, and how many there were."""
    rates = []
    for path in (cache_dir(reports_dir) / "cells").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("epochs"):
            rates.append(record["seconds"] / record["epochs"])
    return (sum(rates) / len(rates), len(rates)) if rates else (ASSUMED_SECONDS_PER_EPOCH, 0)


def estimate(cells: list[Cell], reports_dir: Path) -> str:
    per_epoch, measured = seconds_per_epoch(reports_dir)
    slots = len(plan_slots(len(cells), cpu_count(), detect_gpus()))
    epochs = sum(cell.config.max_epochs for cell in cells)
    total = FIXED_SECONDS + epochs * per_epoch / slots
    source = (f"measured over {measured} finished cells in {cache_dir(reports_dir) / 'cells'}" if measured
              else "assumed: digits-sized images on one CPU core; no finished cells to measure yet")
    return (f"estimated time: about {_duration(total)} on {slots} slot(s), at {per_epoch:.2f} s per epoch ({source}); "
            f"early stopping usually ends cells sooner, and larger images take longer")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
