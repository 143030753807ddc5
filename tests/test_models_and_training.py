import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tasks.data.datasets import load_dataset
from tasks.data.store import load_cache, save_cache
from tasks.training.grid import BASELINE, expand_grid
from tasks.training.models import build_model
from tasks.training.feed import normalize
from tasks.training.train import config_of, train_cell, validation_carve


def layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def test_baseline_model_shape_and_layers():
    model = build_model((32, 32, 1), 10, BASELINE)
    assert model.output_shape == (None, 10)
    assert layer_types(model) == ["InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense"]


def test_depth_and_dropout_change_the_built_model():
    deep = build_model((32, 32, 3), 5, replace(BASELINE, conv_filters=(32, 64), dense_units=128, dropout=0.0))
    assert layer_types(deep).count("Conv2D") == 2 and "Dropout" not in layer_types(deep)
    assert [l.filters for l in deep.layers if hasattr(l, "filters")] == [32, 64]
    assert [l.units for l in deep.layers if type(l).__name__ == "Dense"] == [128, 5]
    half = build_model((32, 32, 3), 5, replace(BASELINE, dropout=0.5))
    assert [l.rate for l in half.layers if type(l).__name__ == "Dropout"] == [0.5]


def test_deepest_variant_fits_tiny_images():
    assert build_model((3, 3, 1), 2, replace(BASELINE, conv_filters=(32, 64))).output_shape == (None, 2)


def test_normalization_modes():
    train = np.array([[[[0], [255]]], [[[51], [102]]]], dtype=np.uint8)
    raw, _ = normalize(train, train, "raw")
    scaled, _ = normalize(train, train, "scale")
    standard, test = normalize(train, train[:1], "standardize")
    assert raw.dtype == np.float32 and raw.max() == 255
    assert scaled.max() == 1.0
    assert abs(standard.mean()) < 1e-6 and abs(standard.std() - 1) < 1e-4
    assert np.allclose(test, standard[:1])  # the test split uses the training statistics
    with pytest.raises(ValueError):
        normalize(train, train, "minmax")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return str(save_cache(load_dataset("digits", limit=60), tmp_path_factory.mktemp("cache")))


def test_train_cell_returns_a_small_record_with_history(tiny_dataset):
    cell = expand_grid(["dropout"], seeds=1, epochs=2)[0]
    record = train_cell(cell.to_dict(), tiny_dataset)
    assert record["status"] == "ok" and record["epochs"] == 2
    assert len(record["history"]["val_accuracy"]) == 2
    val = record["history"]["val_accuracy"]
    assert 0 <= record["test_accuracy"] <= 1 and record["val_accuracy_at_best"] == max(val)
    assert record["best_epoch"] == val.index(max(val)) + 1
    assert record["seconds"] > 0 and record["variant"] == "baseline"


def test_same_seed_gives_the_same_result(tiny_dataset):
    cell = expand_grid(["dropout"], seeds=1, epochs=1)[0].to_dict()
    assert train_cell(cell, tiny_dataset)["history"] == train_cell(cell, tiny_dataset)["history"]


def test_a_crashing_cell_becomes_a_failed_record(tiny_dataset):
    cell = expand_grid(["dropout"], seeds=1, epochs=1)[0].to_dict() | {"normalization": "bogus"}
    record = train_cell(cell, tiny_dataset)
    assert record["status"] == "failed" and "bogus" in record["error"] and math.isnan(record["test_accuracy"])


def test_nan_loss_is_recorded_as_diverged(tmp_path):
    data = load_dataset("digits", limit=30)
    data.x_train = data.x_train.astype(np.float32)
    data.x_train[:] = np.inf  # every batch overflows: the loss is NaN at once
    path = str(save_cache(data, tmp_path))
    record = train_cell(expand_grid(["dropout"], seeds=1, epochs=3)[0].to_dict() | {"normalization": "raw"}, path)
    assert record["status"] == "diverged" and "NaN" in record["error"] and record["epochs"] < 3


def test_train_cell_writes_history_csv_tensorboard_logs_and_the_best_model(tiny_dataset, tmp_path):
    import keras

    cell = expand_grid(["dropout"], seeds=1, epochs=3)[0]
    record = train_cell(cell.to_dict(), tiny_dataset, out_dir=str(tmp_path / "cell"),
                        model_path=str(tmp_path / "best.keras"), tensorboard=True)
    history = pd.read_csv(tmp_path / "cell" / "history.csv")
    assert len(history) == record["epochs"] and np.allclose(history["val_accuracy"], record["history"]["val_accuracy"])
    assert list((tmp_path / "cell" / "tensorboard").rglob("events.out.tfevents.*"))
    model = keras.models.load_model(tmp_path / "best.keras")  # the weights of the best epoch, not the last
    data = load_cache(tiny_dataset)
    x_test = normalize(data.x_train, data.x_test, cell.config.normalization)[1]
    predicted = model.predict(x_test, verbose=0).argmax(axis=1)
    assert np.isclose((predicted == data.y_test).mean(), record["test_accuracy"], atol=1e-6)


def test_a_cell_past_its_time_limit_stops_between_batches_and_fails_as_timed_out(tiny_dataset):
    cell = expand_grid(["dropout"], seeds=1, epochs=50)[0].to_dict()
    record = train_cell(cell, tiny_dataset, time_limit=0.5)
    assert record["status"] == "failed" and record["error"] == "timed out after 0.5 s (--cell-timeout)"
    assert record["seconds"] < 20  # 50 epochs would take far longer: training stopped at the limit


def test_each_new_axis_changes_the_built_model_as_it_claims():
    from tasks.training.grid import AXES
    from tasks.training.models import build_model

    def model(axis, variant):
        return build_model((16, 16, 3), 4, replace(BASELINE, **AXES[axis][variant]))

    assert "BatchNormalization" in layer_types(model("batch_norm", "batch norm"))
    assert "BatchNormalization" not in layer_types(model("batch_norm", "no batch norm"))
    augmented = layer_types(model("augmentation", "flip, translate, rotate, zoom"))
    assert augmented[1:5] == ["RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom"]
    assert not any(t.startswith("Random") for t in layer_types(model("augmentation", "no augmentation")))
    conv = lambda m: [layer for layer in m.layers if type(layer).__name__ == "Conv2D"][0]  # noqa: E731
    assert conv(model("width", "double width")).filters == 64 and conv(model("width", "half width")).filters == 16
    resized = model("resolution", "half resolution")
    assert resized.get_layer("resize").output.shape[1:3] == (8, 8)
    assert "Resizing" not in layer_types(model("resolution", "as loaded"))


def test_optimizer_schedule_and_early_stopping_axes_change_the_training():
    import keras

    from tasks.training.grid import AXES
    from tasks.training.train import make_optimizer, schedule_callbacks

    def config(axis, variant):
        return replace(BASELINE, **AXES[axis][variant])

    sgd = make_optimizer(config("optimizer", "SGD momentum 0.9"), 10)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.get_config()["momentum"] == 0.9
    adamw = make_optimizer(config("optimizer", "AdamW wd 1e-4"), 10)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.get_config()["weight_decay"] == 1e-4
    assert make_optimizer(config("weight_decay", "wd 1e-3"), 10).get_config()["weight_decay"] == 1e-3
    assert make_optimizer(BASELINE, 10).get_config()["weight_decay"] is None
    cosine = make_optimizer(config("lr_schedule", "cosine, 1 warm-up epoch"), 10).learning_rate
    warm = keras.optimizers.schedules.CosineDecay
    assert isinstance(make_optimizer(config("lr_schedule", "cosine"), 10)._learning_rate, warm)
    assert float(cosine) == 0.0  # step 0 of a warm-up starts from zero
    kinds = lambda c: [type(cb).__name__ for cb in schedule_callbacks(c)]  # noqa: E731
    assert kinds(BASELINE) == ["TerminateOnNaN", "EarlyStopping"]
    assert kinds(config("early_stopping", "no early stopping")) == ["TerminateOnNaN"]
    assert "ReduceLROnPlateau" in kinds(config("lr_schedule", "reduce on plateau"))


def test_every_new_axis_trains_end_to_end_on_a_tiny_slice(tiny_dataset):
    from tasks.training.grid import AXES, DEFAULT_AXES

    extra = [axis for axis in AXES if axis not in DEFAULT_AXES]
    for cell in expand_grid(extra, seeds=1, epochs=1)[1:]:
        record = train_cell(cell.to_dict(), tiny_dataset)
        assert record["status"] == "ok", (cell.key, record["error"], record["error_detail"])


@pytest.mark.parametrize("spec, message", [
    ("tests.user_models:broken", "failed to build for input (16, 16, 3) and 4 classes: RuntimeError: forgot"),
    ("tests.user_models:nothing", "tests.user_models has no function nothing"),
    ("tests.no_such_module:build", "cannot import tests.no_such_module: ModuleNotFoundError"),
    ("no colon", "expected package.module:function"),
])
def test_a_user_model_that_cannot_be_used_is_a_clear_error(spec, message):
    from tasks.training.models import UserModelError, check_user_model

    with pytest.raises(UserModelError, match="^--model") as error:
        check_user_model(spec, (16, 16, 3), 4)
    assert message in str(error.value) and error.value.exit_code == 2


def test_the_model_check_builds_in_a_process_of_its_own_and_prints_nothing():
    """The flow's process never imports Keras (start-up noise, seconds, and on a GPU machine the GPU's memory):
    the check runs elsewhere, quietly, and only its verdict comes back."""
    import subprocess
    import sys

    script = ("import sys\nfrom tasks.training.model_check import UserModelError, check_model\n"
              "print(check_model('tests.user_models:small_mlp', (8, 8, 1), 4, 'tensorflow'))\n"
              "print(check_model('tests.user_models:keras_io_cnn', (8, 8, 1), 4, 'tensorflow'))\n"
              "try:\n    check_model('tests.user_models:wrong_classes', (8, 8, 1), 4, 'tensorflow')\n"
              "except UserModelError as error:\n    print(error)\n"
              "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "None", "Rescaling(scale=0.00392, offset=0)",  # how each model prepares its own input
        "--model tests.user_models:wrong_classes outputs shape (3,) per image; the data has 4 classes, so it must "
        "output (4,)", "[]"]


def test_the_users_model_gets_the_options_its_variants_change_and_the_layers_in_front():
    from tasks.errors import NotApplicable
    from tasks.training.models import user_options

    spec = "tests.user_models:small_mlp"
    baseline = replace(BASELINE, model=spec)
    assert user_options(baseline) == {}  # the builder's own defaults are the baseline
    variant = replace(baseline, dropout=0.5, augmentation=("flip",), input_scale=0.5)
    assert user_options(variant) == {"dropout": 0.5}
    model = build_model((16, 16, 3), 4, variant)
    assert layer_types(model) == ["InputLayer", "Resizing", "RandomFlip", "Functional"]
    inner = model.layers[-1]
    assert tuple(inner.inputs[0].shape[1:]) == (8, 8, 3)  # built for the resized images
    assert [layer.rate for layer in inner.layers if type(layer).__name__ == "Dropout"] == [0.5]
    with pytest.raises(NotApplicable, match="takes no conv_filters"):
        build_model((16, 16, 3), 4, replace(baseline, conv_filters=(16,)))


def test_batches_read_every_row_once_per_epoch_normalised_in_a_seeded_order(tmp_path):
    from tasks.training.feed import Batches

    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(10, 2, 2, 1))
    x[:] = np.arange(10, dtype=np.uint8)[:, None, None, None] * 20
    rows = np.array([0, 2, 3, 5, 7, 9])  # rows 1, 4, 6, 8 are not in this split (or carry no valid label)

    def epoch(feed):
        batches = [feed[i] for i in range(len(feed))]
        assert all(np.allclose(xb[:, 0, 0, 0], yb * 20 / 255) for xb, yb in batches)  # normalised per batch
        return np.concatenate([yb for _, yb in batches]).tolist()

    feed = Batches(np.load(tmp_path / "x.npy", mmap_mode="r"), np.arange(10), rows, 4, np.zeros(1, np.float32),
                   np.full(1, 255.0, np.float32), seed=1)
    first = epoch(feed)
    assert len(feed) == 2 and sorted(first) == rows.tolist()
    feed.on_epoch_end()
    second = epoch(feed)
    assert sorted(second) == rows.tolist() and second != first  # a new order every epoch
    same_seed = Batches(x, np.arange(10), rows, 4, np.zeros(1, np.float32), np.full(1, 255.0, np.float32), seed=1)
    assert epoch(same_seed) == first


def test_small_data_is_fed_as_tf_data_pipelines_every_row_once_per_epoch_in_a_seeded_order(tiny_dataset):
    """On TensorFlow, small data goes in as plain tf.data pipelines (Keras' array adapter cost a third of each
    small epoch): training rows shuffled anew every epoch, the same seed the same orders; validation and test in
    file order; all normalised."""
    import keras
    import tensorflow as tf

    from tasks.training import feed

    data = load_cache(tiny_dataset)
    fit_rows, val_rows = np.arange(0, 40), np.arange(40, 50)
    shift, scale = np.zeros(1, np.float32), np.full(1, 255.0, np.float32)

    def epochs(seed, count=2):
        keras.utils.set_random_seed(seed)
        fit, test = feed.fit_inputs(data, fit_rows, val_rows, np.arange(20), 16, shift, scale, seed)
        assert fit["shuffle"] is False  # the pipeline shuffles; Keras is told not to
        orders = []
        for _ in range(count):
            batches = list(fit["x"].as_numpy_iterator())
            assert [len(labels) for _, labels in batches] == [16, 16, 8]
            pixels = np.concatenate([x for x, _ in batches])
            orders.append(np.concatenate([y for _, y in batches]))
            # each training row exactly once, normalised: matched by its pixels, not only its label
            assert sorted(map(bytes, (pixels * 255).round().astype(np.uint8))) == sorted(
                map(bytes, data.x_train[fit_rows]))
        validation = list(fit["validation_data"].as_numpy_iterator())
        assert np.allclose(np.concatenate([x for x, _ in validation]), data.x_train[val_rows] / 255)
        assert (np.concatenate([y for _, y in validation]) == data.y_train[val_rows]).all()
        assert np.allclose(np.concatenate(list(test.as_numpy_iterator())), data.x_test[:20] / 255)
        return orders

    assert isinstance(feed.fit_inputs(data, fit_rows, val_rows, np.arange(20), 16, shift, scale, 0)[1],
                      tf.data.Dataset)
    first = epochs(seed=3)
    assert not np.array_equal(first[0], first[1])  # a new order every epoch
    assert all(np.array_equal(a, b) for a, b in zip(first, epochs(seed=3)))  # the same seed, the same orders
    assert not np.array_equal(first[0], epochs(seed=4)[0])


def test_a_dataset_too_big_to_copy_trains_from_the_memmap_batch_by_batch(tiny_dataset, monkeypatch, tmp_path):
    import keras

    from tasks.training import feed

    monkeypatch.setattr(feed, "IN_MEMORY_BYTES", 0)  # every dataset counts as large: the streaming path
    cell = expand_grid(["normalization"], seeds=1, epochs=2)[0]
    cell_dict = cell.to_dict() | {"normalization": "standardize"}
    record = train_cell(cell_dict, tiny_dataset, model_path=str(tmp_path / "best.keras"))
    assert record["status"] == "ok" and record["epochs"] == 2
    data = load_cache(tiny_dataset)
    fit_rows, _ = validation_carve(data.y_train, data.class_names, config_of(cell_dict))
    shift, scale = feed.normalization(data.x_train, fit_rows, "standardize")  # from the rows it trained on
    predicted = keras.models.load_model(tmp_path / "best.keras").predict(
        feed.apply(data.x_test, shift, scale), verbose=0).argmax(axis=1)
    assert np.isclose((predicted == data.y_test).mean(), record["test_accuracy"], atol=1e-6)
    assert record["test_predictions"] == predicted.tolist()


def test_each_seed_carves_its_own_stratified_validation_share_from_training_and_variants_of_a_seed_share_it():
    labels = np.repeat(np.arange(4), 25)
    names = ["a", "b", "c", "d"]
    carve = lambda **change: validation_carve(labels, names, replace(BASELINE, **change))  # noqa: E731
    fit, val = carve(seed=0)
    assert len(set(fit) | set(val)) == 100 and not set(fit) & set(val)
    assert np.bincount(labels[val]).tolist() == [5, 5, 5, 5]  # 20%, stratified
    assert carve(seed=0, dropout=0.5)[1].tolist() == val.tolist()  # another variant, the same seed: paired
    assert carve(seed=1)[1].tolist() != val.tolist()  # another seed, another carve: split variance counts
    assert carve(seed=1, fixed_split=True)[1].tolist() == carve(seed=2, fixed_split=True)[1].tolist()
    with pytest.raises(Exception, match="--val-fraction 0.01 leaves no image to validate"):
        carve(val_fraction=0.01)


def test_a_model_that_scales_its_own_input_is_warned_about_when_the_baseline_scales_too():
    from flows.ablation import scaled_twice

    (warning,) = scaled_twice("Rescaling(scale=0.00392, offset=0)", "scale")
    assert "scaled twice" in warning and "raw 0-255" in warning
    assert scaled_twice("Rescaling(scale=0.00392, offset=0)", "raw") == [] and scaled_twice(None, "scale") == []
