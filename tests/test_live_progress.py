"""The CLI's live progress line: redrawn in place on a terminal, cleared before log lines, absent otherwise."""

import io
import logging
import time

from flows.live_progress import CLEAR, GridProgress, LiveDisplay, status


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_status_line_counts_running_failed_cached_and_extrapolates_time():
    assert status(2, 6, 1, 3, 2, 10.0) == "2 running | 1 failed | 3 cached | 10 s elapsed, ~20 s left"
    assert status(0, 6, 0, 0, 2, 1.0) == "2 running | 1 s elapsed"  # nothing finished: no estimate yet
    assert status(6, 6, 0, 0, 0, 30.0) == "30 s elapsed"


def test_the_display_redraws_in_place_and_clears_its_line_before_each_log_line():
    grid, terminal = GridProgress(), Terminal()
    logger = logging.getLogger("test-live-progress")
    handler = logging.StreamHandler(terminal)
    logger.addHandler(handler)
    try:
        with LiveDisplay(grid, terminal, interval=0.02):
            grid.start(total=3, cached=1, slots=2)
            time.sleep(0.2)
            grid.finished(failed=True)
            logger.warning("cell one failed")
            time.sleep(0.4)
            grid.stop()
            time.sleep(0.1)
    finally:
        logger.removeHandler(handler)
    out = terminal.getvalue()
    assert CLEAR + "[0/3] 2 running | 1 cached | 0 s elapsed" in out
    assert CLEAR + "[1/3] 2 running | 1 failed | 1 cached |" in out and "s left" in out
    before_log = out[:out.index("cell one failed")]
    assert before_log.endswith(CLEAR)  # the status line was erased, not printed over
    assert out.endswith(CLEAR)  # and erased at the end
    assert "cell one failed\n" + CLEAR + "[1/3]" in out  # redrawn below the log line


def test_nothing_is_drawn_without_a_terminal():
    grid, pipe = GridProgress(), io.StringIO()
    with LiveDisplay(grid, pipe, interval=0.01):
        grid.start(total=3, cached=0, slots=1)
        time.sleep(0.1)
    assert pipe.getvalue() == ""
