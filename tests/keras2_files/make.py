"""Writes the Keras 2 model files the tests read: run with TensorFlow and tf_keras (Keras 2) installed,
`pip install tensorflow-cpu==2.21.* tf_keras==2.21.*`, as `python tests/keras2_files/make.py`.

keras2_cnn.h5: the layers whose Keras 2 configs Keras 3 refuses (DepthwiseConv2D, SeparableConv2D,
Conv2DTranspose, SpatialDropout2D, RandomFlip) and layer names with a slash, as DenseNet has them;
keras2_cnn_predictions.npz: its inputs and Keras 2's outputs. keras2_tf_function.h5: a TensorFlow
function called on the model's tensors (a TFOpLambda, as in Keras 2's MobileNetV3). keras2_nested.h5 (and
its predictions): a base model with slashes in its names, nested in a model with a head.
keras2_hard_sigmoid.h5: Keras 2's hard_sigmoid, which Keras 3 computes otherwise.
"""

import os
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from tf_keras import layers  # noqa: E402

HERE = Path(__file__).parent


def cnn():
    inputs = keras.Input((12, 12, 1))
    h = layers.RandomFlip(name="augment/flip")(inputs)
    h = layers.Conv2D(4, 3, padding="same", name="block1/conv")(h)
    h = layers.BatchNormalization(name="block1/bn")(h)
    h = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="block1/depthwise")(h)
    h = layers.SeparableConv2D(6, 3, strides=2, padding="same", activation="relu", name="block2/separable")(h)
    h = layers.SpatialDropout2D(0.2, name="block2/drop")(h)
    h = layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu", name="block3/up")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, layers.Dense(4, activation="softmax", name="predictions")(h), name="keras2_cnn")


def nested():
    """A base model built on its own input, called in a model with a head, as in transfer learning."""
    base_input = keras.Input((12, 12, 1))
    h = layers.Conv2D(4, 3, padding="same", name="stem/conv")(base_input)
    h = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="stem/depthwise")(h)
    base = keras.Model(base_input, h, name="base/v1")
    inputs = keras.Input((12, 12, 1))
    h = layers.GlobalAveragePooling2D(name="head/pool")(base(inputs))
    return keras.Model(inputs, layers.Dense(4, activation="softmax", name="head/scores")(h), name="keras2_nested")


def with_hard_sigmoid():
    inputs = keras.Input((12, 12, 1))
    h = layers.Dense(8, activation="hard_sigmoid", name="gate")(layers.Flatten()(inputs))
    return keras.Model(inputs, layers.Dense(4)(h), name="keras2_hard_sigmoid")


def with_tf_function():
    inputs = keras.Input((12, 12, 1))
    h = tf.nn.relu6(layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, layers.Dense(4)(layers.Flatten()(h)), name="keras2_tf_function")


if __name__ == "__main__":
    model = cnn()
    rng = np.random.default_rng(0)
    x = rng.random((16, 12, 12, 1), dtype=np.float32)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, rng.integers(0, 4, 16), epochs=1, verbose=0)  # moves BatchNorm's statistics off their start
    model.save(HERE / "keras2_cnn.h5")
    np.savez(HERE / "keras2_cnn_predictions.npz", x=x, y=model.predict(x, verbose=0))
    with_tf_function().save(HERE / "keras2_tf_function.h5")
    model = nested()
    model.save(HERE / "keras2_nested.h5")
    np.savez(HERE / "keras2_nested_predictions.npz", x=x, y=model.predict(x, verbose=0))
    with_hard_sigmoid().save(HERE / "keras2_hard_sigmoid.h5")
