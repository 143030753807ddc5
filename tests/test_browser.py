"""The report and the runs index in a real browser (headless Chromium over DevTools): they render without
errors, every image decodes, nothing is fetched from anywhere, and a class named like an XSS payload shows as
text. Screenshots go to test-output/screenshots/."""

import numpy as np
import pytest
from PIL import Image

from flows.ablation import ablation
from tests.browser import chromium, open_page, required

PAYLOAD = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, prefect_server):
    """A finished run on a folder dataset whose first class folder is named like an XSS payload."""
    if chromium() is None:
        if required():
            pytest.fail("Chromium is required here (ABLATE_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("no Chromium on this machine (CI installs it)")
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("test", 12)):
        for label, name in enumerate([PAYLOAD, "plain"]):
            folder = root / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 120, (16, 16, 3)) + 100 * label  # learnable: the classes differ in brightness
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name[:4]}-{i}.png")
    summary = ablation(dataset=str(root / "data"), epochs=2, seeds=2, axes=["dropout"], gate="warn",
                       out=root / "reports")
    return root / "reports", summary


def test_the_report_renders_with_no_error_every_image_decoded_and_no_request(hostile_run):
    reports, summary = hostile_run
    page = reports / summary["run_dir"].split("/")[-1] / "index.html"
    visit = open_page(page, "report")
    assert visit.console_errors == []
    assert visit.requests == [page.resolve().as_uri()]  # the page itself, nothing else: self-contained
    assert len(visit.images) >= 5 and all(i["complete"] and i["width"] > 0 for i in visit.images), visit.images
    assert "Best change against the baseline" in visit.text and visit.screenshot.stat().st_size > 10_000


def test_the_report_reads_on_a_phone_without_sideways_scrolling(hostile_run):
    reports, summary = hostile_run
    visit = open_page(reports / summary["run_dir"].split("/")[-1] / "index.html", "report-phone", width=390,
                      height=844)
    assert visit.overflow == 0 and visit.console_errors == []  # wide tables scroll inside their own box


def test_the_runs_index_renders_in_the_browser(hostile_run):
    reports, summary = hostile_run
    visit = open_page(reports / "index.html", "runs-index")
    assert visit.console_errors == [] and visit.requests == [(reports / "index.html").resolve().as_uri()]
    assert summary["run_dir"].split("/")[-1] in visit.text and "Ablation runs" in visit.text


def test_a_class_named_like_markup_shows_as_text_and_opens_no_dialog(hostile_run):
    reports, summary = hostile_run
    visit = open_page(reports / summary["run_dir"].split("/")[-1] / "index.html", "report-xss")
    assert visit.dialogs == []  # alert(1) never ran
    assert PAYLOAD in visit.text  # the name is shown, as text
    assert not any(i["src"].endswith("/x") for i in visit.images)  # no <img src=x> was created
