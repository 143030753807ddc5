import json

import numpy as np
import pytest

from tasks.datasets import load_dataset
from tasks.gate import GateResult, gate_status, run_gate
from tasks.pixel_stats import pixel_stats


@pytest.fixture
def digits():
    return load_dataset("digits", limit=60)


def checks_by_name(result):
    return {c.name: c for c in result.checks}


def test_clean_digits_pass_and_data_docs_are_written(digits, tmp_path):
    result = run_gate(pixel_stats(digits), digits.class_names, tmp_path / "docs")
    assert result.status == "pass", [c for c in result.checks if not c.success]
    assert result.data_docs and (tmp_path / "docs" / "index.html").exists()
    assert list((tmp_path / "docs" / "validations").rglob("*.html"))


def test_mixed_scales_fail_critically_and_name_the_images(digits):
    digits.x_train = digits.x_train.astype(np.float32)
    digits.x_train[[3, 7]] /= 255.0  # two images saved on the 0-1 scale among 0-255 ones
    result = run_gate(pixel_stats(digits), digits.class_names)
    check = checks_by_name(result)["one pixel scale"]
    assert result.status == "fail" and not check.success and check.severity == "critical"
    assert check.offending == [digits.ids_train[3], digits.ids_train[7]] and check.offending_count == 2


def test_nan_pixels_fail_and_name_the_image(digits):
    digits.x_test = digits.x_test.astype(np.float32)
    digits.x_test[5, 1, 1, 0] = np.nan
    result = run_gate(pixel_stats(digits), digits.class_names)
    assert result.status == "fail"
    assert checks_by_name(result)["no NaN pixels"].offending == [digits.ids_test[5]]


def test_labels_outside_the_class_list_fail(digits):
    digits.y_test[0] = -1
    result = run_gate(pixel_stats(digits), digits.class_names)
    assert checks_by_name(result)["labels within the class list"].offending == [digits.ids_test[0]]


def test_class_missing_from_training_is_critical_and_from_test_a_warning(digits):
    keep = digits.y_test != 4
    digits.x_test, digits.y_test = digits.x_test[keep], digits.y_test[keep]
    digits.ids_test, digits.shapes_test = digits.ids_test[keep], digits.shapes_test[keep]
    result = run_gate(pixel_stats(digits), digits.class_names)
    check = checks_by_name(result)["every class in the test split"]
    assert result.status == "warn" and check.observed == "missing classes: 4"
    digits.y_train[digits.y_train == 2] = 3
    assert run_gate(pixel_stats(digits), digits.class_names).status == "fail"


def test_odd_shapes_warn(digits):
    digits.shapes_train[0] = (9, 8, 1)
    result = run_gate(pixel_stats(digits), digits.class_names)
    assert result.status == "warn" and checks_by_name(result)["one image shape"].offending == [digits.ids_train[0]]


def test_status_and_json_round_trip(digits):
    result = run_gate(pixel_stats(digits), digits.class_names)
    back = GateResult.from_json(result.to_json())
    assert back == result and json.loads(result.to_json())["status"] == "pass"
    assert gate_status([]) == "pass"
