"""Leakage as a user meets it, through the CLI: a folder whose test split holds edited copies of training images.
`ablate validate --dedupe-report` names exactly those pairs (gate.json, the CSV, the report's side-by-side pairs),
and `ablate run`'s first screen scores every variant with and without them. Prefect runs for real (the session's
test server), Great Expectations validates for real, Keras trains for real (1 epoch, 2 seeds)."""

import csv
import json

import pytest

from tests.planted_copies import write_planted_folder
from tests.test_cli import ablate, assert_one_line_error


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """240 training and 60 test images; 5 test images are copies (one per edit: recoloured, shifted, cropped,
    re-encoded, mirrored) of 5 training images: 8% of the test split, above the 1% that makes the leak critical."""
    root = tmp_path_factory.mktemp("leaky") / "photos"
    return root, write_planted_folder(root, train=240, test=60, copies=5, seed=11)


def test_validate_names_exactly_the_planted_pairs_and_writes_the_dedupe_report(leaky, tmp_path, prefect_server):
    folder, planted = leaky
    dedupe = tmp_path / "leaked.csv"
    result = ablate("validate", str(folder), "--out", str(tmp_path / "reports"), "--dedupe-report", str(dedupe),
                    api_url=prefect_server)
    assert result.returncode == 1, result.stderr[-2000:]  # critical: 8% of the test split is leaked
    assert "near duplicates across splits" in result.stderr
    expected = {(test, train) for test, train, _ in planted}

    with open(dedupe, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["test_image"], r["training_image"]) for r in rows} == expected
    assert all(float(r["distance"]) <= 0.04 and r["exact"] == "no" for r in rows)

    run_dir = next((tmp_path / "reports").glob("*-photos"))
    gate = json.loads((run_dir / "gate.json").read_text())
    check = next(c for c in gate["checks"] if c["name"] == "near_duplicates_across_splits")
    assert check["severity"] == "critical" and not check["success"]
    assert {(p["image"], p["copy"]) for p in check["pairs"]} == expected
    assert sorted(check["offending"]) == sorted(test for test, _ in expected)
    assert {(r["image"], r["copy"]) for r in gate["leaked"]} == expected
    near = next(c for c in gate["checks"] if c["name"] == "near_duplicates")
    assert near["success"], near  # no copies within a split were planted, and none are reported

    page = (run_dir / "index.html").read_text()
    assert "<table class=pairs><tr><th>training image</th><th>test image</th>" in page
    for test, train in expected:  # each pair drawn side by side: training image, then the test image
        assert page.index(f"alt='{train}'") < page.index(f"alt='{test}'")


@pytest.mark.parametrize("make, text", [
    (lambda p: p / "no-such-folder" / "leaked.csv", "no folder"),
    (lambda p: p, "is a folder, not a file"),
])
def test_an_unusable_dedupe_report_path_is_one_line_and_exit_2(leaky, tmp_path, make, text):
    folder, _ = leaky
    result = ablate("validate", str(folder), "--out", str(tmp_path / "reports"), "--dedupe-report",
                    str(make(tmp_path)))
    assert_one_line_error(result, 2, text)
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").glob("*-photos"))


def test_the_verdict_scores_each_variant_without_the_leaked_test_images(leaky, tmp_path, prefect_server):
    folder, planted = leaky
    result = ablate("run", "--dataset", str(folder), "--out", str(tmp_path / "reports"), "--gate", "warn",
                    "--axes", "dropout", "--epochs", "1", "--seeds", "2", api_url=prefect_server, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    page = next((tmp_path / "reports").glob("*-photos/index.html")).read_text()
    assert f"{len(planted)} of the 60 test images (8.3%) are copies of training images" in page
    leak = page[page.index("<div class=leak>"):page.index("</div>", page.index("<div class=leak>"))]
    assert "<td>baseline</td>" in leak and leak.count("<tr>") == 1 + 3  # the header, the baseline, two dropouts
    assert "without the leaked" in leak
