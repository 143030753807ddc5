"""Natural-looking CIFAR-sized images with near copies planted across splits: the leakage benchmark's data
(`benchmarks/bench_leakage.py`) and the near-copy tests'.

The images are not noise: a lit two-colour gradient, soft blobs, hard discs and rectangles, a striped texture
patch and a little sensor noise, all at random, so near neighbours look alike the way photos of one kind do.
The copies are made by the edits real datasets see: a colour shift, a translation of 2-4 pixels, a 10% crop
rescaled, JPEG re-encoding at quality 50-95, and a horizontal flip (counted on its own).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def natural_images(n: int, size: int = 32, seed: int = 0, batch: int = 2000) -> np.ndarray:
    """``n`` images (n, size, size, 3) uint8."""
    out = np.empty((n, size, size, 3), np.uint8)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        out[start:stop] = _batch(stop - start, size, np.random.default_rng((seed, start)))
    return out


def _batch(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    y, x = (np.mgrid[:size, :size].astype(np.float32) + 0.5) / size
    y, x = y[None], x[None]
    angle = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    along = np.clip(np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5) + 0.5, 0, 1)
    first, second = rng.uniform(0, 255, (2, n, 1, 1, 3)).astype(np.float32)
    image = first + (second - first) * along[..., None]
    for _ in range(3):  # soft blobs
        cx, cy = rng.uniform(0, 1, (2, n, 1, 1)).astype(np.float32)
        radius = rng.uniform(0.08, 0.35, (n, 1, 1)).astype(np.float32)
        weight = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius * radius))
        colour = rng.uniform(0, 255, (n, 1, 1, 3)).astype(np.float32)
        image += (colour - image) * (weight[..., None] * rng.uniform(0.4, 1, (n, 1, 1, 1)).astype(np.float32))
    for _ in range(2):  # hard shapes: a disc or a rectangle
        cx, cy = rng.uniform(0.15, 0.85, (2, n, 1, 1)).astype(np.float32)
        radius = rng.uniform(0.06, 0.25, (n, 1, 1)).astype(np.float32)
        disc = (x - cx) ** 2 + (y - cy) ** 2 < radius * radius
        rectangle = (np.abs(x - cx) < radius) & (np.abs(y - cy) < radius * rng.uniform(0.4, 1.5, (n, 1, 1)))
        mask = np.where(rng.random((n, 1, 1)) < 0.5, disc, rectangle)
        image = np.where(mask[..., None], rng.uniform(0, 255, (n, 1, 1, 3)).astype(np.float32), image)
    frequency = rng.uniform(3, 10, (n, 1, 1)).astype(np.float32)  # a striped patch
    direction = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    stripes = np.sin(2 * np.pi * frequency * (np.cos(direction) * x + np.sin(direction) * y))
    patch = (x > rng.uniform(0, 0.6, (n, 1, 1))) & (y > rng.uniform(0, 0.6, (n, 1, 1)))
    image += (stripes * rng.uniform(0, 40, (n, 1, 1)).astype(np.float32) * patch)[..., None]
    image += rng.normal(0, 4, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def colour_shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A gain and an offset per channel, half the time after mixing the channels a little (white balance)."""
    pixels = image.astype(np.float32)
    if rng.random() < 0.5:
        pixels = pixels @ (np.eye(3) * 0.8 + rng.uniform(0, 0.2, (3, 3))).T
    return np.clip(pixels * rng.uniform(0.75, 1.25, 3) + rng.uniform(-25, 25, 3), 0, 255).astype(np.uint8)


def translate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Moved 2-4 pixels each way, the border repeated."""
    size = image.shape[0]
    dx, dy = rng.integers(2, 5, 2) * rng.choice([-1, 1], 2)
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="edge")
    return padded[4 + dy:4 + dy + size, 4 + dx:4 + dx + size]


def crop_rescale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """90% of each side, anywhere in the image, scaled back to the full size."""
    size = image.shape[0]
    kept = int(round(size * 0.9))
    left, top = rng.integers(0, size - kept + 1, 2)
    crop = Image.fromarray(image[top:top + kept, left:left + kept])
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(50, 96)))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return image[:, ::-1].copy()


EDITS = {"colour shift": colour_shift, "translation 2-4 px": translate, "crop 10% + rescale": crop_rescale,
         "JPEG q50-95": jpeg, "horizontal flip": flip}


def planted(train: int = 50_000, test: int = 10_000, share: float = 0.03, seed: int = 0):
    """Train and test images, with ``share`` of the test images replaced by edited copies of distinct training
    images, the edits taking turns. Returns (x_train, x_test, planted test indices, their training sources,
    their edits)."""
    x = natural_images(train + test, seed=seed)
    x_train, x_test = x[:train], x[train:].copy()
    rng = np.random.default_rng((seed, 1))
    count = int(round(test * share))
    where = rng.choice(test, count, replace=False)
    sources = rng.choice(train, count, replace=False)
    edits = np.array(list(EDITS))[np.arange(count) % len(EDITS)]
    for target, source, edit in zip(where, sources, edits):
        x_test[target] = EDITS[edit](x_train[source], rng)
    return x_train, x_test, where, sources, edits


def write_planted_folder(root, train: int = 600, test: int = 150, copies: int = 10, classes: int = 3,
                         seed: int = 0, size: int = 32) -> list[tuple[str, str, str]]:
    """A dataset folder (``root/train/<class>/``, ``root/test/<class>/``, PNG) of natural-looking images, with
    ``copies`` test images replaced by edited copies of training images (each edit in turn, flips included).
    Returns the planted pairs as (test path, training path, edit), paths relative to ``root``."""
    from pathlib import Path

    root = Path(root)
    x = natural_images(train + test, size=size, seed=seed)
    labels = np.arange(train + test) % classes
    rng = np.random.default_rng((seed, 2))
    targets = rng.choice(test, copies, replace=False) + train
    sources = rng.choice(train, copies, replace=False)
    names = list(EDITS)
    planted_pairs = []
    for number, (target, source) in enumerate(zip(targets, sources)):
        edit = names[number % len(names)]
        x[target] = EDITS[edit](x[source], rng)
        labels[target] = labels[source]
    paths = []
    for index in range(train + test):
        split = "train" if index < train else "test"
        relative = f"{split}/class_{labels[index]}/{index:05d}.png"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[index]).save(root / relative)
        paths.append(relative)
    for number, (target, source) in enumerate(zip(targets, sources)):
        planted_pairs.append((paths[target], paths[source], names[number % len(names)]))
    return planted_pairs


def textures(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` samples of one texture (1/f noise, the statistics of grass or bark) in one colour scheme: every
    image alike in kind, none a copy of another."""
    rng = np.random.default_rng(seed)
    frequency = np.sqrt(np.fft.rfftfreq(size)[None] ** 2 + np.fft.fftfreq(size)[:, None] ** 2)
    frequency[0, 0] = 1
    amplitude = frequency ** -1.5
    out = np.empty((n, size, size, 3), np.uint8)
    for index in range(n):
        phases = rng.uniform(0, 2 * np.pi, (3, *frequency.shape))
        planes = np.fft.irfft2(amplitude * np.exp(1j * phases), s=(size, size))
        planes = (planes - planes.mean()) / planes.std() * 40 + np.array([90, 140, 60])[:, None, None]
        out[index] = np.clip(planes.transpose(1, 2, 0), 0, 255).astype(np.uint8)
    return out


def documents(n: int, width: int = 96, height: int = 128, seed: int = 0) -> np.ndarray:
    """``n`` greyscale pages of one layout (a title bar, lines of words of random lengths): scans of one form."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    out = np.empty((n, height, width, 1), np.uint8)
    for index in range(n):
        page = Image.new("L", (width, height), 245)
        draw = ImageDraw.Draw(page)
        draw.rectangle((8, 6, 60, 12), fill=40)
        for top in range(22, height - 10, 8):
            left = 8
            while True:
                word = int(rng.integers(4, 16))
                if left + word > width - 8:
                    break
                draw.rectangle((left, top, left + word, top + 3), fill=int(rng.integers(20, 80)))
                left += word + int(rng.integers(3, 6))
        noisy = np.asarray(page, np.float32) + rng.normal(0, 3, (height, width))
        out[index] = np.clip(noisy, 0, 255).astype(np.uint8)[..., None]
    return out
