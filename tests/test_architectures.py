"""The paper's classifier (Table I)."""

import numpy as np
import pytest
from keras.ops import convert_to_numpy

from cladec_cli.architectures import build_classifier
from cladec_cli.errors import UsageError

BLOCK_SHAPES = {"block1": (16, 16, 16), "block2": (8, 8, 32), "block3": (4, 4, 64),
                "block4": (2, 2, 128), "block5": (1, 1, 256)}


@pytest.fixture(scope="module")
def classifier():
    return build_classifier((32, 32, 1), 10)


def test_block_output_shapes(classifier):
    for name, shape in BLOCK_SHAPES.items():
        layer = classifier.get_layer(name)
        assert type(layer).__name__ == "ReLU"
        assert tuple(layer.output.shape[1:]) == shape
        conv = classifier.get_layer(f"{name}_conv")
        assert conv.strides == (2, 2) and conv.kernel_size == (3, 3) and conv.padding == "same"
        assert type(classifier.get_layer(f"{name}_bn")).__name__ == "BatchNormalization"


def test_logits(classifier):
    logits = classifier.get_layer("logits")
    assert tuple(logits.output.shape[1:]) == (10,)
    assert logits.activation.__name__ == "linear"  # softmax only in the loss
    assert classifier.layers[-1] is logits
    out = convert_to_numpy(classifier(np.random.default_rng(0).random((3, 32, 32, 1), np.float32)))
    assert out.shape == (3, 10)
    assert not np.allclose(out.sum(axis=1), 1.0)  # logits, not probabilities


def test_class_count_and_channels():
    model = build_classifier((32, 32, 3), 4)
    assert tuple(model.inputs[0].shape[1:]) == (32, 32, 3)
    assert tuple(model.outputs[0].shape[1:]) == (4,)


def test_tiny_imagenet_variant():
    model = build_classifier((64, 64, 3), 200, arch="tiny_imagenet")
    assert tuple(model.get_layer("block1").output.shape[1:]) == (32, 32, 64)
    assert tuple(model.get_layer("block5").output.shape[1:]) == (2, 2, 1024)
    assert model.get_layer("block3_conv2").strides == (1, 1)
    assert tuple(model.outputs[0].shape[1:]) == (200,)


def test_unknown_architecture():
    with pytest.raises(UsageError, match="unknown architecture"):
        build_classifier((32, 32, 1), 10, arch="resnet")
