"""Per-image measurements as a pandas table: the input of the data-quality gate.

One row per image (and one per file that could not be read, with its error and no measurements). Everything is
computed with whole-array numpy operations over chunks of images, spread over threads (numpy releases the GIL),
so the cost is a few passes over memory, never a Python loop per pixel. Sums go through BLAS (a matrix product
with a vector of ones), which is several times faster than numpy's strided reductions over the channel axis.

Quality measures (brightness, contrast, entropy, sharpness, perceptual hash) are taken on the luminance of each
image mapped to 0-255 with the dataset's usual value range, so a float 0-1 dataset and a uint8 dataset measure
alike; an image on another scale is measured as the model would see it (and flagged by the scale check).
"""

from __future__ import annotations

import functools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from tasks.data.datasets import Dataset
from tasks.data.images import LINK_REASONS

STATS_VERSION = 2  # bump when a measure changes, so statistics cached by older code are not reused
PIXELS_PER_CHUNK = 1 << 21  # ~2M values per chunk: 8 MB float32 temporaries stay in cache; measured fastest
SCALE_RANGES = {"0-1": (0.0, 1.0), "0-255": (0.0, 255.0), "shifted": (-1.0, 1.0), "other": (0.0, 65535.0)}
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as Pillow's convert("L")
SATURATED = 250  # luminance (0-255) counted as blown out: the top 2% of the range
HASH_GRID = 8  # perceptual hash: 9x9 block means, 64 horizontal and 64 vertical gradient bits
_HASH_KEYS = np.random.default_rng(20261128).integers(0, 2**62, 1 << 16, dtype=np.uint64) * 2 + 1  # odd multipliers


def pixel_stats(data: Dataset, threads: int | None = None) -> pd.DataFrame:
    """One row per image: identity, original geometry, value statistics and quality measures."""
    ranges = {s: min_max(data.split(s)[0]) for s in ("train", "test")}
    scales = {s: pixel_scale(*ranges[s]) for s in ranges}
    lo, hi = value_range(np.concatenate(list(scales.values())))
    parts = []
    for split in ("train", "test"):
        x, y, ids, shapes = data.split(split)
        table = pd.DataFrame({
            "split": split, "path": ids.astype(str), "label": y, "class_name": _class_names(data, y),
            "file_error": None, "link_not_followed": False,
            "height": shapes[:, 0], "width": shapes[:, 1], "channels": shapes[:, 2],
            "dtype": str(x.dtype), "min": ranges[split][0], "max": ranges[split][1], "scale": scales[split],
        })
        parts.append(pd.concat([table, _measure_all(x, lo, hi, threads)], axis=1))
    parts.append(_skipped_rows(data))
    stats = pd.concat([p for p in parts if len(p)], ignore_index=True)
    return stats.astype({"label": "int64"})


def pixel_scale(minimum: np.ndarray, maximum: np.ndarray) -> np.ndarray:
    """Name each image's value scale from its min and max.

    "0-1" (max <= 1), "0-255" (max <= 255), "shifted" (negative values: [-1, 1] or standardised), "other"
    (beyond 255, e.g. 16-bit) and "constant" (one value, or none finite: fits any scale). A dataset should have
    one; several is the classic silent failure of images saved or loaded on different scales.
    """
    return np.select(
        [~(maximum > minimum), minimum < 0, maximum <= 1, maximum <= 255],
        ["constant", "shifted", "0-1", "0-255"],
        default="other",
    )


def usual_scale(scales: np.ndarray | pd.Series) -> str:
    """The scale most images share ("constant" images fit any scale, so they do not vote; unread files have none)."""
    counts = pd.Series(scales).value_counts().drop("constant", errors="ignore")
    return str(counts.idxmax()) if len(counts) else "constant"


def value_range(scales: np.ndarray) -> tuple[float, float]:
    """The (low, high) pixel values that mean black and white for this dataset: those of its usual scale."""
    return SCALE_RANGES.get(usual_scale(scales), (0.0, 255.0))


def _class_names(data: Dataset, y: np.ndarray) -> np.ndarray:
    names = np.array([*data.class_names, "?"])
    return names[np.where((y >= 0) & (y < len(data.class_names)), y, -1)]


def _skipped_rows(data: Dataset) -> pd.DataFrame:
    """Files that were found but not decoded: their path, split, label and why, with no measurements."""
    if not len(data.skipped):
        return pd.DataFrame()
    split, label, path, reason = data.skipped.T
    labels = label.astype(np.int64)
    link = np.isin(reason, LINK_REASONS)
    return pd.DataFrame({"split": split, "path": path, "label": labels, "class_name": _class_names(data, labels),
                         "file_error": np.where(link, None, reason), "link_not_followed": link})


def _chunks(x: np.ndarray) -> list[slice]:
    per_image = max(1, int(np.prod(x.shape[1:])))
    step = max(1, PIXELS_PER_CHUNK // per_image)
    return [slice(start, min(start + step, len(x))) for start in range(0, len(x), step)]


def _threads(threads: int | None, chunks: int) -> int:
    return max(1, min(threads or os.cpu_count() or 1, chunks))


def min_max(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image min and max of the finite values (NaN when an image has none)."""
    flat = x.reshape(len(x), -1)
    if flat.dtype.kind != "f":
        return flat.min(axis=1).astype(np.float64), flat.max(axis=1).astype(np.float64)
    with warnings.catch_warnings():  # an all-NaN image has no min: NaN is the honest answer
        warnings.simplefilter("ignore", RuntimeWarning)
        finite = np.where(np.isfinite(flat), flat, np.nan)
        return np.nanmin(finite, axis=1).astype(np.float64), np.nanmax(finite, axis=1).astype(np.float64)


def _measure_all(x: np.ndarray, lo: float, hi: float, threads: int | None) -> pd.DataFrame:
    chunks = _chunks(x)
    # One BLAS thread per worker thread: the chunks already keep every core busy, and nested threads fight.
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(_threads(threads, len(chunks))) as pool:
        parts = list(pool.map(lambda rows: _measure(x[rows], lo, hi), chunks))
    if not parts:
        return pd.DataFrame(index=range(0))
    return pd.DataFrame({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})


def _measure(x: np.ndarray, lo: float, hi: float) -> dict[str, np.ndarray]:
    """Every per-image measure of one chunk of images (n, height, width, channels)."""
    n, height, width, channels = x.shape
    out: dict[str, np.ndarray] = {}
    values = x.reshape(n, height * width, channels)
    if x.dtype.kind == "f":
        finite = np.isfinite(values)
        out["nan_count"] = np.isnan(values).sum(axis=(1, 2))
        out["inf_count"] = (~finite).sum(axis=(1, 2)) - out["nan_count"]
        counted = finite.sum(axis=1).astype(np.float64)
        values = np.where(finite, values, 0).astype(np.float32)
    else:
        out["nan_count"] = out["inf_count"] = np.zeros(n, np.int64)
        counted = np.full((n, channels), height * width, np.float64)
        values = values.astype(np.float32)
    luma = values[..., :3] @ LUMA if channels >= 3 else values[..., 0].copy()  # RGBA: alpha is not brightness
    out |= _moments(values, counted)  # squares ``values`` in place: nothing below reads it
    out["identical_channels"] = _identical_channels(x, out)
    if (lo, hi) != (0.0, 255.0) or x.dtype != np.uint8:  # 8-bit luminance is 0-255 already
        luma = np.clip((luma - lo) * (255.0 / (hi - lo)), 0, 255)
    gray = np.rint(luma).astype(np.uint8).reshape(n, height, width)
    out |= _histogram_measures(gray)
    out["sharpness"] = _laplacian_variance(gray)
    out["pixel_hash"] = _content_hash(x)
    out["perceptual_hash"] = _difference_hash(gray)
    return out


def _identical_channels(x: np.ndarray, moments: dict[str, np.ndarray]) -> np.ndarray:
    """True where every pixel has the same value in its first three channels (grey stored as colour).

    Only images whose three channels have equal means and deviations can qualify, so only those are compared
    pixel by pixel: for a colour dataset that is almost none.
    """
    identical = np.zeros(len(x), bool)
    if x.shape[3] < 3:
        return identical
    candidates = np.flatnonzero(
        (moments["mean_ch0"] == moments["mean_ch1"]) & (moments["mean_ch1"] == moments["mean_ch2"])
        & (moments["std_ch0"] == moments["std_ch1"]) & (moments["std_ch1"] == moments["std_ch2"]))
    if len(candidates):
        flat = x[candidates].reshape(len(candidates), -1, x.shape[3])
        identical[candidates] = ((flat[:, :, 0] == flat[:, :, 1]).all(axis=1)
                                 & (flat[:, :, 1] == flat[:, :, 2]).all(axis=1))
    return identical


def _moments(values: np.ndarray, counted: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and standard deviation per image and per channel, from sums taken by BLAS."""
    ones = np.ones(values.shape[1], np.float32)
    sums = (ones @ values).astype(np.float64)  # (n, channels)
    squares = (ones @ np.square(values, out=values)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.sum(axis=1) / counted.sum(axis=1)
        out = {"mean": mean, "std": np.sqrt(np.maximum(squares.sum(axis=1) / counted.sum(axis=1) - mean**2, 0))}
        channel_mean = sums / counted
        channel_std = np.sqrt(np.maximum(squares / counted - channel_mean**2, 0))
    for c in range(values.shape[2]):
        out[f"mean_ch{c}"], out[f"std_ch{c}"] = channel_mean[:, c], channel_std[:, c]
    return out


def _histogram_measures(gray8: np.ndarray) -> dict[str, np.ndarray]:
    """Brightness, contrast, percentiles, saturation and entropy from each image's 256-bin luminance histogram."""
    n = len(gray8)
    flat = gray8.reshape(n, -1)
    pixels = flat.shape[1]
    offsets = (np.arange(n, dtype=np.int64) * 256)[:, None]
    index = flat.astype(np.int64)
    index += offsets  # in place: one temporary, not two
    counts = np.bincount(index.ravel(), minlength=n * 256).reshape(n, 256)
    levels = np.arange(256) / 255.0
    brightness = counts @ levels / pixels
    cdf = counts.cumsum(axis=1)
    return {
        "brightness": brightness,
        "contrast": np.sqrt(np.maximum(counts @ levels**2 / pixels - brightness**2, 0)),
        "brightness_p01": (cdf < 0.01 * pixels).sum(axis=1) / 255.0,  # the level below which 1% of pixels lie
        "brightness_p99": (cdf < 0.99 * pixels).sum(axis=1) / 255.0,
        "saturated_share": counts[:, SATURATED:].sum(axis=1) / pixels,
        "entropy": -_p_log_p(pixels)[counts].sum(axis=1) + 0.0,  # + 0.0: a constant image has 0.0, not -0.0
    }


@functools.lru_cache(maxsize=8)
def _p_log_p(pixels: int) -> np.ndarray:
    """p * log2(p) for every count 0..pixels of a histogram bin (p = count / pixels): entropy by table look-up."""
    p = np.arange(pixels + 1) / pixels
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log2(p), 0.0)


def _laplacian_variance(gray8: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of the 8-bit luminance: low means few edges, i.e. blur.

    Integer arithmetic (int16 holds -1020..1020) is exact and about twice as fast as float32 here.
    """
    n, height, width = gray8.shape
    if height < 3 or width < 3:
        return np.full(n, np.nan)
    gray = gray8.astype(np.int16)
    centre = gray[:, 1:-1, 1:-1]
    laplacian = gray[:, :-2, 1:-1] + gray[:, 2:, 1:-1] + gray[:, 1:-1, :-2] + gray[:, 1:-1, 2:] - 4 * centre
    flat = laplacian.reshape(n, -1)
    mean = flat.sum(axis=1, dtype=np.int64) / flat.shape[1]
    wide = flat.astype(np.int32)
    return np.maximum(np.einsum("ij,ij->i", wide, wide, dtype=np.int64) / flat.shape[1] - mean**2, 0)


def _content_hash(x: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each image's bytes: a sum of its 64-bit words times fixed random odd keys (mod 2^64).

    Identical images hash alike; two different ones collide with probability about 2^-64 per pair (about 1e-10
    over all pairs of 60,000 images), and it is ~10x faster than hashlib over small images.
    """
    raw = x.reshape(len(x), -1).view(np.uint8)
    pad = (-raw.shape[1]) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros((len(raw), pad), np.uint8)], axis=1)
    words = raw.view(np.uint64)
    keys = _HASH_KEYS[np.arange(words.shape[1]) % len(_HASH_KEYS)]
    with np.errstate(over="ignore"):
        return (words * keys).sum(axis=1, dtype=np.uint64) + np.uint64(words.shape[1])


def _difference_hash(gray: np.ndarray) -> np.ndarray:
    """dHash, both ways: 9x9 block means of the luminance, one bit per horizontal and per vertical neighbour
    pair (is the first one brighter), 128 bits folded to 64.

    Robust to re-encoding, resizing and small brightness changes, so equal hashes mark near duplicates. The
    usual 64 horizontal bits alone collide for distinct but similar small images (342 of scikit-learn's 1,797
    digits); with the vertical bits, none do. Block means are two matrix products with averaging matrices:
    any image size, BLAS speed.
    """
    n, height, width = gray.shape
    grid = HASH_GRID + 1
    blocks = _averaging_matrix(height, grid) @ (gray.astype(np.float32) @ _averaging_matrix(width, grid).T)
    horizontal = _bits(blocks[:, :-1, :-1] > blocks[:, :-1, 1:])  # 8x8 of the 9x9 pairs: 64 bits each way
    vertical = _bits(blocks[:, :-1, :-1] > blocks[:, 1:, :-1])
    with np.errstate(over="ignore"):
        return horizontal * np.uint64(0x9E3779B97F4A7C15) ^ vertical  # equal pairs fold to equal values


def _bits(flags: np.ndarray) -> np.ndarray:
    return np.packbits(flags.reshape(len(flags), -1), axis=1).view(">u8").reshape(len(flags)).astype(np.uint64)


def _averaging_matrix(size: int, blocks: int) -> np.ndarray:
    """(blocks, size) weights that average each of ``blocks`` equal spans of ``size`` pixels (spans may overlap
    fractional pixels, so an image smaller than the grid still has a hash)."""
    edges = np.linspace(0, size, blocks + 1)
    pixel = np.arange(size)
    overlap = np.clip(np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)
