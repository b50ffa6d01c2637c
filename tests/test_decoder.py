"""The decoder of Table I and its twin inside the RefAE."""

import keras
import numpy as np
import pytest
from keras.ops import convert_to_numpy

from cladec_cli.architectures import build_classifier
from cladec_cli.cladec import decoder_for
from cladec_cli.decoder import build_decoder
from cladec_cli.errors import UsageError
from cladec_cli.layers import build_encoder, resolve_layer
from cladec_cli.refae import build_refae


def kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def deconvs(model):
    return [layer for layer in model.layers if type(layer).__name__ == "Conv2DTranspose"]


def check_output(model, code_shape, image_shape):
    assert tuple(model.outputs[0].shape[1:]) == tuple(image_shape)
    rng = np.random.default_rng(0)
    out = convert_to_numpy(model(rng.normal(size=(2,) + tuple(code_shape)).astype(np.float32) * 10))
    assert out.shape == (2,) + tuple(image_shape)
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.fixture(scope="module")
def classifier():
    return build_classifier((32, 32, 1), 4)


def test_vector_code():
    model = build_decoder((10,), (32, 32, 1))
    assert kinds(model) == ["InputLayer", "Dense", "Reshape"] + ["Conv2DTranspose"] * 5 + ["Activation"]
    assert tuple(model.get_layer("dec_reshape").output.shape[1:]) == (1, 1, 256)
    layers = deconvs(model)
    assert [l.filters for l in layers] == [256, 128, 64, 32, 1]
    assert all(l.kernel_size == (5, 5) and l.strides == (2, 2) and l.padding == "same" for l in layers)
    assert [l.activation.__name__ for l in layers] == ["relu"] * 4 + ["linear"]
    assert model.layers[-1].activation.__name__ == "sigmoid"
    check_output(model, (10,), (32, 32, 1))


@pytest.mark.parametrize("code_shape, filters", [
    ((1, 1, 256), [256, 128, 64, 32, 1]),
    ((2, 2, 128), [128, 64, 32, 1]),
    ((4, 4, 64), [64, 32, 1]),
    ((8, 8, 32), [32, 1]),
    ((16, 16, 16), [1]),
])
def test_spatial_codes(code_shape, filters):
    model = build_decoder(code_shape, (32, 32, 1))
    assert "Dense" not in kinds(model) and "Resizing" not in kinds(model)
    layers = deconvs(model)
    assert len(layers) == int(np.log2(32 / code_shape[0]))
    assert [l.filters for l in layers] == filters
    assert all(l.strides == (2, 2) for l in layers)
    check_output(model, code_shape, (32, 32, 1))


def test_rgb_image():
    model = build_decoder((2, 2, 128), (32, 32, 3))
    assert deconvs(model)[-1].filters == 3
    check_output(model, (2, 2, 128), (32, 32, 3))


def test_7x7_code_to_28x28():
    model = build_decoder((7, 7, 64), (28, 28, 1))
    assert len(deconvs(model)) == 2
    assert "Resizing" not in kinds(model)
    check_output(model, (7, 7, 64), (28, 28, 1))


def test_same_size_code_uses_a_conv():
    model = build_decoder((32, 32, 8), (32, 32, 1))
    assert deconvs(model) == []
    assert "Conv2D" in kinds(model)
    check_output(model, (32, 32, 8), (32, 32, 1))


@pytest.mark.parametrize("code_shape", [(10,), (1, 1, 256), (3, 3, 64)])
def test_non_power_of_two_image(code_shape):
    model = build_decoder(code_shape, (48, 48, 1))
    check_output(model, code_shape, (48, 48, 1))
    assert kinds(model)[-1] == "Activation"  # the sigmoid comes last, after any resize


def test_wider_decoder():
    model = build_decoder((2, 2, 1024), (64, 64, 3), width=4)
    assert [l.filters for l in deconvs(model)] == [1024, 512, 256, 128, 3]
    assert tuple(model.outputs[0].shape[1:]) == (64, 64, 3)


@pytest.mark.parametrize("spec", [-1, -2, -3, "block3"])
def test_refae_decoder_matches_cladec_decoder(classifier, spec):
    layer = resolve_layer(classifier, spec)
    cladec_decoder = decoder_for(classifier, layer)
    refae_decoder = build_refae(classifier, layer).get_layer("decoder")
    assert kinds(refae_decoder) == kinds(cladec_decoder)
    assert [tuple(l.output.shape) for l in refae_decoder.layers] == [tuple(l.output.shape) for l in cladec_decoder.layers]
    assert [w.shape for w in refae_decoder.weights] == [w.shape for w in cladec_decoder.weights]
    assert tuple(refae_decoder.inputs[0].shape[1:]) == layer.shape


def test_refae_encoder_is_freshly_initialised(classifier):
    layer = resolve_layer(classifier, -2)
    refae = build_refae(classifier, layer)
    encoder = build_encoder(classifier, layer)
    refae_encoder = refae.get_layer("refae_encoder")
    assert refae_encoder.trainable
    mine, theirs = refae_encoder.weights, encoder.weights
    assert [w.shape for w in mine] == [w.shape for w in theirs]
    assert all(a is not b for a, b in zip(mine, theirs))
    kernels = [(np.asarray(a), np.asarray(b)) for a, b in zip(mine, theirs) if "kernel" in a.path]
    assert kernels and all(not np.allclose(a, b) for a, b in kernels)
    assert tuple(refae.outputs[0].shape[1:]) == (32, 32, 1)


def test_relu_output_is_not_bounded_above():
    decoder = build_decoder((4,), (32, 32, 1), output="relu")
    assert decoder.get_layer("reconstruction").activation.__name__ == "relu"
    # Large codes drive a ReLU output past 1, where a sigmoid would stop.
    big = decoder.predict(np.full((2, 4), 1e3, np.float32), verbose=0)
    assert big.min() >= 0.0 and big.max() > 1.0
    assert build_decoder((4,), (32, 32, 1)).get_layer("reconstruction").activation.__name__ == "sigmoid"
    with pytest.raises(UsageError, match="unknown `decoder_output`"):
        build_decoder((4,), (32, 32, 1), output="tanh")


@pytest.mark.parametrize("code_shape,image_shape", [((10,), (32, 32, 1)), ((4, 4, 8), (28, 28, 1))])
def test_mixed_precision_decoder_computes_its_last_conv_in_low_precision_and_outputs_float32(code_shape, image_shape):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = build_decoder(code_shape, image_shape)
        full = build_decoder(code_shape, image_shape, output_dtype="float32")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed.get_layer("dec_out").compute_dtype == "bfloat16"
    assert full.get_layer("dec_out").compute_dtype == "float32"
    for decoder in (mixed, full):
        assert decoder.get_layer("reconstruction").compute_dtype == "float32"
        assert decoder.get_layer("dec_out").variable_dtype == "float32"
        out = decoder(np.ones((2,) + code_shape, np.float32))
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
