"""Whole-array numpy work spread over the cores: one worker thread per core, each with one BLAS thread.

numpy releases the GIL in its loops and in BLAS, so threads share the cores with no copies between processes;
BLAS's own threads would then fight the workers for the same cores (the statistics pass ran at half its speed
with them free), so BLAS is held to one thread while the workers run.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController


@contextlib.contextmanager
def worker_threads(workers: int | None = None) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``workers`` threads (one per core by default), BLAS held to one thread until it closes."""
    with _blas().limit(limits=1, user_api="blas"), ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        yield pool


@functools.cache
def _blas() -> ThreadpoolController:
    """The process's BLAS libraries, found once: `threadpool_limits` looks for them in every loaded library on
    each call (5-7 ms here, a fiftieth of the whole statistics pass on 60,000 images). numpy's BLAS, the one
    these workers call, is loaded with numpy, so before the first call."""
    return ThreadpoolController()
