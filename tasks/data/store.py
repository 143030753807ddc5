"""The dataset in one form, and its shared on-disk copy: one uint8 ``.npy`` file per array, memory-mapped.

Every source ends as a `Dataset`. The decoded copy lives in ``<cache>/datasets/<fingerprint>/``: one ``.npy``
per array and ``meta.json``. Every process that uses it (the training processes, the gate, the report step,
Dask workers) opens the pixel arrays by path with ``mmap_mode="r"``, so they all share one copy in the
operating system's page cache, and a dataset larger than memory is paged in and out as it is read. (An
``.npz`` cannot be memory-mapped: each process had its own copy, nine on a GPU running eight processes.)

A copy is written into a staging folder and renamed into place whole, so a reader never sees half of one and a
crash leaves no entry behind (its staging folder is removed by the next writer).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CACHE_FORMAT = 3  # bump when the layout of a cached dataset changes: an older entry is then decoded again
MAPPED = ("x_train", "x_test")  # memory-mapped when opened; the other arrays are small and read whole
ARRAYS = (*MAPPED, "y_train", "y_test", "ids_train", "ids_test", "shapes_train", "shapes_test", "skipped",
          "val_train")
STAGING_PREFIX = ".staging-"


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    ids_train: np.ndarray  # str: path relative to the dataset root, or "x_train[17]"
    ids_test: np.ndarray
    shapes_train: np.ndarray  # (n, 3) int: height, width, channels before resizing
    shapes_test: np.ndarray
    # Files found but not decoded, one row each: split, label, path, reason. The gate lists them as findings;
    # training uses the rest.
    skipped: np.ndarray = field(default_factory=lambda: np.empty((0, 4), dtype=str))
    # Rows of the training arrays that are the dataset's own validation split (a val/ folder): training
    # validates on them instead of carving a share per seed. Empty when the dataset has none.
    val_train: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    cached_at: Path | None = None  # the cache folder it was opened from (read-only, named by its fingerprint)

    @property
    def fingerprint(self) -> str:
        """A hash of the decoded content: it changes exactly when the data a model would see changes. A
        memory-mapped array is hashed straight from its pages, never copied; an opened cache entry is named by
        its fingerprint already (hashing a gigabyte of photos again would cost seconds on every command)."""
        if self.cached_at is not None:
            return self.cached_at.name
        digest = hashlib.sha256()
        own = (self.val_train,) if len(self.val_train) else ()  # absent: the fingerprints of before
        for array in (self.x_train, self.y_train, self.x_test, self.y_test, self.skipped, *own):
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
        digest.update("\0".join(self.class_names).encode())
        return digest.hexdigest()[:16]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pixels, labels, ids, original shapes) of the "train" or "test" split."""
        return tuple(getattr(self, f"{field}_{name}") for field in ("x", "y", "ids", "shapes"))


def save_cache(data: Dataset, directory: Path) -> Path:
    """The folder ``directory/<fingerprint>/`` holding ``data``, written once; returns its path."""
    if data.cached_at is not None and data.cached_at.parent == Path(directory):
        return data.cached_at
    final = Path(directory) / data.fingerprint
    if final.is_dir():
        return final
    return publish(new_staging(directory), data, final)


def new_staging(directory: Path) -> Path:
    """A fresh staging folder in ``directory`` (on the same file system, so the final rename is atomic). Staging
    folders left by processes that died are removed first."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f"{STAGING_PREFIX}*"):
        pid = stale.name[len(STAGING_PREFIX):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    staging = directory / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def publish(staging: Path, data: Dataset, final: Path | None = None) -> Path:
    """Write the arrays still missing from ``staging`` (a decoder writes the pixels there itself) and its
    ``meta.json``, then rename it to the dataset's fingerprint folder. Another process may have published the
    same dataset meanwhile: then its copy is kept and this one removed."""
    final = final or staging.parent / data.fingerprint
    for name in ARRAYS:
        if not (staging / f"{name}.npy").exists():
            np.save(staging / f"{name}.npy", np.asarray(getattr(data, name)), allow_pickle=False)
    meta = {"format": CACHE_FORMAT, "name": data.name, "class_names": list(data.class_names)}
    (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    try:
        os.rename(staging, final)
    except OSError:  # the same dataset, published by a process that got there first
        shutil.rmtree(staging, ignore_errors=True)
        if not final.is_dir():
            raise
    return final


def load_cache(path: str | Path) -> Dataset:
    """The dataset at ``path`` (a folder written by `save_cache`), its pixel arrays memory-mapped read-only."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path} was written in cache format {meta.get('format')}, not {CACHE_FORMAT}")
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r" if name in MAPPED else None, allow_pickle=False)
              for name in ARRAYS}
    return Dataset(name=meta["name"], class_names=list(meta["class_names"]), cached_at=path, **arrays)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
