"""The `ablate` command line: `ablate run` (gate, train, report), `ablate grid` (list a grid file's cells),
`ablate validate` (the gate alone) and `ablate serve` (the deployments). Its options are in `flows.cli_args`.

Prefect, Great Expectations and TensorFlow are imported only after the arguments are parsed and the dataset
path is checked, so `--help` and bad input answer at once.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from flows.cli_args import build_parser
from tasks.errors import EXIT_BAD_INPUT, EXIT_NOTHING_COMPARED, AblationError
from tasks.paths import default_reports_dir

# 128 + the signal's number, as shells report it: Ctrl-C (SIGINT) 130, a closed terminal (SIGHUP) 129, `kill` or
# a scheduler's timeout (SIGTERM) 143. All three stop the run the same way.
STOP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    _signals.clear()
    if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
        for stop in STOP_SIGNALS:  # stop as cleanly on each as on Ctrl-C (the default would skip the clean-up)
            signal.signal(stop, _interrupt)
    if args.command == "serve":
        return _serve()
    if args.command == "server":
        return _server(args)
    try:
        if args.command == "grid":
            return _print_grid(args)
        from tasks.data.datasets import resolve_source
        from tasks.gate.suite import load_suite

        # Fail fast, before Prefect starts, on a missing dataset, a bad suite or an unusable --out.
        resolve_source(args.dataset)
        load_suite(args.suite)
        _check_out(args.out)
        if args.command == "validate" and args.dedupe_report:
            _check_file_target(args.dedupe_report, "--dedupe-report")
        if args.command == "run":
            from tasks.training.devices import check_backend

            check_backend(args.backend)
            _check_executor(args)
            _check_grid(args)
            _check_next(args.next_grid)
            if args.executor == "local":
                from tasks.training.processes import warm_up_for

                # The training processes' framework import (2.5-3 s) starts now, beside Prefect's start-up, not
                # after the data has loaded: with the gate's result kept, it was what the first cell waited for.
                # A run that finds nothing to train stops it at once (`release_unused`).
                warm_up_for(args.backend, args.verbose)
        with _one_line_errors():
            summary = _run(args)
    except AblationError as exc:
        print(f"ablate: {'error: ' if exc.exit_code == EXIT_BAD_INPUT else ''}{exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # an unwritable --out, a full disk: the user's to fix, so one line
        print(f"ablate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:  # the dataset at this --image-size does not fit in memory
        print("ablate: error: out of memory loading the dataset; use a smaller --image-size or --limit",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        _signals.append(exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
    if _signals:
        kept = "; training processes stopped, finished cells kept" if args.command == "run" else ""
        print(f"ablate: interrupted{kept}", file=sys.stderr)
        return 128 + max(_signals, key=STOP_SIGNALS.index)  # the most final: SIGTERM, else SIGHUP, else SIGINT
    if summary.get("failed") and not summary.get("nothing_compared"):
        print(f"ablate: warning: {summary['failed']} of {summary['cells']} training runs failed; the report "
              "lists their reasons", file=sys.stderr)
    if summary.get("cached"):
        print(f"reused {summary['cached']} of {summary['cells']} training runs finished earlier (--fresh trains "
              "them again)")
    print(f"\nreport: {summary['report']}")
    if summary.get("dedupe_report"):
        print(f"dedupe report: {summary['dedupe_report']} ({summary['leaked']} test images with a copy in the "
              "training split)")
    if summary.get("next"):
        print(f"follow-up grid: {summary['next']} (ablate run --grid {summary['next']})")
    print(_time_split(summary["timings"], time.perf_counter() - started))
    if summary.get("nothing_compared"):
        print(f"ablate: {summary['nothing_compared']}", file=sys.stderr)
        return EXIT_NOTHING_COMPARED
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would be, so each stops the training processes and keeps finished
    cells, and Prefect's temporary server is stopped at exit (a closed terminal would otherwise orphan it)."""

    def __init__(self, signum: int):
        super().__init__()
        self.signum = signum


_signals: list[int] = []  # the interrupts received, in case a library swallowed the exception raised for one


def _interrupt(signum, frame) -> None:
    """Kill the training processes first, then raise: even if the exception is caught somewhere below (inside
    Prefect, say), no cell keeps training and the run ends at once with the interrupt's exit code."""
    from tasks.training.slots import SlotPool

    _signals.append(signum)
    SlotPool.close_all()
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _check_file_target(path: Path, flag: str) -> None:
    """A file the command will write: its folder must exist and be writable, and it must not be a folder."""
    if path.is_dir():
        raise OSError(f"{flag} {path} is a folder, not a file")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OSError(f"{flag} {path}: no folder {folder}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OSError(f"{flag} {path}: not writable")


def _check_out(out: Path | None) -> None:
    """Create the reports folder now, so an --out that is a file or not writable is a one-line error at once."""
    target = out or default_reports_dir()
    if target.exists() and not target.is_dir():
        raise OSError(f"--out {target} is a file, not a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"--out {target}: {exc.strerror or exc}") from None
    if not os.access(target, os.W_OK):
        raise OSError(f"--out {target}: not writable")


def _check_next(path: Path | None) -> None:
    """--next FILE is written after the run: a folder that is not there or not writable is said now, not then."""
    if path is None:
        return
    folder = path.resolve().parent
    if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise OSError(f"--next {path}: {'a folder' if path.is_dir() else 'its folder is missing or not writable'}")


def _serve() -> int:
    """`ablate serve`: every deployment of deployments/prefect.yaml, served here until Ctrl-C or SIGTERM."""
    from prefect.settings import PREFECT_API_URL

    from flows.serving import PREFECT_YAML, serve_all

    if not PREFECT_YAML.exists():
        print(f"ablate: error: {PREFECT_YAML} not found: `ablate serve` runs from a clone of the repository",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if not PREFECT_API_URL.value():
        print("ablate: warning: PREFECT_API_URL is not set, so the deployments live on a temporary Prefect server "
              "that ends with this process; start `prefect server start` and set PREFECT_API_URL to keep them",
              file=sys.stderr)
    try:
        serve_all()
    except KeyboardInterrupt:
        pass
    return 0


def _check_grid(args: argparse.Namespace) -> None:
    """--grid brings its own axes, epochs, seeds and baseline: a second source is a conflict, said at once.
    Without a grid, --set and --max-seeds are checked here too, so a bad one is one line before Prefect starts."""
    from tasks.training.grid_file import GridFileError, baseline_config, check_no_conflict, load_grid

    if args.grid is None:
        if args.max_seeds is not None and args.seeds != "auto":
            raise GridFileError("--max-seeds needs --seeds auto")
        if args.model and "model" in dict(args.settings or []):
            raise GridFileError("the model is set twice: give --model or --set model=..., not both")
        baseline_config(dict(args.settings or []), args.epochs)
        return
    check_no_conflict({"--axes": args.axes, "--epochs": args.epochs, "--seeds": args.seeds,
                       "--max-seeds": args.max_seeds, "--set": args.settings})
    load_grid(args.grid)


def _print_grid(args: argparse.Namespace) -> int:
    """`ablate grid`: the cells, their count and a rough time estimate; exit 2 on a bad file."""
    from tasks.training.estimate import estimate
    from tasks.training.grid import DEFAULT_MAX_SEEDS, looks
    from tasks.training.grid_file import grid_cells, load_grid

    spec = load_grid(args.grid)
    cells = grid_cells(spec, args.aa)
    variants = list(dict.fromkeys((cell.axis, cell.variant) for cell in cells))
    width = max(len(axis) for axis, _ in variants)
    for axis, variant in variants:
        print(f"{axis:<{width}}  {variant}")
    if spec.seeds == "auto":
        plan = looks(spec.max_seeds or DEFAULT_MAX_SEEDS)
        seeds = (f"up to {plan[-1]} seeds, in rounds (looked at after {', '.join(map(str, plan))}) = at most "
                 f"{len(cells)} cells, {len(variants) * plan[0]} in the first round")
    else:
        seeds = f"{spec.seeds} seeds = {len(cells)} cells"
    print(f"\n{len(variants)} variants x {seeds}, mode {spec.mode}, up to {spec.baseline.epochs} epochs each")
    guess = estimate(cells, args.out or default_reports_dir())
    print(guess.replace("estimated time: about", "estimated time: at most about", 1) if spec.seeds == "auto"
          else guess)
    return 0


def _check_executor(args: argparse.Namespace) -> None:
    """--dask-address implies --executor dask; check the scheduler answers (and, for tls://, that certificates
    are set) before Prefect starts."""
    if args.dask_address and args.executor == "local":
        raise AblationError("--dask-address needs --executor dask (or no --executor)")
    args.executor = "dask" if args.dask_address else args.executor or "local"
    if args.dask_address or args.dask_tls_ca_file or args.dask_tls_cert or args.dask_tls_key:
        from flows.dask_executor import check_reachable, check_tls, use_tls_files

        use_tls_files(args.dask_address, args.dask_tls_ca_file, args.dask_tls_cert, args.dask_tls_key)
        check_reachable(args.dask_address)
        check_tls(args.dask_address)


def _run(args: argparse.Namespace) -> dict:
    common = {"dataset": args.dataset, "out": args.out, "image_size": args.image_size,
              "test_fraction": args.test_fraction, "limit": args.limit,
              "suite": str(args.suite) if args.suite else None, "verbose": args.verbose}
    with _prefect_api(args):
        from flows.live_progress import LiveDisplay

        if args.command == "validate":
            from flows.data_quality_gate import data_quality_gate

            with LiveDisplay():  # on a terminal: a big folder's decoding progress
                return data_quality_gate(**common, dedupe_report=str(args.dedupe_report) if args.dedupe_report
                                         else None)
        from flows.ablation import ablation

        axes = [axis for group in args.axes for axis in group] if args.axes else None
        with LiveDisplay():  # on a terminal: decoding, then the grid's progress, redrawn in place below the log lines
            return ablation(**common, epochs=args.epochs, seeds=args.seeds, max_seeds=args.max_seeds,
                            settings=dict(args.settings) if args.settings else None, next_grid=args.next_grid,
                            axes=axes, gate=args.gate,
                            store=args.store, fresh=args.fresh, keep_models=args.keep_models,
                            tensorboard=args.tensorboard, cell_timeout=args.cell_timeout, retries=args.retries,
                            backend=args.backend, per_gpu=args.per_gpu, processes=args.processes,
                            executor=args.executor, dask_address=args.dask_address, aa=args.aa,
                            grid=str(args.grid) if args.grid else None, model=args.model,
                            val_fraction=args.val_fraction, fixed_split=args.fixed_split)


@contextlib.contextmanager
def _prefect_api(args: argparse.Namespace):
    """The Prefect API the flow runs report to: PREFECT_API_URL when set; else the local server that outlives
    this command (`flows.local_server`), started now if none runs; else, with --ephemeral, Prefect's temporary
    per-command server. A server started now boots while this process imports Great Expectations, which a
    cached gate would not need, so only then."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

    # The flow run's heartbeat thread sleeps in 1 s steps and is joined at the end: up to 1 s of every command,
    # for events that only an automation the user sets up would read. Set the frequency to keep them.
    quiet = {} if _HEARTBEAT_SET & set(os.environ) else {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": None}
    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        with temporary_settings(quiet):
            yield
        return
    if args.ephemeral or os.environ.get("ABLATE_EPHEMERAL", "").strip() not in ("", "0"):
        _start_prefect_while_importing_great_expectations()
        with temporary_settings(quiet):
            yield
        return
    from flows.local_server import Connection, server_home
    from tasks.paths import reports_dir

    connection = Connection(server_home(reports_dir(args.out)))
    try:
        if connection.started_here:
            import great_expectations  # noqa: F401  (the gate imports it again, for free)
        url = connection.wait()
        if connection.started_here:
            print(f"started the local Prefect server {connection.info.ui} (its UI; flow runs of later commands "
                  f"show there too); it {connection.info.stops} (`ablate server stop` stops it now)",
                  file=sys.stderr)
        os.environ["PREFECT_API_URL"] = url  # for the processes this one starts (Dask's workers)
        with temporary_settings({PREFECT_API_URL: url} | quiet):
            yield
    finally:
        connection.release()


_HEARTBEAT_SET = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY"}


def _server(args: argparse.Namespace) -> int:
    """`ablate server status|start|stop`: the local Prefect server of a reports folder."""
    from flows import local_server
    from tasks.paths import reports_dir

    home = local_server.server_home(reports_dir(args.out))
    try:
        if args.action == "start":
            connection = local_server.Connection(home)
            connection.wait()
            connection.release()
        info = local_server.stop(home) if args.action == "stop" else local_server.status(home)
    except AblationError as exc:
        print(f"ablate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if info is None:
        print(f"no local Prefect server runs for {home.parent}")
        return 0 if args.action == "stop" else 1
    if args.action == "stop":
        print(f"stopped the local Prefect server {info.ui} (pid {info.pid})")
        return 0
    print(f"local Prefect server: {info.ui} (API {info.url}), pid {info.pid}, Prefect {info.prefect}, up "
          f"{_duration(time.time() - info.started)}, {info.stops}\ndatabase and log: {home}")
    return 0


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _start_prefect_while_importing_great_expectations() -> None:
    """Overlap two fixed costs of a command on Prefect's temporary server (--ephemeral): the server boots in its
    own process (~5 s) while this one imports Great Expectations (~4 s), instead of one after the other.

    The server is Prefect's own ephemeral one, started as the flow would start it but in a session of its own
    (`_own_session`); the thread is joined before the flow begins, so the flow finds it healthy. If the early
    start fails, the flow starts it itself and reports any error there.
    """
    from prefect.server.api import server

    _own_session(server)
    starter = threading.Thread(target=_quietly, args=(server.SubprocessASGIServer(),), daemon=True)
    starter.start()
    import great_expectations  # noqa: F401  (the gate imports it again, for free)

    starter.join()


def _own_session(server_module) -> None:
    """Start Prefect's temporary server in a session of its own, out of the terminal's process group.

    Ctrl-C at a terminal signals the whole foreground process group. The server, started in that group, died
    with it, and Prefect then spent about two minutes retrying the dead API, printing tracebacks, before this
    command could end. Out of the group, the server outlives the interrupt, the run records its state and
    stops the server at exit, as after any run. Only the server's module sees the changed Popen.
    """
    class NewSessionSubprocess:
        def __getattr__(self, name):
            return getattr(subprocess, name)

        @staticmethod
        def Popen(*args, **kwargs):  # noqa: N802 (subprocess's own name)
            # Its output goes to a log file, not the terminal: stopped with events still queued, the server prints
            # asyncio tracebacks that are not the user's (seen after Ctrl-C on a loaded machine), and a server
            # that held the command's output pipes kept a caller waiting after the command had ended.
            from prefect.settings import PREFECT_HOME

            home = Path(PREFECT_HOME.value())
            home.mkdir(parents=True, exist_ok=True)
            log = open(home / "temporary-server.log", "ab")  # noqa: SIM115 (the child's now)
            return subprocess.Popen(*args, **kwargs, start_new_session=True, stdout=log, stderr=log)

    server_module.subprocess = NewSessionSubprocess()


def _quietly(temporary_server) -> None:
    """Start the server; if it fails (on a loaded machine it can take longer than Prefect waits), stop the process
    it started. Prefect's next start would otherwise launch a second one and stop only that at exit, leaving the
    first running in its own session, holding the command's output open (seen in the tests: the command's caller
    waited for that output to end)."""
    try:
        temporary_server.start()
    except Exception:  # the flow's own start raises it again, with Prefect's message
        temporary_server.stop()


def _time_split(timings: dict, total: float) -> str:
    """Loading, gate, training, report, and the rest (Prefect start-up, process start-up, waiting) as overhead.
    A gate that validated while cells trained counts only for the time the run waited for it."""
    gate = timings.get("gate", 0)
    waited = timings.get("gate (waited for)", gate)
    beside = timings.get("slots") and waited < gate - 0.05  # training ran while it validated
    parts = [f"loading {timings.get('loading', 0):.1f} s",
             f"gate {gate:.1f} s" + (f" alongside training ({waited:.1f} s waited for)" if beside else "")]
    spent = timings.get("loading", 0) + waited + timings.get("report", 0)
    if timings.get("slots") == 0:
        parts.append("training none (every cell reused)")
    elif "training (wall)" in timings:
        slowest = timings["training (slowest slot)"]
        parts.append(f"training {timings['training (inside processes, summed)']:.1f} s inside "
                     f"{timings['slots']:.0f} training process(es) (slowest slot {slowest:.1f} s, "
                     f"wall {timings['training (wall)']:.1f} s)")
        spent += slowest
    parts += [f"report {timings.get('report', 0):.1f} s", f"orchestration overhead {total - spent:.1f} s"]
    return f"time: {total:.1f} s total = " + ", ".join(parts)


class _DropExpectedTracebacks(logging.Filter):
    """Prefect logs a task's or flow's exception with its traceback; for a user's error one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (AblationError, OSError, MemoryError)):
            record.exc_info, record.exc_text = None, None
        return True


class _one_line_errors:
    """Attach that filter where Prefect's run loggers create their records (logger filters outlive its set-up)."""

    LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine")

    def __enter__(self):
        self.filter = _DropExpectedTracebacks()
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self.filter)

    def __exit__(self, *exc):
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self.filter)


def entry(argv: list[str] | None = None) -> None:
    """The `ablate` command (and `python -m flows...`): `main`, then exit without tearing the interpreter down.

    After a run, Python's own shutdown (freeing every object of pandas, Prefect, the dataset's tables, one by
    one) took ~0.7 s of a 5 s command on 2 cores. Everything a normal exit runs before that still runs, in its
    order: the threads' exit hooks (Prefect drains its log and event workers there, while its server still
    answers), then the atexit handlers (a temporary server stopped, multiprocessing's children joined, logging
    flushed).
    """
    code = main(argv)
    threading._shutdown()  # what the interpreter calls first at exit (private, as atexit's runner is)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing left to say
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
