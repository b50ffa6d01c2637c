"""ClaDec decoders: training variants, save/load round trips and provenance."""

import json

import keras
import numpy as np
import pytest

from cladec_cli import artifacts
from cladec_cli.cladec import frozen_encoder, stacked, train_decoder
from cladec_cli.errors import UsageError
from cladec_cli.layers import resolve_layer
from cladec_cli.reconstruction import rec_loss
from cladec_cli.training import TrainSettings
from conftest import read_group


def settings(**changes):
    return TrainSettings(**{"epochs": 1, "batch_size": 32, "seed": 0, "verbose": 0, **changes})


@pytest.fixture(scope="module")
def variants(setup, tmp_path_factory):
    """Decoders for layer -2 trained in this process: cached and uncached codes at alpha 0, and alpha 0.99."""
    classifier, provenance, data = setup
    root = tmp_path_factory.mktemp("decoders")
    made = {}
    for key, alpha, cache in (("cached", 0.0, "yes"), ("uncached", 0.0, "no"), ("alpha", 0.99, "auto")):
        out = root / f"{key}.h5"
        decoder, record = train_decoder(classifier, provenance, data, -2, alpha, settings(), out,
                                        cache_codes=cache)
        made[key] = (decoder, record, out)
    return made


def test_fixture_decoder_loads_plainly(trained, setup):
    classifier, _, data = setup
    decoder = keras.models.load_model(trained["decoder"])
    assert tuple(decoder.inputs[0].shape[1:]) == (1, 1, 256)
    assert tuple(decoder.outputs[0].shape[1:]) == (32, 32, 1)
    group = read_group(trained["decoder"])
    assert group["kind"] == "cladec_decoder"
    assert group["layer_name"] == "block5" and group["layer_index"] == -2
    assert group["layer_shape"] == [1, 1, 256]
    assert group["alpha"] == 0.0
    assert group["classifier_digest"] == artifacts.weights_digest(classifier)
    assert group["digest"] == artifacts.weights_digest(decoder)
    # The stored Rec. Loss is what the saved decoder gives on the test split.
    cladec = stacked(frozen_encoder(classifier, resolve_layer(classifier, -2)), decoder, "cladec")
    images = data.test.images
    assert rec_loss(images, cladec.predict(images, verbose=0)) == pytest.approx(group["metrics"]["test_rec_loss"],
                                                                               rel=1e-4)


@pytest.mark.parametrize("key", ["cached", "uncached", "alpha"])
def test_round_trip(variants, setup, key):
    classifier, _, data = setup
    decoder, record, out = variants[key]
    loaded = keras.models.load_model(out)
    codes = frozen_encoder(classifier, resolve_layer(classifier, -2)).predict(data.test.images, verbose=0)
    np.testing.assert_array_equal(loaded.predict(codes, verbose=0), decoder.predict(codes, verbose=0))
    group = read_group(out)
    assert group == json.loads(json.dumps(record))
    assert group["layer_name"] == "block5" and group["layer_index"] == -2
    assert group["classifier_digest"] == artifacts.weights_digest(classifier)
    assert group["metrics"]["test_rec_loss"] == pytest.approx(
        rec_loss(data.test.images, loaded.predict(codes, verbose=0)), rel=1e-4)
    assert group["epochs"] == 1 and group["batch_size"] == 32 and group["seed"] == 0


def test_alpha_recorded(variants):
    assert variants["alpha"][1]["alpha"] == 0.99
    assert variants["alpha"][1]["cached_codes"] is False
    assert variants["cached"][1]["alpha"] == 0.0
    assert variants["cached"][1]["cached_codes"] is True
    assert variants["uncached"][1]["cached_codes"] is False


def test_alpha_gives_another_decoder(variants, setup):
    classifier, _, data = setup
    plain, extended = variants["uncached"][0], variants["alpha"][0]
    assert artifacts.weights_digest(plain) != artifacts.weights_digest(extended)
    codes = frozen_encoder(classifier, resolve_layer(classifier, -2)).predict(data.test.images[:16], verbose=0)
    assert not np.allclose(plain.predict(codes, verbose=0), extended.predict(codes, verbose=0), atol=1e-3)
    assert variants["alpha"][1]["metrics"]["test_rec_loss"] != variants["uncached"][1]["metrics"]["test_rec_loss"]


def test_cached_and_uncached_codes_agree(variants):
    cached = variants["cached"][1]["metrics"]["test_rec_loss"]
    uncached = variants["uncached"][1]["metrics"]["test_rec_loss"]
    assert cached == pytest.approx(uncached, rel=1e-5)


def test_training_leaves_the_classifier_alone(variants, setup, trained):
    classifier, _, _ = setup
    assert artifacts.weights_digest(classifier) == read_group(trained["classifier"])["digest"]


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_out_of_range(setup, tmp_path, alpha):
    classifier, provenance, data = setup
    with pytest.raises(UsageError, match="alpha"):
        train_decoder(classifier, provenance, data, -2, alpha, settings(), tmp_path / "d.h5")
    assert not (tmp_path / "d.h5").exists()


def confident_softmax_classifier():
    """32x32 gray classifier whose nested softmax head always gives softmax([10, 0, 0, 0]), whatever the image.

    A reshape follows the softmax: TensorFlow's cross-entropy looks through a softmax that is the very
    last op, and would hide a wrong `from_logits`.
    """
    backbone_in = keras.Input((32, 32, 1))
    conv = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv")(backbone_in)
    backbone = keras.Model(backbone_in, keras.layers.Flatten()(conv), name="backbone")
    head_in = keras.Input((16 * 16 * 4,))
    scores = keras.layers.Dense(4, kernel_initializer="zeros",
                                bias_initializer=keras.initializers.Constant([10.0, 0.0, 0.0, 0.0]))(head_in)
    head = keras.Model(head_in, keras.layers.Reshape((4,))(keras.layers.Softmax()(scores)), name="head")
    inputs = keras.Input((32, 32, 1))
    return keras.Model(inputs, head(backbone(inputs)))


def test_classification_loss_of_a_nested_softmax_head_takes_probabilities(setup, tmp_path):
    _, _, data = setup
    classifier = confident_softmax_classifier()
    # alpha 1: the loss is the classifier's cross-entropy alone, the same for any reconstruction.
    _, record = train_decoder(classifier, {}, data, "backbone/conv", 1.0, settings(batch_size=16), tmp_path / "d.h5")
    probabilities = np.exp([10.0, 0, 0, 0]) / np.exp([10.0, 0, 0, 0]).sum()
    expected = np.mean(-np.log(probabilities[data.train.labels]))  # 240 images, 15 full batches
    assert expected > 7.0  # taking the probabilities for logits would give about 1.5
    assert record["metrics"]["train_loss"] == pytest.approx(expected, rel=1e-3)
