"""The frameworks' own log messages stay out of the user's terminal unless asked for (``--verbose``).

Prefect's run logs are the pipeline's progress and stay. What goes: Great Expectations' and Dask's INFO lines
in this process (the training processes' TensorFlow output goes to their log files, `tasks.training.output`),
and Prefect's warning that the optional training limit does not exist, which every run without one would print
(`training_limit`). With ``--verbose`` they show, and `framework_line` prints the training processes' lines,
followed from their log files, through the same logging (so above the live display, never through it).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager

FRAMEWORK_LOGGERS = ("great_expectations", "distributed", "prefect.task_runner.dask")
_ECHO = logging.getLogger("ablate.frameworks")  # the training processes' own output, with --verbose
_ECHO.setLevel(logging.INFO)


def framework_line(process: str, line: str) -> None:
    """One line a training (or model-checking) process printed, shown as "[slot-0] ..."."""
    _ECHO.info("[%s] %s", process, line)


class _FrameworkInfo(logging.Filter):
    """On the console handlers: drop the frameworks' records below WARNING. Levels alone cannot do it: Great
    Expectations sets some of its module loggers to INFO itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not any(
            record.name == name or record.name.startswith(f"{name}.") for name in FRAMEWORK_LOGGERS)


_QUIET = _FrameworkInfo()


def framework_logging(verbose: bool) -> None:
    """Let the frameworks' INFO lines through with ``verbose``; otherwise only their warnings and errors. Call it
    once Prefect has set up logging (inside a flow run), whose handlers on the root logger print to the terminal."""
    for handler in logging.getLogger().handlers:
        if verbose:
            handler.removeFilter(_QUIET)
        else:
            handler.addFilter(_QUIET)  # once: a filter already there is not added again
    for name in FRAMEWORK_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def training_limit(name: str) -> AbstractContextManager | None:
    """The Prefect global concurrency limit ``name`` as a context that holds one slot of it while training,
    waiting while other sweeps hold it; None when that limit does not exist (Prefect would warn on every run)."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return None
    return concurrency(name, occupy=1)
