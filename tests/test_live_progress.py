"""The CLI's live progress display (rich): the status line below the log lines while a grid trains, log lines
printed above it and never over it, erased at the end, and nothing at all without a terminal."""

import io
import logging
import re
import time

from flows.live_progress import GridProgress, LiveDisplay, LoadProgress, status


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(output: str) -> list[str]:
    """What a terminal shows after ``output``: the lines left once carriage returns, line erases (ESC[2K) and
    cursor-up moves (ESC[1A) are applied; colours and cursor visibility are ignored."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", output):
        if token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token == "\r":
            col = 0
        elif token == "\x1b[2K":
            lines[row] = ""
        elif token == "\x1b[1A":
            row = max(0, row - 1)
        elif not token.startswith("\x1b"):
            lines[row] = lines[row][:col].ljust(col) + token + lines[row][col + len(token):]
            col += len(token)
    return [line.rstrip() for line in lines]


def test_the_status_line_counts_running_failed_cached_and_extrapolates_time():
    assert status(2, 6, 1, 3, 2, 10.0) == "2 running | 1 failed | 3 cached | 10 s elapsed, ~20 s left"
    assert status(0, 6, 0, 0, 2, 1.0) == "2 running | 1 s elapsed"  # nothing finished: no estimate yet
    assert status(6, 6, 0, 0, 0, 30.0) == "30 s elapsed"


def test_a_round_of_seeds_is_named_in_the_status_line():
    grid = GridProgress()
    grid.start(total=4, cached=0, slots=2, label="round 2 of 4")
    grid.finished(failed=False)
    assert re.fullmatch(r"\[1/4\] round 2 of 4 \| 2 running \| \d+ s elapsed(, ~\d+ s left)?", grid.snapshot()[2])
    grid.stop()
    assert grid.snapshot() is None


def test_the_display_shows_the_counts_and_log_lines_print_above_it_never_over_it():
    from prefect.logging.handlers import PrefectConsoleHandler  # a rich Console of its own, as in a real run

    grid, terminal = GridProgress(), Terminal()
    logger = logging.getLogger("test-live-progress")
    plain, prefect = logging.StreamHandler(terminal), PrefectConsoleHandler(stream=terminal)
    prefect.setFormatter(logging.Formatter("prefect: %(message)s"))
    logger.addHandler(plain)
    logger.addHandler(prefect)
    logger.propagate = False
    prefect_console = prefect.console
    try:
        with LiveDisplay((grid,), terminal):
            logger.warning("before the grid")  # no grid yet: nothing is drawn
            grid.start(total=3, cached=1, slots=2)
            time.sleep(0.8)
            grid.finished(failed=True)
            logger.warning("cell one failed")
            time.sleep(0.8)
            grid.stop()
            logger.warning("after the grid")
    finally:
        logger.removeHandler(plain)
        logger.removeHandler(prefect)
    out = terminal.getvalue()
    assert re.search(r"\[0/3\] 2 running \| 1 cached \| \d+ s elapsed", out) and "━" in out  # bar and status
    assert re.search(r"\[1/3\] 2 running \| 1 failed \| 1 cached \| \d+ s elapsed, ~\d+ s left", out)
    # What stays on the screen: the log lines, each whole on its own line, and no status line (it is erased).
    assert [line for line in screen(out) if line] == [
        "before the grid", "prefect: before the grid", "cell one failed", "prefect: cell one failed",
        "after the grid", "prefect: after the grid"]
    assert plain.stream is terminal and prefect.console is prefect_console  # the handlers are as they were


def test_nothing_is_drawn_without_a_terminal():
    grid, pipe = GridProgress(), io.StringIO()
    with LiveDisplay((grid,), pipe):
        grid.start(total=3, cached=0, slots=1)
        time.sleep(0.6)
        grid.stop()
    assert pipe.getvalue() == "" and grid.listeners == []


def test_a_folder_being_decoded_shows_its_progress_then_the_grid_takes_over():
    loading, grid, terminal = LoadProgress(), GridProgress(), Terminal()
    with LiveDisplay((loading, grid), terminal):
        loading.update("decoding", 0, 1000)
        time.sleep(0.6)
        loading.update("decoding", 500, 1000)
        time.sleep(0.8)
        loading.stop()
        grid.start(total=2, cached=0, slots=1)
        time.sleep(0.8)
        grid.stop()
    out = terminal.getvalue()
    assert re.search(r"decoding 500/1,000 images \| [\d,]+ images/s \| ~\d+ s left", out)
    assert re.search(r"\[0/2\] 1 running", out) and out.index("decoding 500") < out.index("[0/2]")
    assert [line for line in screen(out) if line] == []  # both erased when done
