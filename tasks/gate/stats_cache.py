"""The pixel-statistics cache: a dataset profiled once is not profiled again while its fingerprint holds.

Tables are stored as .npz columns, never pickles, so reading a cache file can never run code.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data.store import load_cache
from tasks.gate.near_copies import near_copy_columns
from tasks.gate.pixel_stats import STATS_VERSION, pixel_stats


def cached_pixel_stats(data: dict, directory: Path) -> tuple[pd.DataFrame, Path]:
    """The statistics table of this dataset and its CSV, with each image's near copies: from the cache when
    this fingerprint was profiled before (writing 60,000 rows of CSV takes longer than copying the file, and
    the near-copy search takes seconds)."""
    path = directory / f"{data['fingerprint']}-v{STATS_VERSION}.npz"
    csv = path.with_suffix(".csv")
    try:
        if csv.exists():
            return load_table(path), csv
    except (OSError, ValueError, KeyError):  # a damaged entry: measure again
        pass
    dataset = load_cache(data["cache_path"])
    stats = with_near_copies(pixel_stats(dataset), near_copy_columns(dataset))
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    stats.to_csv(tmp.with_suffix(".csv"), index=False)
    save_table(stats, tmp.with_suffix(".npz"))
    os.replace(tmp.with_suffix(".csv"), csv)  # the table last: an entry without it is measured again
    os.replace(tmp.with_suffix(".npz"), path)
    return stats, csv


def with_near_copies(stats: pd.DataFrame, near: pd.DataFrame) -> pd.DataFrame:
    """The statistics with each image's near copies (`tasks.gate.near_copies`) joined on split and path; files
    that were not decoded have none."""
    return stats.merge(near, on=["split", "path"], how="left", validate="many_to_one")


def save_table(table: pd.DataFrame, path) -> None:
    """A table as an .npz of its columns.

    Numbers are stored as they are; yes/no columns with gaps as floats (NaN for the gap); text as strings with
    a null mask.
    """
    arrays = {}
    for name in table.columns:
        column = table[name]
        present = column.dropna()
        if column.dtype.kind in "biuf" and column.dtype != object:
            arrays[f"v:{name}"] = column.to_numpy()
        elif len(present) and present.map(lambda v: isinstance(v, (bool, np.bool_))).all():
            arrays[f"b:{name}"] = column.astype(float).to_numpy()
        else:
            arrays[f"s:{name}"] = column.astype(object).where(column.notna(), "").astype(str).to_numpy(dtype=str)
            arrays[f"n:{name}"] = column.isna().to_numpy()
    np.savez(path, **arrays)


def load_table(path) -> pd.DataFrame:
    with np.load(path, allow_pickle=False) as npz:
        columns = {}
        for key in npz.files:
            kind, name = key.split(":", 1)
            if kind == "v":
                columns[name] = npz[key]
            elif kind == "b":
                values = npz[key]
                columns[name] = pd.Series(values == 1, dtype=object).where(~np.isnan(values), None)
            elif kind == "s":
                values = npz[key].astype(object)
                values[npz[f"n:{name}"]] = None
                columns[name] = values
    return pd.DataFrame(columns)
