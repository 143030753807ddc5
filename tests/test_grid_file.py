"""Grid files: parse, validate (one line naming the key and what is allowed), expand and count."""

from pathlib import Path

import pytest

from tasks.training.grid import BASELINE, BASELINE_AXIS, TrainConfig
from tasks.training.grid_file import FACTORIAL_AXIS, SETTINGS, GridFileError, grid_cells, load_grid

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ablation.toml"


def write(tmp_path, text: str, name: str = "grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_example_grid_round_trips_to_its_cells():
    grid = load_grid(EXAMPLE)
    variants = grid.variants()
    assert [(axis, name) for axis, name, _ in variants] == [
        (BASELINE_AXIS, BASELINE_AXIS), ("learning_rate", "learning_rate 0.01"),
        ("learning_rate", "learning_rate 0.0001"), ("optimizer", "optimizer sgd"), ("optimizer", "optimizer adamw"),
        ("augmentation", "augmentation flip+translate"), ("batch_norm", "batch_norm True")]
    assert variants[0][2] == BASELINE  # the example's baseline is the built-in one
    assert variants[3][2].optimizer == "sgd" and variants[5][2].augmentation == ("flip", "translate")
    cells = grid_cells(grid)
    assert len(cells) == 7 * 3 and len({c.key for c in cells}) == 21
    assert len(grid_cells(grid, aa=True)) == 8 * 3


def test_factorial_mode_crosses_the_chosen_axes(tmp_path):
    grid = load_grid(write(tmp_path, """
        seeds = 2
        mode = "factorial"
        factorial = ["learning_rate", "dropout"]
        [axes]
        learning_rate = [1e-2, 1e-3, 1e-4]
        dropout = [0.0, 0.2, 0.5]
        batch_size = [16, 64]
    """))
    variants = grid.variants()
    assert len(variants) == 3 * 3  # 9 combinations, one of them the baseline itself, plus the baseline
    assert all(axis == FACTORIAL_AXIS for axis, _, _ in variants[1:])
    assert "learning_rate 0.01, dropout 0.5" in [name for _, name, _ in variants]
    assert all(config.batch_size == 32 for _, _, config in variants)  # not crossed: at the baseline
    assert len(grid_cells(grid)) == 9 * 2
    everything = load_grid(write(tmp_path, 'mode = "factorial"\n[axes]\ndropout = [0.0, 0.5]\nbatch_size = [16, 64]',
                                 "all.toml"))
    assert len(everything.variants()) == 1 + 4  # every listed axis crossed: 2 x 2, none the baseline


def test_yaml_works_too(tmp_path):
    grid = load_grid(write(tmp_path, "seeds: 1\nbaseline:\n  epochs: 4\naxes:\n  dropout: [0.0, 0.5]\n", "g.yaml"))
    assert [c.config.max_epochs for c in grid_cells(grid)] == [4, 4, 4]
    with pytest.raises(GridFileError, match="not valid YAML: expected the node content, but found .* at line 2, "
                                            "column 1$"):
        load_grid(write(tmp_path, "axes: [\n", "broken.yaml"))


@pytest.mark.parametrize("text, message", [
    ("[axes]\nwidht = [1, 2]", "unknown axis widht; allowed: epochs, normalization"),
    ("seed = 3\n[axes]\ndropout = [0.5]",
     "seed: unknown key; allowed: seeds, max_seeds, mode, factorial, baseline, axes"),
    ("seeds = 'sometimes'\n[axes]\ndropout = [0.5]", "seeds: expected a whole number from 1 to 100, or \"auto\"; got "
                                                    "'sometimes'"),
    ("max_seeds = 5\n[axes]\ndropout = [0.5]", "max_seeds needs seeds = \"auto\""),
    ("seeds = 'auto'\nmax_seeds = 2\n[axes]\ndropout = [0.5]", "max_seeds: Input should be greater than or equal to 3"),
    ("[baseline]\nlearning_rat = 0.1\n[axes]\ndropout = [0.5]", "baseline.learning_rat: unknown key; allowed:"),
    ("[axes]\noptimizer = ['adam', 'rmsprop']", "axes.optimizer: Input should be 'adam', 'sgd' or 'adamw'"),
    ("[axes]\ndropout = [0.5, 1.5]", "axes.dropout: Input should be less than 1"),
    ("[baseline]\nwarmup_epochs = 2\n[axes]\ndropout = [0.5]", "warmup_epochs needs lr_schedule = \"cosine\""),
    ("mode = 'grid'\n[axes]\ndropout = [0.5]", "mode: Input should be 'one-factor' or 'factorial'"),
    ("factorial = ['dropout']\n[axes]\ndropout = [0.5]", "it needs mode = \"factorial\""),
    ("[axes]", "axes: Dictionary should have at least 1 item"),
    ("[axes\n", "not valid TOML"),
])
def test_a_bad_grid_file_is_one_line_naming_the_key_and_the_allowed_values(tmp_path, text, message):
    with pytest.raises(GridFileError) as error:
        load_grid(write(tmp_path, text))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_a_missing_grid_file_is_a_clear_error(tmp_path):
    with pytest.raises(GridFileError, match="No such file"):
        load_grid(tmp_path / "nope.toml")


def test_every_setting_maps_onto_the_training_config():
    from dataclasses import fields

    assert set(SETTINGS) - {"epochs"} <= {f.name for f in fields(TrainConfig)}


def test_the_cli_lists_a_grid_and_refuses_a_bad_one_or_a_conflict(tmp_path, capsys):
    from flows.cli import main

    assert main(["grid", "--grid", str(EXAMPLE), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "7 variants x 3 seeds = 21 cells, mode one-factor" in out and "optimizer      optimizer adamw" in out
    assert "estimated time: about" in out and "assumed" in out  # an empty store: the documented rate
    bad = write(tmp_path, "[axes]\nwidht = [1]")
    assert main(["grid", "--grid", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"ablate: error: --grid {bad}: unknown axis widht; allowed:")
    assert main(["run", "--grid", str(EXAMPLE), "--seeds", "2"]) == 2
    assert "a grid file sets the axes, epochs, seeds and baseline itself; drop --seeds" in capsys.readouterr().err


def test_either_spelling_of_a_setting_or_value_names_the_same_variants(tmp_path):
    british = write(tmp_path, '[baseline]\nnormalisation = "standardise"\n'
                              '[axes]\nnormalisation = ["raw", "standardise"]\noptimiser = ["sgd", "adam"]\n',
                    name="british.toml")
    american = write(tmp_path, '[baseline]\nnormalization = "standardize"\n'
                               '[axes]\nnormalization = ["raw", "standardize"]\noptimizer = ["sgd", "adam"]\n',
                     name="american.toml")
    cells = grid_cells(load_grid(british))
    assert cells == grid_cells(load_grid(american))
    assert {(c.axis, c.variant) for c in cells} == {("baseline", "baseline"), ("normalization", "normalization raw"),
                                                    ("optimizer", "optimizer sgd")}
    assert cells[0].config.normalization == "standardize"
    both = write(tmp_path, '[axes]\nnormalisation = ["raw"]\nnormalization = ["scale"]\n', name="both.toml")
    with pytest.raises(GridFileError, match="axes: normalisation and normalization are the same setting"):
        load_grid(both)
