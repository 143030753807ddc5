import numpy as np
import pandas as pd

from tasks.data.datasets import load_dataset
from tasks.gate.pixel_stats import pixel_scale, pixel_stats


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


def one_split(x, y=None):
    """A Dataset whose train and test splits both hold ``x`` (the test rows are ignored by these tests)."""
    from tasks.data.datasets import Dataset

    y = np.zeros(len(x), int) if y is None else y
    ids = np.array([f"x[{i}]" for i in range(len(x))])
    shapes = np.tile(x.shape[1:], (len(x), 1))
    return Dataset("t", x, y, x, y, ["a"], ids, ids, shapes, shapes)


def train_rows(x):
    stats = pixel_stats(one_split(x))
    return stats[stats["split"] == "train"].reset_index(drop=True)


def test_per_channel_moments_match_numpy():
    x = np.random.default_rng(0).integers(0, 256, (5, 9, 7, 3), dtype=np.uint8)
    rows = train_rows(x)
    for c in range(3):
        assert np.allclose(rows[f"mean_ch{c}"], x[..., c].mean(axis=(1, 2)))
        assert np.allclose(rows[f"std_ch{c}"], x[..., c].std(axis=(1, 2)), atol=1e-3)
    assert np.allclose(rows["std"], x.reshape(5, -1).std(axis=1), atol=1e-3)


def test_quality_measures_on_images_with_known_answers():
    half = np.zeros((1, 16, 16, 1), np.uint8)
    half[:, :, 8:] = 255  # two grey levels in equal shares: 1 bit, mean brightness 0.5
    flat = np.full((1, 16, 16, 1), 77, np.uint8)
    checker = ((np.indices((16, 16)).sum(axis=0) % 2) * 255).astype(np.uint8)[None, ..., None]
    rows = train_rows(np.concatenate([half, flat, checker]))
    assert np.isclose(rows.loc[0, "entropy"], 1.0) and np.isclose(rows.loc[0, "brightness"], 0.5)
    assert np.isclose(rows.loc[0, "saturated_share"], 0.5)
    assert (rows.loc[0, "brightness_p01"], rows.loc[0, "brightness_p99"]) == (0.0, 1.0)
    assert rows.loc[1, "entropy"] == 0.0 and rows.loc[1, "sharpness"] == 0.0 and rows.loc[1, "contrast"] == 0.0
    assert rows.loc[2, "sharpness"] > 50 * rows.loc[0, "sharpness"] > 0  # edges everywhere vs one edge


def test_grey_stored_as_colour_is_detected():
    grey = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    x = np.repeat(grey, 3, axis=3)
    x[1, 0, 0, 2] ^= 1  # one channel of one pixel differs: colour
    assert train_rows(x)["identical_channels"].tolist() == [True, False]


def test_content_hash_is_equal_exactly_for_equal_pixels():
    rng = np.random.default_rng(2)
    base = (np.indices((32, 32)).sum(axis=0) * 4).astype(np.uint8)[..., None] + rng.integers(0, 3, (32, 32, 1),
                                                                                          dtype=np.uint8)
    brighter = np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8)
    other = np.ascontiguousarray(base[::-1])
    hashes = train_rows(np.stack([base, base, brighter, other]))["pixel_hash"].tolist()
    assert hashes[0] == hashes[1] and len(set(hashes[1:])) == 3


def test_float_images_are_measured_on_their_own_scale():
    rng = np.random.default_rng(3)
    x8 = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    as_8bit, as_float = train_rows(x8), train_rows(x8.astype(np.float32) / 255)
    assert as_float["scale"].tolist() == ["0-1"] * 4
    for column in ("brightness", "contrast", "entropy", "brightness_p99"):
        assert np.allclose(as_8bit[column], as_float[column], atol=0.02), column
    same_values = train_rows(x8.astype(np.float32))  # float, 0-255: the very grey levels of the 8-bit images
    for column in ("brightness", "entropy", "sharpness"):
        assert (same_values[column] == as_8bit[column]).all(), column


def test_threads_do_not_change_the_result():
    from tasks.gate import pixel_stats as module

    for seed in range(3):  # a grey level computed with float weights rounded differently in most of such sets
        x = np.random.default_rng(seed).integers(0, 256, (300, 8, 8, 3), dtype=np.uint8)
        data = one_split(x)
        original = module.PIXELS_PER_CHUNK
        try:
            module.PIXELS_PER_CHUNK = 8 * 8 * 3 * 7  # 7 images per chunk: many chunks over two threads
            chunked = pixel_stats(data, threads=2)
        finally:
            module.PIXELS_PER_CHUNK = original
        whole = pixel_stats(data, threads=1)
        pd.testing.assert_frame_equal(chunked, whole, check_exact=False, rtol=1e-12)  # BLAS may sum in another order


def test_files_not_read_get_a_row_with_their_reason_and_no_measurements():
    from tasks.data.images import OUTSIDE_LINK

    data = one_split(np.zeros((2, 4, 4, 1), np.uint8))
    data.skipped = np.array([["train", "0", "a/bad.png", "truncated"], ["test", "0", "a/l.png", OUTSIDE_LINK]])
    stats = pixel_stats(data)
    bad, link = stats.iloc[-2], stats.iloc[-1]
    assert bad["file_error"] == "truncated" and not bad["link_not_followed"] and np.isnan(bad["mean"])
    assert pd.isna(link["file_error"]) and link["link_not_followed"]


def test_quality_measures_match_a_per_image_computation_across_chunk_boundaries():
    """The Laplacian runs over a whole chunk as one flat array and the histograms share one count over it:
    neither may leak between neighbouring images, whatever the image size or chunk size."""
    from tasks.gate import pixel_stats as module

    x = np.random.default_rng(5).integers(0, 256, (23, 13, 11, 3), dtype=np.uint8)
    original = module.PIXELS_PER_CHUNK
    try:
        module.PIXELS_PER_CHUNK = 13 * 11 * 3 * 5  # 5 images per chunk
        rows = train_rows(x)
    finally:
        module.PIXELS_PER_CHUNK = original
    gray = (x.astype(np.int64) @ module.LUMA_WEIGHTS + 128) >> 8
    levels = np.arange(256) / 255.0
    for i, image in enumerate(gray):
        laplacian = (image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:] - 4 * image[1:-1, 1:-1])
        assert np.isclose(rows.loc[i, "sharpness"], laplacian.var(), rtol=1e-12)
        counts = np.bincount(image.ravel(), minlength=256)
        p = counts[counts > 0] / image.size
        assert np.isclose(rows.loc[i, "entropy"], -(p * np.log2(p)).sum(), rtol=1e-12)
        assert np.isclose(rows.loc[i, "brightness"], counts @ levels / image.size, rtol=1e-12)
        cdf = counts.cumsum()
        assert rows.loc[i, "brightness_p01"] == (cdf < 0.01 * image.size).sum() / 255.0
        assert rows.loc[i, "brightness_p99"] == (cdf < 0.99 * image.size).sum() / 255.0
        assert rows.loc[i, "saturated_share"] == (image >= 250).mean()


def test_8bit_means_and_deviations_are_exact():
    x = np.random.default_rng(6).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    x[0] = 255  # a bright constant image: no spread, however large its squares
    rows = train_rows(x)
    wide = x.astype(np.float64)
    for c in range(3):
        assert np.allclose(rows[f"mean_ch{c}"], wide[..., c].mean(axis=(1, 2)), rtol=1e-12, atol=0)
        assert np.allclose(rows[f"std_ch{c}"], wide[..., c].std(axis=(1, 2)), rtol=1e-9, atol=1e-9)
    assert rows.loc[0, "std"] == 0.0


def test_an_empty_split_has_no_rows():
    from tasks.data.datasets import Dataset

    x = np.random.default_rng(7).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    none = x[:0]
    data = Dataset("t", x, np.zeros(3, int), none, np.zeros(0, int), ["a"], np.array(["a", "b", "c"]),
                   np.array([], str), np.tile(x.shape[1:], (3, 1)), np.zeros((0, 3), int))
    stats = pixel_stats(data)
    assert stats["split"].tolist() == ["train"] * 3 and stats["mean"].notna().all()


def test_the_usual_scale_is_counted_as_usual_scale_counts_names():
    from tasks.gate.pixel_stats import SCALE_NAMES, _usual_scale_name, usual_scale

    for codes in ([0, 0], [2, 3, 3, 2], [3, 2, 2, 3], [0, 4, 1, 1, 4], [2, 0, 0, 0, 3]):
        codes = np.array(codes)
        assert _usual_scale_name(codes) == usual_scale(SCALE_NAMES[codes])


def test_worker_threads_hold_blas_to_one_thread_and_give_the_setting_back():
    """The statistics' worker threads call BLAS; BLAS's own threads on the same cores halved the rate. Inside
    the pool BLAS has one thread, in the workers too; after it, the setting from before, every time (the
    libraries are found once per process)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from tasks.gate.cores import worker_threads

    def blas_threads() -> list[int]:
        return [library["num_threads"] for library in threadpool_info() if library["user_api"] == "blas"]

    with threadpool_limits(3, user_api="blas"):  # more than one, whatever this machine's cores
        before = blas_threads()
        assert before and set(before) == {3}, "numpy's BLAS is not visible to threadpoolctl"
        for _ in range(2):
            with worker_threads(2) as pool:
                assert blas_threads() == [1] * len(before)
                assert list(pool.map(lambda _: blas_threads(), range(4))) == [[1] * len(before)] * 4
            assert blas_threads() == before
