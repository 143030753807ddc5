"""The ablation flow: load -> gate -> train the grid -> report. Run it with `ablate run` or `python -m flows.ablation`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.steps import gate_step, load_dataset_step, report_step, train_cell_step
from tasks.aggregate import training_times
from tasks.errors import GateFailed
from tasks.grid import Cell, expand_grid
from tasks.cell_cache import cell_keys, export_models, load_cell, save_cell
from tasks.paths import cache_dir, default_reports_dir
from tasks.runs import new_run_dir, run_record
from tasks.slots import (DEFAULT_PER_GPU, SlotPool, check_backend, cpu_count, detect_gpus, gpu_memory_mib,
                         plan_slots)
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
    store: Path | None = None,
    fresh: bool = False,
    keep_models: bool = False,
    tensorboard: bool = False,
    cell_timeout: float | None = None,
    retries: int = 1,
    backend: Literal["tensorflow", "jax", "torch"] = "tensorflow",
    per_gpu: int = DEFAULT_PER_GPU,
) -> dict:
    """Gate a dataset, train one-factor-at-a-time variants of a small CNN over seeds, and write the report."""
    started = time.perf_counter()
    checks = load_suite(suite)  # a bad suite file or a missing backend fails the run before any work
    check_backend(backend)
    cells = expand_grid(axes, seeds, epochs)
    reports = Path(out) if out else default_reports_dir()

    # 1. Load the dataset once and cache it for the training processes
    data = load_dataset_step(dataset, image_size, val_fraction, limit, reports)
    run_dir = new_run_dir(reports, data["name"])
    run = run_record(run_dir, data, {"epochs": epochs, "seeds": seeds, "axes": axes or "all", "limit": limit,
                                     "gate": gate, "image_size": image_size, "val_fraction": val_fraction,
                                     "suite": suite or "default", "fresh": fresh,
                                     "keep_models": keep_models, "tensorboard": tensorboard,
                                     "cell_timeout": cell_timeout, "retries": retries, "backend": backend,
                                     "per_gpu": per_gpu})

    # 2. Data-quality gate: stop before any training when it finds critical problems
    gate_started = time.perf_counter()
    checked = gate_step(data, run_dir, checks, reports)
    run["timings"]["gate"] = time.perf_counter() - gate_started
    if checked.status == "fail" and gate == "fail":
        names = ", ".join(c.title for c in checked.failed if c.severity == "critical")
        run |= {"status": "gate failed", "error": f"the data-quality gate failed: {names}"}
        page = report_step(run, checked, None, run_dir)
        raise GateFailed(f"{run['error']} (report: {page})", page)

    # 3. Train every cell of the grid in the slot pool
    cells_dir = cache_dir(Path(store) if store else reports) / "cells"
    keys = cell_keys(cells, data["fingerprint"], backend)
    options = {"fresh": fresh, "tensorboard": tensorboard, "cell_timeout": cell_timeout, "retries": retries,
               "backend": backend, "per_gpu": per_gpu}
    records, training, cached = train_grid(cells, keys, data, run_dir, cells_dir, options)
    export_models(records, keys, {cell.key: cell.slug for cell in cells}, cells_dir, run_dir / "models", keep_models)
    run["timings"] |= training
    run["status"] = "done"

    # 4. Aggregate and report
    report_started = time.perf_counter()
    page = report_step(run, checked, records, run_dir)
    run["timings"] |= {"report": time.perf_counter() - report_started, "flow total": time.perf_counter() - started}
    failed = sum(record["status"] == "failed" for record in records)
    return {"run_dir": str(run_dir), "report": page, "status": run["status"], "timings": run["timings"],
            "cells": len(records), "failed": failed, "cached": cached}


def train_grid(cells: list[Cell], keys: dict[str, str], data: dict, run_dir: Path, cells_dir: Path,
               options: dict) -> tuple[list[dict], dict, int]:
    """Reuse the cells finished before (unless ``fresh``), fan the rest out over a slot pool, log progress.

    Every cell's record is appended to cells.jsonl and kept in ``cells_dir`` the moment it finishes, so a crash,
    Ctrl-C or SIGTERM loses no finished cell and the same command trains only what is missing. ``options``:
    fresh, tensorboard, cell_timeout, retries, backend, per_gpu.
    """
    logger = get_run_logger()
    done: dict[str, dict] = {}
    if not options["fresh"]:
        for cell in cells:
            if (record := load_cell(cells_dir, keys[cell.key])) is not None:
                done[cell.key] = record | cell.to_dict() | {"cached": True}  # names as this grid calls them
    todo = [cell for cell in cells if cell.key not in done]
    started = time.perf_counter()
    trained: list[dict] = []
    slots = (plan_slots(len(todo), cpu_count(), detect_gpus(), options["per_gpu"], gpu_memory_mib(),
                        options["backend"]) if todo else [])
    devices = f": {', '.join(sorted({s.device for s in slots}))}" if slots else ""
    logger.info("%d of %d cells already trained (%s); training %d on %d slot(s)%s", len(done), len(cells),
                cells_dir, len(todo), len(slots), devices)
    # The flow run's progress in Prefect's UI: percent of cells done, and the latest progress line.
    progress = create_progress_artifact(100.0 * len(done) / len(cells), key="ablation-progress",
                                        description=f"{len(done)} of {len(cells)} cells cached")
    with open(run_dir / "cells.jsonl", "a") as finished:
        for record in done.values():
            finished.write(json.dumps(record) + "\n")
        finished.flush()
        if todo:
            with SlotPool(slots, run_dir / "logs") as pool:
                futures = {train_cell_step.submit(cell, data["cache_path"], pool, run_dir / "cells" / cell.slug,
                                                  cells_dir / f"{keys[cell.key]}.keras", options["tensorboard"],
                                                  options["cell_timeout"], options["retries"]): cell
                           for cell in todo}
                for future in as_completed(futures):
                    cell, record = futures[future], future.result() | {"cached": False}
                    save_cell(cells_dir, keys[cell.key], record)
                    finished.write(json.dumps(record) + "\n")
                    finished.flush()
                    done[cell.key] = record
                    trained.append(record)
                    line = progress_line(trained, len(todo), time.perf_counter() - started,
                                         len(cells) - len(todo), len(slots))
                    logger.info(line)
                    update_progress_artifact(progress, 100.0 * len(done) / len(cells), description=line)
    records = [done[cell.key] for cell in cells]  # in grid order
    return records, training_times(trained, len(slots), time.perf_counter() - started), len(cells) - len(todo)


def progress_line(records: list[dict], total: int, elapsed: float, cached: int = 0, slots: int = 1) -> str:
    """One line per finished cell, counting the cells this run trains (``cached`` more were reused):
    "[12/27] depth: 1 block x16 seed 1 ok, best val acc 96.1% (4.2 s) | 2 running | 2 failed | 3 cached |
    48 s elapsed, ~55 s left"."""
    last, done = records[-1], len(records)
    failed = sum(r["status"] == "failed" for r in records)
    running = min(slots, total - done)
    remaining = elapsed / done * (total - done)
    outcome = (f"best val acc {last['best_val_accuracy'] * 100:.1f}%" if last["status"] != "failed"
               else last["error"])
    parts = [f"[{done}/{total}] {last['axis']}: {last['variant']} seed {last['seed']} {last['status']}, {outcome} "
             f"({last['seconds']:.1f} s)"]
    parts += [f"{running} running"] if running else []
    parts += [f"{failed} failed"] if failed else []
    parts += [f"{cached} cached"] if cached else []
    parts.append(f"{elapsed:.0f} s elapsed" + (f", ~{remaining:.0f} s left" if done < total else ""))
    return " | ".join(parts)


if __name__ == "__main__":
    from flows.cli import main

    raise SystemExit(main(["run", *sys.argv[1:]]))
