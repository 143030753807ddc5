"""Read image files on every core: headers first, then pixels straight into the cached ``.npy`` files.

Decoding JPEGs is CPU-bound Python-called C, so it scales with processes, not threads. Each worker process
writes its chunk's rows into the output file itself (by path): no pixels travel between processes, and the
parent never holds the dataset. Work goes out in chunks of files, so a progress callback
hears how far along the whole job is. A few hundred files decode faster in this process than a pool starts.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import numpy as np

from tasks.data.images import decode_into, header
from tasks.errors import DatasetError

CHUNK = 64  # files per task: amortises the message to and from a worker, small enough for a smooth progress bar
IN_PROCESS_BELOW = 400  # files: a spawned worker costs ~0.3 s to start (numpy and Pillow imports)
Progress = Callable[[str, int, int], None]  # (stage, files done, files in all)


def workers() -> int:
    """The cores this process may use (its CPU affinity, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def worker_pool(files: int) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for one load's stages (headers, then pixels), started once; None (work here) when
    ``files`` are too few to pay for starting them or there is one core. On an error or an interrupt the chunks
    not yet started are dropped, not decoded before the command can exit."""
    if files < IN_PROCESS_BELOW or workers() == 1:
        yield None
        return
    # spawn, not fork: the caller may be a Prefect flow with threads running, which fork would copy mid-state.
    pool = ProcessPoolExecutor(workers(), mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def read_headers(paths: Sequence[str], progress: Progress | None = None,
                 pool: ProcessPoolExecutor | None = None) -> list:
    """(height, width, channels, mode) per file, or the reason it is not a readable image."""
    chunks = [list(paths[i:i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    parts = _map(_headers_of, [(chunk,) for chunk in chunks], pool, "reading headers", progress)
    return [h for part in parts for h in part]


def decode_files(jobs: Sequence[tuple[str, str, int]], mode: str, size: tuple[int, int],
                 progress: Progress | None = None, pool: ProcessPoolExecutor | None = None) -> dict:
    """Decode each (path, output .npy file, row) into that row, at ``size`` in ``mode``; returns the reason per
    (output file, row) that failed. The output files exist already, preallocated at their full shape."""
    chunks = [list(jobs[i:i + CHUNK]) for i in range(0, len(jobs), CHUNK)]
    failed = {}
    for part in _map(_decode_chunk, [(chunk, mode, size) for chunk in chunks], pool, "decoding", progress):
        failed.update(part)
    return failed


def _map(function, arguments: list[tuple], pool: ProcessPoolExecutor | None, stage: str,
         progress: Progress | None) -> Iterator:
    """``function(*a)`` for every ``a`` (a chunk of files first), on ``pool`` or here; yields the results in
    order as they finish, telling ``progress`` how many files are done after each."""
    sizes = [len(a[0]) for a in arguments]
    if pool is None:
        results = (function(*a) for a in arguments)
    else:
        futures = [pool.submit(function, *a) for a in arguments]
        results = (future.result() for future in futures)
    done, total = 0, sum(sizes)
    if progress:
        progress(stage, 0, total)
    try:
        for result, size in zip(results, sizes):
            done += size
            if progress:
                progress(stage, done, total)
            yield result
    finally:  # an error or an interrupt: what has not started is not started
        for future in futures if pool is not None else ():
            future.cancel()


def _headers_of(paths: list[str]) -> list:
    return [header(path) for path in paths]


def _decode_chunk(jobs: list[tuple[str, str, int]], mode: str, size: tuple[int, int]) -> dict:
    """Decode a chunk into memory, then write each output file's rows with one system call per run of
    consecutive rows. Decoding straight into the memory-mapped file cost a page fault (and a block allocation
    in the sparse file) per 4 KiB written, and flushing the map a synchronous write: measured on 6,000 photos of
    500x375 on 2 cores, 630-750 images a second per core with both, 850-900 without the flush, 950-970 so."""
    failed = {}
    pixels = np.zeros((len(jobs), *size, 1 if mode == "L" else 3), np.uint8)
    for i, (path, output, row) in enumerate(jobs):
        error = decode_into(path, mode, size, pixels[i])
        if error:
            failed[(output, row)] = error
    start = 0
    for end in range(1, len(jobs) + 1):  # runs of consecutive rows of one file
        if end == len(jobs) or jobs[end][1] != jobs[start][1] or jobs[end][2] != jobs[end - 1][2] + 1:
            _write_rows(jobs[start][1], jobs[start][2], pixels[start:end])
            start = end
    return failed


def _write_rows(output: str, first: int, rows: np.ndarray) -> None:
    """Write ``rows`` into the preallocated .npy file ``output`` from row ``first`` on."""
    try:
        with open(output, "r+b") as file:
            version = np.lib.format.read_magic(file)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(version,
                                                                            np.lib.format.read_array_header_2_0)
            read_header(file)
            data, offset = memoryview(np.ascontiguousarray(rows)).cast("B"), file.tell() + first * rows[0].nbytes
            while data:
                written = os.pwrite(file.fileno(), data, offset)
                data, offset = data[written:], offset + written
    except OSError as exc:  # the file is sparse: a full disk shows here, not when it was allocated
        raise DatasetError(f"cannot write the decoded dataset to {os.path.dirname(os.path.dirname(output))}: "
                           f"{exc.strerror or exc}; free space or use --image-size") from None
