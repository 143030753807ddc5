"""Load a dataset (built-in digits, a folder of class subfolders, or an .npz) into one form, `store.Dataset`.

Every source ends as the same `Dataset`: uint8 or float pixel arrays of one size and channel count, integer
labels, class names, one identifier per image (its path, or its index in the source array) and the shape each
image had before it was brought to the common size. The `fingerprint` is a hash of the decoded content, so it
changes exactly when the data a model would see changes. Image folders are decoded by `folder`, straight into
the shared cache; digits and .npz files are small enough to load in memory first.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from tasks.data.decode import Progress
from tasks.data.folder import load_folder
from tasks.data.images import resize_images, scan_folder
from tasks.data.resolution import working_size
from tasks.data.sampling import holdout_mask, stratified_subset
from tasks.data.store import Dataset
from tasks.errors import DatasetError

DIGITS_SIZE = (32, 32)  # digits are 8x8; 32x32 leaves room for two 2x2 poolings in the deepest variant
TEST_NAMES = ("test",)
VAL_NAMES = ("val", "validation")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
SPLIT_SEED = 0  # held-out split and --limit sampling are deterministic, so a dataset's fingerprint is stable


def load_dataset(
    spec: str,
    image_size: tuple[int, int] | None = None,
    test_fraction: float = 0.2,
    limit: int | None = None,
    cache: Path | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """Load ``spec`` ("digits", a folder or an .npz file), bring it to one image size and cap it at ``limit``.

    Without ``image_size``, images are brought to the working resolution (`resolution.working_size`). With
    ``cache`` (a folder), a decoded image folder is kept there, memory-mapped, and reused while no file changes;
    ``progress`` hears how the reading and decoding of a folder advance.
    """
    if not 0 < test_fraction < 1:
        raise DatasetError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if limit is not None and limit < 1:
        raise DatasetError(f"--limit must be a positive number of images, got {limit}")
    kind, path = resolve_source(spec)
    if kind == "digits":
        data = _load_digits(image_size or DIGITS_SIZE, test_fraction)
    elif kind == "npz":
        data = _load_npz(path, image_size)
    else:
        data = _load_folder(path, image_size, test_fraction, limit, cache, progress)
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


def _load_digits(size: tuple[int, int], test_fraction: float) -> Dataset:
    images, labels = _digits()
    pixels = np.round(images * (255 / 16)).astype(np.uint8)[..., None]  # 0-16 -> 0-255
    ids = np.array([f"digits[{i}]" for i in range(len(labels))])
    test = holdout_mask(labels, test_fraction, SPLIT_SEED)
    shapes = np.tile(pixels.shape[1:], (len(labels), 1))
    x = resize_images(pixels, size)
    return Dataset("digits", x[~test], labels[~test], x[test], labels[test], [str(d) for d in range(10)],
                   ids[~test], ids[test], shapes[~test], shapes[test])


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (8x8, 0-16) and labels, read from the file it ships, as its `load_digits` reads it.

    Importing `sklearn.datasets` for it costs 1.5-3.5 s of every digits command on 2 cores; finding the file
    does not import scikit-learn. Should its layout change, its own loader is the fallback.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits  # ships with scikit-learn: no download

        digits = load_digits()
        return digits.images, digits.target.astype(np.int64)
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


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
    size = working_size(Counter({tuple(x.shape[1:3]): len(x) for x in xs.values()}).elements(), image_size)
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


def _load_folder(root: Path, image_size: tuple[int, int] | None, test_fraction: float, limit: int | None,
                 cache: Path | None, progress: Progress | None) -> Dataset:
    train_root = _split_folder(root, ("train",)) or root
    test_root = _split_folder(root, TEST_NAMES) if train_root != root else None
    val_root = _split_folder(root, VAL_NAMES) if train_root != root else None
    roots = {"train": train_root} | ({"test": test_root} if test_root else {}) | ({"val": val_root} if val_root else {})
    class_names = sorted({d.name for r in roots.values() for d in _iter_class_dirs(r)})
    files, outside = scan_folder(root, roots, class_names)
    for split, split_root in roots.items():
        if not any(f.split == split for f in files):
            raise DatasetError(f"no images in {split_root} (expected {split_root}/<class>/*.png or .jpg)")
    return load_folder(root, files, outside, roots, class_names, image_size, test_fraction, limit, SPLIT_SEED,
                       cache, progress)


def _limit(data: Dataset, limit: int) -> Dataset:
    """Keep at most ``limit`` images per split, the same share of each class as before. (A folder applies its
    limit before decoding: it comes back here within it, unchanged.)"""
    if len(data.y_train) <= limit and len(data.y_test) <= limit:
        return data
    kept = {}
    for split in ("train", "test"):
        x, y, ids, shapes = data.split(split)
        if len(y) > limit:
            keep = stratified_subset(y, limit, SPLIT_SEED)
            x, y, ids, shapes = x[keep], y[keep], ids[keep], shapes[keep]
        kept |= {f"x_{split}": x, f"y_{split}": y, f"ids_{split}": ids, f"shapes_{split}": shapes}
    return Dataset(name=data.name, class_names=data.class_names, skipped=data.skipped, **kept)
