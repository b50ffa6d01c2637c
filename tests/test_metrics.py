"""Measures on cases with a known answer."""

import keras
import numpy as np
import pytest

from cladec_cli import artifacts
from cladec_cli.classifier import fit_classifier, fresh_copy
from cladec_cli.data.split import Split
from cladec_cli.errors import UsageError
from cladec_cli.metrics import acc_eval, acc_evals, agreement, rec_loss, side_by_side
from cladec_cli.reconstruction import per_image_sse
from cladec_cli.training import TrainSettings, start
from conftest import flipped, held_split, quadrant_classifier, small_conv_classifier, synthetic_images

# Enough for the quadrant classifier's Dense to learn any consistent labelling of the quadrants.
EVAL = TrainSettings(epochs=3, batch_size=16, lr=0.1, verbose=0)


@pytest.fixture(scope="module")
def images():
    x, y = synthetic_images(320, seed=5)
    return x.astype(np.float32) / 255.0, y


@pytest.fixture(scope="module")
def classify():
    classifier = quadrant_classifier()
    return lambda a: classifier.predict(a, verbose=0).argmax(axis=1)


def test_the_quadrant_classifier_knows_the_answer(images, classify):
    x, y = images
    np.testing.assert_array_equal(classify(x), y)
    np.testing.assert_array_equal(classify(flipped(x)), 3 - y)


def test_agreement_with_a_classifier(images, classify):
    x, y = images
    assert agreement(classify, x, x.copy()) == 1.0
    assert agreement(classify, x, flipped(x)) == 0.0
    half = x.copy()
    half[:80] = flipped(x[:80])  # a quarter of the images changes class
    assert agreement(classify, x, half) == pytest.approx(0.75)
    # Given the original classes, they are used instead of predicting the originals again.
    assert agreement(classify, x, half, original_classes=3 - y) == pytest.approx(0.25)


def test_rec_loss_is_per_image_sum_of_squares(images):
    x, _ = images
    assert rec_loss(x, x.copy()) == 0.0
    zeros = np.zeros_like(x)
    expected = np.mean([np.sum(np.square(img.astype(np.float64))) for img in x])
    assert rec_loss(x, zeros) == pytest.approx(expected)
    assert per_image_sse(x[:1], x[:1] + 0.5)[0] == pytest.approx(0.25 * x[0].size)
    assert rec_loss(x, flipped(x)) == pytest.approx(np.mean(np.sum(np.square(x - flipped(x)), axis=(1, 2, 3))))


def test_agreement_counts_changed_predictions():
    x = np.arange(10)
    assert agreement(lambda a: a % 3, x, x + 3) == 1.0
    assert agreement(lambda a: a, x, np.where(x < 4, x, -1)) == pytest.approx(0.4)


def test_acc_eval_trains_and_tests_on_the_reconstructions(images):
    x, y = images
    train, test = slice(0, 240), slice(240, 320)
    # Flipped images with their true labels are a consistent task: a fresh classifier learns it.
    score, _ = acc_eval(quadrant_classifier(), flipped(x[train]), y[train], flipped(x[test]), y[test], EVAL)
    assert score == 1.0
    # Trained on the originals instead, it gets every flipped test image wrong.
    score, _ = acc_eval(quadrant_classifier(), x[train], y[train], flipped(x[test]), y[test], EVAL)
    assert score == 0.0
    # Constant reconstructions carry nothing: one class for all, a quarter right.
    constant = np.full_like(x, 0.5)
    score, _ = acc_eval(quadrant_classifier(), constant[train], y[train], constant[test], y[test], EVAL)
    assert score == 0.25


def test_acc_eval_trains_a_fresh_copy_of_a_frozen_classifier(images):
    x, y = images
    classifier = quadrant_classifier()
    before = artifacts.weights_digest(classifier)
    classifier.trainable = False
    score, model = acc_eval(classifier, flipped(x[:240]), y[:240], flipped(x[240:]), y[240:], EVAL)
    assert len(model.trainable_weights) == 2 and score == 1.0
    assert artifacts.weights_digest(classifier) == before


@pytest.mark.parametrize("softmax", [True, False])
def test_acc_eval_loss_fits_the_classifiers_output(images, softmax):
    x, y = images
    inputs = keras.Input(x.shape[1:])
    features = keras.layers.Flatten()(keras.layers.AveragePooling2D(16)(inputs))
    head_in = keras.Input((4,))
    scores = keras.layers.Dense(4)(head_in)
    head = keras.Model(head_in, keras.layers.Softmax()(scores) if softmax else scores, name="head")
    classifier = keras.Model(inputs, head(features))
    _, losses, _ = side_by_side({"a": fresh_copy(classifier), "b": fresh_copy(classifier)})
    assert [loss.get_config()["from_logits"] for loss in losses.values()] == [not softmax] * 2


def trained_alone(build, images, labels, settings):
    """A fresh copy of the classifier `build()` makes, trained by itself as `train-classifier` trains one."""
    original = build()
    start(settings)
    model = fresh_copy(original)
    fit_classifier(model, Split(labels, (32, 32, 1), images=np.ascontiguousarray(images)), settings)
    return model


def test_classifiers_trained_side_by_side_are_those_trained_alone(images):
    x, y = images
    sources = {"flipped": flipped(x), "same": x, "dark": x * 0.5}
    settings = TrainSettings(epochs=2, batch_size=32, lr=0.01, verbose=0)
    together = acc_evals(small_conv_classifier(), {m: held_split(a, y, slice(0, 240)) for m, a in sources.items()},
                         {m: held_split(a, y, slice(240, 320)) for m, a in sources.items()}, settings)
    for method, images_of_method in sources.items():
        alone = trained_alone(small_conv_classifier, images_of_method[:240], y[:240], settings)
        for a, b in zip(together[method][1].get_weights(), alone.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        scores = alone.predict(images_of_method[240:], verbose=0)
        assert together[method][0] == float(np.mean(scores.argmax(axis=1) == y[240:]))


def test_under_float16_no_classifier_skips_a_step_for_another(images):
    # Gradients of images scaled by 1000 overflow float16; with one shared loss scale, the other
    # classifier's steps would be skipped with them.
    x, y = images
    sources = {"plain": x, "huge": x * 1000.0}
    settings = TrainSettings(epochs=2, batch_size=32, lr=0.01, verbose=0, precision="float16")

    def evaluated(classifier, methods):
        return acc_evals(classifier, {m: held_split(sources[m], y, slice(0, 240)) for m in methods},
                         {m: held_split(sources[m], y, slice(240, 320)) for m in methods}, settings)

    keras.mixed_precision.set_global_policy("mixed_float16")  # the copies keep their layers' policy
    try:
        inputs = keras.Input((32, 32, 1))
        dense = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Dense(16)(keras.layers.Flatten()(inputs))))
        together = evaluated(dense, list(sources))
        for method in sources:
            alone = evaluated(dense, [method])[method]
            for a, b in zip(together[method][1].get_weights(), alone[1].get_weights()):
                np.testing.assert_array_equal(a, b)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_side_by_side_refuses_splits_whose_labels_differ(images):
    x, y = images
    train = {"a": held_split(x, y, slice(0, 32)), "b": held_split(x, y[::-1].copy(), slice(0, 32))}
    with pytest.raises(ValueError, match="same labels"):
        acc_evals(small_conv_classifier(), train, train, TrainSettings(epochs=1, batch_size=16, verbose=0))


def _batchnorm_inputs(model, images):
    """(the BatchNorm layer of `model`, its inputs over `images` as one array per channel)."""
    layer = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    inputs = keras.Model(model.inputs[0], layer.input).predict(images, verbose=0)
    return layer, inputs.reshape(-1, inputs.shape[-1]).astype(np.float64)


def test_acc_eval_can_take_batchnorm_statistics_from_the_reconstructions_each_learned_from(images):
    x, y = images
    train = {"same": held_split(x, y, slice(0, 240)), "flipped": held_split(flipped(x), y, slice(0, 240))}
    test = dict.fromkeys(train, held_split(x, y, slice(240, 320)))
    settings = TrainSettings(epochs=1, batch_size=16, verbose=0)
    moving, data = (acc_evals(small_conv_classifier(), train, test, settings, bn_statistics=bn)
                    for bn in ("moving", "data"))
    for method, split in train.items():
        layer, inputs = _batchnorm_inputs(data[method].model, split.images)
        np.testing.assert_allclose(layer.moving_mean, inputs.mean(axis=0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance, inputs.var(axis=0), rtol=1e-4, atol=1e-6)
        # Keras' momentum 0.99 leaves the moving mean near its start after 15 steps; only the statistics differ.
        lagging, _ = _batchnorm_inputs(moving[method].model, split.images)
        assert not np.allclose(lagging.moving_mean, inputs.mean(axis=0), rtol=0.1)
        np.testing.assert_array_equal(lagging.gamma, layer.gamma)


def test_batchnorm_statistics_from_data_need_reconstructions_held_in_memory(images, tmp_path):
    x, y = images
    held = {"a": held_split(x, y, slice(0, 32))}
    settings = TrainSettings(epochs=1, batch_size=16, verbose=0)
    with pytest.raises(UsageError, match="need the reconstructions held in memory"):
        identity = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Identity()])
        acc_evals(small_conv_classifier(), held, held, settings, reconstructors={"a": identity}, bn_statistics="data")
    streamed = {"a": Split(y[:2], (32, 32, 1), paths=np.array([str(tmp_path / "a.png")] * 2))}
    with pytest.raises(UsageError, match="need a dataset held in memory"):
        acc_evals(small_conv_classifier(), streamed, streamed, settings, bn_statistics="data")
    with pytest.raises(UsageError, match="unknown BatchNorm statistics 'median'"):
        acc_evals(small_conv_classifier(), held, held, settings, bn_statistics="median")


def _shifted_learner():
    """A classifier with BatchNorm (Keras' momentum 0.99) after inputs shifted far below 0: in a short
    training its moving mean stays near 0 while its batches' is far below, so in inference mode every
    ReLU after it is off and the classifier names one class, while with its batches' statistics it
    learns the synthetic quadrants."""
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(8, 3, strides=4)(keras.layers.Rescaling(1.0, offset=-20.0)(inputs))
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(h)))


def test_batchnorm_lag_is_the_sample_accuracy_with_moving_and_with_the_samples_statistics(images, monkeypatch):
    import cladec_cli.metrics as metrics
    from cladec_cli.batchnorm import batchnorm_layers, statistics_from_data

    x, y = images
    split = held_split(x, y, slice(0, 64))
    model = _shifted_learner()
    statistics_from_data(model, split.images)
    fit_classifier(model, split, TrainSettings(epochs=3, batch_size=16, lr=0.01, verbose=0))
    statistics_from_data(model, split.images)
    right = float(np.mean(model.predict(split.images, verbose=0).argmax(axis=1) == split.labels))
    assert metrics.batchnorm_lag(model, split) is None  # statistics of its own data: nothing to gain
    layer = batchnorm_layers(model)[0]
    layer.moving_mean.assign(np.zeros(8, np.float32))  # as a short training leaves them
    wrong = float(np.mean(model.predict(split.images, verbose=0).argmax(axis=1) == split.labels))
    assert wrong <= right - 0.5
    assert metrics.batchnorm_lag(model, split) == (64, pytest.approx(wrong), pytest.approx(right))
    np.testing.assert_array_equal(layer.moving_mean, 0.0)  # its own statistics are put back
    layer.momentum = 0.9  # statistics of the last few dozen batches: after 66 steps nothing is left to lag
    assert metrics.batchnorm_lag(model, split, steps=66) is None
    assert metrics.batchnorm_lag(model, split, steps=65) == (64, pytest.approx(wrong), pytest.approx(right))
    monkeypatch.setattr(metrics, "LAG_MIN_GAIN", right - wrong + 0.01)
    assert metrics.batchnorm_lag(model, split) is None
    assert metrics.batchnorm_lag(quadrant_classifier(), split) is None  # no BatchNorm to lag


def test_an_acc_eval_classifier_whose_batchnorm_lags_is_found_and_one_with_statistics_from_data_is_not(images):
    x, y = images
    train = {"a": held_split(x, y, slice(0, 240)), "b": held_split(x * 0.9, y, slice(0, 240))}
    test = dict.fromkeys(train, held_split(x, y, slice(240, 320)))
    settings = TrainSettings(epochs=2, batch_size=16, lr=0.01, verbose=0)
    moving = acc_evals(_shifted_learner(), train, test, settings)
    alone = acc_evals(_shifted_learner(), {"a": train["a"]}, {"a": test["a"]}, settings)["a"]
    data = acc_evals(_shifted_learner(), train, test, settings, bn_statistics="data")
    for method in train:
        assert moving[method].lag.images == 240 and moving[method].lag.moving == moving[method].accuracy == 0.25
        assert moving[method].lag.data >= 0.9 and data[method].lag is None and data[method].accuracy >= 0.9
    assert alone.lag == moving["a"].lag  # trained beside another method or alone, the same classifier
