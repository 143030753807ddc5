"""Per-image pixel statistics as a pandas table: the input of the data-quality gate.

One row per image. Everything is computed with whole-array numpy reductions over chunks of images, so the cost
is a few passes over memory, not a Python loop per image or pixel.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from tasks.datasets import Dataset

CHUNK = 4096  # images per reduction: bounds the float copy a chunk needs (4096 x 32x32x3 x 4 B = 50 MB)
SCALES = ("0-1", "0-255", "shifted", "other", "constant")


def pixel_stats(data: Dataset) -> pd.DataFrame:
    """One row per image: where it is, its original shape, and its pixel min/max/mean/std/NaN/Inf counts."""
    parts = []
    for split in ("train", "test"):
        x, y, ids, shapes = data.split(split)
        table = pd.DataFrame({
            "split": split,
            "path": ids.astype(str),
            "label": y,
            "class_name": [data.class_names[i] if 0 <= i < len(data.class_names) else "?" for i in y],
            "height": shapes[:, 0],
            "width": shapes[:, 1],
            "channels": shapes[:, 2],
            "dtype": str(x.dtype),
        })
        parts.append(pd.concat([table, _value_stats(x)], axis=1))
    stats = pd.concat(parts, ignore_index=True)
    stats["shape"] = stats["height"].astype(str) + "x" + stats["width"].astype(str) + "x" + stats["channels"].astype(str)
    stats["scale"] = pixel_scale(stats["min"].to_numpy(), stats["max"].to_numpy())
    return stats


def _value_stats(x: np.ndarray) -> pd.DataFrame:
    columns = {name: np.empty(len(x)) for name in ("min", "max", "mean", "std")}
    columns |= {name: np.zeros(len(x), dtype=np.int64) for name in ("nan_count", "inf_count")}
    for start in range(0, len(x), CHUNK):
        flat = x[start:start + CHUNK].reshape(min(CHUNK, len(x) - start), -1)
        rows = slice(start, start + len(flat))
        if flat.dtype.kind == "f":
            finite = np.isfinite(flat)
            columns["nan_count"][rows] = np.isnan(flat).sum(axis=1)
            columns["inf_count"][rows] = (~finite & ~np.isnan(flat)).sum(axis=1)
            if not finite.all():  # statistics describe the finite values; NaN/Inf are counted above
                flat = np.where(finite, flat, np.nan)
                with warnings.catch_warnings():  # an all-NaN image has no min: NaN is the honest answer
                    warnings.simplefilter("ignore", RuntimeWarning)
                    _reduce(flat, rows, columns, np.nanmin, np.nanmax, np.nanmean, np.nanstd)
                continue
        _reduce(flat, rows, columns, np.min, np.max, np.mean, np.std)
    return pd.DataFrame(columns)


def _reduce(flat, rows, columns, fmin, fmax, fmean, fstd) -> None:
    columns["min"][rows] = fmin(flat, axis=1)
    columns["max"][rows] = fmax(flat, axis=1)
    columns["mean"][rows] = fmean(flat, axis=1, dtype=np.float64)
    columns["std"][rows] = fstd(flat, axis=1, dtype=np.float64)


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
