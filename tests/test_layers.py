"""Explainable layers, resolving --layer and cutting encoders."""

import keras
import numpy as np
import pytest
from keras.ops import convert_to_numpy

from cladec_cli.architectures import build_classifier
from cladec_cli.errors import UsageError, for_cli
from cladec_cli.layers import (build_encoder, build_head, build_offset, explainable_layers, resolve_layer,
                               resolve_layers)

EXPECTED = [("block1", -6, (16, 16, 16)), ("block2", -5, (8, 8, 32)), ("block3", -4, (4, 4, 64)),
            ("block4", -3, (2, 2, 128)), ("block5", -2, (1, 1, 256)), ("logits", -1, (4,))]


@pytest.fixture(scope="module")
def classifier():
    return build_classifier((32, 32, 1), 4)


def test_explainable_layers_of_paper_classifier(classifier):
    found = explainable_layers(classifier)
    assert [(l.name, l.index, l.shape) for l in found] == EXPECTED
    assert found[-1].is_vector and not found[-2].is_vector


@pytest.mark.parametrize("name, index, shape", EXPECTED)
def test_resolve_by_name_and_index(classifier, name, index, shape):
    by_name = resolve_layer(classifier, name)
    by_index = resolve_layer(classifier, index)
    assert by_name == by_index
    assert (by_name.name, by_name.index, by_name.shape) == (name, index, shape)
    assert resolve_layer(classifier, str(index)) == by_name
    assert resolve_layer(classifier, f" {name} ") == by_name


def test_unknown_name(classifier):
    with pytest.raises(UsageError) as info:
        resolve_layer(classifier, "block9")
    assert "block9" in str(info.value)
    assert "block1" in str(info.value) and "logits" in str(info.value)


@pytest.mark.parametrize("spec", [0, 1, "3"])
def test_positive_index(classifier, spec):
    with pytest.raises(UsageError, match="count from the end"):
        resolve_layer(classifier, spec)


@pytest.mark.parametrize("spec", [-7, "-100"])
def test_index_out_of_range(classifier, spec):
    with pytest.raises(UsageError, match="out of range.*6 explainable") as refused:
        resolve_layer(classifier, spec)
    assert "--layer-convention blocks (see `cladec layers`); --layer-convention layers counts every layer" in \
        for_cli(refused.value)


def test_pre_activation_layers_are_not_explainable(classifier):
    names = {l.name for l in explainable_layers(classifier)}
    assert not names & {"block1_conv", "block1_bn", "flatten", "image"}
    for plumbing, why in (("flatten", r"'flatten' \(Flatten\) passes its input on, reshaped or in part, so it has "
                                      "no activations of its own to explain: name the layer before it; explainable "
                                      "layers are: block1, "),
                          ("image", "'image' is an input, not a layer that computes")):
        with pytest.raises(UsageError, match=why):
            resolve_layer(classifier, plumbing)


def test_preprocessing_and_sequence_outputs_named_as_layers_are_refused_saying_why():
    inputs = keras.Input((8, 8, 1))
    scaled = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    rows = keras.layers.Reshape((8, 8))(keras.layers.Conv2D(1, 1, name="conv")(scaled))
    per_row = keras.layers.Dense(4, name="per_row")(rows)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(per_row)))
    with pytest.raises(UsageError, match=r"'scale' \(Rescaling\) prepares the input images"):
        resolve_layer(model, "scale")
    with pytest.raises(UsageError, match=r"'per_row' \(Dense\) has no output that cladec decodes"):
        resolve_layer(model, "per_row")


def test_a_nested_model_named_as_a_layer_is_refused_saying_so():
    inner_in = keras.Input((8, 8, 1))
    features = keras.Model(inner_in, keras.layers.Conv2D(2, 3, name="c1")(inner_in), name="features")
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(features(inputs))))
    with pytest.raises(UsageError, match="'features' is a nested model: name one of its layers, as outer/inner; "
                                         "explainable layers are: features/c1, dense"):
        resolve_layer(model, "features")


def test_a_layer_a_block_hides_is_explained_when_named():
    # The logits before a Softmax layer count as the probabilities' block; named, they are explained.
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs))
    model = keras.Model(inputs, keras.layers.Softmax(name="prob")(keras.layers.Dense(3, name="logits")(h)))
    assert [l.name for l in explainable_layers(model)] == ["conv", "prob"]
    logits = resolve_layer(model, "logits")
    assert (logits.name, logits.shape, logits.convention) == ("logits", (3,), "layers")
    assert logits == resolve_layer(model, "logits", "layers")
    x = np.random.default_rng(0).random((2, 8, 8, 1), np.float32)
    scores = convert_to_numpy(build_encoder(model, logits)(x))
    np.testing.assert_allclose(convert_to_numpy(keras.ops.softmax(scores)), convert_to_numpy(model(x)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec, shape", [("block2", (8, 8, 32)), (-2, (1, 1, 256)), (-1, (4,))])
def test_build_encoder(classifier, spec, shape):
    layer = resolve_layer(classifier, spec)
    encoder = build_encoder(classifier, layer)
    assert tuple(encoder.outputs[0].shape[1:]) == shape
    assert tuple(encoder.inputs[0].shape[1:]) == (32, 32, 1)
    x = np.random.default_rng(0).random((2, 32, 32, 1), np.float32)
    out = convert_to_numpy(encoder(x))
    assert out.shape == (2,) + shape
    if spec == -1:  # the encoder to the logits is the classifier itself, same weights
        np.testing.assert_allclose(out, convert_to_numpy(classifier(x)), rtol=1e-5, atol=1e-5)


def test_encoder_by_name_shares_weights(classifier):
    encoder = build_encoder(classifier, "block3")
    conv = classifier.get_layer("block1_conv")
    assert any(w is conv.kernel for w in encoder.weights)


def test_encoder_for_several_layers_is_one_pass(classifier):
    layers = [resolve_layer(classifier, spec) for spec in (-1, "block2", -3)]
    encoder = build_encoder(classifier, layers)
    assert [tuple(o.shape[1:]) for o in encoder.outputs] == [(4,), (8, 8, 32), (2, 2, 128)]
    # One cut of the classifier's graph computes every output, not one encoder per layer.
    assert len([layer for layer in encoder.layers if isinstance(layer, keras.Model)]) == 1
    x = np.random.default_rng(0).random((2, 32, 32, 1), np.float32)
    for layer, out in zip(layers, encoder(x)):
        alone = build_encoder(classifier, layer)(x)
        np.testing.assert_allclose(convert_to_numpy(out), convert_to_numpy(alone), rtol=1e-5, atol=1e-6)


def test_resolve_layers_refuses_a_layer_twice(classifier):
    assert [l.name for l in resolve_layers(classifier, ["-1", "block5"])] == ["logits", "block5"]
    with pytest.raises(UsageError, match="block5 is given twice"):
        resolve_layers(classifier, ["-2", "block5"])


def _conv_relu(name):
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.ReLU(name="act")(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    return keras.Model(inputs, h, name=name)


def _seq_conv_relu(name):
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                             keras.layers.ReLU(name="act")], name=name)


@pytest.mark.parametrize("make_inner", [_conv_relu, _seq_conv_relu], ids=["functional", "sequential"])
def test_nested_models_are_expanded(make_inner):
    inner = make_inner("features")
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inner(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(h))
    found = explainable_layers(model)
    assert [(l.name, l.index, l.shape) for l in found] == [("features/act", -2, (6, 6, 4)), ("out", -1, (3,))]
    encoder = build_encoder(model, resolve_layer(model, "features/act"))
    x = np.random.default_rng(0).random((2, 8, 8, 1), np.float32)
    np.testing.assert_allclose(convert_to_numpy(encoder(x)), convert_to_numpy(inner(x)), rtol=1e-5, atol=1e-6)
    both = build_encoder(model, found)
    inner_out, logits = both(x)
    np.testing.assert_allclose(convert_to_numpy(inner_out), convert_to_numpy(inner(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(convert_to_numpy(logits), convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6)


def test_a_nested_layer_is_found_by_its_own_name_unless_two_bear_it():
    inputs = keras.Input((8, 8, 1))
    h = _conv_relu("features")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(keras.layers.Flatten()(h)))
    assert resolve_layer(model, "act") == resolve_layer(model, "features/act")
    assert resolve_layer(model, "conv") == resolve_layer(model, "features/conv")  # hidden by its block
    twice = keras.layers.Concatenate()([_conv_relu("left")(inputs), _conv_relu("right")(inputs)])
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(keras.layers.Flatten()(twice)))
    with pytest.raises(UsageError, match="'act' is ambiguous: left/act, right/act"):
        resolve_layer(model, "act")


def test_sequential_classifier():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.ReLU(name="act"), keras.layers.Flatten(), keras.layers.Dense(3, name="out")])
    found = explainable_layers(model)
    assert [(l.name, l.index, l.shape) for l in found] == [("act", -2, (6, 6, 4)), ("out", -1, (3,))]
    encoder = build_encoder(model, resolve_layer(model, -2))
    assert tuple(encoder.outputs[0].shape[1:]) == (6, 6, 4)


def _nested_classifier():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(_seq_conv_relu("features")(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(h))


def _sequential_classifier():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                             keras.layers.ReLU(name="act"), keras.layers.Conv2D(2, 3, name="conv2"),
                             keras.layers.Flatten(), keras.layers.Dense(3, name="out")])


@pytest.mark.parametrize("make, spec", [
    (lambda: build_classifier((32, 32, 1), 4), -3), (lambda: build_classifier((32, 32, 1), 4), -1),
    (_sequential_classifier, -2), (_sequential_classifier, -3), (_sequential_classifier, -1),
    (_nested_classifier, "features/act")], ids=["paper -3", "paper logits", "sequential -2", "sequential -3",
                                                "sequential logits", "nested"])
def test_head_continues_the_classifier_from_the_layer(tmp_path, make, spec):
    # A loaded file, as the commands see it: Keras rebuilds a Sequential model's graph on loading.
    make().save(tmp_path / "m.keras")
    model = keras.models.load_model(tmp_path / "m.keras")
    layer = resolve_layer(model, spec)
    before = explainable_layers(model)
    head = build_head(model, layer)
    x = np.random.default_rng(0).random((3,) + tuple(model.inputs[0].shape[1:]), np.float32)
    np.testing.assert_allclose(convert_to_numpy(head(build_encoder(model, layer)(x))), convert_to_numpy(model(x)),
                               rtol=1e-5, atol=1e-5)
    assert {w.path for w in head.weights} <= {w.path for w in model.weights}
    assert explainable_layers(model) == before


def test_head_refuses_a_connection_around_the_layer():
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = keras.layers.ReLU(name="b")(keras.layers.Conv2D(4, 3, padding="same", name="b_conv")(a))
    h = keras.layers.Flatten()(keras.layers.Add(name="add")([a, b]))
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(h))
    with pytest.raises(UsageError, match="cannot be continued from layer b: its layer add also takes an output "
                                         "from before b.*; a layer from add on \\(the output of a residual block\\)"):
        build_head(model, resolve_layer(model, "b"))
    assert build_head(model, resolve_layer(model, "a")).outputs[0].shape[1:] == (3,)


def test_a_layer_of_a_shared_model_is_refused_when_named_and_by_encoder_and_head_alike():
    inputs = keras.Input((8, 8, 1))
    backbone = _seq_conv_relu("features")
    twice = keras.layers.Concatenate()([keras.layers.Flatten()(backbone(inputs)), keras.layers.Flatten()(backbone(inputs))])
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(twice))
    listed = next(layer for layer in explainable_layers(model) if layer.name == "features/act")
    for build, layer in ((resolve_layer, "features/act"), (build_head, "features/act"),
                         (build_encoder, "features/act"), (build_offset, listed)):
        with pytest.raises(UsageError, match="layer features of .* is used 2 times in its graph \\(a shared layer\\), "
                                             "so it has no one activation"):
            build(model, layer)
    assert build_encoder(model, "out").outputs[0].shape[1:] == (3,)  # a layer after both uses


def test_unsupported_models():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    sub = Subclassed()
    sub(np.zeros((1, 3), np.float32))
    with pytest.raises(UsageError, match="no functional graph"):
        explainable_layers(sub)
    a, b = keras.Input((4,)), keras.Input((4,))
    two = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(UsageError, match="has 2 inputs and 1 output;"):
        explainable_layers(two)
    c = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(c)
    split = keras.Model(c, [keras.layers.Dense(2)(flat), keras.layers.Dense(3)(flat)])
    with pytest.raises(UsageError, match="has 1 input and 2 outputs;"):
        explainable_layers(split)


def test_layers_convention_counts_every_layer_with_an_output(classifier):
    found = explainable_layers(classifier, "layers")
    assert [(l.name, l.index) for l in found[-4:]] == [("block5_conv", -4), ("block5_bn", -3), ("block5", -2),
                                                      ("logits", -1)]
    assert len(found) == 16 and {l.convention for l in found} == {"layers"}
    assert "flatten" not in {l.name for l in found}
    bn = resolve_layer(classifier, -3, "layers")
    assert (bn.name, bn.shape) == ("block5_bn", (1, 1, 256))
    assert resolve_layer(classifier, "block1_conv", "layers").index == -16
    # An already resolved layer passes through, convention and all.
    assert resolve_layer(classifier, bn) is bn


def test_unknown_convention(classifier):
    with pytest.raises(UsageError, match="unknown layer convention"):
        explainable_layers(classifier, "paper")


def test_an_offset_at_a_nested_layer_inside_a_residual_connection_reaches_the_output():
    inputs = keras.Input((8, 8, 1))
    features = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 3, padding="same", name="conv"),
                                 keras.layers.ReLU(name="act")], name="features")
    h = keras.layers.Add(name="add")([features(inputs), inputs])  # around the nested model
    # An outer layer that bears the name of a layer inside the nested model: one times one, by one.
    h = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="conv")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(keras.layers.Flatten()(h)))
    with pytest.raises(UsageError, match="a layer from add on"):
        build_head(model, "features/act")
    offset = build_offset(model, "features/act")
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    zero = np.zeros((2, *offset.inputs[1].shape[1:]), np.float32)
    np.testing.assert_allclose(convert_to_numpy(offset([x, zero])), convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6)
    moved = zero.copy()
    moved[:, 0, 0, 0] = 1.0  # one activation up by one: the output moves by that unit's weights
    kernel = convert_to_numpy(model.get_layer("out").kernel)
    np.testing.assert_allclose(convert_to_numpy(offset([x, moved]) - offset([x, zero])), np.tile(kernel[0], (2, 1)),
                               rtol=1e-5, atol=1e-5)


def augmented_classifier():
    """Keras' augmentation layers in front of two convolutions."""
    inputs = keras.Input((16, 16, 1))
    h = keras.layers.RandomFlip("horizontal", name="flip")(inputs)
    h = keras.layers.RandomRotation(0.2, name="rotate")(h)
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(h)
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv2")(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="scores")(keras.layers.Flatten()(h)))


def test_augmentation_layers_are_not_explained():
    model = augmented_classifier()
    assert [layer.name for layer in explainable_layers(model)] == ["conv", "conv2", "scores"]
    assert resolve_layer(model, -3).name == "conv"
    with pytest.raises(UsageError, match=r"layer 'flip' \(RandomFlip\) varies the training images"):
        resolve_layer(model, "flip")
