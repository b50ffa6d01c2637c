"""--pixel-range: recorded once, inherited from the classifier (or decoder), checked, and what the
classifier sees, while images, reconstructions and grids stay in [0, 1]."""

import json

import keras
import numpy as np
import pytest
from keras import layers

from cladec_cli.data.datasets import load_dataset
from conftest import invoke, read_group
from test_pixels import mean_sign_classifier

TRAIN = ("--epochs", 1, "--batch-size", 32, "-q")


def test_pixel_range_is_recorded_inherited_and_checked(tmp_path, npz_dataset):
    classifier, decoder, refae = tmp_path / "c.h5", tmp_path / "d.h5", tmp_path / "r.h5"
    record = json.loads(invoke("train-classifier", "--dataset", npz_dataset, "--pixel-range", "-1,1", "--epochs", 2,
                               "--batch-size", 32, "--out", classifier, "--json").stdout)
    assert record["pixel_range"] == "-1,1"
    test = load_dataset(npz_dataset).test
    model = keras.models.load_model(classifier, compile=False)
    scores = model.predict(test.images * 2 - 1, verbose=0)  # the saved classifier takes [-1, 1] images
    assert np.mean(scores.argmax(1) == test.labels) == record["metrics"]["test_accuracy"]

    result = invoke("train-decoder", "--classifier", classifier, "--layer", -2, "--pixel-range", "0,255",
                    "--out", decoder, *TRAIN, expect=2)
    assert "--pixel-range 0,255 differs from the range -1,1" in result.stderr and not decoder.exists()
    invoke("train-decoder", "--classifier", classifier, "--layer", -2, "--out", decoder, *TRAIN)
    invoke("train-refae", "--classifier", classifier, "--layer", -2, "--out", refae, *TRAIN)
    assert read_group(decoder)["pixel_range"] == read_group(refae)["pixel_range"] == "-1,1"

    arrays = tmp_path / "a.npz"
    invoke("explain", "--classifier", classifier, "--decoder", decoder, "--refae", refae, "--indices", "0,1,2,3",
           "--out", tmp_path / "g.png", "--save-arrays", arrays, "-q")
    saved = np.load(arrays)
    np.testing.assert_allclose(saved["original"], test.images[:4], atol=1e-6)  # images stay in [0, 1]
    assert 0 <= saved["cladec"].min() and saved["cladec"].max() <= 1
    np.testing.assert_array_equal(saved["pred_original"], scores[:4].argmax(1))
    metrics = tmp_path / "m.json"
    invoke("evaluate", "--classifier", classifier, "--decoder", decoder, "--refae", refae, "--eval-epochs", 0,
           "--out", metrics, "-q")
    result = json.loads(metrics.read_text())
    assert result["pixel_range"] == "-1,1"
    assert result["classifier_test_accuracy"] == record["metrics"]["test_accuracy"]


def test_explain_shows_what_the_classifier_sees_in_its_range(tmp_path, npz_dataset):
    classifier, decoder = tmp_path / "mean_sign.keras", tmp_path / "d.h5"
    mean_sign_classifier((32, 32, 1)).save(classifier)  # dark images: mean < 0 in [-1, 1], class 1
    invoke("train-decoder", "--classifier", classifier, "--layer", "mean", "--dataset", npz_dataset,
           "--pixel-range", "-1,1", "--out", decoder, *TRAIN)
    arrays = tmp_path / "a.npz"
    # The classifier records nothing: the range comes from the decoder.
    invoke("explain", "--classifier", classifier, "--decoder", decoder, "--dataset", npz_dataset, "--count", 4,
           "--out", tmp_path / "g.png", "--save-arrays", arrays, "-q")
    np.testing.assert_array_equal(np.load(arrays)["pred_original"], [1, 1, 1, 1])
    result = invoke("explain", "--classifier", classifier, "--decoder", decoder, "--dataset", npz_dataset,
                    "--pixel-range", "0,1", "--out", tmp_path / "h.png", expect=2)
    assert "differs from the range -1,1 recorded in" in result.stderr and not (tmp_path / "h.png").exists()


def uint8_classifier(sequential=False):
    """A classifier of uint8 images (0-255), rescaled inside it: Keras casts any input to uint8 there."""
    body = [layers.Rescaling(1 / 255), layers.Conv2D(4, 3, strides=2, activation="relu", name="conv"),
            layers.Flatten(), layers.Dense(4, name="scores")]
    inputs = keras.Input((32, 32, 1), dtype="uint8")
    if sequential:
        return keras.Sequential([inputs, *body])
    h = inputs
    for layer in body:
        h = layer(h)
    return keras.Model(inputs, h)


def test_a_classifier_of_uint8_images_lets_the_classification_loss_and_saliency_through(tmp_path, npz_dataset):
    path = tmp_path / "u8.keras"
    uint8_classifier().save(path)
    common = ("--classifier", path, "--dataset", npz_dataset, "--pixel-range", "0,255", "--layer", "conv",
              "--alpha", 1, "--batch-size", 32, "-q")
    invoke("train-decoder", *common, "--epochs", 0, "--out", tmp_path / "start.h5")
    invoke("train-decoder", *common, "--epochs", 1, "--out", tmp_path / "trained.h5")
    start, trained = (keras.models.load_model(tmp_path / f, compile=False).get_weights()
                      for f in ("start.h5", "trained.h5"))
    assert max(float(np.abs(a - b).max()) for a, b in zip(start, trained)) > 1e-4  # alpha 1: only that loss
    arrays = tmp_path / "a.npz"
    invoke("explain", "--classifier", path, "--decoder", tmp_path / "trained.h5", "--count", 2, "--method", "saliency",
           "--out", tmp_path / "g.png", "--save-arrays", arrays, "-q")
    saliency = np.load(arrays)["saliency"]
    assert np.isfinite(saliency).all() and saliency.max() > 0


@pytest.mark.parametrize("sequential", [False, True])
def test_in_range_takes_float_images_where_the_classifier_takes_uint8(sequential):
    from cladec_cli.methods.gradients import class_scores, input_gradients
    from cladec_cli.pixels import in_range

    model = uint8_classifier(sequential)
    scaled = in_range(model, "0,255")
    assert str(scaled.inputs[0].dtype) == "float32" and scaled.weights == model.weights
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1)).astype(np.uint8)
    np.testing.assert_allclose(scaled.predict(pixels / 255.0, verbose=0), model.predict(pixels, verbose=0),
                               rtol=1e-5, atol=1e-6)
    gradients = input_gradients(class_scores(scaled, [0, 1, 2]), pixels / 255.0)
    assert np.isfinite(gradients).all() and np.abs(gradients).max() > 0


@pytest.mark.parametrize("outer", ["uint8", "float32"])
def test_a_nested_model_of_uint8_images_takes_float_images_too(outer):
    from cladec_cli.methods.gradients import class_scores, input_gradients
    from cladec_cli.pixels import in_range

    inputs = keras.Input((32, 32, 1), dtype=outer)
    model = keras.Model(inputs, uint8_classifier(sequential=True)(inputs))
    scaled = in_range(model, "0,255")
    pixels = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 1)).astype(np.uint8)
    np.testing.assert_allclose(scaled.predict(pixels / 255.0, verbose=0), model.predict(pixels, verbose=0),
                               rtol=1e-5, atol=1e-6)
    gradients = input_gradients(class_scores(scaled, [0, 3]), pixels / 255.0)
    assert np.isfinite(gradients).all() and np.abs(gradients).max() > 0
