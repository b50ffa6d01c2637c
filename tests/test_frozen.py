"""A frozen model inside a model that trains runs in inference mode: its Dropout stays off."""

import keras
import numpy as np

from cladec_cli.flops import count
from cladec_cli.frozen import frozen


def dropping_model():
    inputs = keras.Input((8,))
    h = keras.layers.Dropout(0.9)(keras.layers.Dense(8)(inputs))
    return keras.Model(inputs, keras.layers.Dense(3)(h), name="dropping")


def test_a_frozen_model_keeps_dropout_off_while_the_outer_model_trains():
    inner = dropping_model()
    x = np.random.default_rng(0).random((64, 8), np.float32)
    expected = inner.predict(x, verbose=0)
    for wrap, same in ((lambda t: inner(t, training=False), False), (lambda t: frozen(inner)(t), True)):
        inputs = keras.Input((8,))
        codes = wrap(inputs)
        outer = keras.Model(inputs, [keras.layers.Dense(1)(codes), codes])
        # Keras hands the outer training=True to nested models over the training=False given above.
        in_training = keras.ops.convert_to_numpy(outer(x, training=True)[1])
        assert np.allclose(in_training, expected, atol=1e-6) == same


def test_a_frozen_model_trains_nothing_and_counts_its_flops():
    inner = dropping_model()
    inputs = keras.Input((8,))
    outer = keras.Model(inputs, keras.layers.Dense(1)(frozen(inner)(inputs)))
    assert [w.path for w in outer.trainable_weights] == [outer.layers[-1].kernel.path, outer.layers[-1].bias.path]
    # Forward only for the frozen part (2 x (8 x 8 + 8 x 3)), forward and weight gradient for the head.
    assert count(outer) == (176 + 6, 176 + 12)


def test_an_acc_eval_classifier_learns_from_the_reconstructions_of_inference():
    from cladec_cli.classifier import classifier_on

    inputs = keras.Input((8,))
    reconstructor = keras.Model(inputs, keras.layers.Dense(8)(keras.layers.Dropout(0.9)(keras.layers.Dense(8)(inputs))))
    classifier = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model = classifier_on(classifier, "0,1", inputs_from=reconstructor)
    x = np.random.default_rng(1).random((32, 8), np.float32)
    assert np.allclose(keras.ops.convert_to_numpy(model(x, training=True)), model.predict(x, verbose=0), atol=1e-6)
