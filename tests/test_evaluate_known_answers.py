"""`evaluate` on explanations with known answers: an identity "decoder" and one that turns images around."""

import keras
import numpy as np
import pytest

from cladec_cli.data.datasets import load_dataset
from cladec_cli.evaluate import evaluate
from cladec_cli.explainer import Explainer
from cladec_cli.training import TrainSettings
from conftest import flipped, quadrant_classifier

EVAL = TrainSettings(epochs=3, batch_size=16, lr=0.1, verbose=0)


def image_model(transform, name):
    inputs = keras.Input((32, 32, 1))
    return keras.Model(inputs, transform(inputs), name=name)


@pytest.fixture(scope="module")
def result(npz_dataset):
    """ClaDec turns every image by 180 degrees (each class becomes another); the RefAE gives it back unchanged."""
    explainer = Explainer(
        classifier=quadrant_classifier(), classifier_provenance={},
        cladec=image_model(lambda x: keras.ops.flip(keras.ops.flip(x, axis=1), axis=2), "turn"),
        decoder_provenance={"layer_name": "logits", "layer_index": -1, "alpha": 0.0},
        refae=image_model(keras.layers.Identity(), "identity"))
    dataset = load_dataset(npz_dataset)
    return evaluate(explainer, dataset, EVAL), dataset


def test_identity_reconstructions_lose_nothing_and_always_agree(result):
    metrics, _ = result
    assert metrics["rec_loss"]["refae"] == 0.0
    assert metrics["agreement"]["refae"] == 1.0
    assert metrics["classifier_test_accuracy"] == 1.0


def test_turned_reconstructions_have_known_measures(result):
    metrics, dataset = result
    x = dataset.test.images
    assert metrics["rec_loss"]["cladec"] == pytest.approx(np.mean(np.sum(np.square(x - flipped(x)), axis=(1, 2, 3))))
    assert metrics["agreement"]["cladec"] == 0.0
    assert metrics["rec_loss"]["difference"] == metrics["rec_loss"]["cladec"]


def test_rec_loss_on_training_images_is_measured_there(result):
    metrics, dataset = result
    x = dataset.train.images
    assert metrics["train_rec_loss"]["cladec"] == pytest.approx(
        np.mean(np.sum(np.square(x - flipped(x)), axis=(1, 2, 3))))
    assert metrics["train_rec_loss"]["refae"] == 0.0
    assert metrics["train_rec_loss"]["cladec"] != pytest.approx(metrics["rec_loss"]["cladec"])


def test_acc_eval_learns_from_each_methods_reconstructions(result):
    # Trained and tested on turned images with their true labels, the evaluation classifier is right
    # every time; had it been trained on the original images, it would be wrong every time.
    metrics, _ = result
    assert metrics["acc_eval"] == {"cladec": 1.0, "refae": 1.0, "difference": 0.0}
