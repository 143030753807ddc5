"""The ablation flow: load -> gate -> train the grid -> report. Run it with `ablate run` or `python -m flows.ablation`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.steps import gate_step, load_dataset_step, report_step, train_cell_step
from tasks.aggregate import training_times
from tasks.errors import GateFailed
from tasks.grid import Cell, expand_grid
from tasks.paths import default_reports_dir
from tasks.runs import new_run_dir, run_record
from tasks.slots import SlotPool, cpu_count, detect_gpus, plan_slots
from tasks.suite import load_suite


# Threads only wait on training processes; the slot pool, not this number, caps how many cells train at once.
@flow(name="ablation", task_runner=ThreadPoolTaskRunner(max_workers=64))
def ablation(
    dataset: str = "digits",
    epochs: int = 10,
    seeds: int = 3,
    axes: list[str] | None = None,
    limit: int | None = None,
    gate: Literal["fail", "warn"] = "fail",
    out: Path | None = None,
    image_size: tuple[int, int] | None = None,
    val_fraction: float = 0.2,
    suite: str | None = None,
) -> dict:
    """Gate a dataset, train one-factor-at-a-time variants of a small CNN over seeds, and write the report."""
    started = time.perf_counter()
    load_suite(suite)  # a bad suite file fails the run before any work
    cells = expand_grid(axes, seeds, epochs)
    reports = Path(out) if out else default_reports_dir()

    # 1. Load the dataset once and cache it for the training processes
    data = load_dataset_step(dataset, image_size, val_fraction, limit, reports)
    run_dir = new_run_dir(reports, data["name"])
    run = run_record(run_dir, data, {"epochs": epochs, "seeds": seeds, "axes": axes or "all", "limit": limit,
                                     "gate": gate, "image_size": image_size, "val_fraction": val_fraction,
                                     "suite": suite or "default"})

    # 2. Data-quality gate: stop before any training when it finds critical problems
    gate_started = time.perf_counter()
    checked = gate_step(data, run_dir, suite, reports)
    run["timings"]["gate"] = time.perf_counter() - gate_started
    if checked.status == "fail" and gate == "fail":
        names = ", ".join(c.title for c in checked.failed if c.severity == "critical")
        run |= {"status": "gate failed", "error": f"the data-quality gate failed: {names}"}
        page = report_step(run, checked, None, run_dir)
        raise GateFailed(f"{run['error']} (report: {page})", page)

    # 3. Train every cell of the grid in the slot pool
    records, training = train_grid(cells, data["cache_path"], run_dir)
    run["timings"] |= training
    run["status"] = "done"

    # 4. Aggregate and report
    report_started = time.perf_counter()
    page = report_step(run, checked, records, run_dir)
    run["timings"] |= {"report": time.perf_counter() - report_started, "flow total": time.perf_counter() - started}
    failed = sum(record["status"] == "failed" for record in records)
    return {"run_dir": str(run_dir), "report": page, "status": run["status"], "timings": run["timings"],
            "cells": len(records), "failed": failed}


def train_grid(cells: list[Cell], dataset_path: str, run_dir: Path) -> tuple[list[dict], dict]:
    """Fan the cells out as concurrent tasks over a slot pool; log progress as they finish."""
    logger = get_run_logger()
    slots = plan_slots(len(cells), cpu_count(), detect_gpus())
    logger.info("training %d cells on %d slot(s): %s", len(cells), len(slots),
                ", ".join(sorted({s.device for s in slots})))
    started = time.perf_counter()
    done = []
    # Each finished cell is appended to cells.jsonl at once, so a crash or Ctrl-C loses no finished work.
    with SlotPool(slots, run_dir / "logs") as pool, open(run_dir / "cells.jsonl", "a") as finished:
        futures = [train_cell_step.submit(cell, dataset_path, pool) for cell in cells]
        for future in as_completed(futures):
            done.append(future.result())
            finished.write(json.dumps(done[-1]) + "\n")
            finished.flush()
            logger.info(progress_line(done, len(cells), time.perf_counter() - started))
    records = [future.result() for future in futures]  # in grid order
    return records, training_times(records, len(slots), time.perf_counter() - started)


def progress_line(records: list[dict], total: int, elapsed: float) -> str:
    """"[12/27] depth: 1 block x16 seed 1 ok, best val acc 96.1% (4.2 s) | 2 failed | ~55 s left"."""
    last, done = records[-1], len(records)
    failed = sum(r["status"] == "failed" for r in records)
    remaining = elapsed / done * (total - done)
    outcome = (f"best val acc {last['best_val_accuracy'] * 100:.1f}%" if last["status"] != "failed"
               else last["error"])
    return (f"[{done}/{total}] {last['axis']}: {last['variant']} seed {last['seed']} {last['status']}, {outcome} "
            f"({last['seconds']:.1f} s)" + (f" | {failed} failed" if failed else "")
            + (f" | ~{remaining:.0f} s left" if done < total else ""))


if __name__ == "__main__":
    from flows.cli import main

    raise SystemExit(main(["run", *sys.argv[1:]]))
