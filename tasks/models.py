"""Model builders: pure functions from (input shape, classes, config) to an uncompiled Keras model.

Compiling and fitting live in `tasks.training`. Keras 3 API only (`import keras`), so the backend is a setting.
"""

from __future__ import annotations

import keras
from keras import layers

from tasks.grid import TrainConfig


def build_model(input_shape: tuple[int, ...], num_classes: int, config: TrainConfig) -> keras.Model:
    """The source article's small CNN: conv+pool blocks, optional hidden Dense, dropout, softmax."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters in config.conv_filters:
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)  # "same": tiny images still fit the deepest variant
    x = layers.Flatten()(x)
    if config.dense_units:
        x = layers.Dense(config.dense_units, activation="relu")(x)
    if config.dropout:
        x = layers.Dropout(config.dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn_" + "_".join(map(str, config.conv_filters)))
