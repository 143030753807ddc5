"""Dataset-level columns over the per-image table, and the per-class table: what the gate's checks look at.

`pixel_stats` measures each image alone; here each image is placed among the others: is it a copy of another
(in its split, in the other split, under another label), how sharp is it next to the typical image, how many
images does its class have. Pure pandas over the statistics table; no pixels are touched.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.gate.pixel_stats import usual_scale

SPLITS = ("train", "test")
QUALITY_COLUMNS = ["brightness", "contrast", "brightness_p01", "brightness_p99", "saturated_share", "entropy",
                   "sharpness"]


def profile_images(stats: pd.DataFrame) -> pd.DataFrame:
    """``stats`` with the columns that compare each image with the rest of the dataset."""
    table = stats.copy()
    read = table["file_error"].isna() & ~table["link_not_followed"].astype(bool)
    table["usual_scale"] = usual_scale(table.loc[read, "scale"])
    # An image on another scale is the scale check's finding; measured against the usual range it would also
    # look dark, blown out, flat or blurry. Its quality measures are left out rather than reported five times.
    on_scale = read & table["scale"].isin([table["usual_scale"].iloc[0], "constant"])
    table.loc[~on_scale, QUALITY_COLUMNS] = np.nan
    table["pixels"] = table["height"] * table["width"]
    table["aspect_ratio"] = table["width"] / table["height"]
    # Orientation-free: a portrait photo among landscape ones is as normal as its landscape twin.
    table["elongation"] = table[["width", "height"]].max(axis=1) / table[["width", "height"]].min(axis=1)
    table["constant"] = (table["max"] <= table["min"]).where(read)
    table["gray_as_rgb"] = (table["identical_channels"].astype(bool) & (table["channels"] >= 3)).where(read)
    informative = on_scale & (table["constant"] == False)  # noqa: E712 (a nullable column)
    table["log_sharpness"] = np.log10(table["sharpness"].where(informative & (table["sharpness"] > 0)))
    table[["copies_in_split", "copies_in_other_split", "labels_for_same_pixels"]] = _copies(
        table, "pixel_hash", read, with_labels=True)
    # Near copies (`tasks.gate.near_copies`): an image with an exact copy is the exact checks' finding, and its
    # nearest copy is that one (distance 0), so its near-copy distance is left out; so is a constant image's.
    for where, exact in (("in_split", "copies_in_split"), ("in_other_split", "copies_in_other_split")):
        column = f"near_copy_{where}_distance"
        if column not in table:  # statistics without the search (older callers): no near copies known
            table[f"near_copy_{where}"], table[column] = None, np.nan
        table[column] = table[column].where(informative & (table[exact] == 0))
    return table


def leaked_test_images(images: pd.DataFrame, max_distance: float) -> pd.DataFrame:
    """Every test image with a copy in the training split: exact (distance 0) or near (within ``max_distance``),
    with the training image it copies where the search named one, closest first. ``images``: `profile_images`'
    table."""
    test = images[images["split"] == "test"]
    near = test["near_copy_in_other_split_distance"] <= max_distance
    exact = test["copies_in_other_split"] > 0
    leaked = test[near | exact]
    return pd.DataFrame({"image": leaked["path"], "copy": leaked["near_copy_in_other_split"],
                         "distance": leaked["near_copy_in_other_split_distance"].where(~exact[near | exact], 0.0),
                         "exact": exact[near | exact]}).sort_values(["distance", "image"], kind="stable")


def _copies(table: pd.DataFrame, column: str, rows: pd.Series, with_labels: bool) -> pd.DataFrame:
    """For each image in ``rows``: how many others share its ``column`` value in its split, in the other split,
    and (``with_labels``) how many distinct labels that group of copies carries."""
    keys = table.loc[rows, [column, "split", "label"]]
    in_split = keys.groupby([column, "split"])[column].transform("size") - 1
    total = keys.groupby(column)[column].transform("size") - 1
    out = pd.DataFrame({"copies_in_split": in_split, "copies_in_other_split": total - in_split}, index=keys.index)
    if with_labels:
        out["labels_for_same_pixels"] = keys.groupby(column)["label"].transform("nunique")
    return out.reindex(table.index)


def class_table(stats: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """One row per split and class: image count, share of the split, size against the split's largest class
    (empty classes have none: missing is its own check), and (test rows) the class's test share over its
    training share. Every class appears, even with no images."""
    counts = (stats.loc[stats["label"].between(0, len(class_names) - 1)].groupby(["split", "label"]).size()
              .reindex(pd.MultiIndex.from_product([SPLITS, range(len(class_names))], names=["split", "label"]),
                       fill_value=0))
    table = counts.rename("images").reset_index()
    table["class_name"] = [class_names[i] for i in table["label"]]
    table["class"] = table["split"] + "/" + table["class_name"]
    totals = table.groupby("split")["images"].transform("sum")
    table["share"] = table["images"] / totals.where(totals > 0)
    largest = table.groupby("split")["images"].transform("max")
    table["ratio_to_largest"] = (table["images"] / largest).where((totals > 0) & (table["images"] > 0))
    train_share = table.loc[table["split"] == "train"].set_index("label")["share"]
    ratio = table["share"] / table["label"].map(train_share)
    table["share_ratio"] = ratio.where((table["split"] == "test") & np.isfinite(ratio))
    return table
