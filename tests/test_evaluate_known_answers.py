"""`evaluate` on explanations with known answers: an identity "decoder" and one that turns images around."""

import keras
import numpy as np
import pytest

from cladec_cli.data.datasets import load_dataset
from cladec_cli.errors import DataError, UsageError
from cladec_cli.evaluate import evaluate
from cladec_cli.explain import explanation_arrays
from cladec_cli.explainer import Explainer
from cladec_cli.training import TrainSettings
from conftest import flipped, quadrant_classifier

EVAL = TrainSettings(epochs=3, batch_size=16, lr=0.1, verbose=0)


def image_model(transform, name):
    inputs = keras.Input((32, 32, 1))
    return keras.Model(inputs, transform(inputs), name=name)


def turning_explainer():
    """ClaDec turns every image by 180 degrees (each class becomes another); the RefAE gives it back unchanged."""
    return Explainer(
        classifier=quadrant_classifier(), classifier_provenance={},
        cladec=image_model(lambda x: keras.ops.flip(keras.ops.flip(x, axis=1), axis=2), "turn"),
        decoder_provenance={"layer_name": "logits", "layer_index": -1, "alpha": 0.0},
        refae=image_model(keras.layers.Identity(), "identity"))


@pytest.fixture(scope="module")
def result(npz_dataset):
    dataset = load_dataset(npz_dataset)
    return evaluate(turning_explainer(), dataset, EVAL), dataset


def test_what_cannot_be_measured_is_refused_before_the_work(npz_dataset, tmp_path, monkeypatch):
    import cladec_cli.evaluate as evaluating

    def measured(*args):
        raise AssertionError("measured before the check")

    monkeypatch.setattr(evaluating, "held_measures", measured)
    monkeypatch.setattr(evaluating, "streamed_measures", measured)
    explainer, dataset = turning_explainer(), load_dataset(npz_dataset)
    (tmp_path / "eval_refae.h5").write_bytes(b"kept")
    for call, error, message in (
            (lambda: evaluate(explainer, dataset, EVAL, keep_dir=tmp_path), UsageError, "eval_refae.h5 already exists"),
            (lambda: evaluate(explainer, dataset, None), UsageError, "`eval_settings`: pass them, or `with_acc_eval`"),
            (lambda: evaluate(explainer, dataset, EVAL, methods="cladec"), UsageError, "list of names"),
            (lambda: evaluate(explainer, dataset, EVAL, methods=[]), UsageError, "`methods` names no method"),
            (lambda: evaluate(explainer, dataset, EVAL, map_images=0), UsageError, "`map_images` must be"),
            (lambda: evaluate(explainer, dataset, EVAL, eval_bn_statistics="median"), UsageError,
             "unknown BatchNorm statistics 'median'"),
            (lambda: evaluate(explainer, load_dataset(npz_dataset, pixel_range="-1,1"), EVAL), DataError,
             "pixel range is -1,1 but the classifier takes images in 0,1")):
        with pytest.raises(error, match=message):
            call()
    assert (tmp_path / "eval_refae.h5").read_bytes() == b"kept"


def test_images_to_explain_are_checked(npz_dataset):
    explainer, dataset = turning_explainer(), load_dataset(npz_dataset)
    images = dataset.test.images[:3]
    assert explanation_arrays(explainer, images)["cladec"].shape == images.shape
    for bad, message in (((images * 255).astype(np.uint8), "floats in \\[0, 1\\], got uint8"),
                         (images * 255, "lie in \\[0, 1\\], got values from 0 to 2"),
                         (images[..., 0], "n images of 32x32x1, got shape \\(3, 32, 32\\)")):
        with pytest.raises(DataError, match=message):
            explanation_arrays(explainer, bad)
        with pytest.raises(DataError, match=message):
            explainer.reconstructions(bad)
    # Predictions take images beyond [0, 1] as a ReLU decoder's reconstructions may be, but not others.
    assert explainer.classify(images * 1.5).shape == (3,)
    for bad, message in (((images * 255).astype(np.uint8), "floats in \\[0, 1\\], got uint8"),
                         (np.repeat(images, 3, axis=-1), "n images of 32x32x1, got shape \\(3, 32, 32, 3\\)")):
        with pytest.raises(DataError, match=message):
            explainer.classify(bad)


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


def test_the_baseline_is_the_training_images_mean_image_as_every_reconstruction(result):
    metrics, dataset = result
    mean = dataset.train.images.mean(axis=0, dtype=np.float64)
    expected = np.mean(np.sum(np.square(dataset.test.images - mean), axis=(1, 2, 3)))
    assert metrics["mean_image_rec_loss"] == pytest.approx(expected, rel=1e-6)
    black = np.mean(np.sum(np.square(dataset.test.images), axis=(1, 2, 3)))
    assert metrics["mean_image_rec_loss"] < black  # the mean image is a better guess than none


def test_acc_eval_learns_from_each_methods_reconstructions(result):
    # Trained and tested on turned images with their true labels, the evaluation classifier is right
    # every time; had it been trained on the original images, it would be wrong every time.
    metrics, _ = result
    assert metrics["acc_eval"] == {"cladec": 1.0, "refae": 1.0, "difference": 0.0}
