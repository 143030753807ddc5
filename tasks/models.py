"""Model builders: pure functions from (input shape, classes, config) to an uncompiled Keras model.

Compiling and fitting live in `tasks.training`. Keras 3 API only (`import keras`), so the backend is a setting.
"""

from __future__ import annotations

import keras
from keras import layers

from tasks.grid import TrainConfig


def build_model(input_shape: tuple[int, ...], num_classes: int, config: TrainConfig) -> keras.Model:
    """The source article's small CNN: conv+pool blocks, optional hidden Dense, dropout, softmax; with the
    config's resizing, augmentation, batch normalisation and width."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    if config.input_scale != 1.0:
        height, width = (max(1, round(side * config.input_scale)) for side in input_shape[:2])
        x = layers.Resizing(height, width, name="resize")(x)
    for layer in augmentation_layers(config):  # active in fit() only: validation and predictions see the images
        x = layer(x)
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
