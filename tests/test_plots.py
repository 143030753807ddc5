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
    from tasks.report.charts_ahead import ChartsAhead
    from tasks.report.thumbnails import ImageDrawer

    data = load_dataset("digits", limit=60)
    ChartsAhead(data, tmp_path).join()
    (kept,) = tmp_path.glob("histogram_png-*.txt")
    monkeypatch.setattr(plots, "pyplot", lambda: pytest.fail("the report drew the histogram again"))
    with plots.kept_in(tmp_path):
        assert ImageDrawer(data).histogram() == kept.read_text()


def test_learning_curves_drawn_as_each_axis_finishes_are_the_ones_the_report_then_uses(tmp_path):
    """Records arrive out of order, as cells finish; each axis's chart is drawn once its cells and the
    baseline's have all finished, from the same inputs the report computes from every record: the report then
    draws only the axis that had not finished (and its effects charts, which need every comparison)."""
    from tasks.data.datasets import load_dataset
    from tasks.report.aggregate import axes_in, mean_curves, results_table, summarise
    from tasks.report.charts_ahead import ChartsAhead
    from tasks.report.page import axis_view
    from tasks.training.grid import expand_grid
    from tests.test_aggregate_and_report import fake_records

    cells, records = expand_grid(seeds=2, epochs=3), fake_records(seeds=2)  # both in the grid's order
    assert [(c.axis, c.variant, c.config.seed) for c in cells] == [(r["axis"], r["variant"], r["seed"])
                                                                   for r in records]
    summary = summarise(results_table(records))
    axes = axes_in(summary)
    unfinished = axes[1]
    ahead = ChartsAhead(load_dataset("digits", limit=60), tmp_path, cells, classes=10)
    for record in reversed(records):
        if record["axis"] != unfinished:
            ahead.finished(record)
    ahead.join()
    drawn_ahead = set(tmp_path.glob("curves_png-*.txt"))
    assert len(drawn_ahead) == len(axes) - 1

    with plots.kept_in(tmp_path):  # the report's charts, kept by their inputs: one new file per new chart
        for axis in axes:
            axis_view(axis, summary, mean_curves(records), {})
    assert len(set(tmp_path.glob("curves_png-*.txt")) - drawn_ahead) == 1  # the unfinished axis's alone

    # A run that reuses every cell computes nothing ahead: the run that trained them kept the charts.
    ahead = ChartsAhead(load_dataset("digits", limit=60), tmp_path / "reused", cells, classes=10)
    for record in records:
        ahead.finished(record | {"cached": True})
    ahead.join()
    assert not list((tmp_path / "reused").glob("curves_png-*.txt"))
