"""The ablation flow: load -> gate (while the first cells train) -> train the grid -> report. Run it with
`ablate run` or `python -m flows.ablation`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import deployment, flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.fan_out import Rounds, first_round_open
from flows.framework_logs import framework_logging, training_limit
from flows.parameters import (Axis, Epochs, HeldOutFraction, Limit, MaxSeeds, PerGpu, Processes, Retries, Seconds,
                              Seeds, Side, ValFraction)
from flows.steps import check_model_step, gate_entry, gate_step, load_dataset_step, report_step
from tasks.data.store import load_cache
from tasks.errors import GateFailed
from tasks.files import write_atomic
from tasks.gate.expectations import GateResult, import_ahead
from tasks.gate.result_cache import is_kept
from tasks.gate.suite import load_suite
from tasks.paths import cache_dir, reports_dir
from tasks.report.aggregate import nothing_compared
from tasks.report.charts_ahead import ChartsAhead
from tasks.report.rounds import confirmation_round
from tasks.report.run_facts import environment_facts
from tasks.report.runs import new_run_dir, run_record
from tasks.training.cell_cache import export_models
from tasks.training.devices import DEFAULT_PER_GPU, check_backend
from tasks.training.grid import (DEFAULT_AXES, DEFAULT_MAX_SEEDS, DEFAULT_SEEDS, canonical_axes, grid_variants, looks,
                                 seeded)
from tasks.training.grid_file import GridFileError, baseline_config, builtin_axes, check_no_conflict, load_grid
from tasks.training.grid_file import grid_variants as grid_file_variants
from tasks.training.processes import release_unused, warm_up_for
from tasks.training.train import check_protocol

# A Prefect global concurrency limit of this name, where one exists (`prefect gcl create ablation-training
# --limit 1`), caps how many sweeps train at once across every deployment and worker on that server, so two
# scheduled sweeps do not share (and oversubscribe) the GPUs. Without it, acquiring is a no-op.
TRAINING_LIMIT = "ablation-training"


# Threads only wait on training processes; the slot pool, not this number, caps how many cells train at once.
@flow(name="ablation", task_runner=ThreadPoolTaskRunner(max_workers=64))
def ablation(
    dataset: str = "digits",
    epochs: Epochs | None = None,
    seeds: Seeds | Literal["auto"] | None = None,
    max_seeds: MaxSeeds | None = None,
    settings: dict[str, Any] | None = None,
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
    next_grid: Path | None = None,
    verbose: bool = False,
) -> dict:
    """Gate a dataset, train one-factor-at-a-time variants of a small CNN over seeds, and write the report.

    ``epochs`` and ``seeds``: None for the defaults (10 and 3). ``seeds="auto"``: seeds in rounds until each
    comparison is settled, at most ``max_seeds`` (default 10) per variant (`tasks.report.sequential`).
    ``settings``: training settings in place of the built-in baseline's, named as in a grid file's [baseline]
    (``{"learning_rate": 3e-3}``). ``grid``: a grid file (TOML or YAML, `tasks.training.grid_file`) whose
    baseline, axes, seeds, epochs and mode replace ``axes``, ``seeds``, ``max_seeds``, ``settings`` and
    ``epochs`` (giving those too is an error). ``model``: the user's builder, "package.module:function"
    (`tasks.training.models`), in place of the built-in CNN. ``next_grid``: also write the follow-up grid file
    there (its baseline the recommended configuration; every run writes it as next.toml in its folder).
    ``verbose``: show the frameworks' own messages (TensorFlow in the training processes, Great Expectations,
    Dask) in the terminal too."""
    started = time.perf_counter()
    framework_logging(verbose)
    axes = canonical_axes(axes)  # "normalisation" -> "normalization": the report uses one spelling
    checks = load_suite(suite)  # a bad suite file or a missing backend fails the run before any work
    check_backend(backend)
    if grid:
        check_no_conflict({"axes": axes, "epochs": epochs, "seeds": seeds, "max_seeds": max_seeds,
                           "settings": settings})
        spec = load_grid(grid)  # a bad file fails the run before any work, naming the key
        variants, epochs, seeds = grid_file_variants(spec, aa), spec.baseline.epochs, spec.seeds
        max_seeds = spec.max_seeds
        axes, follow = list(spec.axes), {"axes": spec.axes, "mode": spec.mode, "factorial": spec.factorial}
    else:
        if model and "model" in (settings or {}):
            raise GridFileError("the model is set twice: give --model or --set model=..., not both")
        base = baseline_config(settings, epochs)
        epochs, seeds = base.max_epochs, seeds or DEFAULT_SEEDS
        variants = grid_variants(axes, epochs, base, aa=aa)
        follow = {"axes": builtin_axes(axes or list(DEFAULT_AXES)), "mode": "one-factor", "factorial": None}
    if max_seeds is not None and seeds != "auto":
        raise GridFileError("--max-seeds needs --seeds auto")
    max_seeds = (max_seeds or DEFAULT_MAX_SEEDS) if seeds == "auto" else None
    protocol = {"val_fraction": val_fraction or variants[0][2].val_fraction, "fixed_split": fixed_split}
    variants = [(axis, name, replace(config, **protocol, model=model or config.model))
                for axis, name, config in variants]
    model = variants[0][2].model  # --model, or the grid file's baseline
    reports = reports_dir(out)

    # 1. Load the dataset once and cache it for the training processes
    data = load_dataset_step(dataset, image_size, test_fraction, limit, reports)
    check_protocol(data["cache_path"], variants[0][2])  # a --val-fraction that leaves nothing: exit 2, now
    if not is_kept(gate_entry(data, checks, reports)):
        import_ahead()  # the gate will validate: Great Expectations' import runs while the model is checked
    warnings = []
    if model:  # before the gate and any training: it must build and answer the data's classes
        preprocessing = check_model_step(model, data, backend, verbose)
        warnings += scaled_twice(preprocessing, variants[0][2].normalization)
    run_dir = new_run_dir(reports, data["name"])
    run = run_record(run_dir, data, {"epochs": epochs, "seeds": seeds, "max_seeds": max_seeds,
                                     "settings": settings or {}, "axes": axes or "default", "limit": limit,
                                     "gate": gate, "image_size": image_size, "test_fraction": test_fraction,
                                     "suite": suite or "default", "fresh": fresh,
                                     "keep_models": keep_models, "tensorboard": tensorboard,
                                     "cell_timeout": cell_timeout, "retries": retries, "backend": backend,
                                     "per_gpu": per_gpu, "processes": processes, "executor": executor,
                                     "dask_address": dask_address, "aa": aa, "grid": grid,
                                     "model": model or "built-in CNN", **protocol,
                                     "own_validation": data["validation_images"]})
    run |= {"flow_run_id": str(flow_run.id), "deployment": deployment.name, "warnings": warnings,
            "environment": environment_facts(backend), "follow_up": follow | {"seeds": seeds}}

    cells_dir = cache_dir(reports_dir(store) if store else reports) / "cells"
    options = {"fresh": fresh, "tensorboard": tensorboard, "cell_timeout": cell_timeout, "retries": retries,
               "backend": backend, "per_gpu": per_gpu, "processes": processes, "executor": executor,
               "dask_address": dask_address, "verbose": verbose}
    plan = looks(max_seeds) if seeds == "auto" else None
    fixed_seeds = seeds if plan is None else None
    trains_at_once = executor == "local" and first_round_open(variants, plan, fixed_seeds, data, cells_dir, options)
    if trains_at_once:
        warm_up_for(backend, verbose)  # the training processes' framework import runs while the gate does
    else:
        release_unused()  # the command started one (`flows.cli`), and nothing is to train now

    # 2. Data-quality gate, and 3. training every cell of the grid (the local slot pool or a Dask cluster). With
    #    the local slots and no training limit to wait for, the first round trains on a thread while this one
    #    runs the gate, so the gate no longer delays the training (it took 4-5 s before the first cell of an 80 s
    #    grid on 2 cores). A gate that fails stops that training (the cells still training are killed and not
    #    recorded) and the run ends with the gate's report, as when it came first. Otherwise (a Dask cluster's
    #    workers, a limit shared with other sweeps, a first round with every cell kept) the gate comes first.
    limit = training_limit(TRAINING_LIMIT)  # waits while other sweeps train, if the limit exists
    alongside = trains_at_once and limit is None
    if not alongside:
        checked = _gate(data, run_dir, checks, reports, run, gate)
    first_cells = seeded(variants, range(fixed_seeds)) if plan is None else None  # with seeds in rounds: unknown
    with limit or nullcontext(), Rounds(data, run_dir, cells_dir, options) as rounds:
        if alongside:
            with rounds.first_round_behind(variants, plan, fixed_seeds) as first_round:
                checked = _gate(data, run_dir, checks, reports, run, gate, rounds.stop)
                gate_ended = time.perf_counter()
                charts_ahead = _charts_ahead(rounds, data, reports, first_cells, run)
                records, ended = first_round.result()
            run["timings"]["gate (waited for)"] = max(0.0, gate_ended - ended)  # the round ended first
        else:
            charts_ahead = _charts_ahead(rounds, data, reports, first_cells, run)
            records = rounds.one_factor(variants, plan, fixed_seeds)
        records += rounds.train(confirmation_round(records, plan, fixed_seeds, len(data["class_names"])),
                                "confirmation")
    export_models(records, rounds.keys, {cell.key: cell.slug for cell in rounds.cells}, cells_dir,
                  run_dir / "models", keep_models)
    run["timings"] |= rounds.timings()
    run["status"] = "done"

    # 4. Aggregate and report
    report_started = time.perf_counter()
    charts_ahead.join()
    page = report_step(run, checked, records, run_dir)
    if next_grid and (run_dir / "next.toml").exists():  # not when nothing could be compared
        write_atomic(Path(next_grid), (run_dir / "next.toml").read_text())
        get_run_logger().info("follow-up grid written: %s (ablate run --grid %s)", next_grid, next_grid)
    else:
        next_grid = None
    run["timings"] |= {"report": time.perf_counter() - report_started, "flow total": time.perf_counter() - started}
    failed = sum(record["status"] == "failed" for record in records)
    return {"run_dir": str(run_dir), "report": page, "status": run["status"], "timings": run["timings"],
            "flow_run_id": run["flow_run_id"], "nothing_compared": nothing_compared(records),
            "cells": len(records), "failed": failed, "cached": rounds.cached,
            "next": str(next_grid) if next_grid else None}


def _gate(data: dict, run_dir: Path, suite: dict, reports: Path, run: dict, gate: str,
          stop_training: Callable[[], None] = lambda: None) -> GateResult:
    """Run the data-quality gate (timed). If it fails with ``gate="fail"``: stop any training, write the gate's
    report and raise GateFailed."""
    started = time.perf_counter()
    checked = gate_step(data, run_dir, suite, reports)
    run["timings"]["gate"] = time.perf_counter() - started
    if checked.status == "fail" and gate == "fail":
        stop_training()
        names = ", ".join(c.title for c in checked.failed if c.severity == "critical")
        run |= {"status": "gate failed", "error": f"the data-quality gate failed: {names}"}
        page = report_step(run, checked, None, run_dir)
        raise GateFailed(f"{run['error']} (report: {page})", page)
    return checked


def _charts_ahead(rounds: Rounds, data: dict, reports: Path, first_cells: list | None, run: dict) -> ChartsAhead:
    """The report's charts, drawn while the cells train from the records as they finish. Started once the gate
    has passed: a failed gate's report draws its own charts, and pyplot takes one thread at a time."""
    ahead = ChartsAhead(load_cache(data["cache_path"]), cache_dir(reports) / "charts", first_cells,
                        run.get("class_count", 0))
    rounds.follow(ahead.finished, ended=ahead.close)  # closed also when training fails or is interrupted
    return ahead


def scaled_twice(preprocessing: str | None, normalization: str) -> list[str]:
    """The first screen's warning when the user's model scales its own input and the baseline scales it too."""
    if not preprocessing or normalization == "raw":
        return []
    return [f"Your model prepares its own input ({preprocessing}), and the baseline also normalises the pixels "
            f"({normalization}): they are scaled twice. Compare on the normalization axis, where 'raw 0-255' "
            "gives the model what it expects, or set normalization = \"raw\" in a grid file's baseline."]


if __name__ == "__main__":
    from flows.cli import entry

    entry(["run", *sys.argv[1:]])
