"""Decode image files and bring images to one size and channel count (Pillow; one call per image, never per pixel)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.errors import DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def resize_images(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (n, h, w, c) array to ``size`` = (h, w), keeping its dtype."""
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    height, width = size
    out = np.empty((len(x), height, width, x.shape[3]), dtype=x.dtype)
    as_bytes = x.dtype == np.uint8  # 8-bit resampling in Pillow rounds and clips for us
    for i, image in enumerate(x):
        for c in range(x.shape[3]):
            channel = image[..., c] if as_bytes else image[..., c].astype(np.float32)
            resized = np.asarray(Image.fromarray(channel).resize((width, height), Image.Resampling.BILINEAR))
            out[i, ..., c] = resized if as_bytes or x.dtype.kind == "f" else np.round(resized)
    return out


def list_images(roots: dict[str, Path], class_names: list[str]) -> list[tuple[str, int, Path]]:
    """(split, label, file) for every image file under ``<split root>/<class>/``, in a stable order."""
    found = []
    for split, split_root in roots.items():
        for label, name in enumerate(class_names):
            folder = split_root / name
            if folder.is_dir():
                found += [(split, label, f) for f in sorted(folder.rglob("*"))
                          if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
    return found


def read_folder_split(root: Path, roots: dict[str, Path], class_names: list[str],
                      image_size: tuple[int, int] | None) -> dict[str, tuple]:
    """Decode every image under ``roots`` into (pixels, labels, ids, original shapes) per split."""
    files = list_images(roots, class_names)
    for split, split_root in roots.items():
        if not any(s == split for s, _, _ in files):
            raise DatasetError(f"no images in {split_root} (expected {split_root}/<class>/*.png or .jpg)")
    headers = [_header(root, f) for _, _, f in files]
    size = image_size or Counter((h, w) for h, w, _, _ in headers).most_common(1)[0][0]
    mode = "L" if all(m in GRAY_MODES for _, _, _, m in headers) else "RGB"
    pixels = np.empty((len(files), *size, 1 if mode == "L" else 3), dtype=np.uint8)
    for i, (_, _, path) in enumerate(files):
        pixels[i] = _decode(root, path, mode, size)
    splits = np.array([s for s, _, _ in files])
    labels = np.array([label for _, label, _ in files], dtype=np.int64)
    ids = np.array([path.relative_to(root).as_posix() for _, _, path in files])
    shapes = np.array([(h, w, c) for h, w, c, _ in headers], dtype=np.int64).reshape(-1, 3)
    return {s: (pixels[splits == s], labels[splits == s], ids[splits == s], shapes[splits == s]) for s in roots}


def _header(root: Path, path: Path) -> tuple[int, int, int, str]:
    try:
        with Image.open(path) as image:
            width, height = image.size
            return height, width, len(image.getbands()), image.mode
    except Exception as exc:  # Pillow raises several types for unreadable files
        raise DatasetError(f"cannot read image {path.relative_to(root)}: {exc}") from None


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) images as 8-bit by their top byte: Pillow's convert("L") would clip them to
    255, silently turning most of a 16-bit image white."""
    if not image.mode.startswith("I"):
        return image
    pixels = np.asarray(image).astype(np.int64)
    return Image.fromarray((pixels >> 8 if pixels.max() > 255 else pixels).clip(0, 255).astype(np.uint8))


def _decode(root: Path, path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image = _eight_bit(image).convert(mode)
            if image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image)
    except Exception as exc:  # truncated files only fail here, when the pixels are decoded
        raise DatasetError(f"cannot read image {path.relative_to(root)}: {exc}") from None
    return array[..., None] if array.ndim == 2 else array
