"""The Prefect tasks: thin wrappers that load inputs, call one pure function from `tasks/`, return a small record.

They live here rather than at the end of each `tasks/` module so that the pure modules stay free of Prefect:
training processes import them, and Prefect's import would add seconds to each process's start.
Only paths, fingerprints, configs and metrics cross between tasks; arrays are loaded where they are used.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from dataclasses import replace
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.framework_logs import framework_line

from tasks.data.datasets import load_dataset
from tasks.data.resolution import resolution_fact
from tasks.data.store import load_cache, save_cache
from tasks.files import write_atomic
from tasks.gate.dedupe import dedupe_csv
from tasks.gate.expectations import GateResult, run_gate
from tasks.gate.result_cache import cached_gate, gate_key, keep_gate
from tasks.gate.stats_cache import cached_pixel_stats
from tasks.paths import cache_dir
from tasks.report.aggregate import history_table, mean_curves, nothing_compared, results_table, summarise, verdict
from tasks.report.comparison import predictions_of
from tasks.report.diagnose import broken_variants, diagnose_all
from tasks.report.markdown import gate_markdown, verdict_markdown
from tasks.report.page import render_report
from tasks.report.plots import kept_in
from tasks.report.recommend import recommend
from tasks.report.runs import run_summary, write_runs_index
from tasks.training.grid import BASELINE_AXIS, Cell, looks
from tasks.training.grid_file import follow_up
from tasks.training.slots import CellTimedOut, PoolClosed, SlotPool, WorkerCrashed
from tasks.training.train import failed_record


@task(name="load dataset", cache_policy=NO_CACHE)
def load_dataset_step(spec: str, image_size: tuple[int, int] | None, test_fraction: float,
                      limit: int | None, reports_dir: Path) -> dict:
    """Decode the dataset into the shared cache (by fingerprint) for the training processes, return its facts."""
    from flows.live_progress import LOADING  # here: imported at the top, the Dask executor could not pickle the
    # train-cell task ("cannot pickle _thread.lock", the display's lock), measured in tests/test_dask.py

    started, logger = time.perf_counter(), get_run_logger()

    def progress(stage: str, done: int, total: int) -> None:
        LOADING.update(stage, done, total)  # a terminal shows it live; a log (CI) gets a line per stage
        if done == 0:
            logger.info("%s: %d files", stage, total)

    try:
        data = load_dataset(spec, image_size, test_fraction, limit, cache=cache_dir(reports_dir), progress=progress)
    finally:
        LOADING.stop()
    path = save_cache(data, cache_dir(reports_dir) / "datasets")
    fingerprint = path.name  # the cache folder is named by it
    shape = "x".join(map(str, data.x_train.shape[1:]))
    resolution = resolution_fact(data, image_size)
    logger.info("loaded %s in %.1f s: %d training and %d test images, %d classes; %s (fingerprint %s)", data.name,
                time.perf_counter() - started, len(data.y_train), len(data.y_test), len(data.class_names),
                resolution, fingerprint)
    return {"name": data.name, "source": spec, "fingerprint": fingerprint, "cache_path": str(path),
            "train_images": len(data.y_train), "test_images": len(data.y_test),
            "validation_images": len(data.val_train),  # the dataset's own val/ split, inside train_images
            "image_shape": shape, "resolution": resolution, "dtype": str(data.x_train.dtype),
            "class_names": data.class_names, "files_not_read": len(data.skipped),
            "seconds": time.perf_counter() - started}


@task(name="check the model", cache_policy=NO_CACHE)
def check_model_step(spec: str, data: dict, backend: str, verbose: bool = False) -> str | None:
    """Build the user's model once for the data's shape and classes, in a process of its own (this one never
    imports Keras); a UserModelError fails the run at once. With ``verbose``, that process's output is shown.
    Returns how the model prepares its own input, if it does (its Rescaling or Normalization layers)."""
    from tasks.training.model_check import check_model

    shape = tuple(int(side) for side in data["image_shape"].split("x"))
    preprocessing = check_model(spec, shape, len(data["class_names"]), backend,
                                framework_line if verbose else None)
    get_run_logger().info("model %s builds for %s images and %d classes%s", spec, data["image_shape"],
                          len(data["class_names"]), f"; it prepares its own input: {preprocessing}"
                          if preprocessing else "")
    return preprocessing


@task(name="data-quality gate", cache_policy=NO_CACHE)
def gate_step(data: dict, run_dir: Path, suite: dict, reports_dir: Path) -> GateResult:
    """Profile every image, validate with Great Expectations, write gate.json, pixel_stats.csv and Data Docs."""
    logger = get_run_logger()
    stats, csv = cached_pixel_stats(data, cache_dir(reports_dir) / "stats")
    shutil.copyfile(csv, run_dir / "pixel_stats.csv")
    entry = gate_entry(data, suite, reports_dir)
    result = cached_gate(entry, run_dir / "data_docs", suite)
    if result is None:
        result = run_gate(stats, data["class_names"], suite, run_dir / "data_docs")
        keep_gate(entry, result, run_dir / "data_docs")
    else:
        logger.info("data-quality gate: this dataset and suite were validated before; their result is reused "
                    "(%s)", entry.name)
    write_atomic(run_dir / "gate.json", result.to_json())
    for check in result.failed:
        log = logger.error if check.severity == "critical" else logger.warning
        log("gate %s: %s: %s%s", check.severity, check.title, check.observed,
            f" (e.g. {', '.join(check.offending[:3])})" if check.offending else "")
    logger.info("data-quality gate: %s (%d images, %d checks, suite %s v%s)", result.status, result.images,
                len(result.checks), result.suite["name"], result.suite["version"])
    _publish_gate(result)
    return result


@task(name="dedupe report", cache_policy=NO_CACHE)
def dedupe_step(result: GateResult, path: Path) -> Path:
    """Write the test images that have a copy in the training split (`tasks.gate.dedupe`) to ``path``."""
    written = write_atomic(path, dedupe_csv(result.leaked))
    get_run_logger().info("dedupe report: %s (%d test images with a copy in the training split)", written,
                          len(result.leaked))
    return written


def gate_entry(data: dict, suite: dict, reports_dir: Path) -> Path:
    """Where the gate's result for this dataset and suite is kept (`tasks.gate.result_cache`)."""
    return cache_dir(reports_dir) / "gate" / gate_key(data["fingerprint"], suite, data["class_names"])


def _publish_gate(result: GateResult) -> None:
    """The gate's checks as a Prefect table artifact (problems first), and a link to its Data Docs."""
    rows = [{"check": c.title, "severity": c.severity, "result": "passed" if c.success else "failed",
             "observed": c.observed, "examples": ", ".join(c.offending[:3])}
            for c in sorted(result.checks, key=lambda c: (c.success, c.severity != "critical"))]
    create_table_artifact(key="data-quality-gate", table=rows,
                          description=f"data-quality gate: {result.status} over {result.images} images")
    create_markdown_artifact(key="data-quality-gate-summary", markdown=gate_markdown(result),
                             description=f"data-quality gate: {result.status}")
    if result.data_docs:
        create_link_artifact(key="data-quality-gate-docs", link=Path(result.data_docs).resolve().as_uri(),
                             link_text="Great Expectations Data Docs")


@task(name="train cell", task_run_name="train {cell.axis}: {cell.variant} seed {cell.config.seed}",
      cache_policy=NO_CACHE)
def train_cell_step(cell: Cell, dataset_path: str, pool: SlotPool, out_dir: Path, model_path: Path,
                    tensorboard: bool = False, timeout: float | None = None, retries: int = 1) -> dict:
    """Train one cell in the pool's training processes; a crash becomes a "failed" record, not an exception.

    A crashed process (killed, out of memory) is retried up to ``retries`` times on a fresh process, and a
    killed one (SIGKILL: the out-of-memory killer) with half as many processes training at once, for the rest of
    the run; a time-out or a Python error is not retried (it would only happen again).
    """
    payload = {"cell": cell.to_dict(), "dataset_path": dataset_path, "out_dir": str(out_dir),
               "model_path": str(model_path), "tensorboard": tensorboard}
    for attempt in range(retries + 1):
        try:
            record, slot = pool.run(payload, timeout)
            record["worker"] = f"slot-{slot.index}"
            break
        except PoolClosed as exc:  # interrupted or stopped: not this cell's fault, and no result (not kept)
            return failed_record(cell.to_dict(), str(exc)) | {"worker": "", "pool_closed": True}
        except WorkerCrashed as exc:
            record = failed_record(cell.to_dict(), str(exc), exc.log_tail) | {"worker": ""}
            if isinstance(exc, CellTimedOut) or attempt == retries:
                break
            fewer = ""
            if exc.killed and pool.size > 1:  # out of memory, most likely: retry with fewer processes at once
                before = pool.size
                fewer = f" with {pool.shrink()} training process(es) at once instead of {before}"
            get_run_logger().warning("%s: %s; retrying (%d of %d)%s", cell.key, exc, attempt + 1, retries, fewer)
    _log_failure(cell, record)
    return record


@task(name="train cell", task_run_name="train {cell.axis}: {cell.variant} seed {cell.config.seed}",
      cache_policy=NO_CACHE)
def train_cell_dask_step(cell: Cell, dataset_path: str, out_dir: Path, model_path: Path, tensorboard: bool = False,
                         timeout: float | None = None, backend: str = "tensorflow",
                         log_dir: Path | None = None, verbose: bool = False) -> dict:
    """Train one cell in this Dask worker's own process (``--executor dask``); see `tasks.training.dask_worker`.

    Every path must be on storage the workers share with the flow. Crashes are Dask's to retry (the scheduler's
    allowed-failures); a Python error or a time-out becomes a "failed" record, as with the slot pool. With
    ``log_dir`` (a cluster started for this run) the worker's output goes to a log file there (which the run
    shows with ``verbose``).
    """
    from tasks.training.dask_worker import train_here, worker_name

    payload = {"cell": cell.to_dict(), "dataset_path": dataset_path, "out_dir": str(out_dir),
               "model_path": str(model_path), "tensorboard": tensorboard}
    if not Path(dataset_path).exists():
        record = failed_record(cell.to_dict(), f"the dataset cache {dataset_path} is not visible on this worker; "
                                               "--out or --store must be on storage every worker shares")
        record["worker"] = worker_name()
    else:
        record = train_here(payload, backend, timeout, str(log_dir) if log_dir else None, verbose)
    _log_failure(cell, record)
    return record


def run_plan(run: dict) -> tuple[int, ...] | None:
    """The looks of a run with --seeds auto (None with a fixed number of seeds)."""
    parameters = run.get("parameters") or {}
    return looks(parameters["max_seeds"]) if parameters.get("seeds") == "auto" else None


def next_grid_text(run: dict, advice) -> str:
    """next.toml: the follow-up grid file, whose baseline is the recommended configuration."""
    follow = run["follow_up"]
    changes = ", ".join(advice.changes) or "no change: the baseline stays"
    header = (f"The follow-up grid of run {run['run_id']} ({run['dataset']}): its baseline is that run's recommended "
              f"configuration ({changes}).\nRun it with: ablate run --dataset "
              f"{shlex.quote(str(run['data']['source']))} --grid <this file>")
    return follow_up(advice.config, follow["axes"], follow["seeds"], (run.get("parameters") or {}).get("max_seeds"),
                     follow["mode"], follow["factorial"], header, advice.baseline)


def _log_failure(cell: Cell, record: dict) -> None:
    if record["status"] == "failed":
        get_run_logger().error("%s failed: %s %s", cell.key, record["error"], record["error_detail"])


@task(name="report", cache_policy=NO_CACHE)
def report_step(run: dict, gate: GateResult | None, records: list[dict] | None, run_dir: Path) -> str:
    """Aggregate the records, write results.csv and index.html, publish Prefect artifacts."""
    started = time.perf_counter()
    summary = results = curves = outcome = diagnoses = predictions = None
    if records:
        results = results_table(records)
        results.to_csv(run_dir / "results.csv", index=False)
        history_table(records).to_csv(run_dir / "history.csv", index=False)
        plan = run_plan(run)
        summary = summarise(results, plan, broken_variants(records, run.get("class_count", 0)))
        outcome = verdict(summary, plan)
        if why := nothing_compared(records):  # the baseline (or everything) failed: say why, first
            outcome = replace(outcome, headline=why)
        elif (summary["axis"] == BASELINE_AXIS).any():
            advice = recommend(summary, results)
            outcome = replace(outcome, recommendation=advice)
            if "follow_up" in run:  # the ablation flow's: the axes and seeds to search around it next
                write_atomic(run_dir / "next.toml", next_grid_text(run, advice))
        curves = mean_curves(records)
        diagnoses = diagnose_all(records, run.get("class_count", 0))
        predictions = predictions_of(records)
    run = run | {"data_docs_link": "data_docs/index.html" if gate and gate.data_docs else None}
    data = load_cache(run["cache_path"]) if gate is not None else None  # to draw the gate's offending images
    with kept_in(cache_dir(run_dir.parent) / "charts"):  # the same results draw the same charts: kept, not redrawn
        page = write_atomic(run_dir / "index.html", render_report(run, gate, summary, outcome, curves, results, data,
                                                                      diagnoses, predictions))
        run_record = run_summary(run, gate.status if gate else None, summary, outcome) | {"report": str(page)}
        write_atomic(run_dir / "summary.json", json.dumps(run_record))
        write_runs_index(run_dir.parent)
    if summary is not None:
        columns = ["axis", "variant", "scored", "mean_test", "std_test", "delta", "ci_low", "ci_high", "p_adjusted",
                   "effect"]
        create_table_artifact(key="ablation-results", table=summary[columns].round(4).to_dict("records"),
                              description=outcome.headline)
        create_markdown_artifact(key="ablation-verdict", markdown=verdict_markdown(
            outcome, gate.status if gate else None, str(page)), description=outcome.headline)
    create_link_artifact(key="ablation-report", link=page.resolve().as_uri(), link_text="ablation report",
                         description=run_record["headline"])
    get_run_logger().info("report written in %.1f s: %s", time.perf_counter() - started, page)
    return str(page)
