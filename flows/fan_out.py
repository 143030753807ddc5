"""The grid's training, round by round: each round reuses the finished cells, fans the rest out to the local slot
pool or a Dask cluster, keeps every finished cell at once, and reports progress (log, live display, Prefect's
progress artifact). `flows.ablation` calls it; `tasks.report.rounds` decides what each round trains."""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

from prefect import get_run_logger, tags
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from flows.framework_logs import framework_line
from flows.live_progress import GRID, status
from flows.steps import train_cell_dask_step, train_cell_step
from tasks.report.aggregate import training_times
from tasks.report.rounds import next_round, standing_words
from tasks.training.cell_cache import cell_keys, load_cell, save_cell
from tasks.training.devices import cpu_count, detect_gpus, gpu_memory_mib, plan_slots
from tasks.training.grid import Cell, Variant, seeded
from tasks.training.output import LogFollower
from tasks.training.slots import SlotPool
from tasks.training.train import failed_record


class TrainingStopped(Exception):
    """`Rounds.stop` came before the training processes started: none are started."""


class Rounds:
    """The grid's training, round by round: each round is one fan-out of `train_grid`, its Prefect task runs
    tagged with the round ("round 2", "confirmation"), and the live display says which round it is. The training
    processes (or the Dask cluster) start with the first cell to train and serve every round after it, so a round
    does not pay for starting them again. Keeps the cells, cache keys, timings and count of reused cells.

    `first_round_behind` trains the first round on a thread while the flow's own thread does something else
    (the data-quality gate), and `stop` ends the training from there."""

    def __init__(self, data: dict, run_dir: Path, cells_dir: Path, options: dict):
        self.data, self.run_dir, self.cells_dir, self.options = data, run_dir, cells_dir, options
        self.cells: list[Cell] = []
        self.keys: dict[str, str] = {}
        self.cached = 0
        self._timings: list[dict] = []
        self._stack = ExitStack()
        self._executor: tuple[Submit, int, str] | None = None
        self._cancel: Callable[[], None] | None = None  # kills the local training processes at once
        self._lock = threading.Lock()
        self._stopped = False  # set by `stop`: nothing more starts
        self._finished: list[dict] = []  # every round's records so far, as each cell finished or was reused
        self._listeners: list[Callable[[dict], None]] = []
        self._records_lock = threading.Lock()  # not `_lock`: that one is held while the processes start

    def __enter__(self) -> Rounds:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def executor(self, cells: int) -> tuple[Submit, int, str]:
        """The submit function, the number of cells that train at once, and where: started on first use, planned
        for that round's ``cells`` (the first round is the largest: later ones train only what is still open)."""
        with self._lock:  # so a stop either comes first (nothing starts) or finds the processes to kill
            if self._stopped:
                raise TrainingStopped
            if self._executor is None:
                submit, slots, where, self._cancel = self._stack.enter_context(
                    _executor(cells, self.data, self.run_dir, self.cells_dir, self.keys, self.options))
                self._executor = (submit, slots, where)
            return self._executor

    @contextmanager
    def first_round_behind(self, variants: list[Variant], plan: tuple[int, ...] | None,
                           seeds: int | None) -> Iterator[Future]:
        """`one_factor` on a thread of its own (with this thread's Prefect context) while the body runs; yields
        its future: the records, and when the round ended (``time.perf_counter``). If the body raises (the gate
        failed, Ctrl-C while it waits for the round), the training is stopped and its thread waited for before the
        exception goes on."""
        def first_round() -> tuple[list[dict], float]:
            return self.one_factor(variants, plan, seeds), time.perf_counter()

        thread = ThreadPoolExecutor(1, thread_name_prefix="first-round")
        future = thread.submit(contextvars.copy_context().run, first_round)
        thread.shutdown(wait=False)
        try:
            yield future
        except BaseException:
            self.stop()
            wait([future])
            raise

    def follow(self, listener: Callable[[dict], None], ended: Callable[[], None] = lambda: None) -> None:
        """Call ``listener`` with every record finished so far, then with each one as it finishes (from the
        thread that trains: it must return at once), and ``ended`` when the rounds end, on an error too."""
        self._stack.callback(ended)
        with self._records_lock:
            for record in self._finished:
                listener(record)
            self._listeners.append(listener)

    def _finished_one(self, record: dict) -> None:
        with self._records_lock:
            self._finished.append(record)
            for listener in self._listeners:
                listener(record)

    def stop(self) -> None:
        """Stop training now (from any thread): the cells training are killed and dropped (not kept, not
        counted), and nothing more starts; `train` returns what had finished. The local slot pool only: with a
        Dask cluster the flow does not train before the gate has passed (`flows.ablation`)."""
        with self._lock:
            self._stopped = True
            cancel = self._cancel
        if cancel is not None:
            cancel()

    def one_factor(self, variants: list[Variant], plan: tuple[int, ...] | None, seeds: int | None) -> list[dict]:
        """Every variant for ``seeds`` seeds at once, or with a ``plan`` of looks (--seeds auto) in rounds until
        every comparison is settled: each round judged as the report judges (`tasks.report.rounds`)."""
        if plan is None:
            return self.train(seeded(variants, range(seeds)), "")
        logger, classes, records = get_run_logger(), len(self.data["class_names"]), []
        for number, seeds_at_look in enumerate(plan, start=1):
            cells = next_round(variants, records, plan, classes)
            if not cells or self._stopped:
                break
            logger.info("round %d of %d: up to %d seeds per variant, %d variant(s), %d cells", number, len(plan),
                        seeds_at_look, len({(c.axis, c.variant) for c in cells}), len(cells))
            records += self.train(cells, f"round {number} of {len(plan)}")
            logger.info("after round %d: %s", number, standing_words(records, plan, classes))
        return records

    def train(self, cells: list[Cell], label: str) -> list[dict]:
        if not cells:
            return []
        self.cells += cells
        self.keys |= cell_keys(cells, self.data["fingerprint"], self.options["backend"])
        with tags(label.split(" of ")[0]) if label else nullcontext():
            try:
                records, timings, cached = train_grid(cells, self.keys, self.run_dir, self.cells_dir, self.options,
                                                      self.executor, label, self._finished_one)
            except TrainingStopped:
                return []
        self._timings.append(timings)
        self.cached += cached
        return records

    def timings(self) -> dict[str, float]:
        """The rounds' training times added up (they ran one after the other); slots: the most any round had."""
        total: dict[str, float] = {}
        for timings in self._timings:
            for name, value in timings.items():
                total[name] = max(total.get(name, 0.0), value) if name == "slots" else total.get(name, 0.0) + value
        return total


def first_round_open(variants: list[Variant], plan: tuple[int, ...] | None, seeds: int | None, data: dict,
                     cells_dir: Path, options: dict) -> bool:
    """Whether the grid's first round (as `Rounds.one_factor` starts it) has a cell to train: one not kept from
    an earlier run, or any with ``fresh``."""
    cells = (seeded(variants, range(seeds)) if plan is None
             else next_round(variants, [], plan, len(data["class_names"])))
    keys = cell_keys(cells, data["fingerprint"], options["backend"])
    return len(kept_records(cells, keys, cells_dir, options["fresh"])) < len(cells)


def kept_records(cells: list[Cell], keys: dict[str, str], cells_dir: Path, fresh: bool) -> dict[str, dict]:
    """The records of the ``cells`` finished before (none with ``fresh``), by cell key, named as this grid names
    them and marked cached."""
    if fresh:
        return {}
    return {cell.key: record | cell.to_dict() | {"cached": True} for cell in cells
            if (record := load_cell(cells_dir, keys[cell.key])) is not None}


def train_grid(cells: list[Cell], keys: dict[str, str], run_dir: Path, cells_dir: Path, options: dict,
               executor: Callable[[int], tuple[Submit, int, str]], label: str = "",
               on_record: Callable[[dict], None] = lambda record: None) -> tuple[list[dict], dict, int]:
    """Reuse the cells finished before (unless ``fresh``), fan the rest out, log progress.

    Every cell's record is appended to cells.jsonl and kept in ``cells_dir`` the moment it finishes, so a crash,
    Ctrl-C or SIGTERM loses no finished cell and the same command trains only what is missing. ``options``:
    fresh, tensorboard, cell_timeout, retries, backend, per_gpu, processes, executor ("local" or "dask"),
    dask_address, verbose. ``executor``: gives the submit function, the cells that train at once and where,
    starting the training processes the first time. ``label``: the round, for the log and the live display.
    ``on_record``: called with each record as it is kept, the reused ones first.
    A cell the pool stopped under it (Ctrl-C, `Rounds.stop`) has no result: it is not kept, logged or returned.
    """
    logger = get_run_logger()
    done = kept_records(cells, keys, cells_dir, options["fresh"])
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
            on_record(record)
            GRID.finished(record["status"] == "failed")
            line = progress_line(trained, len(todo), time.perf_counter() - started, len(cells) - len(todo), slots)
            logger.info(line)
            update_progress_artifact(progress, 100.0 * len(done) / len(cells), description=line)

        finished.writelines(json.dumps(record) + "\n" for record in done.values())
        finished.flush()
        for record in done.values():
            on_record(record)
        if not todo:
            logger.info("all %d cells already trained (%s)", len(cells), cells_dir)
        else:
            # With --verbose, the training processes' own output is followed from their log files and shown.
            follow = LogFollower(run_dir / "logs", framework_line) if options["verbose"] else nullcontext()
            with follow:
                submit, slots, where = executor(len(todo))
                logger.info("%s%d of %d cells already trained (%s); training %d on %s", f"{label}: " if label else "",
                            len(done), len(cells), cells_dir, len(todo), where)
                futures = {submit(cell): cell for cell in todo}
                GRID.start(len(todo), len(cells) - len(todo), slots, label)  # the CLI's live display reads it
                try:
                    for future in as_completed(futures):
                        record = _result(future, futures[future]) | {"cached": False}
                        if not record.get("pool_closed"):
                            keep(futures[future], record)
                finally:
                    GRID.stop()
    records = [done[cell.key] for cell in cells if cell.key in done]  # in grid order, none pool_closed
    return records, training_times(trained, slots, time.perf_counter() - started), len(cells) - len(todo)


Submit = Callable[[Cell], object]  # a cell -> its Prefect future


@contextmanager
def _executor(cells: int, data: dict, run_dir: Path, cells_dir: Path, keys: dict[str, str],
              options: dict) -> Iterator[tuple[Submit, int, str, Callable[[], None] | None]]:
    """How cells are submitted: to the local slot pool (default) or as tasks on a Dask cluster, planned for at
    most ``cells`` cells. Yields the submit function, the number of cells that can train at once, and where they
    train (for the log), and what kills the training at once (None for Dask). ``keys`` is read at each submit, so
    later rounds may add to it."""
    slots = plan_slots(cells, cpu_count(), detect_gpus(), options["per_gpu"], gpu_memory_mib(),
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

            yield submit, cluster.workers, cluster.describe(options["dask_address"]), None
        return
    with SlotPool(slots, run_dir / "logs", verbose=options["verbose"]) as pool:
        def submit(cell: Cell):
            return train_cell_step.submit(cell=cell, pool=pool, **paths(cell), **common, retries=options["retries"])

        devices = ", ".join(sorted({slot.device for slot in slots}))
        yield submit, len(slots), f"{len(slots)} slot(s): {devices}", lambda: pool.close(wait=0)


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
