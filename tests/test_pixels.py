"""The classifier sees its own pixel range while everything around it takes [0, 1] images."""

import keras
import numpy as np
import pytest
from keras import layers, ops

from cladec_cli.classifier import classifier_on, fit_classifier
from cladec_cli.cladec import frozen_encoder
from cladec_cli.data.split import Split
from cladec_cli.errors import UsageError
from cladec_cli.layers import resolve_layer
from cladec_cli.metrics import acc_eval
from cladec_cli.pixels import bounds, in_range
from cladec_cli.refae import build_refae
from cladec_cli.training import TrainSettings


def mean_sign_classifier(shape=(8, 8, 1)):
    """Scores (m, -m, 0, 0) for the mean pixel value m: class 0 for positive means, 1 for negative."""
    inputs = keras.Input(shape)
    mean = layers.GlobalAveragePooling2D(name="mean")(inputs)
    dense = layers.Dense(4, name="scores")
    model = keras.Model(inputs, dense(mean), name="mean_sign")
    dense.set_weights([np.array([[1.0, -1.0, 0.0, 0.0]], np.float32), np.zeros(4, np.float32)])
    return model


@pytest.mark.parametrize("pixel_range, mean", [("0,1", 0.25), ("-1,1", -0.5), ("0,255", 63.75)])
def test_classifier_and_encoder_see_the_range(pixel_range, mean):
    model = mean_sign_classifier()
    x = np.full((2, 8, 8, 1), 0.25, np.float32)
    np.testing.assert_allclose(in_range(model, pixel_range).predict(x, verbose=0), [[mean, -mean, 0, 0]] * 2,
                               rtol=1e-6)
    np.testing.assert_allclose(classifier_on(model, pixel_range).predict(x, verbose=0)[:, 0], mean, rtol=1e-6)
    encoder = frozen_encoder(model, resolve_layer(model, "mean"), pixel_range)
    np.testing.assert_allclose(encoder.predict(x, verbose=0), [[mean]] * 2, rtol=1e-6)
    assert in_range(model, "0,1") is model  # no wrapper for the default


def test_refae_encoder_sees_the_range():
    model = mean_sign_classifier()
    refae = build_refae(model, resolve_layer(model, "mean"), pixel_range="-1,1")
    scaling = refae.get_layer("pixel_range")
    x = np.full((1, 8, 8, 1), 0.25, np.float32)
    np.testing.assert_allclose(np.asarray(scaling(x)), -0.5)
    assert tuple(refae.outputs[0].shape[1:]) == (8, 8, 1)


def test_classifier_on_reconstructions_trains_only_the_classifier():
    model = mean_sign_classifier()
    inverter = keras.Sequential([keras.Input((8, 8, 1)), layers.Rescaling(-1.0, offset=1.0)])  # x -> 1 - x
    stacked = classifier_on(model, "-1,1", inputs_from=inverter)
    x = np.full((1, 8, 8, 1), 0.25, np.float32)
    np.testing.assert_allclose(stacked.predict(x, verbose=0)[0, 0], 0.5, rtol=1e-6)  # 2 * 0.75 - 1
    assert {id(w) for w in stacked.trainable_weights} == {id(w) for w in model.trainable_weights}


class RangeSeen(layers.Layer):
    """Passes its input on and remembers the smallest and largest values it saw in training."""

    def build(self, shape):
        self.low = self.add_weight(shape=(), initializer=keras.initializers.Constant(1e9), trainable=False)
        self.high = self.add_weight(shape=(), initializer=keras.initializers.Constant(-1e9), trainable=False)

    def call(self, x, training=None):
        if training:
            self.low.assign(ops.minimum(self.low, ops.min(x)))
            self.high.assign(ops.maximum(self.high, ops.max(x)))
        return x


def recording_classifier():
    return keras.Sequential([keras.Input((8, 8, 1)), RangeSeen(name="seen"), layers.Flatten(), layers.Dense(4)])


def seen(model):
    layer = model.get_layer("seen")
    return float(layer.low), float(layer.high)


def test_classifiers_are_trained_on_their_range():
    x = np.linspace(0, 1, 16 * 64, dtype=np.float32).reshape(16, 8, 8, 1)
    y = np.arange(16) % 4
    settings = TrainSettings(epochs=1, batch_size=8, verbose=0)
    model = recording_classifier()
    fit_classifier(model, Split(y, (8, 8, 1), images=x), settings, pixel_range="0,255")
    assert seen(model) == pytest.approx((0.0, 255.0))
    _, fresh = acc_eval(recording_classifier(), x, y, x, y, settings, pixel_range="-1,1")  # Acc Eval's classifier
    assert seen(fresh) == pytest.approx((-1.0, 1.0))


def test_unknown_range_is_refused():
    assert bounds("-1,1") == (-1.0, 1.0)
    with pytest.raises(UsageError, match="0,1, -1,1, 0,255"):
        bounds("0,2")
