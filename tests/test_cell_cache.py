"""The cell cache: a cell's key is what its result depends on; failed cells are never kept."""

from tasks.cell_cache import cell_key, load_cell, save_cell
from tasks.grid import expand_grid


def test_the_key_depends_on_data_config_and_backend_not_on_names():
    cell = expand_grid(["dropout"], seeds=2, epochs=3)[0].to_dict()
    key = cell_key(cell, "fp1", "tensorflow")
    assert key == cell_key(cell | {"axis": "other", "variant": "renamed"}, "fp1", "tensorflow")
    assert len({key, cell_key(cell, "fp2", "tensorflow"), cell_key(cell, "fp1", "jax"),
                cell_key(cell | {"seed": 1}, "fp1", "tensorflow"),
                cell_key(cell | {"max_epochs": 4}, "fp1", "tensorflow")}) == 5


def test_finished_cells_round_trip_and_failed_or_damaged_ones_do_not(tmp_path):
    save_cell(tmp_path, "a", {"status": "ok", "best_val_accuracy": 0.5, "history": {"loss": [float("nan")]}})
    save_cell(tmp_path, "b", {"status": "failed", "error": "killed"})
    (tmp_path / "c.json").write_text("{not json")
    assert load_cell(tmp_path, "a")["best_val_accuracy"] == 0.5
    assert load_cell(tmp_path, "b") is None and load_cell(tmp_path, "c") is None
