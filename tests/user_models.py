"""Model builders as users write them, for the --model tests."""

import keras
from keras import layers


def small_mlp(input_shape, num_classes, dropout=0.0):
    """Takes a dropout option only: depth, batch-norm and width variants do not apply to it."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Dense(32, activation="relu")(layers.Flatten()(inputs))
    if dropout:
        x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))


def wrong_classes(input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(layers.Flatten()(inputs)))


def broken(input_shape, num_classes):
    raise RuntimeError("forgot to return the model")


def keras_io_cnn(input_shape, num_classes):
    """Written the keras-io way ("Simple MNIST convnet", "Image classification from scratch"): the model scales
    its own input, so pixels must come to it as 0-255."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Rescaling(1.0 / 255),
        layers.Conv2D(8, 3, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(num_classes, activation="softmax"),
    ])
