"""Measures on cases with a known answer."""

import keras
import numpy as np
import pytest

from cladec_cli.architectures import build_classifier
from cladec_cli.metrics import acc_eval, agreement, rec_loss
from cladec_cli.reconstruction import per_image_sse
from cladec_cli.training import TrainSettings
from conftest import synthetic_images


@pytest.fixture(scope="module")
def images():
    x, y = synthetic_images(320, seed=5)
    return x.astype(np.float32) / 255.0, y


def test_perfect_reconstruction_has_zero_loss_and_full_agreement(images):
    x, _ = images
    classifier = build_classifier(x.shape[1:], 4)
    assert rec_loss(x, x.copy()) == 0.0
    assert agreement(lambda a: classifier.predict(a, verbose=0).argmax(1), x, x.copy()) == 1.0


def test_rec_loss_is_per_image_sum_of_squares(images):
    x, _ = images
    zeros = np.zeros_like(x)
    expected = np.mean([np.sum(np.square(img.astype(np.float64))) for img in x])
    assert rec_loss(x, zeros) == pytest.approx(expected)
    assert per_image_sse(x[:1], x[:1] + 0.5)[0] == pytest.approx(0.25 * x[0].size)


def test_agreement_counts_changed_predictions():
    x = np.arange(10)
    assert agreement(lambda a: a % 3, x, x + 3) == 1.0
    assert agreement(lambda a: a, x, np.where(x < 4, x, -1)) == pytest.approx(0.4)


def test_constant_reconstructions_give_chance_level_acc_eval(images):
    x, y = images
    constant = np.full_like(x, 0.5)
    classifier = build_classifier(x.shape[1:], 4)
    score, _ = acc_eval(classifier, constant, y, constant[:40], y[:40],
                        TrainSettings(epochs=2, batch_size=16, verbose=0))
    assert score == pytest.approx(0.25)


def test_informative_reconstructions_beat_chance(images):
    x, y = images
    classifier = build_classifier(x.shape[1:], 4)
    score, _ = acc_eval(classifier, x, y, x[:40], y[:40], TrainSettings(epochs=4, batch_size=16, verbose=0))
    assert score > 0.5


def test_acc_eval_trains_a_fresh_copy_of_a_frozen_classifier(images):
    x, y = images
    classifier = build_classifier(x.shape[1:], 4)
    classifier.trainable = False
    for layer in classifier.layers:
        layer.trainable = False
    score, model = acc_eval(classifier, x, y, x[:40], y[:40], TrainSettings(epochs=4, batch_size=16, verbose=0))
    assert len(model.trainable_weights) > 0
    assert score > 0.5


@pytest.mark.parametrize("softmax", [True, False])
def test_acc_eval_loss_fits_the_classifiers_output(images, softmax):
    x, y = images
    inputs = keras.Input(x.shape[1:])
    features = keras.layers.Flatten()(keras.layers.AveragePooling2D(16)(inputs))
    head_in = keras.Input((4,))
    scores = keras.layers.Dense(4)(head_in)
    head = keras.Model(head_in, keras.layers.Softmax()(scores) if softmax else scores, name="head")
    classifier = keras.Model(inputs, head(features))
    _, model = acc_eval(classifier, x[:32], y[:32], x[:8], y[:8], TrainSettings(epochs=1, batch_size=16, verbose=0))
    assert model.loss.get_config()["from_logits"] is not softmax
