"""The cell cache: a cell's key is what its result depends on; failed cells are never kept."""

from tasks.training.cell_cache import cell_key, load_cell, save_cell
from tasks.training.grid import expand_grid


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


def test_models_of_the_best_variant_or_all_of_them_are_exported(tmp_path):
    from tasks.training.cell_cache import export_models

    records = [{"axis": "dropout", "variant": v, "seed": s, "status": "ok", "val_accuracy_at_best": acc}
               for v, acc in (("low", 0.5), ("high", 0.9)) for s in (0, 1)]
    records.append({"axis": "dropout", "variant": "broken", "seed": 0, "status": "failed", "val_accuracy_at_best": 1})
    keys = {f"dropout/{r['variant']}/seed{r['seed']}": f"k{i}" for i, r in enumerate(records)}
    slugs = {key: key.replace("/", "-") for key in keys}
    for key in keys.values():
        (tmp_path / f"{key}.keras").write_bytes(b"model")
    best = export_models(records, keys, slugs, tmp_path, tmp_path / "best", keep_all=False)
    assert sorted(p.name for p in best) == ["dropout-high-seed0.keras", "dropout-high-seed1.keras"]
    every = export_models(records, keys, slugs, tmp_path, tmp_path / "all", keep_all=True)
    assert len(every) == 4  # every scored cell; the failed one has no model worth keeping


def test_editing_the_users_model_module_changes_its_cells_keys(tmp_path, monkeypatch):
    import sys

    from tasks.training.cell_cache import cell_key

    module = tmp_path / "my_model_pkg.py"
    module.write_text("def build(input_shape, num_classes):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cell = {"axis": "baseline", "variant": "baseline", "seed": 0, "model": "my_model_pkg:build"}
    before = cell_key(cell, "f", "tensorflow")
    assert cell_key(cell, "f", "tensorflow") == before
    module.write_text("def build(input_shape, num_classes):\n    return 1\n")
    assert cell_key(cell, "f", "tensorflow") != before
    assert "my_model_pkg" not in sys.modules  # hashed from its file, not imported


def test_the_framework_import_starts_early_only_when_the_first_round_has_a_cell_to_train(tmp_path):
    from flows.fan_out import first_round_open
    from tasks.training.cell_cache import cell_keys, save_cell
    from tasks.training.grid import grid_variants, looks, seeded
    from tasks.training.train import failed_record

    variants = grid_variants(["dropout"], epochs=1)
    data = {"fingerprint": "f" * 16, "class_names": ["a", "b"]}
    options = {"fresh": False, "backend": "tensorflow"}
    cells = seeded(variants, range(2))
    assert first_round_open(variants, None, 2, data, tmp_path, options)
    keys = cell_keys(cells, data["fingerprint"], "tensorflow")
    for cell in cells[:-1]:
        save_cell(tmp_path, keys[cell.key], failed_record(cell.to_dict(), "kept") | {"status": "ok"})
    assert first_round_open(variants, None, 2, data, tmp_path, options)  # one cell is still open
    save_cell(tmp_path, keys[cells[-1].key], failed_record(cells[-1].to_dict(), "kept") | {"status": "ok"})
    assert not first_round_open(variants, None, 2, data, tmp_path, options)  # a re-run: nothing to import for
    assert first_round_open(variants, None, 2, data, tmp_path, options | {"fresh": True})
    assert not first_round_open(variants, looks(2), None, data, tmp_path, options)  # rounds: the first has 2 seeds
    assert first_round_open(variants, looks(5), None, data, tmp_path, options)  # ... here 3
