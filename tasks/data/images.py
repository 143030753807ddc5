"""Decode image files and bring images to one size and channel count (Pillow; one call per image, never per pixel)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import simplejpeg
from PIL import Image

from tasks.errors import DatasetError

# JPEG draft decoding may stop a little short of the size asked for, then scale up the last few percent: a
# 500x375 photo for 128x96 decodes at 1/4 scale (125x94) instead of 1/2 (250x188), about twice as fast, and a
# 2% upscale is invisible next to the 4x reduction before it.
DRAFT_FLOOR = 0.9
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
OUTSIDE_LINK = "symlink to outside the dataset folder, not followed"
SCANNED_LINK = "symlink to a folder the dataset already covers, not followed"
LINK_REASONS = (OUTSIDE_LINK, SCANNED_LINK)
# Channels as a reader counts them: palette and CMYK files are colour (3), whatever their band count.
MODE_CHANNELS = {"1": 1, "L": 1, "I": 1, "F": 1, "I;16": 1, "I;16B": 1, "I;16L": 1, "LA": 2, "La": 2, "P": 3,
                 "PA": 4, "RGB": 3, "RGBX": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "CMYK": 3, "RGBA": 4, "RGBa": 4}


class ImageFile(NamedTuple):  # a tuple, not a dataclass: 60,000 of them are made on every command's listing
    split: str
    label: int
    path: str
    size: int  # bytes and modification time: the file's fingerprint for the decode cache
    mtime_ns: int


def resize_images(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (n, h, w, c) array to ``size`` = (h, w), keeping its dtype."""
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    height, width = size
    out = allocate((len(x), height, width, x.shape[3]), x.dtype)
    as_bytes = x.dtype == np.uint8  # 8-bit resampling in Pillow rounds and clips for us
    for i, image in enumerate(x):
        for c in range(x.shape[3]):
            channel = image[..., c] if as_bytes else image[..., c].astype(np.float32)
            resized = np.asarray(Image.fromarray(channel).resize((width, height), Image.Resampling.BILINEAR))
            out[i, ..., c] = resized if as_bytes or x.dtype.kind == "f" else np.round(resized)
    return out


def scan_folder(root: Path, roots: dict[str, Path], class_names: list[str]) -> tuple[list[ImageFile], list[tuple]]:
    """Every image file under ``<split root>/<class>/`` in a stable order, and the files not to read.

    Symlinks (to files or folders) that resolve outside ``root`` are not followed: a dataset folder should not
    make the tool read elsewhere on the machine. Nor are links to folders the scan already covers (a link to a
    parent or to another class would read those images again under this class's label). Both come back as
    (split, label, path, reason) findings.
    `os.scandir` gives each entry's type without a system call and its size and time with one; paths stay
    strings (pathlib objects cost more than the system calls at 60,000 files).
    """
    inside = root.resolve()
    covered = [os.path.realpath(r) for r in roots.values()]
    found, skipped = [], []
    for split, split_root in roots.items():
        for label, name in enumerate(class_names):
            folder = split_root / name
            if not folder.is_dir():
                continue
            if not _within(str(folder), inside):
                skipped.append((split, label, relative(root, str(folder)), OUTSIDE_LINK))
                continue
            for entry, problem in _walk(str(folder), inside, covered):
                if problem:
                    skipped.append((split, label, relative(root, entry.path), problem))
                else:
                    stat = entry.stat()
                    found.append(ImageFile(split, label, entry.path, stat.st_size, stat.st_mtime_ns))
    return found, skipped


def _walk(folder: str, inside: Path, covered: list[str]):
    """(entry, problem) for every image file under ``folder``, sorted by name; problem is None or why the file
    is not read. Linked folders are entered only when they stay inside the dataset and outside the split
    folders being scanned (so a link to a parent can never loop)."""
    with os.scandir(folder) as entries:
        ordered = sorted(entries, key=lambda e: e.name)
    for entry in ordered:
        name = entry.name
        if name.startswith("."):
            continue
        is_image = "." in name and f".{name.rpartition('.')[2].lower()}" in IMAGE_SUFFIXES  # splitext, faster
        if entry.is_symlink():
            is_dir = entry.is_dir()
            if not _within(entry.path, inside):
                if is_image or is_dir:
                    yield entry, OUTSIDE_LINK
            elif is_dir:
                if _overlaps(os.path.realpath(entry.path), covered):
                    yield entry, SCANNED_LINK
                else:
                    yield from _walk(entry.path, inside, covered)
            elif is_image:
                yield entry, None if entry.is_file() else "a symlink to a file that does not exist"
        elif entry.is_dir():
            yield from _walk(entry.path, inside, covered)
        elif is_image:
            yield entry, None


def _overlaps(real: str, covered: list[str]) -> bool:
    """Is ``real`` one of the ``covered`` folders, inside one, or a parent of one?"""
    return any(real == c or real.startswith(c + os.sep) or c.startswith(real + os.sep) for c in covered)


def allocate(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An empty array for a whole split, or a clear error saying how much memory it would need."""
    try:
        return np.empty(shape, dtype=dtype)
    except MemoryError:
        size = np.prod(shape, dtype=np.float64) * np.dtype(dtype).itemsize / 2**30
        raise DatasetError(f"{shape[0]:,} images of {'x'.join(map(str, shape[1:]))} need {size:,.1f} GiB of "
                           "memory; use a smaller --image-size or --limit") from None


def _within(path: str, inside: Path) -> bool:
    real = os.path.realpath(path)
    return real == str(inside) or real.startswith(str(inside) + os.sep)


def relative(root: Path, path: str) -> str:
    """``path`` relative to the dataset root, with forward slashes (paths are built by joining onto root)."""
    return Path(os.path.relpath(path, root)).as_posix()


def _reason(exc: Exception, path: str | None = None) -> str:
    """One line saying why a file could not be read (Pillow's messages can span lines and repeat the path)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if path is not None:
        text = text.replace(f" '{path}'", "").replace(path, os.path.basename(path))
    return text[:200]


def header(path: str) -> tuple[int, int, int, str] | str:
    """(height, width, channels, mode), or the reason the file is not a readable image."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            channels = MODE_CHANNELS.get(image.mode, len(image.getbands()))
            if image.mode == "P" and "transparency" in image.info:
                channels = 4
            return height, width, channels, image.mode
    except Exception as exc:  # Pillow raises several types for unreadable files
        return _reason(exc, path)


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) images as 8-bit by their top byte, and 32-bit float images on the 0-1 scale
    as 0-255: Pillow's convert("L") would clip them, turning a 16-bit image white and a 0-1 float image black."""
    if image.mode == "F":
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scaled = pixels * 255 if pixels.max(initial=0) <= 1 else pixels
        return Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8))
    if not image.mode.startswith("I"):
        return image
    pixels = np.asarray(image).astype(np.int64)
    return Image.fromarray((pixels >> 8 if pixels.max() > 255 else pixels).clip(0, 255).astype(np.uint8))


def decode_into(path: str, mode: str, size: tuple[int, int], out: np.ndarray) -> str | None:
    """Decode ``path`` into ``out`` (height, width, channels); the reason on failure, None on success.

    A JPEG larger than ``size`` is decoded at a reduced scale (libjpeg's scaled DCT does that much less work),
    then resized the rest of the way. JPEGs go through simplejpeg first: the same libjpeg-turbo as Pillow's,
    with less around it, measured 1,500 against 1,150 photos of 500x375 a second on one core here. Anything it
    will not take (a damaged file, another format named .jpg) goes through Pillow, which also words the reason."""
    if path.lower().endswith((".jpg", ".jpeg")) and _jpeg_into(path, mode, size, out):
        return None
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":  # the smallest scale at least DRAFT_FLOOR of the size asked for
                image.draft(mode, (math.ceil(size[1] * DRAFT_FLOOR), math.ceil(size[0] * DRAFT_FLOOR)))
            image = _eight_bit(image).convert(mode)
            _resized_into(image, size, out)
    except Exception as exc:  # truncated files only fail here, when the pixels are decoded
        return _reason(exc, path)
    return None


def _jpeg_into(path: str, mode: str, size: tuple[int, int], out: np.ndarray) -> bool:
    """Decode a JPEG with simplejpeg at the smallest scale at least DRAFT_FLOOR of ``size`` (the fast DCT and
    upsampling Pillow's draft mode uses); False when it refuses the file. ``strict`` turns libjpeg's warnings
    (a truncated file) into refusals, so a damaged file is never half grey."""
    try:
        with open(path, "rb") as file:
            pixels = simplejpeg.decode_jpeg(file.read(), "GRAY" if mode == "L" else "RGB", fastdct=True,
                                            fastupsample=True, min_height=math.ceil(size[0] * DRAFT_FLOOR),
                                            min_width=math.ceil(size[1] * DRAFT_FLOOR), strict=True)
    except (ValueError, OSError):
        return False
    _resized_into(Image.fromarray(pixels[..., 0] if mode == "L" else pixels), size, out)
    return True


def _resized_into(image: Image.Image, size: tuple[int, int], out: np.ndarray) -> None:
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image)
    out[...] = array[..., None] if array.ndim == 2 else array
