"""Load a dataset (built-in digits, a folder of class subfolders, or an .npz) into one in-memory form.

Every source ends as the same `Dataset`: uint8 or float pixel arrays of one size and channel count, integer
labels, class names, one identifier per image (its path, or its index in the source array) and the shape each
image had before it was brought to the common size. The `fingerprint` is a hash of the decoded content, so it
changes exactly when the data a model would see changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.data.images import read_folder_split, resize_images, scan_folder
from tasks.data.sampling import holdout_mask, stratified_subset
from tasks.errors import DatasetError
from tasks.files import write_atomic

DIGITS_SIZE = (32, 32)  # digits are 8x8; 32x32 leaves room for two 2x2 poolings in the deepest variant
HELD_OUT_NAMES = ("test", "val", "validation")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
FOLDER_CACHE_VERSION = 3  # bump when decoding changes, so no cached decode from older code is reused
SPLIT_SEED = 0  # held-out split and --limit sampling are deterministic, so a dataset's fingerprint is stable


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

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test, self.skipped):
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
        digest.update("\0".join(self.class_names).encode())
        return digest.hexdigest()[:16]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pixels, labels, ids, original shapes) of the "train" or "test" split."""
        return tuple(getattr(self, f"{field}_{name}") for field in ("x", "y", "ids", "shapes"))


def load_dataset(
    spec: str,
    image_size: tuple[int, int] | None = None,
    val_fraction: float = 0.2,
    limit: int | None = None,
    cache: Path | None = None,
) -> Dataset:
    """Load ``spec`` ("digits", a folder or an .npz file), bring it to one image size and cap it at ``limit``.

    With ``cache`` (a folder), a decoded image folder is kept there and reused while no file changes.
    """
    if not 0 < val_fraction < 1:
        raise DatasetError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if limit is not None and limit < 1:
        raise DatasetError(f"--limit must be a positive number of images, got {limit}")
    kind, path = resolve_source(spec)
    if kind == "digits":
        data = _load_digits(image_size or DIGITS_SIZE, val_fraction)
    elif kind == "npz":
        data = _load_npz(path, image_size)
    else:
        data = _load_folder(path, image_size, val_fraction, cache)
    return _limit(data, limit) if limit else data


def resolve_source(spec: str) -> tuple[str, Path | None]:
    """Say what kind of dataset ``spec`` names, failing fast (before any Prefect start-up) if it names none."""
    if spec == "digits":
        return "digits", None
    path = Path(spec).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset not found: {spec} (expected 'digits', a folder or an .npz file)")
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise DatasetError(f"unsupported dataset file {spec}: expected an .npz file or a folder")
        _npz_keys(path)
        return "npz", path
    if not any(_iter_class_dirs(path)):  # no sub-folders at all: neither classes nor a train/ folder
        raise DatasetError(
            f"no class folders in {spec}: expected {spec}/train/<class>/*.png (and optionally test/<class>/*)"
        )
    return "folder", path


def save_cache(data: Dataset, directory: Path) -> Path:
    """Write ``data`` to ``directory/<fingerprint>.npz`` (once) so other processes can load it by path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{data.fingerprint}.npz"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        arrays = {f"{field}_{split}": np.asarray(getattr(data, f"{field}_{split}"))
                  for field in ("x", "y", "ids", "shapes") for split in ("train", "test")}
        np.savez(tmp, name=np.array(data.name), class_names=np.array(data.class_names, dtype=str),
                 skipped=data.skipped.astype(str).reshape(-1, 4), **arrays)
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    return path


def load_cache(path: str | Path) -> Dataset:
    with np.load(path, allow_pickle=False) as npz:
        fields = {key: npz[key] for key in npz.files}
    return Dataset(
        name=str(fields.pop("name")), class_names=[str(c) for c in fields.pop("class_names")], **fields
    )


def _load_digits(size: tuple[int, int], val_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]  # 0-16 -> 0-255
    labels = digits.target.astype(np.int64)
    ids = np.array([f"digits[{i}]" for i in range(len(labels))])
    test = holdout_mask(labels, val_fraction, SPLIT_SEED)
    shapes = np.tile(pixels.shape[1:], (len(labels), 1))
    x = resize_images(pixels, size)
    return Dataset("digits", x[~test], labels[~test], x[test], labels[test], [str(d) for d in range(10)],
                   ids[~test], ids[test], shapes[~test], shapes[test])


def _npz_keys(path: Path) -> list[str]:
    if not zipfile.is_zipfile(path):  # np.load would try it as a pickle and say so, which misleads
        raise DatasetError(f"cannot read {path}: not an .npz archive (numpy.savez writes one)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
    except Exception as exc:  # a corrupt zip raises one of several types
        raise DatasetError(f"cannot read {path}: {exc}") from None
    missing = [key for key in NPZ_KEYS if key not in keys]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(missing)} (an .npz needs {', '.join(NPZ_KEYS)})")
    return keys


def _load_npz(path: Path, image_size: tuple[int, int] | None) -> Dataset:
    keys = _npz_keys(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in keys if key in (*NPZ_KEYS, "class_names")}
    except ValueError as exc:  # object arrays need pickle, which could run code: refused
        raise DatasetError(f"cannot read {path}: {exc}") from None
    xs = {split: _as_images(arrays[f"x_{split}"], f"x_{split}") for split in ("train", "test")}
    ys = {split: _as_labels(arrays[f"y_{split}"], len(xs[split]), f"y_{split}") for split in ("train", "test")}
    shapes = {split: np.tile(x.shape[1:], (len(x), 1)) for split, x in xs.items()}
    size = image_size or Counter(tuple(x.shape[1:3]) for x in xs.values()).most_common(1)[0][0]
    channels = max(x.shape[3] for x in xs.values())
    xs = {split: _to_channels(resize_images(x, size), channels) for split, x in xs.items()}
    widths = {arrays[f"y_{split}"].shape[1] for split in ys if _is_one_hot(arrays[f"y_{split}"])}
    names = arrays.get("class_names")
    if names is None and widths:  # one-hot labels: the columns are the classes, in order
        names = np.arange(max(widths)).astype(str)
    class_names, ys = _class_names(names, ys)
    ids = {split: np.array([f"x_{split}[{i}]" for i in range(len(xs[split]))]) for split in xs}
    return Dataset(path.name, xs["train"], ys["train"], xs["test"], ys["test"], class_names,
                   ids["train"], ids["test"], shapes["train"], shapes["test"])


def _as_images(x: np.ndarray, key: str) -> np.ndarray:
    if x.dtype.kind not in "uifb" or x.ndim not in (3, 4) or len(x) == 0:
        raise DatasetError(
            f"{key} must be a non-empty numeric array of shape (n, height, width[, channels]), "
            f"got dtype {x.dtype} and shape {x.shape}"
        )
    x = x[..., None] if x.ndim == 3 else x
    if x.shape[3] not in (1, 3, 4):
        raise DatasetError(f"{key} has {x.shape[3]} channels; expected 1, 3 or 4 (shape {x.shape})")
    return x.astype(np.uint8) if x.dtype.kind == "b" else x


def _is_one_hot(y: np.ndarray) -> bool:
    return y.ndim == 2 and y.shape[1] > 1


def _as_labels(y: np.ndarray, n: int, key: str) -> np.ndarray:
    if _is_one_hot(y):
        # The column holding the row's single largest value. A row with no positive value, or a tie for the
        # largest, names no class: -1, which the gate reports image by image instead of guessing class 0.
        if y.dtype.kind not in "uifb":
            raise DatasetError(f"{key} must hold numeric one-hot rows, got dtype {y.dtype}")
        top = y.max(axis=1)
        clear = (top > 0) & ((y == top[:, None]).sum(axis=1) == 1)
        y = np.where(clear, y.argmax(axis=1), -1)
    y = y.reshape(-1)
    if len(y) != n:
        raise DatasetError(f"{key} has {len(y)} labels for {n} images")
    if y.dtype.kind not in "uifb" or (y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0)):
        raise DatasetError(f"{key} must hold integer class labels, got dtype {y.dtype}")
    return y.astype(np.int64)


def _class_names(names: np.ndarray | None, ys: dict[str, np.ndarray]) -> tuple[list[str], dict]:
    """Class names as given, or the sorted training labels; labels are then indices into that list.

    Without names, a test label the training split never has becomes -1: outside the class list, which the
    gate reports by image.
    """
    if names is not None:
        return [str(name) for name in np.asarray(names).reshape(-1)], ys
    values = np.unique(ys["train"])
    encoded = {}
    for split, y in ys.items():
        index = np.searchsorted(values, y).clip(0, len(values) - 1)
        encoded[split] = np.where(values[index] == y, index, -1)
    return [str(v) for v in values], encoded


def _to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    if x.shape[3] == channels:
        return x
    if x.shape[3] == 1:
        return np.repeat(x, channels, axis=3)
    return x[..., :channels]  # RGBA -> RGB: the alpha channel carries no class information here


def _split_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    """The sub-folder of ``root`` named like one of ``names``, in that order of preference, ignoring case
    ("Train", "TEST" and "Validation" are split folders too, not classes)."""
    if not root.is_dir():
        return None
    folders = {d.name.lower(): d for d in sorted(root.iterdir()) if d.is_dir()}
    return next((folders[name] for name in names if name in folders), None)


def _iter_class_dirs(root: Path):
    if root.is_dir():
        yield from (d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith("."))


def _load_folder(root: Path, image_size: tuple[int, int] | None, val_fraction: float,
                 cache: Path | None) -> Dataset:
    train_root = _split_folder(root, ("train",)) or root
    test_root = _split_folder(root, HELD_OUT_NAMES) if train_root != root else None
    roots = {"train": train_root} | ({"test": test_root} if test_root else {})
    class_names = sorted({d.name for r in roots.values() for d in _iter_class_dirs(r)})
    files, outside = scan_folder(root, roots, class_names)
    for split, split_root in roots.items():
        if not any(f.split == split for f in files):
            raise DatasetError(f"no images in {split_root} (expected {split_root}/<class>/*.png or .jpg)")
    key = _listing_key(files, outside, class_names, image_size, val_fraction)
    cached = _cached_folder(cache, key)
    if cached is not None:
        return cached
    splits, failed = read_folder_split(root, files, list(roots), image_size)
    if test_root is None:
        x, y, ids, shapes = splits.pop("train")
        test = holdout_mask(y, val_fraction, SPLIT_SEED)
        splits = {"train": (x[~test], y[~test], ids[~test], shapes[~test]),
                  "test": (x[test], y[test], ids[test], shapes[test])}
    (xtr, ytr, idtr, shtr), (xte, yte, idte, shte) = splits["train"], splits["test"]
    skipped = np.array([(s, str(label), path, reason) for s, label, path, reason in outside + failed],
                       dtype=str).reshape(-1, 4)
    data = Dataset(root.resolve().name, xtr, ytr, xte, yte, class_names, idtr, idte, shtr, shte, skipped)
    if cache is not None:
        path = save_cache(data, cache / "datasets")
        (cache / "folders").mkdir(parents=True, exist_ok=True)
        write_atomic(cache / "folders" / f"{key}.json", json.dumps({"dataset": path.name}))
    return data


def _listing_key(files: list, outside: list, class_names: list[str], image_size, val_fraction: float) -> str:
    """A hash of every file's path, size and modification time, and of the options that shape the decode.

    It changes whenever a file is added, removed, replaced or touched, so a cached decode is never stale.
    """
    digest = hashlib.sha256(f"{FOLDER_CACHE_VERSION}|{image_size}|{val_fraction}|{class_names}".encode())
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
    except (OSError, ValueError, KeyError):  # no entry yet, or a damaged one: decode again
        return None


def _limit(data: Dataset, limit: int) -> Dataset:
    """Keep at most ``limit`` images per split, the same share of each class as before."""
    kept = {}
    for split in ("train", "test"):
        x, y, ids, shapes = data.split(split)
        if len(y) > limit:
            keep = stratified_subset(y, limit, SPLIT_SEED)
            x, y, ids, shapes = x[keep], y[keep], ids[keep], shapes[keep]
        kept |= {f"x_{split}": x, f"y_{split}": y, f"ids_{split}": ids, f"shapes_{split}": shapes}
    return Dataset(name=data.name, class_names=data.class_names, skipped=data.skipped, **kept)
