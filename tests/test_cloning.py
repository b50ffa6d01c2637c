"""Fresh copies of models, and saving models whose nested models' layers bear the same names."""

import keras
import numpy as np
import pytest
from keras import layers

from cladec_cli import artifacts
from cladec_cli.cloning import clone_graph, has_clashing_weight_paths, savable


def stream(name):
    """One of two streams built by the same function: their layers bear the same names."""
    inputs = keras.Input((16, 16, 3))
    h = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv1")(inputs)
    return keras.Model(inputs, layers.Conv2D(4, 3, padding="same", name="conv2")(h), name=name)


def two_streams(dtype=None):
    """A classifier of two such streams, held as one layer of an outer model, as a RefAE holds its
    encoder: the weights of that layer then share paths."""
    inputs = keras.Input((16, 16, 3))
    h = layers.Concatenate(name="merge")([stream("stream_a")(inputs), stream("stream_b")(inputs)])
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    classifier = keras.Model(inputs, layers.Dense(3, name="scores", dtype=dtype)(h), name="two_streams")
    outer = keras.Input((16, 16, 3))
    return keras.Model(outer, classifier(outer), name="outer")


def images(n=4):
    return np.random.default_rng(0).random((n, 16, 16, 3), np.float32)


def test_a_clone_names_each_nested_models_variables_under_it():
    model = two_streams()
    assert has_clashing_weight_paths(model)  # as Keras builds it
    clone = clone_graph(model)
    paths = [w.path for w in clone.weights]
    assert len(set(paths)) == len(paths) and "two_streams/stream_b/conv1/kernel" in paths
    assert not has_clashing_weight_paths(clone)
    def names(m):
        return [layer.name for layer in m._flatten_layers() if not isinstance(layer, layers.InputLayer)]

    assert names(clone) == names(model)
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    conv1 = [m.get_layer("two_streams").get_layer("stream_a").get_layer("conv1").kernel for m in (clone, model)]
    assert not np.allclose(*conv1)  # built anew


def test_a_nested_model_named_with_a_dot_gives_paths_without_one():
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, stream("mobilenetv2_1.00_16")(inputs))
    paths = [w.path for w in clone_graph(model).weights]
    assert paths and all("." not in path for path in paths) and "mobilenetv2_1_00_16/conv1/kernel" in paths


def test_savable_leaves_a_model_without_clashes_as_it_is():
    model = keras.Sequential([keras.Input((4,)), layers.Dense(2, name="a"), layers.Dense(2, name="b")])
    assert savable(model) is model


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_a_model_with_two_streams_of_the_same_layer_names_saves_and_opens(tmp_path, policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = two_streams(dtype="float32")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = tmp_path / "two_streams.h5"
    record = artifacts.save_model(model, path, {"kind": "test"})
    loaded = keras.models.load_model(path, compile=False)
    assert record["digest"] == artifacts.weights_digest(loaded)
    assert {w.dtype for w in loaded.weights} == {"float32"}
    expected = keras.ops.convert_to_numpy(model(images()))
    tolerance = 1e-6 if policy == "float32" else 2e-2  # the copy computes in float32, the model in bfloat16
    np.testing.assert_allclose(loaded.predict(images(), verbose=0), expected, rtol=tolerance, atol=tolerance)

