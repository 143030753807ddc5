"""Train one cell of the grid. Runs inside a long-lived training process (see `tasks.training.slots`).

The process imports Keras once and trains many cells; between cells the Keras session is cleared. Input is a
small dict (the cell's config and the dataset cache path); output is a small dict of metrics and per-epoch
history. Model objects never leave the process.
"""

from __future__ import annotations

import gc
import math
import time
import traceback
from dataclasses import fields
from pathlib import Path

import numpy as np

from tasks.errors import NOT_APPLICABLE, DatasetError, NotApplicable
from tasks.training.grid import TrainConfig

_datasets: dict[str, object] = {}  # the last dataset loaded by this process: every cell of a run shares it
HISTORY_KEYS = ("accuracy", "val_accuracy", "loss", "val_loss")


def init_process(threads: int) -> None:
    """Configure the framework once per process: thread counts, GPU memory growth. Imports Keras."""
    from tasks.training.framework import import_keras

    keras = import_keras()

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        for gpu in tf.config.list_physical_devices("GPU"):  # TensorFlow would otherwise take all GPU memory
            tf.config.experimental.set_memory_growth(gpu, True)
    # Everything imported so far (the framework: millions of objects) lives as long as the process, so the
    # garbage collector stops scanning it: the full collection in each cell's clear_session took 0.25 s of every
    # cell, and takes a few ms now (measured on 2 cores). It also spares a forked process copying the pages.
    gc.freeze()


def train_cell(cell: dict, dataset_path: str, out_dir: str | None = None, model_path: str | None = None,
               tensorboard: bool = False, time_limit: float | None = None) -> dict:
    """Fit the cell's model on the cached dataset and return its record. Errors become a "failed" record.

    With ``out_dir``: the per-epoch history as ``history.csv`` there (Keras' CSVLogger) and, with
    ``tensorboard``, TensorBoard logs in ``tensorboard/``. With ``model_path``: the model with its best weights
    (highest validation accuracy) saved there as a .keras file, once, at the end. With ``time_limit``: training
    stops after the first batch that ends past it, and the cell fails as timed out. This is the limit where no
    process can be killed for it (a Dask worker); the slot pool kills its process instead, which also ends a
    hung kernel.
    """
    started = time.perf_counter()
    try:
        record = _fit(cell, dataset_path, out_dir, model_path, tensorboard, time_limit)
    except CellTimeLimit as exc:
        record = failed_record(cell, str(exc))
    except NotApplicable as exc:
        record = failed_record(cell, str(exc)) | {"status": NOT_APPLICABLE}
    except Exception as exc:
        tail = traceback.format_exc().strip().splitlines()[-3:]
        record = failed_record(cell, f"{type(exc).__name__}: {exc}", "\n".join(tail))
    finally:
        import keras

        keras.backend.clear_session()  # free this cell's graph before the next one
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def config_of(cell: dict) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in cell.items() if k in names}
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})  # JSON: lists


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    """The config's optimizer, learning rate (or schedule) and weight decay."""
    import keras

    rate = config.learning_rate
    if config.lr_schedule == "cosine":
        warmup = config.warmup_epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate, decay_steps=max(1, config.max_epochs * steps_per_epoch - warmup),
            warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    elif config.lr_schedule not in ("constant", "plateau"):
        raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")
    decay = config.weight_decay or None
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate, weight_decay=decay)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, weight_decay=decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def schedule_callbacks(config: TrainConfig) -> list:
    """NaN stop always; early stopping and reduce-on-plateau as the config says."""
    import keras

    callbacks = [keras.callbacks.TerminateOnNaN()]
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience))
    if config.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1))
    return callbacks


def failed_record(cell: dict, error: str, detail: str = "") -> dict:
    nan = float("nan")
    return {**cell, "status": "failed", "error": error, "error_detail": detail, "test_accuracy": nan,
            "val_accuracy_at_best": nan, "best_epoch": 0, "final_val_accuracy": nan, "final_train_accuracy": nan,
            "epochs": 0, "seconds": 0.0, "history": {key: [] for key in HISTORY_KEYS}}


def _fit(cell: dict, dataset_path: str, out_dir: str | None, model_path: str | None, tensorboard: bool,
         time_limit: float | None = None) -> dict:
    import keras

    from tasks.training.feed import fit_inputs, normalization
    from tasks.training.models import build_model

    config = config_of(cell)
    data = _dataset(dataset_path)
    _deterministic()
    fit_rows, val_rows = validation_carve(data.y_train, data.class_names, config, data.val_train)
    test_rows = np.flatnonzero(_labelled(data.y_test, data.class_names))
    shift, scale = normalization(data.x_train, fit_rows, config.normalization)  # from the rows it trains on

    keras.utils.set_random_seed(config.random_seed)  # same seed, same initial weights and data order across variants
    model = build_model(data.x_train.shape[1:], len(data.class_names), config)
    steps_per_epoch = math.ceil(len(fit_rows) / config.batch_size)
    model.compile(optimizer=make_optimizer(config, steps_per_epoch), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    best = _best_weights_callback()
    callbacks = [*schedule_callbacks(config), best]
    if time_limit is not None:
        callbacks.append(_time_limit_callback(time_limit))
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.CSVLogger(str(Path(out_dir) / "history.csv")))
        if tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(Path(out_dir) / "tensorboard")))
    fit_data, test_input = fit_inputs(data, fit_rows, val_rows, test_rows, config.batch_size, shift, scale,
                                      config.random_seed)
    fit = model.fit(**fit_data, epochs=config.max_epochs, callbacks=callbacks, verbose=0)
    if best.weights is not None:
        model.set_weights(best.weights)
    # The test split, scored once, with the weights validation chose (or, where no epoch had a finite validation
    # accuracy, the ones training ended with: a diverged model's real accuracy is evidence too); no callback ever
    # saw it. Its class for every test image also feeds the confusion matrices and the images a change fixed.
    predictions = model.predict(test_input, batch_size=256, verbose=0).argmax(axis=1).tolist()
    test_accuracy = float(np.mean(np.asarray(predictions) == data.y_test[test_rows]))
    if best.weights is not None and model_path:
        Path(model_path).parent.mkdir(parents=True, exist_ok=True)
        model.save(model_path)
    history = {key: [float(v) for v in fit.history.get(key, [])] for key in HISTORY_KEYS}
    diverged = any(math.isnan(v) for v in history["loss"])
    val = [v for v in history["val_accuracy"] if not math.isnan(v)]
    return {
        **cell,
        "status": "diverged" if diverged else "ok",
        "error": "loss became NaN: training stopped (TerminateOnNaN)" if diverged else "",
        "error_detail": "",
        "test_accuracy": test_accuracy,
        "val_accuracy_at_best": best.best if best.weights is not None else float("nan"),
        "best_epoch": best.epoch,
        "final_val_accuracy": val[-1] if val else float("nan"),
        "final_train_accuracy": history["accuracy"][-1] if history["accuracy"] else float("nan"),
        "epochs": len(history["loss"]),
        "history": history,
        "test_predictions": predictions,
    }


def _best_weights_callback():
    import keras

    class BestWeights(keras.callbacks.Callback):
        """Keeps a copy of the weights of the epoch with the highest validation accuracy (in memory: the model
        is saved once at the end, not at every improvement, which would cost more than a small epoch)."""

        def __init__(self):
            super().__init__()
            self.weights, self.best, self.epoch = None, -math.inf, 0

        def on_epoch_end(self, epoch, logs=None):
            accuracy = (logs or {}).get("val_accuracy", math.nan)
            if accuracy > self.best:  # False for NaN
                self.best, self.weights, self.epoch = accuracy, self.model.get_weights(), epoch + 1

    return BestWeights()


class CellTimeLimit(TimeoutError):
    """Raised from inside ``fit`` when a cell passes its time limit."""


def _time_limit_callback(seconds: float):
    import keras

    deadline = time.monotonic() + seconds

    class TimeLimit(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() > deadline:
                raise CellTimeLimit(f"timed out after {seconds:g} s (--cell-timeout)")

    return TimeLimit()


def _dataset(path: str):
    from tasks.data.store import load_cache

    if path not in _datasets:
        _datasets.clear()
        _datasets[path] = load_cache(path)
    return _datasets[path]


def _deterministic() -> None:
    """The same seed gives the same result, bit for bit, on the TensorFlow backend too: its multi-threaded CPU
    kernels may otherwise sum in a different order from one run to the next (seen on CI: the same cell's loss
    after one epoch differed in the third decimal), and a paired comparison of variants counts every such
    difference as noise. Measured on 2 cores: no slower. JAX and PyTorch on CPU are deterministic already."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def check_protocol(dataset_path: str, config: TrainConfig) -> None:
    """Fail before any training (DatasetError, exit 2) when ``config``'s validation share leaves no image to
    validate or to fit on: otherwise every cell would fail alike."""
    from tasks.data.store import load_cache

    data = load_cache(dataset_path)
    validation_carve(data.y_train, data.class_names, config, data.val_train)


FIXED_SPLIT_SEED = 0  # --fixed-split: every seed's carve is the one this seed draws


def validation_carve(labels: np.ndarray, class_names: list[str], config: TrainConfig,
                     own: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit on, rows to validate on) of the training split: the dataset's ``own`` validation rows (a
    val/ folder) where it has them, else a stratified ``val_fraction`` of its labelled images drawn from the
    cell's seed, so all variants of a seed share it (pairing holds) and the spread between seeds includes the
    split's. A class with one image keeps it for fitting."""
    from tasks.data.sampling import holdout_mask

    labelled = np.flatnonzero(_labelled(labels, class_names))
    if own is not None and len(own):
        return np.setdiff1d(labelled, own), np.intersect1d(labelled, own)
    carve = holdout_mask(labels[labelled], config.val_fraction,
                         FIXED_SPLIT_SEED if config.fixed_split else config.seed)
    if not carve.any() or carve.all():
        raise DatasetError(f"--val-fraction {config.val_fraction} leaves no image to "
                           f"{'validate' if not carve.any() else 'train'} on among {len(labelled)} training "
                           "images: use a larger fraction, or more images")
    return labelled[~carve], labelled[carve]


def _labelled(labels: np.ndarray, class_names: list[str]) -> np.ndarray:
    """Images whose label is a valid class. The gate reports the others; with --gate warn they are skipped."""
    return (labels >= 0) & (labels < len(class_names))
