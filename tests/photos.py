"""A generated folder of photo-like JPEGs, as a phone or the web gives them: the data a new user brings.

Sizes: mostly 500x375, some 640x480 and 1024x768, a fifth portrait; 5 classes told apart by colour and shape,
over smooth gradients, blobs and sensor-like noise (not noise alone: the gate's sharpness, entropy and hashes
see what they see in photos). Used by the gate's tests and by `benchmarks/bench_photos.py`, which writes
thousands with several processes.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# (width, height, weight): the share of each size in a photo folder
PHOTO_SIZES = ((500, 375, 0.55), (640, 480, 0.15), (1024, 768, 0.1), (375, 500, 0.15), (480, 640, 0.05))
COLOURS = ((200, 80, 60), (60, 160, 90), (70, 90, 210), (210, 190, 70), (150, 80, 170))


def photo(label: int, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """One photo-like image of class ``label``: a lit gradient, soft blobs, the class's shape, noise."""
    small = (max(8, width // 4), max(8, height // 4))  # paint at a quarter size, then scale up: soft like a lens
    y, x = np.mgrid[:small[1], :small[0]].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.55 + 0.45 * (np.cos(angle) * x / small[0] + np.sin(angle) * y / small[1])
    base = np.array(COLOURS[label % len(COLOURS)], np.float32) * rng.uniform(0.7, 1.1)
    pixels = light[..., None] * base
    for _ in range(4):  # background blobs of any colour
        cx, cy, r = rng.uniform(0, small[0]), rng.uniform(0, small[1]), rng.uniform(3, small[0] / 3)
        pixels += (np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(-60, 60, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    cx, cy, r = small[0] * rng.uniform(0.3, 0.7), small[1] * rng.uniform(0.3, 0.7), min(small) * rng.uniform(0.15, 0.3)
    sides = 3 + label  # the class's shape: a triangle, a square, ... seen at any angle
    draw.regular_polygon((cx, cy, r), sides if sides < 8 else 40, rotation=rng.uniform(0, 360),
                         fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    image = image.resize((width, height), Image.Resampling.BICUBIC).filter(ImageFilter.SMOOTH)
    noise = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8))


def size_for(index: int, seed: int, sizes=PHOTO_SIZES) -> tuple[int, int]:
    rng = np.random.default_rng((seed, index, 1))
    weights = np.array([w for *_, w in sizes])
    width, height, _ = sizes[rng.choice(len(sizes), p=weights / weights.sum())]
    return width, height


def _write(job: tuple) -> None:
    path, label, index, seed, quality, sizes = job
    width, height = size_for(index, seed, sizes)
    photo(label, width, height, np.random.default_rng((seed, index))).save(path, quality=quality)


def write_photo_folder(root: Path, images: int, classes: int = 5, seed: int = 0, processes: int | None = None,
                       quality: int = 85, sizes=PHOTO_SIZES) -> Path:
    """``images`` photo-like JPEGs in ``root/<class>/`` (no test folder: the tool holds out its own share), of
    ``sizes`` (width, height, share) drawn at random."""
    root = Path(root)
    jobs = []
    for index in range(images):
        label = index % classes
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"IMG_{index:06d}.jpg", label, index, seed, quality, sizes))
    processes = processes or min(os.cpu_count() or 1, max(1, images // 200))
    if processes == 1:
        for job in jobs:
            _write(job)
    else:
        with ProcessPoolExecutor(processes) as pool:
            list(pool.map(_write, jobs, chunksize=64))
    return root
