"""Model builders: pure functions from (input shape, classes, config) to an uncompiled Keras model.

Compiling and fitting live in `tasks.training.train`. Keras 3 API only (`import keras`), so the backend is a setting.

The user's own model (``--model package.module:build_model``): a function ``(input_shape, num_classes,
**options) -> keras.Model``. Resizing and augmentation wrap it; normalization, optimizer, schedule, batch size
and early stopping are training settings; the axes that need its cooperation (depth, dropout, batch norm,
width) reach it as keyword options, only where a variant changes them, and a variant whose option the builder
does not take is "not applicable" rather than a failure.
"""

from __future__ import annotations

import importlib
import inspect
import re

import keras
from keras import layers

from tasks.errors import NotApplicable
from tasks.training.grid import BASELINE, MODEL_SPEC, TrainConfig, working_dir_importable
from tasks.training.model_check import UserModelError

COOPERATIVE = ("conv_filters", "dense_units", "dropout", "batch_norm", "width")  # options a user builder may take


def build_model(input_shape: tuple[int, ...], num_classes: int, config: TrainConfig) -> keras.Model:
    """The source article's small CNN, or the user's model (``config.model``), with the config's resizing and
    augmentation in front."""
    if config.model:
        return _wrap_user_model(input_shape, num_classes, config)
    return _cnn(input_shape, num_classes, config)


def _cnn(input_shape: tuple[int, ...], num_classes: int, config: TrainConfig) -> keras.Model:
    """Conv+pool blocks, optional hidden Dense, dropout, softmax; with resizing, augmentation, batch
    normalization and width."""
    inputs = keras.Input(shape=input_shape)
    x = _front(inputs, input_shape, config)
    for filters in config.conv_filters:
        units = max(1, round(filters * config.width))
        if config.batch_norm:
            x = layers.Conv2D(units, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        else:
            x = layers.Conv2D(units, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)  # "same": tiny images still fit the deepest variant
    x = layers.Flatten()(x)
    if config.dense_units:
        x = layers.Dense(max(1, round(config.dense_units * config.width)), activation="relu")(x)
    if config.dropout:
        x = layers.Dropout(config.dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn_" + "_".join(map(str, config.conv_filters)))


def augmentation_layers(config: TrainConfig) -> list:
    """Keras preprocessing layers for the config's augmentations, seeded by the cell's seed."""
    seed = config.random_seed
    make = {"flip": lambda: layers.RandomFlip("horizontal", seed=seed),
            "translate": lambda: layers.RandomTranslation(0.1, 0.1, seed=seed),
            "rotate": lambda: layers.RandomRotation(0.05, seed=seed),
            "zoom": lambda: layers.RandomZoom(0.1, seed=seed)}
    unknown = [name for name in config.augmentation if name not in make]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; choose from {', '.join(make)}")
    return [make[name]() for name in config.augmentation]


def _front(inputs, input_shape: tuple[int, ...], config: TrainConfig):
    """Resizing (``input_scale``) and augmentation (active in fit() only: validation and predictions see the
    images as they are)."""
    x = inputs
    if config.input_scale != 1.0:
        x = layers.Resizing(*_scaled(input_shape, config), name="resize")(x)
    for layer in augmentation_layers(config):
        x = layer(x)
    return x


def _scaled(input_shape: tuple[int, ...], config: TrainConfig) -> tuple[int, int]:
    return tuple(max(1, round(side * config.input_scale)) for side in input_shape[:2])


def user_options(config: TrainConfig) -> dict:
    """The cooperative settings this config changes from the built-in baseline: the builder's keywords."""
    return {name: getattr(config, name) for name in COOPERATIVE if getattr(config, name) != getattr(BASELINE, name)}


def load_builder(spec: str):
    """"package.module:function" -> the function; a UserModelError saying what is wrong otherwise."""
    if not re.match(MODEL_SPEC, spec):
        raise UserModelError(f"--model {spec!r}: expected package.module:function")
    module_name, name = spec.split(":")
    working_dir_importable()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own error while importing
        raise UserModelError(f"--model {spec}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    builder = getattr(module, name, None)
    if not callable(builder):
        raise UserModelError(f"--model {spec}: {module_name} has no function {name}")
    return builder


def _wrap_user_model(input_shape: tuple[int, ...], num_classes: int, config: TrainConfig) -> keras.Model:
    builder = load_builder(config.model)
    options = user_options(config)
    parameters = inspect.signature(builder).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        refused = sorted(set(options) - {p.name for p in parameters})
        if refused:
            raise NotApplicable(f"{config.model} takes no {', '.join(refused)} option")
    inner_shape = (*_scaled(input_shape, config), *input_shape[2:]) if config.input_scale != 1.0 else input_shape
    inner = builder(tuple(inner_shape), num_classes, **options)
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, inner(_front(inputs, input_shape, config)), name="user_model")


def check_user_model(spec: str, input_shape: tuple[int, ...], num_classes: int) -> str | None:
    """Build the user's baseline model once, before any training: it must build and answer num_classes.
    Returns how the model prepares its own input (`input_preprocessing`), if it does."""
    builder = load_builder(spec)
    try:
        model = builder(tuple(input_shape), num_classes)
    except Exception as exc:
        raise UserModelError(f"--model {spec} failed to build for input {tuple(input_shape)} and {num_classes} "
                             f"classes: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, keras.Model):
        raise UserModelError(f"--model {spec} returned {type(model).__name__}, not a keras.Model")
    try:
        output = model(keras.ops.zeros((1, *input_shape)))
    except Exception as exc:
        raise UserModelError(f"--model {spec} does not take images of {tuple(input_shape)}: "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if tuple(output.shape) != (1, num_classes):
        raise UserModelError(f"--model {spec} outputs shape {tuple(output.shape)[1:]} per image; the data has "
                             f"{num_classes} classes, so it must output ({num_classes},)")
    return input_preprocessing(model)


def input_preprocessing(model) -> str | None:
    """The layers with which ``model`` scales its own input before its first learned layer, as words
    ("Rescaling(scale=0.00392)", "Normalization"), or None. Many Keras models do (keras-io's examples start with
    ``layers.Rescaling(1.0 / 255)``): the pipeline must then not scale the pixels a second time."""
    found = []
    for layer in _leading_layers(model):
        if isinstance(layer, keras.layers.Rescaling):
            found.append(f"Rescaling(scale={float(layer.scale):.3g}, offset={float(layer.offset):.3g})")
        elif isinstance(layer, keras.layers.Normalization):
            found.append("Normalization")
        elif layer.weights:  # the first learned layer: what comes after it is not input preparation
            break
    return ", ".join(found) or None


def _leading_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a Sequential block of preprocessing inside a functional model
            yield from _leading_layers(layer)
        else:
            yield layer
