"""Load a folder of class sub-folders (photos included) into the shared dataset cache.

Steps: list the files (`images.scan_folder`), read every header (cheap: the size and colour mode), choose the
working size (`resolution`) and the splits (held-out share, ``--limit``) from the headers and labels alone, then
decode only the files kept, on every core, straight into the cached ``.npy`` files. Memory stays small whatever
the folder's size: the pixels go from the decoder to the file's pages, never through a list or a second array.

A decoded folder is reused while its file listing (paths, sizes, modification times) and the options that shape
the decode are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tasks.data.decode import Progress, decode_files, read_headers, worker_pool
from tasks.data.images import GRAY_MODES, ImageFile, relative
from tasks.data.resolution import WORKING_SIDE, working_size
from tasks.data.sampling import holdout_mask, stratified_subset
from tasks.data.store import Dataset, load_cache, new_staging, publish
from tasks.errors import DatasetError
from tasks.files import write_atomic

FOLDER_CACHE_VERSION = 7  # bump when decoding changes, so no cached decode from older code is reused


def load_folder(root: Path, files: list[ImageFile], outside: list[tuple], roots: dict[str, Path],
                class_names: list[str], image_size: tuple[int, int] | None, test_fraction: float,
                limit: int | None, split_seed: int, cache: Path | None, progress: Progress | None = None) -> Dataset:
    """Decode ``files`` (from `scan_folder`) into a `Dataset` whose pixels are memory-mapped from ``cache``.

    Without a cache (tests, the Python API) the pixels are decoded through a temporary folder into memory.
    """
    key = listing_key(files, outside, class_names, image_size, test_fraction, limit)
    cached = _cached_folder(cache, key)
    if cached is not None:
        return cached
    with worker_pool(len(files)) as pool:  # started once for both stages: headers, then pixels
        headers = read_headers([f.path for f in files], progress, pool)
        headers = [h if f.size else "empty file (0 bytes)" for f, h in zip(files, headers)]
        failed = [(f.split, f.label, relative(root, f.path), h) for f, h in zip(files, headers)
                  if isinstance(h, str)]
        ok = [i for i, h in enumerate(headers) if not isinstance(h, str)]
        if not ok:
            raise DatasetError(f"no readable images in {root} ({len(failed)} unreadable)")
        size = working_size([headers[i][:2] for i in ok], image_size)
        mode = "L" if all(headers[i][3] in GRAY_MODES for i in ok) else "RGB"
        rows = _split_rows([files[i] for i in ok], "test" in roots, test_fraction, limit, split_seed)
        staging = new_staging(cache / "datasets") if cache is not None else Path(tempfile.mkdtemp(prefix="ablate-"))
        path = None
        try:
            data = _decode_splits(root, staging, files, headers, ok, rows, size, mode, failed, outside, class_names,
                                  progress, pool)
            if cache is None:
                return _in_memory(data)
            path = publish(staging, data)
        finally:
            if path is None:  # no cache, an error or an interrupt: the staging folder goes (a published one stays)
                shutil.rmtree(staging, ignore_errors=True)
    (cache / "folders").mkdir(parents=True, exist_ok=True)
    write_atomic(cache / "folders" / f"{key}.json", json.dumps({"dataset": path.name}))
    return load_cache(path)


def _split_rows(files: list[ImageFile], has_test: bool, test_fraction: float, limit: int | None,
                seed: int) -> dict[str, np.ndarray]:
    """Indices into ``files`` per split: the test folder's files, or a stratified held-out share of the
    training files; the val folder's files; then at most ``limit`` per split (training and validation together),
    each class keeping its share. Chosen from the labels alone, before any pixel is decoded, so ``--limit 500``
    on a folder of 50,000 photos decodes 1,000."""
    split = np.array([f.split for f in files])
    labels = np.array([f.label for f in files], dtype=np.int64)
    if not has_test:
        train = split == "train"
        split[train] = np.where(holdout_mask(labels[train], test_fraction, seed), "test", "train")
        if not (split == "test").any():
            raise DatasetError(f"--test-fraction {test_fraction} holds out no image: each class has too few images "
                               "for it (use a larger fraction, or a test/ folder)")
    rows = {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
    if limit:
        own = len(rows["train"]) + len(rows["val"])  # the validation folder keeps its share of the limit
        val = len(rows["val"])
        caps = {"test": limit, "val": min(val, max(1, round(limit * val / own))) if val else 0}
        caps["train"] = limit - caps["val"]
        for name, cap in caps.items():
            if len(rows[name]) > cap:
                rows[name] = rows[name][stratified_subset(labels[rows[name]], cap, seed)]
    return rows


def _decode_splits(root: Path, staging: Path, files: list[ImageFile], headers: list, ok: list[int],
                   rows: dict[str, np.ndarray], size: tuple[int, int], mode: str, failed: list,
                   outside: list, class_names: list[str], progress: Progress | None, pool) -> Dataset:
    """Decode each split's files into ``staging/x_<split>.npy`` (the val folder's after the training files, in
    x_train, marked by ``val_train``); drop the rows whose pixels failed to decode."""
    channels = 1 if mode == "L" else 3
    jobs, arrays, own_val = [], {}, rows["val"]
    rows = {"train": np.concatenate([rows["train"], own_val]), "test": rows["test"]}
    for split, index in rows.items():
        output = staging / f"x_{split}.npy"
        _allocate(output, (len(index), *size, channels))
        jobs += [(files[ok[i]].path, str(output), row) for row, i in enumerate(index)]
    errors = decode_files(jobs, mode, size, progress, pool)
    for split, index in rows.items():
        output = staging / f"x_{split}.npy"
        bad = [row for row in range(len(index)) if (str(output), row) in errors]
        for row in bad:
            f = files[ok[index[row]]]
            failed.append((f.split, f.label, relative(root, f.path), errors[(str(output), row)]))
        keep = np.setdiff1d(np.arange(len(index)), bad)
        if bad:
            _drop_rows(output, keep)
        if not len(keep):  # each split must keep at least one image to train or score
            raise DatasetError(f"no readable images in the {split} split of {root} ({len(failed)} unreadable)")
        chosen = [files[ok[i]] for i in index[keep]]
        if split == "train":
            val_train = np.flatnonzero(np.isin(index[keep], own_val))
        arrays[split] = (np.load(output, mmap_mode="r"), np.array([f.label for f in chosen], dtype=np.int64),
                         np.array([relative(root, f.path) for f in chosen]),
                         np.array([headers[ok[i]][:3] for i in index[keep]], dtype=np.int64).reshape(-1, 3))
    skipped = np.array([(s, str(label), path, reason) for s, label, path, reason in outside + failed],
                       dtype=str).reshape(-1, 4)
    (xtr, ytr, idtr, shtr), (xte, yte, idte, shte) = arrays["train"], arrays["test"]
    return Dataset(root.resolve().name, xtr, ytr, xte, yte, class_names, idtr, idte, shtr, shte, skipped,
                   val_train)


def _allocate(path: Path, shape: tuple[int, ...]) -> None:
    """A zero-filled uint8 .npy of ``shape`` on disk (sparse: no space is written until decoded into), or a
    clear error when the disk cannot hold it."""
    try:
        np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape).flush()
    except OSError as exc:
        gib = np.prod(shape, dtype=np.float64) / 2**30
        raise DatasetError(f"cannot write the decoded dataset ({gib:,.1f} GiB at {shape[1]}x{shape[2]}) to "
                           f"{path.parent.parent}: {exc.strerror or exc}; free space or use --image-size") from None


def _drop_rows(path: Path, keep: np.ndarray) -> None:
    """Rewrite ``path`` with only the rows ``keep`` (rare: a file whose header read but whose pixels did not)."""
    source = np.load(path, mmap_mode="r")
    tmp = path.with_suffix(".tmp.npy")
    target = np.lib.format.open_memmap(tmp, mode="w+", dtype=source.dtype, shape=(len(keep), *source.shape[1:]))
    for start in range(0, len(keep), 1024):
        target[start:start + 1024] = source[keep[start:start + 1024]]
    target.flush()
    del source, target
    tmp.replace(path)


def _in_memory(data: Dataset) -> Dataset:
    """The same dataset with its pixels read into memory (its temporary files are about to be removed)."""
    data.x_train, data.x_test = np.array(data.x_train), np.array(data.x_test)
    return data


def listing_key(files: list[ImageFile], outside: list, class_names: list[str], image_size, test_fraction: float,
                limit: int | None) -> str:
    """A hash of every file's path, size and modification time, and of the options that shape the decode.

    It changes whenever a file is added, removed, replaced or touched, so a cached decode is never stale.
    """
    options = f"{FOLDER_CACHE_VERSION}|{image_size or WORKING_SIDE}|{test_fraction}|{limit}|{class_names}"
    digest = hashlib.sha256(options.encode())
    for f in files:
        digest.update(f"{f.split}|{f.label}|{f.path}|{f.size}|{f.mtime_ns}\n".encode())
    digest.update(repr(outside).encode())
    return digest.hexdigest()[:24]


def _cached_folder(cache: Path | None, key: str) -> Dataset | None:
    """The dataset decoded earlier from exactly these files, if its cache entry is intact."""
    if cache is None:
        return None
    try:
        entry = json.loads((cache / "folders" / f"{key}.json").read_text())
        return load_cache(cache / "datasets" / entry["dataset"])
    except (OSError, ValueError, KeyError):  # no entry yet, a damaged one, or an older format: decode again
        return None
