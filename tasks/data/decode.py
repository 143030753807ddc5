"""Read image files on every core: headers first, then pixels straight into memory-mapped ``.npy`` files.

Decoding JPEGs is CPU-bound Python-called C, so it scales with processes, not threads. Each worker process
opens the output file itself (by path) and writes its images' rows in place: no pixels travel between
processes, and the parent never holds the dataset. Work goes out in chunks of files, so a progress callback
hears how far along the whole job is. A few hundred files decode faster in this process than a pool starts.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from tasks.data.images import decode_into, header

CHUNK = 64  # files per task: amortises the message to and from a worker, small enough for a smooth progress bar
IN_PROCESS_BELOW = 400  # files: a spawned worker costs ~0.3 s to start (numpy and Pillow imports)
Progress = Callable[[str, int, int], None]  # (stage, files done, files in all)


def workers() -> int:
    """The cores this process may use (its CPU affinity, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def read_headers(paths: Sequence[str], progress: Progress | None = None) -> list:
    """(height, width, channels, mode) per file, or the reason it is not a readable image."""
    chunks = [list(paths[i:i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    return [h for part in _map(_headers_of, [(chunk,) for chunk in chunks], "reading headers", len(paths),
                               [len(c) for c in chunks], progress) for h in part]


def decode_files(jobs: Sequence[tuple[str, str, int]], mode: str, size: tuple[int, int],
                 progress: Progress | None = None) -> dict[tuple[str, int], str]:
    """Decode each (path, output .npy file, row) into that row, at ``size`` in ``mode``; returns the reason per
    (output file, row) that failed. The output files exist already, preallocated at their full shape."""
    chunks = [list(jobs[i:i + CHUNK]) for i in range(0, len(jobs), CHUNK)]
    failed = {}
    for part in _map(_decode_chunk, [(chunk, mode, size) for chunk in chunks], "decoding", len(jobs),
                     [len(c) for c in chunks], progress):
        failed.update(part)
    return failed


def _map(function, arguments: list[tuple], stage: str, total: int, sizes: list[int], progress: Progress | None):
    """``function(*a)`` for every ``a`` in order, on a process pool when the job is big enough; yields results
    as the calls finish (in order), telling ``progress`` after each."""
    done = 0
    if progress:
        progress(stage, 0, total)
    if total < IN_PROCESS_BELOW or workers() == 1:
        results = (function(*a) for a in arguments)
        for result, size in zip(results, sizes):
            done += size
            if progress:
                progress(stage, done, total)
            yield result
        return
    # spawn, not fork: the caller may be a Prefect flow with threads running, which fork would copy mid-state.
    pool = ProcessPoolExecutor(workers(), mp_context=multiprocessing.get_context("spawn"))
    finished = False
    try:
        for result, size in zip(pool.map(function, *zip(*arguments)), sizes):
            done += size
            if progress:
                progress(stage, done, total)
            yield result
        finished = True
    finally:  # on an interrupt or an error the chunks not started are dropped, not decoded before exiting
        pool.shutdown(wait=finished, cancel_futures=not finished)


def _headers_of(paths: list[str]) -> list:
    return [header(path) for path in paths]


def _decode_chunk(jobs: list[tuple[str, str, int]], mode: str, size: tuple[int, int]) -> dict:
    failed, outputs = {}, {}
    for path, output, row in jobs:
        if output not in outputs:
            outputs[output] = np.load(output, mmap_mode="r+")
        error = decode_into(path, mode, size, outputs[output][row])
        if error:
            failed[(output, row)] = error
    for array in outputs.values():
        array.flush()
    return failed
