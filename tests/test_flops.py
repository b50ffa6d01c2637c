import keras
import pytest

from cladec_cli.architectures import build_classifier
from cladec_cli.cladec import decoder_for, frozen_encoder, stacked
from cladec_cli.flops import count, forward_flops, layer_forward_flops, training_flops
from cladec_cli.layers import resolve_layer


def dense_pair():
    """4 -> Dense(3) -> Dense(2): forward 2*4*3 + 2*3*2 = 36 FLOPs."""
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3)(inputs)))


def test_dense_known_answer():
    model = dense_pair()
    # The first layer needs no gradient for its input (2x), the second one does (3x).
    assert count(model) == (36, 2 * 24 + 3 * 12)


def test_conv_and_transposed_conv_known_answer():
    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Conv2D(2, 3, padding="same")(inputs)  # 2 * 16 px * 2 filters * 9 * 1 channel
    h = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same")(h)  # 2 * 16 input px * 2 ch * 9 * 1
    model = keras.Model(inputs, h)
    assert forward_flops(model) == 576 + 576
    assert training_flops(model) == 2 * 576 + 3 * 576


def test_dense_on_feature_map_counts_every_position():
    inputs = keras.Input((5, 3))
    layer = keras.layers.Dense(7)
    model = keras.Model(inputs, layer(inputs))
    assert forward_flops(model) == 2 * 5 * 3 * 7


def test_frozen_layers_cost_forward_only_before_and_twice_after_trained_ones():
    inputs = keras.Input((4,))
    frozen_front, trained, frozen_back = keras.layers.Dense(3), keras.layers.Dense(3), keras.layers.Dense(2)
    frozen_front.trainable = frozen_back.trainable = False
    model = keras.Model(inputs, frozen_back(trained(frozen_front(inputs))))
    # front: forward only; trained: forward + weight gradient (nothing trainable lies before it);
    # back: forward + input gradient (on the way back to the trained layer).
    assert count(model) == (24 + 18 + 12, 24 + 2 * 18 + 2 * 12)


def test_nested_models_are_followed():
    inner = dense_pair()
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, keras.layers.Dense(1)(inner(inputs)))
    assert forward_flops(outer) == 36 + 4
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    assert forward_flops(sequential) == 36


def test_uncounted_layers_cost_nothing():
    layer = keras.layers.BatchNormalization()
    assert layer_forward_flops(layer, (None, 8, 8, 4), (None, 8, 8, 4)) == 0


def test_paper_models_match_the_design_figures():
    classifier = build_classifier((32, 32, 1), 10)
    assert forward_flops(classifier) == pytest.approx(2.44e6, rel=0.01)
    layer = resolve_layer(classifier, -1)
    decoder = decoder_for(classifier, layer)
    assert forward_flops(decoder) == pytest.approx(23.35e6, rel=0.01)
    # The frozen encoder in front of the decoder runs forward only.
    assert training_flops(stacked(frozen_encoder(classifier, layer), decoder, "cladec")) == \
        forward_flops(classifier) + training_flops(decoder)
