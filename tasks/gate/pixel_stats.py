"""Per-image measurements as a pandas table: the input of the data-quality gate.

One row per image (and one per file that could not be read, with its error and no measurements). Everything is
computed with whole-array numpy operations over chunks of images, spread over threads (numpy releases the GIL),
so the cost is a few passes over memory, never a Python loop per pixel. Sums go through BLAS (a matrix product
with a vector of ones), which is several times faster than numpy's strided reductions over the channel axis.

Quality measures (brightness, contrast, entropy, sharpness) are taken on the luminance of each image mapped to
0-255 with the dataset's usual value range, so a float 0-1 dataset and a uint8 dataset measure alike; an image on
another scale is measured as the model would see it (and flagged by the scale check). Near copies are found
apart, by `tasks.gate.near_copies`.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from tasks.data.datasets import Dataset
from tasks.data.images import LINK_REASONS
from tasks.gate.cores import worker_threads
from tasks.gate.image_hashes import content_hash

STATS_VERSION = 5  # bump when a measure or the near-copy search changes: statistics cached by older code are not reused
# Values per chunk (2M: 8 MB as float32), measured fastest: 1M alike, 0.25M-0.5M and 4M slower (2026-12-03).
PIXELS_PER_CHUNK = 1 << 21
# pixel_scale's names, by _scale_codes. Python strings (dtype object), as are the table's other columns of a few
# values (split, class_name, dtype): each row then refers to one shared string instead of pandas making a new one
# per image from a fixed-width numpy string: 2 MB less memory to touch per 10,000 images, and 4-5 ms less for 60,000.
SCALE_NAMES = np.array(["constant", "shifted", "0-1", "0-255", "other"], dtype=object)
SCALE_RANGES = {"0-1": (0.0, 1.0), "0-255": (0.0, 255.0), "shifted": (-1.0, 1.0), "other": (0.0, 65535.0)}
SPLITS = ("train", "test")
# ITU-R 601 luminance in 8-bit fixed point, (77 R + 150 G + 29 B + 128) >> 8: exact arithmetic, so every image
# gets the same grey levels whatever chunk it falls in (an inexact float dot product does not: BLAS sums in an
# order that depends on where a row sits, and a level at .5 then rounds either way). Within one level of
# Pillow's convert("L").
LUMA_WEIGHTS = (77, 150, 29)
SATURATED = 250  # luminance (0-255) counted as blown out: the top 2% of the range


def pixel_stats(data: Dataset, threads: int | None = None) -> pd.DataFrame:
    """One row per image: identity, original geometry, value statistics and quality measures."""
    xs = {split: data.split(split)[0] for split in SPLITS}
    workers = threads or os.cpu_count() or 1
    with worker_threads(workers) as pool:
        ranges = {split: _min_max_parallel(pool, workers, x) for split, x in xs.items()}
        codes = {split: _scale_codes(*ranges[split]) for split in SPLITS}
        lo, hi = _black_and_white(_usual_scale_name(np.concatenate(list(codes.values()))))
        measured = _measure_all(pool, xs, lo, hi)
    # One table, built once: its columns are the arrays as measured (no copy into pandas' 2-D blocks, and no
    # concatenation of per-split tables), which spared the first call in a process ~30 ms of fresh memory.
    table = pd.DataFrame(_identity(data, ranges, codes) | measured, copy=False)
    skipped = _skipped_rows(data)
    stats = pd.concat([p for p in (table, skipped) if len(p)], ignore_index=True) if len(skipped) else table
    return stats.astype({"label": "int64"})


def _identity(data: Dataset, ranges: dict, codes: dict) -> dict[str, np.ndarray]:
    """The columns before the measurements, every split's rows in SPLITS order: which image, its label,
    original geometry and value range."""
    parts = []
    for split in SPLITS:
        x, y, ids, shapes = data.split(split)
        n = len(y)
        parts.append({
            "split": np.full(n, split, object), "path": ids.astype(str), "label": y,
            "class_name": _class_names(data, y), "file_error": np.full(n, None, object),
            "link_not_followed": np.zeros(n, bool),
            "height": shapes[:, 0], "width": shapes[:, 1], "channels": shapes[:, 2],
            "dtype": np.full(n, str(x.dtype), object), "min": ranges[split][0], "max": ranges[split][1],
            "scale": SCALE_NAMES[codes[split]],
        })
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def pixel_scale(minimum: np.ndarray, maximum: np.ndarray) -> np.ndarray:
    """Name each image's value scale from its min and max.

    "0-1" (max <= 1), "0-255" (max <= 255), "shifted" (negative values: [-1, 1] or standardised), "other"
    (beyond 255, e.g. 16-bit) and "constant" (one value, or none finite: fits any scale). A dataset should have
    one; several is the classic silent failure of images saved or loaded on different scales.
    """
    return SCALE_NAMES[_scale_codes(minimum, maximum)]


def _scale_codes(minimum: np.ndarray, maximum: np.ndarray) -> np.ndarray:
    """pixel_scale as indices into SCALE_NAMES: counted without hashing a string per image."""
    return np.select([~(maximum > minimum), minimum < 0, maximum <= 1, maximum <= 255], [0, 1, 2, 3], default=4)


def usual_scale(scales: np.ndarray | pd.Series) -> str:
    """The scale most images share ("constant" images fit any scale, so they do not vote; unread files have none)."""
    counts = pd.Series(scales).value_counts().drop("constant", errors="ignore")
    return str(counts.idxmax()) if len(counts) else "constant"


def _usual_scale_name(codes: np.ndarray) -> str:
    """usual_scale of SCALE_NAMES[codes], from counts of the codes: the commonest scale but "constant", a tie
    going to the scale seen first (as value_counts orders them)."""
    votes = np.bincount(codes, minlength=len(SCALE_NAMES))
    votes[0] = 0  # "constant"
    if not votes.any():
        return "constant"
    tied = np.flatnonzero(votes == votes.max())
    return str(SCALE_NAMES[min(tied, key=lambda code: np.argmax(codes == code))])


def value_range(scales: np.ndarray) -> tuple[float, float]:
    """The (low, high) pixel values that mean black and white for this dataset: those of its usual scale."""
    return _black_and_white(usual_scale(scales))


def _black_and_white(scale: str) -> tuple[float, float]:
    return SCALE_RANGES.get(scale, (0.0, 255.0))


def _class_names(data: Dataset, y: np.ndarray) -> np.ndarray:
    names = np.array([*data.class_names, "?"], dtype=object)
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


def _min_max_parallel(pool: ThreadPoolExecutor, workers: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min_max on the worker threads, two pieces each (serial, this pass was a tenth of the time; reductions
    this fast gain nothing from the finer chunks of the measurements)."""
    edges = np.unique(np.linspace(0, len(x), 2 * workers + 1).astype(int))
    parts = list(pool.map(lambda start, stop: min_max(x[start:stop]), edges[:-1], edges[1:]))
    if not parts:
        return np.empty(0), np.empty(0)
    return np.concatenate([low for low, _ in parts]), np.concatenate([high for _, high in parts])


def min_max(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image min and max of the finite values (NaN when an image has none)."""
    flat = x.reshape(len(x), -1)
    if flat.dtype.kind != "f":
        return flat.min(axis=1).astype(np.float64), flat.max(axis=1).astype(np.float64)
    with warnings.catch_warnings():  # an all-NaN image has no min: NaN is the honest answer
        warnings.simplefilter("ignore", RuntimeWarning)
        finite = np.where(np.isfinite(flat), flat, np.nan)
        return np.nanmin(finite, axis=1).astype(np.float64), np.nanmax(finite, axis=1).astype(np.float64)


def _measure_all(pool: ThreadPoolExecutor, xs: dict[str, np.ndarray], lo: float, hi: float) -> dict[str, np.ndarray]:
    """The measures of every image, the splits' rows one after the other, chunk by chunk on the worker threads.
    Every chunk is queued before any is awaited, so no thread waits at the end of the first split."""
    queued = [pool.submit(_measure, x[rows], lo, hi) for x in xs.values() for rows in _chunks(x)]
    return _columns([chunk.result() for chunk in queued])


def _columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The chunks' measures as one column each; means and deviations from the chunks' sums, for every image at
    once (a few operations on long arrays here, not a few per chunk on the worker threads)."""
    if not parts:
        return {}
    joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    columns = {key: joined.pop(key) for key in ("nan_count", "inf_count")}
    columns |= _moments(*(joined.pop(key) for key in ("sums", "squares", "counted")))
    return columns | joined


def _measure(x: np.ndarray, lo: float, hi: float) -> dict[str, np.ndarray]:
    """Every per-image measure of one chunk of images (n, height, width, channels)."""
    out, values = _finite_values(x)
    gray = _gray_levels(x, values, lo, hi).astype(np.uint8)
    out["sums"], out["squares"] = _channel_sums(values)  # squares ``values`` in place: nothing below reads it
    # The chunk's largest temporary (4 bytes a value), freed here so the histograms' index reuses its memory:
    # each worker thread's memory is touched for the first time in the first call of a process, which cost
    # more than the arithmetic on the machine this was measured on (about a millisecond per MB).
    del values
    out["identical_channels"] = _identical_channels(x, out["sums"], out["squares"])
    out |= _histogram_measures(gray)
    out["sharpness"] = _laplacian_variance(gray)
    out["pixel_hash"] = content_hash(x)
    return out


def _finite_values(x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The NaN and inf counts and how many values of each image and channel are finite ("counted"), and the
    pixels as float32 (n, pixels, channels) with the non-finite values set to 0."""
    n, height, width, channels = x.shape
    pixels = x.reshape(n, height * width, channels)
    if x.dtype.kind != "f":
        zeros = np.zeros(n, np.int64)
        counted = np.full((n, channels), height * width, np.float64)
        return {"nan_count": zeros, "inf_count": zeros, "counted": counted}, pixels.astype(np.float32)
    finite = np.isfinite(pixels)
    nan_count = np.isnan(pixels).sum(axis=(1, 2))
    counts = {"nan_count": nan_count, "inf_count": (~finite).sum(axis=(1, 2)) - nan_count,
              "counted": finite.sum(axis=1).astype(np.float64)}
    return counts, np.where(finite, pixels, 0).astype(np.float32)


def _gray_levels(x: np.ndarray, values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Each image's luminance as whole grey levels 0-255 (n, height, width) in float32, black at ``lo`` and
    white at ``hi``, from its finite float32 ``values``.

    The first three channels count (RGBA: alpha is not brightness), or the only one. Colour 8-bit images on the
    0-255 scale are weighted by one matrix-vector product: every weighted value k v / 256 (k, v < 256) and every
    partial sum is a multiple of 1/256 below 256, exact in float32, so BLAS's order of addition cannot change a
    level (2-5x faster than weighting the interleaved channels in uint16). Any other image is weighted element by
    element, in the same order for every pixel, so a float image holding 0-255 values gets the very same levels.
    """
    n, height, width, channels = x.shape
    if channels >= 3 and x.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
        weights = np.zeros(channels, np.float32)
        weights[:3] = np.array(LUMA_WEIGHTS, np.float32) / 256
        luma = values.reshape(-1, channels) @ weights
        luma += 0.5  # floor(level + 0.5) = (77 R + 150 G + 29 B + 128) >> 8
        return np.floor(luma, out=luma).reshape(n, height, width)
    planes = values.reshape(n, height, width, channels)
    if channels < 3:
        luma = planes[..., 0].copy()
    else:
        luma = planes[..., 0] * np.float32(LUMA_WEIGHTS[0] / 256)  # powers of two: exact for 0-255 values
        for c in (1, 2):
            luma += planes[..., c] * np.float32(LUMA_WEIGHTS[c] / 256)
    luma -= lo
    luma *= 255.0 / (hi - lo)
    np.clip(luma, 0, 255, out=luma)
    luma += 0.5  # rounds halves up, as the 8-bit path does
    return np.floor(luma, out=luma)


def _identical_channels(x: np.ndarray, sums: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """True where every pixel has the same value in its first three channels (grey stored as colour).

    Only images whose three channels have equal sums and sums of squares can qualify, so only those are
    compared pixel by pixel: for a colour dataset that is almost none.
    """
    identical = np.zeros(len(x), bool)
    if x.shape[3] < 3:
        return identical
    candidates = np.flatnonzero((sums[:, 0] == sums[:, 1]) & (sums[:, 1] == sums[:, 2])
                                & (squares[:, 0] == squares[:, 1]) & (squares[:, 1] == squares[:, 2]))
    if len(candidates):
        flat = x[candidates].reshape(len(candidates), -1, x.shape[3])
        identical[candidates] = ((flat[:, :, 0] == flat[:, :, 1]).all(axis=1)
                                 & (flat[:, :, 1] == flat[:, :, 2]).all(axis=1))
    return identical


def _channel_sums(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image and channel, the sum of the values and of their squares (n, channels), float64, by BLAS.

    The sums run down rows of a few pixels at a time (a (pixels / group, group * channels) view of each image),
    which BLAS's matrix-vector product takes twice as fast as rows of one pixel; each channel's partial sums
    are then added in float64. For 8-bit images of 32x32 every partial sum, squares included, is exact.
    """
    n, pixels, channels = values.shape
    group = math.gcd(pixels, 8)
    rows = values.reshape(n, pixels // group, group * channels)
    ones = np.ones(pixels // group, np.float32)
    sums = _add_groups((ones @ rows).astype(np.float64), channels)
    return sums, _add_groups((ones @ np.square(rows, out=rows)).astype(np.float64), channels)


def _moments(sums: np.ndarray, squares: np.ndarray, counted: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and standard deviation per image and per channel, from the sums of values and squares and the
    number of values they add up (n, channels)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.sum(axis=1) / counted.sum(axis=1)
        out = {"mean": mean, "std": np.sqrt(np.maximum(squares.sum(axis=1) / counted.sum(axis=1) - mean**2, 0))}
        channel_mean = sums / counted
        channel_std = np.sqrt(np.maximum(squares / counted - channel_mean**2, 0))
    for c in range(sums.shape[1]):
        out[f"mean_ch{c}"], out[f"std_ch{c}"] = channel_mean[:, c], channel_std[:, c]
    return out


def _add_groups(partial: np.ndarray, channels: int) -> np.ndarray:
    """(n, group * channels) partial sums, pixel after pixel, to (n, channels): halves added while the group is
    even (a power of two here), a few whole-row additions where numpy's axis sum would loop per pixel."""
    while partial.shape[1] > channels:
        half = partial.shape[1] // 2
        partial = partial[:, :half] + partial[:, half:]
    return partial


def _histogram_measures(gray8: np.ndarray) -> dict[str, np.ndarray]:
    """Brightness, contrast, percentiles, saturation and entropy from each image's 256-bin luminance histogram."""
    counts = _histograms(gray8)
    pixels = gray8[0].size
    weights = counts.astype(np.float64)  # cast once here, not inside each product
    levels = np.arange(256) / 255.0
    brightness = weights @ levels / pixels
    cdf = counts.cumsum(axis=1)
    return {
        "brightness": brightness,
        "contrast": np.sqrt(np.maximum(weights @ levels**2 / pixels - brightness**2, 0)),
        "brightness_p01": _levels_below(cdf, 0.01 * pixels) / 255.0,  # the level below which 1% of pixels lie
        "brightness_p99": _levels_below(cdf, 0.99 * pixels) / 255.0,
        "saturated_share": counts[:, SATURATED:].sum(axis=1) / pixels,
        "entropy": -_p_log_p(pixels)[counts].sum(axis=1) + 0.0,  # + 0.0: a constant image has 0.0, not -0.0
    }


def _histograms(gray8: np.ndarray) -> np.ndarray:
    """(n, 256) counts of each luminance level in each image, by one unbuffered add over the chunk: image i
    counts into bins 256 i .. 256 i + 255.

    ``np.add.at`` rather than ``np.bincount``: neither counts faster on two threads than on one (measured: the
    GIL is held while they count, so the worker threads take turns here and overlap only their other work), and
    add.at skips bincount's first pass over the whole input for its minimum and maximum: 72-76 ms for 60,000
    images' histograms against 88 ms. The index is built as intp, numpy's index type, so it is not converted.
    """
    n = len(gray8)
    index = gray8.reshape(n, -1).astype(np.intp)
    index += (np.arange(n, dtype=np.intp) * 256)[:, None]
    counts = np.zeros(n * 256, np.intp)
    np.add.at(counts, index.reshape(-1), 1)
    return counts.reshape(n, 256)


def _levels_below(cdf: np.ndarray, count: float) -> np.ndarray:
    """How many levels hold fewer than ``count`` pixels at or below them: the first level that reaches it (the
    cumulative counts only grow, and the last is every pixel), found by argmax faster than by counting."""
    return (cdf >= count).argmax(axis=1)


@functools.lru_cache(maxsize=8)
def _p_log_p(pixels: int) -> np.ndarray:
    """p * log2(p) for every count 0..pixels of a histogram bin (p = count / pixels): entropy by table look-up."""
    p = np.arange(pixels + 1) / pixels
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log2(p), 0.0)


def _laplacian_variance(gray8: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of the 8-bit luminance: low means few edges, i.e. blur.

    The Laplacian is taken over the whole chunk as one flat int16 array (-1020..1020, exact), shifted by one
    pixel and by one row: long runs for numpy instead of short image rows. The border pixels, whose
    "neighbours" wrap to the next row or image (the first and last of the chunk included, left unset), are
    then zeroed, and the sums are integer (int32 while it cannot overflow), so exact.
    """
    n, height, width = gray8.shape
    if height < 3 or width < 3:
        return np.full(n, np.nan)
    gray = gray8.reshape(-1).astype(np.int16)
    laplacian = np.empty_like(gray)
    inner = slice(width + 1, len(gray) - width - 1)  # pixels with all four neighbours inside the chunk
    np.multiply(gray[inner], -4, out=laplacian[inner])
    for shift in (-width, width, -1, 1):
        laplacian[inner] += gray[inner.start + shift:inner.stop + shift]
    image = laplacian.reshape(n, height, width)
    image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1] = 0, 0, 0, 0
    wide = image.reshape(n, -1).astype(np.int32)
    total = np.int32 if height * width * 1020**2 < 2**31 else np.int64
    count = (height - 2) * (width - 2)
    mean = wide.sum(axis=1, dtype=total) / count
    return np.maximum(np.square(wide, out=wide).sum(axis=1, dtype=total) / count - mean**2, 0)
