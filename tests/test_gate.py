"""Every check of the default suite: a generated dataset that passes all of them, and one mutation per check
that trips it, naming the images it changed. Great Expectations runs for real."""

import json

import numpy as np
import pytest

from tasks.data.datasets import Dataset
from tasks.gate.checks import CHECKS
from tasks.gate.expectations import GateResult, gate_status, run_gate
from tasks.gate.near_copies import near_copy_columns
from tasks.gate.pixel_stats import pixel_stats
from tasks.gate.stats_cache import with_near_copies
from tasks.gate.suite import load_suite
from tests.planted_copies import crop_rescale, flip

CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS, SIZE = 3, 20, 10, 24


def smooth_image(rng, brightness: float) -> np.ndarray:
    """A structured RGB image (a few random blobs plus grain) of the given mean brightness."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    picture = np.zeros((SIZE, SIZE, 3))
    for _ in range(4):
        cy, cx, width = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.1, 0.3)]
        picture += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / width**2)[..., None] * rng.uniform(0.3, 1, 3)
    picture = picture / picture.max() + rng.normal(0, 0.04, picture.shape)
    picture = (picture - picture.mean()) * 0.8 + brightness
    return (np.clip(picture, 0, 1) * 255).round().astype(np.uint8)


def clean_dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    splits = {}
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        y = np.repeat(np.arange(CLASSES), per_class)
        x = np.stack([smooth_image(rng, rng.uniform(0.35, 0.65)) for _ in y])
        ids = np.array([f"{split}/class_{label}/{i}.png" for i, label in enumerate(y)])
        splits[split] = (x, y, ids, np.tile([SIZE, SIZE, 3], (len(y), 1)))
    (xtr, ytr, idtr, shtr), (xte, yte, idte, shte) = splits["train"], splits["test"]
    return Dataset("generated", xtr, ytr, xte, yte, [f"class_{c}" for c in range(CLASSES)],
                   idtr, idte, shtr, shte)


def keep(data: Dataset, split: str, mask: np.ndarray) -> None:
    for field in ("x", "y", "ids", "shapes"):
        setattr(data, f"{field}_{split}", getattr(data, f"{field}_{split}")[mask])


def gate(data: Dataset, **kwargs) -> GateResult:
    """The gate on the statistics the gate step computes: pixel statistics and the near-copy search."""
    return run_gate(with_near_copies(pixel_stats(data), near_copy_columns(data)), data.class_names, **kwargs)


def checks_by_name(result: GateResult) -> dict:
    return {c.name: c for c in result.checks}


# Each mutation changes a clean dataset so that one check must fail; it returns the ids that check must name.
def float_train(d):
    d.x_train = d.x_train.astype(np.float32)


def mixed_scale(d):
    float_train(d)
    d.x_train[[3, 7]] /= 255.0
    return [d.ids_train[3], d.ids_train[7]]


def float_test(d):
    d.x_test = d.x_test.astype(np.float32)
    return list(d.ids_test)


def nan_pixel(d):
    float_train(d)
    d.x_train[5, 1, 1, 0] = np.nan
    return [d.ids_train[5]]


def inf_pixel(d):
    float_train(d)
    d.x_train[6, 2, 2, 1] = np.inf
    return [d.ids_train[6]]


def unreadable(d):
    d.skipped = np.array([["train", "1", "train/class_1/broken.png", "cannot identify image file"]])
    return ["train/class_1/broken.png"]


def link_not_followed(d):
    from tasks.data.images import OUTSIDE_LINK

    d.skipped = np.array([["test", "0", "test/class_0/elsewhere.png", OUTSIDE_LINK]])
    return ["test/class_0/elsewhere.png"]


def grey_file(d):
    d.shapes_train[4] = (SIZE, SIZE, 1)
    return [d.ids_train[4]]


def tiny_file(d):
    d.shapes_train[8] = (4, 4, 3)
    return [d.ids_train[8]]


def wide_file(d):
    d.shapes_train[9] = (SIZE, 4 * SIZE, 3)
    return [d.ids_train[9]]


def grey_as_rgb(d):
    d.x_train[10] = d.x_train[10, ..., :1]
    return [d.ids_train[10]]


def dark(d):
    d.x_train[11] //= 8
    return [d.ids_train[11]]


def overexposed(d):
    d.x_train[12] = 235 + d.x_train[12] // 16
    return [d.ids_train[12]]


def low_information(d):
    d.x_train[13] = 0
    d.x_train[13, 0, :5] = 255  # 5 of 576 pixels differ: not constant, but almost no information
    return [d.ids_train[13]]


def blurry(d):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    d.x_train[14] = (100 + 50 * np.sin(yy / SIZE * np.pi) * np.cos(xx / SIZE * np.pi))[..., None].astype(np.uint8)
    return [d.ids_train[14]]


def constant(d):
    d.x_test[2] = 128
    return [d.ids_test[2]]


def exact_copy(d):
    d.x_train[1] = d.x_train[0]  # same class (0)
    return [d.ids_train[0], d.ids_train[1]]


def near_copy(d):
    d.x_train[2] = flip(np.clip(d.x_train[0].astype(int) + 4, 0, 255).astype(np.uint8), None)  # mirrored, brighter
    return [d.ids_train[0], d.ids_train[2]]


def leak(d):
    d.x_test[0] = d.x_train[3]  # both class 0
    return [d.ids_train[3], d.ids_test[0]]


def near_leak(d):
    d.x_test[0] = crop_rescale(d.x_train[3], np.random.default_rng(0))  # a 10% crop, scaled back up
    return [d.ids_test[0]]  # the check is on the test images; its pair names the training one


def conflicting(d):
    d.x_train[TRAIN_PER_CLASS] = d.x_train[0]  # class 1's first image = class 0's first image
    return [d.ids_train[0], d.ids_train[TRAIN_PER_CLASS]]


def one_class(d):
    keep(d, "train", d.y_train == 0)
    keep(d, "test", d.y_test == 0)
    d.class_names = d.class_names[:1]


def bad_label(d):
    d.y_test[4] = CLASSES + 2
    return [d.ids_test[4]]


def no_training_class(d):
    d.y_train[d.y_train == 2] = 1
    return ["train/class_2"]


def no_test_class(d):
    keep(d, "test", d.y_test != 2)
    return ["test/class_2"]


def imbalance(d):
    keep(d, "train", (d.y_train != 2) | (np.arange(len(d.y_train)) % TRAIN_PER_CLASS == 0))
    return ["train/class_2"]


def share_drift(d):
    keep(d, "test", (d.y_test == 0) | (np.arange(len(d.y_test)) % TEST_PER_CLASS < 2))
    return ["test/class_0", "test/class_1", "test/class_2"]


def darker_test(d):
    d.x_test = (d.x_test * 0.4).astype(np.uint8)


def flatter_test(d):
    mean = d.x_test.mean(axis=(1, 2, 3), keepdims=True)
    d.x_test = ((d.x_test - mean) * 0.25 + mean).astype(np.uint8)


MUTATIONS = {
    "one_pixel_scale": mixed_scale, "one_dtype": float_test, "no_nan_pixels": nan_pixel,
    "no_infinite_pixels": inf_pixel, "readable_files": unreadable, "unfollowed_symlinks": link_not_followed,
    "one_channel_count": grey_file, "odd_sizes": tiny_file, "odd_aspect_ratios": wide_file,
    "gray_stored_as_rgb": grey_as_rgb, "dark_images": dark, "overexposed_images": overexposed,
    "low_information": low_information, "blurry_images": blurry, "constant_images": constant,
    "exact_duplicates": exact_copy, "near_duplicates": near_copy, "train_test_leakage": leak,
    "near_duplicates_across_splits": near_leak, "conflicting_labels": conflicting,
    "labels_within_class_list": bad_label, "at_least_two_classes": one_class, "class_missing_from_train": no_training_class,
    "class_missing_from_test": no_test_class, "class_imbalance": imbalance, "class_share_drift": share_drift,
    "brightness_drift": darker_test, "contrast_drift": flatter_test,
}


def test_every_check_of_the_default_suite_has_a_tripping_case():
    assert set(MUTATIONS) == set(CHECKS) == set(load_suite()["checks"])


def test_a_clean_dataset_passes_every_check_and_data_docs_are_written(tmp_path):
    result = gate(clean_dataset(), docs_dir=tmp_path / "docs")
    assert result.status == "pass", [(c.name, c.observed) for c in result.failed]
    assert len(result.checks) == len(CHECKS)
    assert result.data_docs and (tmp_path / "docs" / "index.html").exists()
    pages = [p.read_text() for p in (tmp_path / "docs" / "validations").rglob("*.html")]
    assert len(pages) == 2  # the image table and the class table
    assert any("brightness" in page for page in pages)


@pytest.mark.parametrize("check", sorted(MUTATIONS))
def test_each_check_trips_on_its_defect_and_names_the_images(check):
    data = clean_dataset()
    expected = MUTATIONS[check](data)
    result = gate(data)
    found = checks_by_name(result)[check]
    suite = load_suite()["checks"][check]
    assert not found.success, found
    assert result.status == ("fail" if suite["severity"] == "critical" else result.status)
    assert result.status in ("warn", "fail")
    if expected is not None:
        assert sorted(found.offending) == sorted(expected) and found.offending_count == len(expected), found
    else:  # drift and the class count: one number, not a list of images
        assert "limit" in found.observed or found.observed == "1 classes (at least 2)"


def test_a_check_that_passes_names_nothing():
    result = gate(clean_dataset())
    assert all(c.offending == [] and c.offending_count == 0 for c in result.checks)


def test_severity_decides_the_status(tmp_path):
    data = clean_dataset()
    leak(data)
    assert gate(data).status == "fail"
    suite = tmp_path / "lenient.toml"
    suite.write_text('name = "lenient"\nversion = 3\n[train_test_leakage]\nseverity = "warning"\n'
                     '[dark_images]\nseverity = "critical"\nmin_brightest_level = 0.2\n')
    lenient = gate(data, suite=load_suite(suite))
    assert [c.name for c in lenient.checks] == ["train_test_leakage", "dark_images"]
    assert lenient.status == "warn" and lenient.suite["name"] == "lenient" and lenient.suite["version"] == 3


def test_thresholds_come_from_the_suite(tmp_path):
    data = clean_dataset()
    strict = tmp_path / "strict.toml"
    strict.write_text('version = 1\n[dark_images]\nseverity = "warning"\nmin_brightest_level = 0.999\n')
    result = gate(data, suite=load_suite(strict))
    assert result.status == "warn" and result.checks[0].offending_count > 0
    assert result.checks[0].kwargs == {"column": "brightness_p99", "min_value": 0.999}


def test_off_checks_do_not_run(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('version = 1\n[constant_images]\nseverity = "off"\n[no_nan_pixels]\nseverity = "critical"\n')
    assert [c.name for c in gate(clean_dataset(), suite=load_suite(suite)).checks] == ["no_nan_pixels"]


def test_gate_json_round_trip_has_what_ci_needs():
    data = clean_dataset()
    expected = leak(data)
    result = gate(data)
    raw = json.loads(result.to_json())
    entry = next(c for c in raw["checks"] if c["name"] == "train_test_leakage")
    assert raw["status"] == "fail" and raw["suite"]["name"] == "image-gate"
    assert entry["severity"] == "critical" and entry["success"] is False
    assert sorted(entry["offending"]) == sorted(expected) and entry["observed"].startswith("2 of")
    assert GateResult.from_json(result.to_json()) == result
    assert gate_status([]) == "pass"


def test_names_from_the_data_are_text_in_data_docs_and_exact_in_gate_json(tmp_path):
    data = clean_dataset()
    evil = "<img src=x onerror=alert(1)>"
    data.class_names[1] = evil
    data.ids_test = np.array([f"test/{evil}/{i}.png" for i in range(len(data.ids_test))])
    constant(data)
    result = gate(data, docs_dir=tmp_path / "docs")
    assert checks_by_name(result)["constant_images"].offending == [f"test/{evil}/2.png"]
    pages = [p.read_text() for p in (tmp_path / "docs").rglob("*.html")]
    assert any("&lt;img src=x onerror=alert(1)&gt;" in page for page in pages)  # shown, as text
    assert not any(evil in page for page in pages)


def test_a_photo_folder_s_mixed_sizes_are_no_finding_and_thumbnails_and_banners_among_them_are(tmp_path):
    from tasks.data.datasets import load_dataset
    from tests.photos import photo, write_photo_folder

    root = write_photo_folder(tmp_path / "photos", 80, processes=1)  # 500x375 mostly, 1024x768, portrait
    result = gate(load_dataset(str(root)))
    assert {"odd_sizes", "odd_aspect_ratios"}.isdisjoint(c.name for c in result.failed), result.failed
    rng = np.random.default_rng(1)
    odd = {"class_0/thumb.jpg": (100, 75), "class_1/thumb.jpg": (75, 100), "class_2/banner.jpg": (900, 200)}
    for name, (width, height) in odd.items():
        photo(int(name[6]), width, height, rng).save(root / name)
    found = checks_by_name(gate(load_dataset(str(root))))
    assert found["odd_sizes"].offending == ["class_0/thumb.jpg", "class_1/thumb.jpg"]
    assert found["odd_aspect_ratios"].offending == ["class_2/banner.jpg"]
