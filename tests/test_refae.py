"""RefAE: save/load round trips, provenance, several layers in one pass."""

import json

import keras
import numpy as np
import pytest

from cladec_cli import artifacts
from cladec_cli.layers import is_submodel, resolve_layer
from cladec_cli.reconstruction import rec_loss
from cladec_cli.refae import build_refae, refae_encoder, statistics_may_lag, train_refae, train_refaes
from cladec_cli.training import TrainSettings
from conftest import loud_classifier, quadrant_classifier, read_group
from test_batchnorm import assert_normalised


@pytest.fixture(scope="module")
def refae(setup, tmp_path_factory):
    classifier, provenance, data = setup
    out = tmp_path_factory.mktemp("refae") / "refae.h5"
    model, record = train_refae(classifier, provenance, data, "block4",
                                TrainSettings(epochs=1, batch_size=32, seed=0, verbose=0), out)
    return model, record, out


def test_fixture_refae_loads_plainly(trained, setup):
    classifier, _, data = setup
    model = keras.models.load_model(trained["refae"])
    assert tuple(model.inputs[0].shape[1:]) == (32, 32, 1)
    assert tuple(model.outputs[0].shape[1:]) == (32, 32, 1)
    out = model.predict(data.test.images[:8], verbose=0)
    assert out.min() >= 0 and out.max() <= 1
    group = read_group(trained["refae"])
    assert group["kind"] == "refae"
    assert group["layer_name"] == "block5" and group["layer_index"] == -2
    assert group["classifier_digest"] == artifacts.weights_digest(classifier)
    assert group["digest"] == artifacts.weights_digest(model)
    images = data.test.images
    assert group["metrics"]["test_rec_loss"] == pytest.approx(rec_loss(images, model.predict(images, verbose=0)),
                                                               rel=1e-4)
    assert group["rec_loss"] == "sse"


def test_round_trip(refae, setup):
    classifier, _, data = setup
    model, record, out = refae
    loaded = keras.models.load_model(out)
    x = data.test.images
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    group = read_group(out)
    assert group == json.loads(json.dumps(record))
    assert group["layer_name"] == "block4" and group["layer_index"] == -3
    assert group["layer_shape"] == [2, 2, 128]
    assert group["classifier_digest"] == artifacts.weights_digest(classifier)
    assert group["metrics"]["test_rec_loss"] == pytest.approx(rec_loss(x, loaded.predict(x, verbose=0)), rel=1e-4)
    assert group["epochs"] == 1 and group["batch_size"] == 32


def test_refae_does_not_share_or_change_classifier_weights(refae, setup, trained):
    classifier, _, _ = setup
    model, _, _ = refae
    assert artifacts.weights_digest(classifier) == read_group(trained["classifier"])["digest"]
    ids = {id(w) for w in classifier.weights}
    assert not any(id(w) in ids for w in model.weights)
    first = model.get_layer("refae_encoder").weights[0]
    assert first.shape == classifier.get_layer("block1_conv").kernel.shape
    assert not np.allclose(np.asarray(first), np.asarray(classifier.get_layer("block1_conv").kernel))


def test_refae_encoder_trains_even_after_the_classifier_was_frozen(trained):
    """In one process a ClaDec decoder freezes the classifier's layers; the RefAE copy must not inherit that."""
    from cladec_cli.classifier import load_classifier
    from cladec_cli.cladec import frozen_encoder
    from cladec_cli.layers import resolve_layer
    from cladec_cli.refae import build_refae

    classifier, _ = load_classifier(trained["classifier"])
    trainable_before = len(classifier.trainable_weights)
    layer = resolve_layer(classifier, -2)
    frozen_encoder(classifier, layer)
    assert len(classifier.trainable_weights) < trainable_before
    encoder = build_refae(classifier, layer).get_layer("refae_encoder")
    assert len(encoder.trainable_weights) > 0
    assert len(encoder.trainable_weights) == len([w for w in encoder.weights if "moving" not in w.path])


@pytest.fixture(scope="module")
def fused(setup, tmp_path_factory):
    """RefAEs for block4 and layer -2 trained in one pass, with the settings of `refae`."""
    classifier, provenance, data = setup
    root = tmp_path_factory.mktemp("fused_refae")
    outs = [root / "block4.h5", root / "block5.h5"]
    results = train_refaes(classifier, provenance, data, ["block4", -2],
                           TrainSettings(epochs=1, batch_size=32, seed=0, verbose=0), outs)
    return results, outs


def test_fused_refaes_one_file_each_like_a_single_run(fused, refae, setup):
    classifier, _, data = setup
    results, outs = fused
    for (model, record), out, (name, index) in zip(results, outs, [("block4", -3), ("block5", -2)]):
        group = read_group(out)
        assert group == json.loads(json.dumps(record))
        assert group["kind"] == "refae" and (group["layer_name"], group["layer_index"]) == (name, index)
        assert group["classifier_digest"] == artifacts.weights_digest(classifier)
        assert group["metrics"]["train_loss"] > 0
        loaded = keras.models.load_model(out)
        assert group["digest"] == artifacts.weights_digest(loaded)
        np.testing.assert_array_equal(loaded.predict(data.test.images, verbose=0),
                                      model.predict(data.test.images, verbose=0))
    single_model, single_record, single_out = refae
    assert keras.models.load_model(outs[0]).get_config() == keras.models.load_model(single_out).get_config()
    # Same seed, data order and starting weights: the one-pass RefAE is the one a separate run trains.
    assert results[0][1]["metrics"]["test_rec_loss"] == pytest.approx(single_record["metrics"]["test_rec_loss"],
                                                                      rel=1e-3)


def test_fused_refaes_keep_their_own_encoders(fused):
    (first, _), (second, _) = fused[0]
    ids = {id(w) for w in first.weights}
    assert not any(id(w) in ids for w in second.weights)
    conv = [m.get_layer("refae_encoder").weights[0] for m in (first, second)]
    assert not np.array_equal(np.asarray(conv[0]), np.asarray(conv[1]))


def test_under_float16_fused_refaes_are_those_trained_alone(setup, tmp_path):
    # As for ClaDec decoders (tests/test_cladec.py): one loss scale for a fused pass would skip a step
    # for both RefAEs whenever one overflows.
    _, _, data = setup
    classifier = loud_classifier()
    half = TrainSettings(epochs=2, batch_size=32, seed=0, verbose=0, precision="float16")
    layers = ["quiet", -1]
    together = train_refaes(classifier, None, data, layers, half, [tmp_path / "q.h5", tmp_path / "l.h5"])
    for layer, (model, record) in zip(layers, together):
        alone, alone_record = train_refae(classifier, None, data, layer, half, tmp_path / f"alone_{layer}.h5")
        for a, b in zip(model.get_weights(), alone.get_weights()):
            np.testing.assert_array_equal(a, b)
        assert record["metrics"]["test_rec_loss"] == alone_record["metrics"]["test_rec_loss"]


def test_refae_keeps_the_statistics_of_an_adapted_normalization(tmp_path):
    from cladec_cli.layers import resolve_layer
    from cladec_cli.refae import build_refae

    images = np.random.default_rng(0).random((64, 8, 8, 1)).astype(np.float32) * 0.2 + 0.5
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(images)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(norm(inputs))
    classifier = keras.Model(inputs, keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(h)))
    classifier.save(tmp_path / "c.keras")
    classifier = keras.models.load_model(tmp_path / "c.keras")
    refae = build_refae(classifier, resolve_layer(classifier, "conv"))
    copy = next(layer for layer in refae._flatten_layers() if layer.name == "norm")
    kept = [np.asarray(w) for w in copy.get_weights()]
    np.testing.assert_allclose(kept[0], [0.6], rtol=1e-2)
    for theirs, ours in zip(classifier.get_layer("norm").get_weights(), kept):
        np.testing.assert_array_equal(theirs, ours)
    # What the copy computes uses them: normalised images have mean 0 and variance 1.
    normalised = np.asarray(copy(images))
    assert abs(normalised.mean()) < 1e-3 and abs(normalised.var() - 1) < 1e-2
    # The convolution after it is newly initialised, as a RefAE's encoder is.
    conv = next(layer for layer in refae._flatten_layers() if layer.name == "conv" and layer is not classifier.get_layer("conv"))
    assert not np.array_equal(conv.get_weights()[0], classifier.get_layer("conv").get_weights()[0])


def test_refae_batchnorm_statistics_from_the_training_images(refae, setup, tmp_path):
    classifier, provenance, data = setup
    model, record = train_refae(classifier, provenance, data, "block4",
                                TrainSettings(epochs=1, batch_size=32, seed=0, verbose=0), tmp_path / "data.h5",
                                bn_statistics="data")
    assert record["bn_statistics"] == "data" and refae[1]["bn_statistics"] == "moving"

    def cut(trained):  # the flat part of the encoder that holds the BatchNorm layers ([0, 1] images here)
        return next(layer for layer in refae_encoder(trained).layers if is_submodel(layer))

    assert_normalised(cut(model), data.train.images)
    with pytest.raises(AssertionError):  # a short run's moving statistics are not the data's
        assert_normalised(cut(refae[0]), data.train.images)
    assert record["metrics"]["test_rec_loss"] == pytest.approx(
        rec_loss(data.test.images, model.predict(data.test.images, verbose=0)), rel=1e-4)


def test_moving_statistics_are_suspected_only_of_a_batchnorm_encoder_testing_much_worse_than_it_trained():
    with_bn = quadrant_classifier(first=keras.layers.BatchNormalization(name="bn"))
    refae = build_refae(with_bn, resolve_layer(with_bn, "quadrants"))
    record = {"bn_statistics": "moving", "metrics": {"test_rec_loss": 90.0, "train_loss": 45.0}}
    assert statistics_may_lag(refae, record) == 2.0
    assert statistics_may_lag(refae, {**record, "metrics": {"test_rec_loss": 60.0, "train_loss": 45.0}}) is None
    assert statistics_may_lag(refae, {**record, "bn_statistics": "data"}) is None
    assert statistics_may_lag(refae, {**record, "rec_loss": "bce"}) is None  # another unit than the test's SSE
    without = quadrant_classifier()
    assert statistics_may_lag(build_refae(without, resolve_layer(without, "quadrants")), record) is None


def test_a_refae_leaves_the_classifiers_augmentation_out_and_an_acc_eval_copy_keeps_it():
    from cladec_cli.classifier import fresh_copy
    from cladec_cli.custom_objects import every_operation
    from test_layers import augmented_classifier

    classifier = augmented_classifier()
    refae = build_refae(classifier, resolve_layer(classifier, "conv2"))
    encoder = refae_encoder(refae)
    kinds = {layer.name: type(layer).__name__ for layer in every_operation(encoder)}
    assert kinds["flip"] == kinds["rotate"] == "Identity" and kinds["conv"] == "Conv2D"
    images = np.random.default_rng(0).random((4, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(encoder(images, training=True)),
                               keras.ops.convert_to_numpy(encoder(images, training=False)), rtol=1e-6, atol=1e-6)
    copy = fresh_copy(classifier)  # an Acc Eval classifier trains as the architecture does, augmented
    assert [type(copy.get_layer(n)).__name__ for n in ("flip", "rotate")] == ["RandomFlip", "RandomRotation"]
