"""Charts kept by their inputs (`tasks.report.plots.kept_in`): a report drawn again from the same results reuses
them without drawing, and different results draw anew."""

import numpy as np
import pytest

from tasks.report import plots


def test_a_chart_is_kept_by_its_inputs_and_reused_without_drawing(tmp_path, monkeypatch):
    samples = {"train": np.arange(256, dtype=np.uint8).repeat(3), "test": np.arange(128, dtype=np.uint8)}
    with plots.kept_in(tmp_path):
        first = plots.histogram_png(samples, np.dtype("uint8"))
    assert first and len(list(tmp_path.glob("histogram_png-*.txt"))) == 1

    def no_drawing():
        raise AssertionError("drew a chart that was kept")

    monkeypatch.setattr(plots, "pyplot", no_drawing)
    with plots.kept_in(tmp_path):
        assert plots.histogram_png(samples, np.dtype("uint8")) == first
        changed = samples | {"test": np.arange(1, 129, dtype=np.uint8)}  # other pixel values: drawn again
        with pytest.raises(AssertionError, match="drew a chart"):
            plots.histogram_png(changed, np.dtype("uint8"))
    assert plots.effects_png([]) is None  # nothing to draw, outside kept_in: drawn (nothing) every time


def test_the_data_chart_drawn_ahead_while_cells_train_is_the_one_the_report_then_uses(tmp_path, monkeypatch):
    from tasks.data.datasets import load_dataset
    from tasks.report.thumbnails import ImageDrawer, draw_ahead

    data = load_dataset("digits", limit=60)
    draw_ahead(data, tmp_path).join()
    (kept,) = tmp_path.glob("histogram_png-*.txt")
    monkeypatch.setattr(plots, "pyplot", lambda: pytest.fail("the report drew the histogram again"))
    with plots.kept_in(tmp_path):
        assert ImageDrawer(data).histogram() == kept.read_text()
