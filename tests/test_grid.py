import pytest

from tasks.training.grid import AXES, BASELINE, BASELINE_AXIS, DEFAULT_AXES, baseline_value, canonical_axes, expand_grid


def test_default_grid_is_baseline_plus_two_changes_per_axis_over_three_seeds():
    cells = expand_grid()
    assert len(cells) == (1 + 2 * len(DEFAULT_AXES)) * 3 == 27  # the article's four levers
    assert sum(c.axis == BASELINE_AXIS for c in cells) == 3  # shared, not trained once per axis
    assert len({c.key for c in cells}) == 27


def test_each_variant_changes_exactly_its_axis():
    fields = {"normalization": {"normalization"}, "depth": {"conv_filters", "dense_units"},
              "learning_rate": {"learning_rate"}, "dropout": {"dropout"}}
    fields |= {"augmentation": {"augmentation"}, "batch_norm": {"batch_norm"}, "weight_decay": {"weight_decay"},
               "optimizer": {"optimizer", "weight_decay"}, "lr_schedule": {"lr_schedule", "warmup_epochs"},
               "early_stopping": {"early_stopping", "patience"}, "batch_size": {"batch_size"},
               "resolution": {"input_scale"}, "width": {"width"}}
    assert set(fields) == set(AXES)
    for cell in expand_grid(list(AXES), seeds=1, epochs=4):
        changed = {k for k, v in vars(cell.config).items() if getattr(BASELINE, k) != v} - {"max_epochs"}
        assert changed <= fields.get(cell.axis, set()) and (cell.axis == BASELINE_AXIS) == (not changed)
        assert cell.config.max_epochs == 4


def test_axes_subset_and_seeds():
    cells = expand_grid(["dropout"], seeds=2)
    assert [c.variant for c in cells] == ["baseline", "baseline", "dropout 0", "dropout 0", "dropout 0.5", "dropout 0.5"]
    assert [c.config.seed for c in cells] == [0, 1] * 3


def test_unknown_axis_and_bad_counts_are_errors():
    with pytest.raises(ValueError, match="unknown axis"):
        expand_grid(["height"])
    with pytest.raises(ValueError):
        expand_grid(seeds=0)


def test_baseline_takes_the_middle_value_of_the_default_axes_and_one_value_of_every_axis():
    assert [baseline_value(a) for a in DEFAULT_AXES] == [list(AXES[a])[1] for a in DEFAULT_AXES]
    for axis, values in AXES.items():  # exactly one value of each axis is the baseline itself
        from dataclasses import replace

        assert sum(replace(BASELINE, **change) == BASELINE for change in values.values()) == 1, axis


def test_either_spelling_of_an_axis_works_on_the_command_line_and_as_a_flow_parameter():
    from flows.ablation import ablation
    from flows.cli_args import build_parser

    args = build_parser().parse_args(["run", "--axes", "normalisation,optimiser", "dropout"])
    assert args.axes == [["normalization", "optimizer"], ["dropout"]]
    assert ablation.validate_parameters({"axes": ["normalisation", "optimizer"]})["axes"] == ["normalisation",
                                                                                              "optimizer"]
    with pytest.raises(Exception, match="axes"):
        ablation.validate_parameters({"axes": ["normalisatoin"]})
    assert canonical_axes(["normalisation", "optimiser", "dropout"]) == ["normalization", "optimizer", "dropout"]
