"""Feed a cell's images to Keras: normalised per batch from the shared memory-mapped copy, or whole when small.

Why not hand Keras the arrays: on the TensorFlow backend its array adapter copies a whole NumPy array (memmap
included) into each process, as float32 after normalising: four times the uint8 dataset, in every one of the 8
processes a GPU runs. `Batches` (a `keras.utils.PyDataset`, which every backend accepts) slices one batch at a
time out of the memmap and normalises it; the pages it reads are the ones every process shares.

Why not always: that path costs about 10 ms per batch on the TensorFlow CPU backend (measured on 2 cores:
1.23 s against 0.74 s per epoch of digits at 32x32), which on small data is more than the training itself,
while on large data it is the faster one (28 s against 36 s per epoch of 4,000 images at 128x96x3). So data up
to ``IN_MEMORY_BYTES`` (as uint8) is copied in: at most 4 x 64 MiB = 256 MiB of float32 per process. On the
TensorFlow backend those arrays go in as plain tf.data pipelines rather than through Keras' array adapter, whose
per-epoch iterators cost more than a small epoch's training (`_tf_datasets`).
"""

from __future__ import annotations

import math
import mmap

import keras
import numpy as np

IN_MEMORY_BYTES = 64 * 2**20
PREFETCH_THREADS = 2
CHUNK_ROWS = 1024  # rows per pass when measuring the training split's statistics: bounded memory


def normalization(x: np.ndarray, rows: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) with ``(pixels - shift) / scale`` the ``mode``'s normalisation: "raw" unchanged, "scale"
    divided by 255, "standardize" per-channel z-scores from the rows ``rows`` of ``x`` (the training split:
    nothing about the test split leaks in), summed in chunks so a memmap is never read whole into memory."""
    channels = x.shape[-1]
    if mode == "raw":
        return np.zeros(channels, np.float32), np.ones(channels, np.float32)
    if mode == "scale":
        return np.zeros(channels, np.float32), np.full(channels, 255.0, np.float32)
    if mode != "standardize":
        raise ValueError(f"unknown normalization {mode!r}")
    total, squares, count = np.zeros(channels), np.zeros(channels), 0
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = np.asarray(x[rows[start:start + CHUNK_ROWS]], dtype=np.float64).reshape(-1, channels)
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
        count += len(chunk)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0)) + 1e-7
    return mean.astype(np.float32), std.astype(np.float32)


def apply(pixels: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.float32) - shift) / scale


def normalize(x_train: np.ndarray, x_test: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Both splits normalised as float32 with the training split's statistics (for whole arrays in memory)."""
    shift, scale = normalization(x_train, np.arange(len(x_train)), mode)
    return apply(x_train, shift, scale), apply(x_test, shift, scale)


class Batches(keras.utils.PyDataset):
    """Batches of rows ``rows`` of ``x`` (with their labels), normalised as they are read. With ``seed``, the
    order is shuffled every epoch by a generator seeded with it (the same seed, the same order); within a
    batch, rows are read in file order, which is kinder to the disk than random order."""

    def __init__(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray, batch_size: int, shift: np.ndarray,
                 scale: np.ndarray, seed: int | None = None):
        # Two threads read and normalise the next batches while the model trains on this one (numpy releases
        # the GIL); Keras' enqueuer hands them over in order, so a seed still gives one result. Measured, one
        # cell, 2 epochs of 1,600 photos at 128x96x3 on 2 cores: 46-48 s read in the training loop, 37-38 s so,
        # 41-42 s from arrays in memory. At most 4 batches wait (float32): ~19 MB at batch 32 at that size.
        super().__init__(workers=PREFETCH_THREADS, max_queue_size=4)
        if seed is not None:
            _random_access(x)
        self.x, self.y, self.rows, self.batch_size = x, y, np.asarray(rows), batch_size
        self.shift, self.scale = shift, scale
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self._order = self._shuffled()

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int):
        rows = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])
        return apply(self.x[rows], self.shift, self.scale), self.y[rows]

    def on_epoch_end(self) -> None:
        self._order = self._shuffled()

    def _shuffled(self) -> np.ndarray:
        return self.rows[self._rng.permutation(len(self.rows))] if self._rng is not None else self.rows


def _random_access(x: np.ndarray) -> None:
    """Tell the kernel that this process reads ``x``'s mapping in random order, so a page fault brings in that
    page, not the readahead window after it. On a dataset larger than memory, readahead turned each shuffled
    batch into megabytes read and evicted at once: measured, a process held to 1.5 GiB paged in 258 GiB in five
    minutes of one epoch over 3 GiB. (Sequential readers, the gate's statistics, keep readahead: advice is per
    process.)"""
    mapping = getattr(x, "_mmap", None)  # set on arrays np.load(..., mmap_mode=...) returns
    if mapping is not None and hasattr(mmap, "MADV_RANDOM"):
        mapping.madvise(mmap.MADV_RANDOM)


def fit_inputs(data, fit_rows: np.ndarray, val_rows: np.ndarray, test_rows: np.ndarray, batch_size: int,
               shift: np.ndarray, scale: np.ndarray, seed: int) -> tuple[dict, object]:
    """The data arguments of ``model.fit`` (training on the rows ``fit_rows`` of the training split, validating
    on its rows ``val_rows``) and the input for ``model.predict`` on the rows ``test_rows`` of the test split,
    which training never sees: normalised arrays when the rows fit in ``IN_MEMORY_BYTES``, else `Batches` over
    the memmap. ``data`` is a `tasks.data.store.Dataset`."""
    x_train, x_test = data.x_train, data.x_test
    per_row = int(np.prod(x_train.shape[1:])) * x_train.dtype.itemsize
    if (len(fit_rows) + len(val_rows) + len(test_rows)) * per_row <= IN_MEMORY_BYTES:
        fit = (apply(x_train[fit_rows], shift, scale), data.y_train[fit_rows])
        validation = (apply(x_train[val_rows], shift, scale), data.y_train[val_rows])
        test = apply(x_test[test_rows], shift, scale)
        if keras.backend.backend() == "tensorflow":
            return _tf_datasets(fit, validation, test, batch_size, seed)
        return {"x": fit[0], "y": fit[1], "batch_size": batch_size, "validation_data": validation}, test
    validation = Batches(x_train, data.y_train, val_rows, 256, shift, scale)
    train = Batches(x_train, data.y_train, fit_rows, batch_size, shift, scale, seed=seed)
    return {"x": train, "validation_data": validation}, Batches(x_test, data.y_test, test_rows, 256, shift, scale)


def _tf_datasets(fit: tuple, validation: tuple, test: np.ndarray, batch_size: int, seed: int) -> tuple[dict, object]:
    """fit_inputs' arrays as plain tf.data pipelines (TensorFlow backend). Keras' own array adapter builds one
    whose iterator, made afresh every epoch for training and again for validation, costs ~25 ms to create
    against ~2.5 ms for these (measured, 80 images of 8x8): on small data that was a third of each epoch.
    The same seed shuffles in the same order every run (the op seed, with the global seed Keras sets)."""
    import tensorflow as tf

    train = (tf.data.Dataset.from_tensor_slices(fit)
             .shuffle(len(fit[1]), seed=seed, reshuffle_each_iteration=True).batch(batch_size))
    val = tf.data.Dataset.from_tensor_slices(validation).batch(256)
    return {"x": train, "validation_data": val, "shuffle": False}, tf.data.Dataset.from_tensor_slices(test).batch(256)
