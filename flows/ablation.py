"""The ablation flow: load -> gate -> train the grid -> report. Run it with `ablate run` or
`python -m flows.ablation`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.runtime import deployment, flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.framework_logs import framework_line, framework_logging, training_limit
from flows.live_progress import GRID, status
from flows.parameters import (Axis, Epochs, HeldOutFraction, Limit, PerGpu, Processes, Retries, Seconds, Seeds,
                              Side, ValFraction)
from flows.steps import (
    check_model_step,
    gate_step,
    load_dataset_step,
    report_step,
    train_cell_dask_step,
    train_cell_step,
)
from tasks.errors import GateFailed
from tasks.gate.suite import load_suite
from tasks.paths import cache_dir, reports_dir
from tasks.report.aggregate import nothing_compared, training_times
from tasks.report.run_facts import environment_facts
from tasks.report.runs import new_run_dir, run_record
from tasks.training.cell_cache import cell_keys, export_models, load_cell, save_cell
from tasks.training.devices import DEFAULT_PER_GPU, check_backend, cpu_count, detect_gpus, gpu_memory_mib, plan_slots
from tasks.training.grid import BASELINE, DEFAULT_SEEDS, Cell, canonical_axes, expand_grid
from tasks.training.grid_file import check_no_conflict, grid_cells, load_grid
from tasks.training.output import LogFollower
from tasks.training.slots import SlotPool
from tasks.training.train import check_protocol, failed_record

# A Prefect global concurrency limit of this name, where one exists (`prefect gcl create ablation-training
# --limit 1`), caps how many sweeps train at once across every deployment and worker on that server, so two
# scheduled sweeps do not share (and oversubscribe) the GPUs. Without it, acquiring is a no-op.
TRAINING_LIMIT = "ablation-training"


# Threads only wait on training processes; the slot pool, not this number, caps how many cells train at once.
@flow(name="ablation", task_runner=ThreadPoolTaskRunner(max_workers=64))
def ablation(
    dataset: str = "digits",
    epochs: Epochs | None = None,
    seeds: Seeds | None = None,
    axes: list[Axis] | None = None,
    limit: Limit | None = None,
    gate: Literal["fail", "warn"] = "fail",
    out: Path | None = None,
    image_size: tuple[Side, Side] | None = None,
    test_fraction: HeldOutFraction = 0.2,
    suite: str | None = None,
    store: Path | None = None,
    fresh: bool = False,
    keep_models: bool = False,
    tensorboard: bool = False,
    cell_timeout: Seconds | None = None,
    retries: Retries = 1,
    backend: Literal["tensorflow", "jax", "torch"] = "tensorflow",
    per_gpu: PerGpu = DEFAULT_PER_GPU,
    processes: Processes | None = None,
    executor: Literal["local", "dask"] = "local",
    dask_address: str | None = None,
    aa: bool = False,
    grid: str | None = None,
    model: str | None = None,
    val_fraction: ValFraction | None = None,
    fixed_split: bool = False,
    verbose: bool = False,
) -> dict:
    """Gate a dataset, train one-factor-at-a-time variants of a small CNN over seeds, and write the report.

    ``epochs`` and ``seeds``: None for the defaults (10 and 3). ``grid``: a grid file (TOML or YAML,
    `tasks.training.grid_file`) whose baseline, axes, seeds, epochs and mode replace ``axes``, ``seeds`` and
    ``epochs`` (giving those too is an error). ``model``: the user's builder, "package.module:function"
    (`tasks.training.models`), in place of the built-in CNN. ``verbose``: show the frameworks' own messages
    (TensorFlow in the training processes, Great Expectations, Dask) in the terminal too."""
    started = time.perf_counter()
    framework_logging(verbose)
    axes = canonical_axes(axes)  # "normalisation" -> "normalization": the report uses one spelling
    checks = load_suite(suite)  # a bad suite file or a missing backend fails the run before any work
    check_backend(backend)
    if grid:
        check_no_conflict({"axes": axes, "epochs": epochs, "seeds": seeds})
        spec = load_grid(grid)  # a bad file fails the run before any work, naming the key
        cells, epochs, seeds, axes = grid_cells(spec, aa), spec.baseline.epochs, spec.seeds, list(spec.axes)
    else:
        epochs, seeds = epochs or BASELINE.max_epochs, seeds or DEFAULT_SEEDS
        cells = expand_grid(axes, seeds, epochs, aa=aa)
    protocol = {"val_fraction": val_fraction or cells[0].config.val_fraction, "fixed_split": fixed_split}
    cells = [Cell(cell.axis, cell.variant, replace(cell.config, **protocol, model=model or cell.config.model))
             for cell in cells]
    model = cells[0].config.model  # --model, or the grid file's baseline
    reports = reports_dir(out)

    # 1. Load the dataset once and cache it for the training processes
    data = load_dataset_step(dataset, image_size, test_fraction, limit, reports)
    check_protocol(data["cache_path"], cells[0].config)  # a --val-fraction that leaves nothing: exit 2, now
    warnings = []
    if model:  # before the gate and any training: it must build and answer the data's classes
        preprocessing = check_model_step(model, data, backend, verbose)
        warnings += scaled_twice(preprocessing, cells[0].config.normalization)
    run_dir = new_run_dir(reports, data["name"])
    run = run_record(run_dir, data, {"epochs": epochs, "seeds": seeds, "axes": axes or "default", "limit": limit,
                                     "gate": gate, "image_size": image_size, "test_fraction": test_fraction,
                                     "suite": suite or "default", "fresh": fresh,
                                     "keep_models": keep_models, "tensorboard": tensorboard,
                                     "cell_timeout": cell_timeout, "retries": retries, "backend": backend,
                                     "per_gpu": per_gpu, "processes": processes, "executor": executor,
                                     "dask_address": dask_address, "aa": aa, "grid": grid,
                                     "model": model or "built-in CNN", **protocol,
                                     "own_validation": data["validation_images"]})
    run |= {"flow_run_id": str(flow_run.id), "deployment": deployment.name, "warnings": warnings,
            "environment": environment_facts(backend)}

    # 2. Data-quality gate: stop before any training when it finds critical problems
    gate_started = time.perf_counter()
    checked = gate_step(data, run_dir, checks, reports)
    run["timings"]["gate"] = time.perf_counter() - gate_started
    if checked.status == "fail" and gate == "fail":
        names = ", ".join(c.title for c in checked.failed if c.severity == "critical")
        run |= {"status": "gate failed", "error": f"the data-quality gate failed: {names}"}
        page = report_step(run, checked, None, run_dir)
        raise GateFailed(f"{run['error']} (report: {page})", page)

    # 3. Train every cell of the grid: the local slot pool or a Dask cluster (--executor)
    cells_dir = cache_dir(reports_dir(store) if store else reports) / "cells"
    keys = cell_keys(cells, data["fingerprint"], backend)
    options = {"fresh": fresh, "tensorboard": tensorboard, "cell_timeout": cell_timeout, "retries": retries,
               "backend": backend, "per_gpu": per_gpu, "processes": processes, "executor": executor,
               "dask_address": dask_address,
               "verbose": verbose}
    with training_limit(TRAINING_LIMIT):  # waits while other sweeps train, if the limit exists
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
            "flow_run_id": run["flow_run_id"], "nothing_compared": nothing_compared(records),
            "cells": len(records), "failed": failed, "cached": cached}


def train_grid(cells: list[Cell], keys: dict[str, str], data: dict, run_dir: Path, cells_dir: Path,
               options: dict) -> tuple[list[dict], dict, int]:
    """Reuse the cells finished before (unless ``fresh``), fan the rest out, log progress.

    Every cell's record is appended to cells.jsonl and kept in ``cells_dir`` the moment it finishes, so a crash,
    Ctrl-C or SIGTERM loses no finished cell and the same command trains only what is missing. ``options``:
    fresh, tensorboard, cell_timeout, retries, backend, per_gpu, processes, executor ("local" or "dask"),
    dask_address,
    verbose.
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
    # The flow run's progress in Prefect's UI: percent of cells done, and the latest progress line.
    progress = create_progress_artifact(100.0 * len(done) / len(cells), key="ablation-progress",
                                        description=f"{len(done)} of {len(cells)} cells cached")
    slots = 0
    with open(run_dir / "cells.jsonl", "a") as finished:
        def keep(cell: Cell, record: dict) -> None:
            """Write a trained cell down at once; log and publish the progress."""
            save_cell(cells_dir, keys[cell.key], record)
            finished.write(json.dumps(record) + "\n")
            finished.flush()
            done[cell.key] = record
            trained.append(record)
            GRID.finished(record["status"] == "failed")
            line = progress_line(trained, len(todo), time.perf_counter() - started, len(cells) - len(todo), slots)
            logger.info(line)
            update_progress_artifact(progress, 100.0 * len(done) / len(cells), description=line)

        finished.writelines(json.dumps(record) + "\n" for record in done.values())
        finished.flush()
        if not todo:
            logger.info("all %d cells already trained (%s)", len(cells), cells_dir)
        else:
            # With --verbose, the training processes' own output is followed from their log files and shown.
            follow = LogFollower(run_dir / "logs", framework_line) if options["verbose"] else nullcontext()
            with follow, _executor(todo, data, run_dir, cells_dir, keys, options) as (submit, slots, where):
                logger.info("%d of %d cells already trained (%s); training %d on %s", len(done), len(cells),
                            cells_dir, len(todo), where)
                futures = {submit(cell): cell for cell in todo}
                GRID.start(len(todo), len(cells) - len(todo), slots)  # the CLI's live display reads it
                try:
                    for future in as_completed(futures):
                        keep(futures[future], _result(future, futures[future]) | {"cached": False})
                finally:
                    GRID.stop()
    records = [done[cell.key] for cell in cells]  # in grid order
    return records, training_times(trained, slots, time.perf_counter() - started), len(cells) - len(todo)


Submit = Callable[[Cell], object]  # a cell -> its Prefect future


@contextmanager
def _executor(todo: list[Cell], data: dict, run_dir: Path, cells_dir: Path, keys: dict[str, str],
              options: dict) -> Iterator[tuple[Submit, int, str]]:
    """How cells are submitted: to the local slot pool (default) or as tasks on a Dask cluster.

    Yields the submit function, the number of cells that can train at once, and where they train (for the log).
    """
    slots = plan_slots(len(todo), cpu_count(), detect_gpus(), options["per_gpu"], gpu_memory_mib(),
                       options["backend"], options["processes"])
    common = {"dataset_path": data["cache_path"], "tensorboard": options["tensorboard"],
              "timeout": options["cell_timeout"]}

    def paths(cell: Cell) -> dict:
        return {"out_dir": run_dir / "cells" / cell.slug, "model_path": cells_dir / f"{keys[cell.key]}.keras"}

    if options["executor"] == "dask":
        import dask

        from flows.dask_executor import dask_executor

        with dask_executor(options["dask_address"], slots, options["retries"]) as cluster:
            def submit(cell: Cell):
                with dask.annotate(**cluster.annotations):  # {"resources": {"GPU": 1}} where workers have GPUs
                    return cluster.runner.submit(train_cell_dask_step, parameters={
                        "cell": cell, **paths(cell), **common, "backend": options["backend"],
                        "log_dir": None if options["dask_address"] else run_dir / "logs",
                        "verbose": options["verbose"]})

            yield submit, cluster.workers, cluster.describe(options["dask_address"])
        return
    with SlotPool(slots, run_dir / "logs", verbose=options["verbose"]) as pool:
        def submit(cell: Cell):
            return train_cell_step.submit(cell=cell, pool=pool, **paths(cell), **common, retries=options["retries"])

        devices = ", ".join(sorted({slot.device for slot in slots}))
        yield submit, len(slots), f"{len(slots)} slot(s): {devices}"


def _result(future, cell: Cell) -> dict:
    """The cell's record; a cell whose Dask worker died on every try becomes a failed record too."""
    try:
        return future.result()
    except Exception as exc:
        from distributed import KilledWorker  # only Dask futures raise here: the local step returns failures

        if not isinstance(exc, KilledWorker):
            raise
        from flows.dask_executor import killed_message, mark_crashed

        message = killed_message(exc)
        mark_crashed(future.task_run_id, message)
        return failed_record(cell.to_dict(), message) | {"worker": ""}


def scaled_twice(preprocessing: str | None, normalization: str) -> list[str]:
    """The first screen's warning when the user's model scales its own input and the baseline scales it too."""
    if not preprocessing or normalization == "raw":
        return []
    return [f"Your model prepares its own input ({preprocessing}), and the baseline also normalises the pixels "
            f"({normalization}): they are scaled twice. Compare on the normalization axis, where 'raw 0-255' "
            "gives the model what it expects, or set normalization = \"raw\" in a grid file's baseline."]


def progress_line(records: list[dict], total: int, elapsed: float, cached: int = 0, slots: int = 1) -> str:
    """One line per finished cell, counting the cells this run trains (``cached`` more were reused):
    "[12/27] depth: 1 block x16 seed 1 ok, test acc 96.1% (4.2 s) | 2 running | 2 failed | 3 cached |
    48 s elapsed, ~55 s left"."""
    last, done = records[-1], len(records)
    failed = sum(r["status"] == "failed" for r in records)
    outcome = (f"test acc {last['test_accuracy'] * 100:.1f}%" if last["status"] != "failed"
               else last["error"])
    return (f"[{done}/{total}] {last['axis']}: {last['variant']} seed {last['seed']} {last['status']}, {outcome} "
            f"({last['seconds']:.1f} s) | " + status(done, total, failed, cached, min(slots, total - done), elapsed))


if __name__ == "__main__":
    from flows.cli import main

    raise SystemExit(main(["run", *sys.argv[1:]]))
