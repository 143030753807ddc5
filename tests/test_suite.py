"""The suite file: the default one loads and covers every check; a user's typo is a clear error."""

import pytest

from tasks.gate.checks import CHECKS
from tasks.gate.suite import DEFAULT_SUITE, SuiteError, load_suite


def test_the_default_suite_is_versioned_and_configures_every_check():
    suite = load_suite()
    assert suite["name"] == "image-gate" and suite["version"] >= 1 and suite["path"] == str(DEFAULT_SUITE)
    assert list(suite["checks"]) == list(CHECKS)  # the file lists the checks in the order the code defines them
    for name, settings in suite["checks"].items():
        assert set(settings) == {"severity", *CHECKS[name].params}
    severities = {name: s["severity"] for name, s in suite["checks"].items()}
    assert severities["one_pixel_scale"] == severities["train_test_leakage"] == "critical"
    assert severities["conflicting_labels"] == "critical" and severities["odd_sizes"] == "warning"


@pytest.mark.parametrize("text, message", [
    ("version = 1\n[no_such_check]\nseverity = 'warning'\n", "unknown check [no_such_check] (known: one_pixel_scale"),
    ("version = 1\n[dark_images]\nseverity = 'loud'\nmin_brightest_level = 0.2\n", "severity must be one of"),
    ("version = 1\n[dark_images]\nseverity = 'warning'\nmin_brightest = 0.2\n",
     "unknown setting 'min_brightest' (allowed: severity, min_brightest_level)"),
    ("version = 1\n[dark_images]\nseverity = 'warning'\n", "[dark_images] needs min_brightest_level"),
    ("version = 1\n[dark_images]\nseverity = 'warning'\nmin_brightest_level = 2\n", "at most 1"),
    ("version = 1\n[brightness_drift]\nseverity = 'warning'\nmax_kl = 0.1\nbins = 2.5\n", "a whole number"),
    ("version = 1\n[class_imbalance]\nseverity = 'warning'\nmax_ratio = 'ten'\n", "must be a number"),
    ("[no_nan_pixels]\nseverity = 'critical'\n", "'version' must be a whole number"),
    ("version = 1\n", "has no checks"),
    ("version = [1\n", "is not valid TOML"),
])
def test_a_bad_suite_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_a_missing_suite_is_bad_input(tmp_path):
    with pytest.raises(SuiteError, match="cannot read suite"):
        load_suite(tmp_path / "nope.toml")
