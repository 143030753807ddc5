"""The report and the runs index in a real browser (headless Chromium over DevTools): they render without
errors, every image decodes, nothing is fetched from anywhere, and a class named like an XSS payload shows as
text. The page is the one `ablate run --dataset path/to/photos` wrote in the command table (a photo folder
with a class folder named <img src=x onerror=alert(1)>). Screenshots go to test-output/screenshots/."""

import pytest

from tests.browser import chromium, open_page, required
from tests.user_commands import XSS_CLASS


@pytest.fixture(scope="module")
def report(user_runs):
    """The photo run's report folder and page."""
    if chromium() is None:
        if required():
            pytest.fail("Chromium is required here (ABLATE_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("no Chromium on this machine (CI installs it)")
    run = user_runs["photos"]
    assert run.returncode == 0, run.output[-2000:]
    (run_dir,) = run.run_dirs
    return run_dir.parent, run_dir / "index.html"


def test_the_report_renders_with_no_error_every_image_decoded_and_no_request(report):
    _, page = report
    visit = open_page(page, "report")
    assert visit.console_errors == []
    assert visit.requests == [page.resolve().as_uri()]  # the page itself, nothing else: self-contained
    assert len(visit.images) >= 5 and all(i["complete"] and i["width"] > 0 for i in visit.images), visit.images
    assert "Best change against the baseline" in visit.text and visit.screenshot.stat().st_size > 10_000


def test_the_report_reads_on_a_phone_without_sideways_scrolling(report):
    _, page = report
    visit = open_page(page, "report-phone", width=390, height=844)
    assert visit.overflow == 0 and visit.console_errors == []  # wide tables scroll inside their own box


def test_the_runs_index_renders_in_the_browser(report):
    reports, page = report
    visit = open_page(reports / "index.html", "runs-index")
    assert visit.console_errors == [] and visit.requests == [(reports / "index.html").resolve().as_uri()]
    assert page.parent.name in visit.text and "Ablation runs" in visit.text


def test_a_class_named_like_markup_shows_as_text_and_opens_no_dialog(report):
    _, page = report
    visit = open_page(page, "report-xss")
    assert visit.dialogs == []  # alert(1) never ran
    assert XSS_CLASS in visit.text  # the name is shown, as text
    assert not any(i["src"].endswith("/x") for i in visit.images)  # no <img src=x> was created
