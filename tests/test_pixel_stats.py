import numpy as np

from tasks.datasets import load_dataset
from tasks.pixel_stats import pixel_scale, pixel_stats


def test_one_row_per_image_with_the_documented_columns():
    data = load_dataset("digits", limit=40)
    stats = pixel_stats(data)
    assert len(stats) == 80
    for column in ("split", "label", "path", "height", "width", "channels", "min", "max", "mean", "std",
                   "nan_count", "inf_count", "scale"):
        assert column in stats
    first = data.x_train[0].astype(np.float64)
    row = stats.iloc[0]
    assert (row["min"], row["max"]) == (first.min(), first.max())
    assert np.isclose(row["mean"], first.mean()) and np.isclose(row["std"], first.std())
    assert (stats["split"] == "test").sum() == 40


def test_nan_and_inf_are_counted_and_statistics_use_the_finite_values():
    data = load_dataset("digits", limit=10)
    data.x_train = data.x_train.astype(np.float32)
    data.x_train[0, 0, 0, 0] = np.nan
    data.x_train[0, 0, 1, 0] = np.inf
    data.x_train[1] = np.nan
    stats = pixel_stats(data)
    assert stats.loc[0, ["nan_count", "inf_count"]].tolist() == [1, 1]
    assert np.isfinite(stats.loc[0, "max"])
    assert stats.loc[1, "nan_count"] == 32 * 32 and stats.loc[1, "scale"] == "constant"


def test_scale_names():
    minimum = np.array([0, 0, -1, 0, 5, np.nan])
    maximum = np.array([1, 255, 1, 4095, 5, np.nan])
    assert pixel_scale(minimum, maximum).tolist() == ["0-1", "0-255", "shifted", "other", "constant", "constant"]
