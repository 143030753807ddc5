"""Dataset-level columns (copies, sharpness against the median) and the per-class table."""

import numpy as np
import pandas as pd

from tasks.gate.profile import class_table, leaked_test_images, profile_images
from tasks.gate.stats_cache import load_table, save_table


def stats_table(rows):
    """A minimal statistics table: one row per (split, label, pixel hash, image number, sharpness); the image
    number is a column the profile ignores."""
    frame = pd.DataFrame(rows, columns=["split", "label", "pixel_hash", "number", "sharpness"])
    n = len(frame)
    return frame.assign(path=[f"img{i}" for i in range(n)], file_error=None, link_not_followed=False, scale="0-255",
                        height=8, width=8, channels=3, min=0.0, max=255.0, identical_channels=False)


def test_copies_are_counted_within_and_across_splits_and_labels_of_copies():
    table = profile_images(stats_table([
        ("train", 0, 1, 10, 5.0), ("train", 0, 1, 10, 5.0),  # an exact copy within train
        ("test", 1, 1, 10, 5.0),  # ... and in test, under another label
        ("train", 0, 2, 20, 5.0), ("test", 0, 3, 20, 5.0),  # a near copy across splits (found by the search)
        ("train", 1, 4, 40, 0.2),  # unique, and blurry next to the median
    ]).assign(near_copy_in_split=["img1", "img0", None, None, None, None],
              near_copy_in_split_distance=[0.0, 0.0, np.nan, np.nan, np.nan, np.nan],
              near_copy_in_other_split=[None, None, "img0", None, "img3", None],
              near_copy_in_other_split_distance=[np.nan, np.nan, 0.0, np.nan, 0.02, np.nan]))
    assert table["copies_in_split"].tolist() == [1, 1, 0, 0, 0, 0]
    assert table["copies_in_other_split"].tolist() == [1, 1, 2, 0, 0, 0]
    assert table["labels_for_same_pixels"].tolist() == [2, 2, 2, 1, 1, 1]
    # An exact copy is the exact checks' finding: its near-copy distance is left out, the near one kept.
    assert table["near_copy_in_split_distance"].isna().all()
    assert table["near_copy_in_other_split_distance"].fillna(-1).tolist() == [-1, -1, -1, -1, 0.02, -1]
    assert np.isclose(table["log_sharpness"].iloc[-1], np.log10(0.2))
    leaked = leaked_test_images(table, max_distance=0.04)
    assert leaked.to_dict("records") == [
        {"image": "img2", "copy": "img0", "distance": 0.0, "exact": True},
        {"image": "img4", "copy": "img3", "distance": 0.02, "exact": False}]
    assert leaked_test_images(table, max_distance=0.01)["image"].tolist() == ["img2"]


def test_statistics_without_the_near_copy_search_have_no_near_copies():
    table = profile_images(stats_table([("train", 0, 1, 10, 5.0), ("test", 0, 2, 10, 5.0)]))
    assert table["near_copy_in_other_split_distance"].isna().all() and table["near_copy_in_split"].isna().all()


def test_images_off_the_usual_scale_keep_no_quality_measures():
    stats = stats_table([("train", 0, i, i, 5.0) for i in range(4)]).assign(
        scale=["0-255", "0-255", "0-255", "0-1"], brightness=0.5)
    table = profile_images(stats)
    assert table["brightness"].isna().tolist() == [False, False, False, True]
    assert table["log_sharpness"].isna().tolist() == [False, False, False, True]


def test_class_table_has_every_class_in_every_split_with_shares():
    stats = stats_table([("train", 0, i, i, 1.0) for i in range(8)] + [("train", 1, 9, 9, 1.0)]
                        + [("test", 0, 10, 10, 1.0), ("test", 0, 11, 11, 1.0)])
    table = class_table(stats, ["cat", "dog", "<b>bird</b>"]).set_index("class")
    assert table.loc["train/cat", "images"] == 8 and table.loc["test/<b>bird</b>", "images"] == 0
    assert np.isclose(table.loc["train/dog", "ratio_to_largest"], 1 / 8)
    assert np.isnan(table.loc["train/<b>bird</b>", "ratio_to_largest"])  # empty: the missing-class check's
    assert np.isclose(table.loc["test/cat", "share_ratio"], 1.0 / (8 / 9))
    assert np.isnan(table.loc["train/cat", "share_ratio"])  # a training row has nothing to compare with


def test_tables_round_trip_through_npz_without_pickle(tmp_path):
    table = pd.DataFrame({"n": [1, 2, 3], "x": [0.5, np.nan, 2.0], "text": ["a", None, "c"],
                          "flag": [True, None, False]})
    save_table(table, tmp_path / "t.npz")
    back = load_table(tmp_path / "t.npz")
    assert back["n"].tolist() == [1, 2, 3] and np.isnan(back["x"][1])
    assert back["text"].isna().tolist() == [False, True, False] and back["text"][2] == "c"
    assert back["flag"].isna().tolist() == [False, True, False] and back["flag"][0] is True
