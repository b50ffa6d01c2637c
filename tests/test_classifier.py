"""Training, saving and reloading the classifier to be explained."""

import json
import warnings

import h5py
import keras
import numpy as np
import pytest

from cladec_cli import artifacts, runtime
from cladec_cli.architectures import build_classifier
from cladec_cli.classifier import (accuracy, check_fits, classification_loss, load_classifier, outputs_probabilities,
                                   train_classifier)
from cladec_cli.data.datasets import load_dataset
from cladec_cli.errors import DataError, UsageError
from cladec_cli.training import TrainSettings
from conftest import N_CLASSES, write_npz

# Inference uses BatchNorm's moving statistics, which need some dozens of steps to settle (the
# session's 240-image set gives only 24 steps in 3 epochs and stays at chance): 960 images at batch 32
# for 3 epochs give 90 steps.
N_TRAIN = 960


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    path = write_npz(tmp_path_factory.mktemp("learnable") / "data.npz", n_train=N_TRAIN, n_test=80)
    return load_dataset(f"npz:{path}")


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory, learnable):
    out = tmp_path_factory.mktemp("classifier") / "classifier.h5"
    settings = TrainSettings(epochs=3, batch_size=32, seed=0, verbose=0)
    model, record = train_classifier(learnable, settings, out)
    return model, record, out


def read_group(path):
    with h5py.File(path, "r") as f:
        return {key: json.loads(value) for key, value in f["cladec"].attrs.items()}


def test_learns_above_chance(trained_classifier, learnable):
    model, record, _ = trained_classifier
    test_accuracy = record["metrics"]["test_accuracy"]
    assert test_accuracy > 0.6, f"chance is {1 / N_CLASSES}"
    assert test_accuracy == pytest.approx(accuracy(model, learnable.test))
    assert record["metrics"]["train_loss"] < np.log(N_CLASSES)  # below the cross-entropy of guessing


def test_plain_load_gives_identical_predictions(trained_classifier, learnable):
    model, _, out = trained_classifier
    loaded = keras.models.load_model(out)  # no custom objects needed
    x = learnable.test.images
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert artifacts.weights_digest(loaded) == artifacts.weights_digest(model)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_provenance_in_hdf5_group(trained_classifier, learnable):
    model, record, out = trained_classifier
    group = read_group(out)
    assert group["kind"] == "classifier"
    assert group["dataset"] == learnable.name
    assert group["seed"] == 0 and group["epochs"] == 3 and group["batch_size"] == 32
    assert group["digest"] == artifacts.weights_digest(model)
    assert group["metrics"]["test_accuracy"] == pytest.approx(record["metrics"]["test_accuracy"])
    assert group["class_names"] == ["top-left", "top-right", "bottom-left", "bottom-right"]
    assert group["image_shape"] == [32, 32, 1]
    assert group["resize"] == "bilinear"
    assert group["arch"] == "paper"
    assert group == json.loads(json.dumps(record))
    assert artifacts.read_provenance(out) == group


def test_load_classifier(trained_classifier):
    model, record, out = trained_classifier
    loaded, provenance = load_classifier(out)
    assert provenance["digest"] == artifacts.weights_digest(loaded) == record["digest"]


def test_untrained_classifier(tmp_path, npz_dataset):
    data = load_dataset(npz_dataset)
    out = tmp_path / "untrained.h5"
    model, record = train_classifier(data, TrainSettings(epochs=0, batch_size=32, seed=5, verbose=0), out)
    assert out.is_file()
    group = read_group(out)
    assert group["epochs"] == 0 and group["seed"] == 5
    assert group["metrics"]["train_loss"] is None
    runtime.seed_everything(5)
    fresh = build_classifier((32, 32, 1), N_CLASSES)
    loaded = keras.models.load_model(out)
    predicted = loaded.predict(data.test.images, verbose=0).argmax(axis=1)
    assert group["metrics"]["test_accuracy"] == pytest.approx(np.mean(predicted == data.test.labels))
    assert artifacts.weights_digest(loaded) == artifacts.weights_digest(fresh) == group["digest"]
    bn = loaded.get_layer("block3_bn")
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), 0.0)
    np.testing.assert_array_equal(np.asarray(bn.moving_variance), 1.0)


def test_existing_output_is_refused(tmp_path, npz_dataset):
    data = load_dataset(npz_dataset)
    out = tmp_path / "c.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="already exists"):
        train_classifier(data, TrainSettings(epochs=0, verbose=0), out)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(UsageError, match=r"\.h5"):
        train_classifier(data, TrainSettings(epochs=0, verbose=0), tmp_path / "c.keras")


def test_check_fits(npz_dataset):
    data = load_dataset(npz_dataset)
    check_fits(build_classifier((32, 32, 1), N_CLASSES), data)
    with pytest.raises(DataError, match="expects 28x28x1"):
        check_fits(build_classifier((28, 28, 1), N_CLASSES), data)
    with pytest.raises(DataError, match="4 classes"):
        check_fits(build_classifier((32, 32, 1), 3), data)


def heads():
    """Classifiers (8x8 gray input) with their true output kind: nested, Sequential and plain heads."""
    inputs = keras.Input((8, 8, 1))
    backbone_in = keras.Input((8, 8, 1))
    backbone = keras.Model(backbone_in, keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(backbone_in)),
                           name="backbone")
    features = backbone(inputs)
    head_in = keras.Input(features.shape[1:])
    softmax_head = keras.Model(head_in, keras.layers.Softmax()(keras.layers.Dense(4)(head_in)), name="head")
    logits_head = keras.Model(head_in, keras.layers.Dense(4)(head_in), name="logits_head")
    sequential_head = keras.Sequential([keras.Input(features.shape[1:]), keras.layers.Dense(4, activation="softmax"),
                                        keras.layers.Dropout(0.1)], name="seq_head")
    dense = keras.layers.Dense(4)(features)
    return {
        "nested softmax head": (keras.Model(inputs, softmax_head(features)), True),
        "nested Sequential head with a softmax Dense": (keras.Model(inputs, sequential_head(features)), True),
        "nested logits head": (keras.Model(inputs, logits_head(features)), False),
        "softmax activation, then a reshape": (keras.Model(inputs, keras.layers.Reshape((4,))(
            keras.layers.Activation("softmax")(dense))), True),
        "softmax op": (keras.Model(inputs, keras.ops.softmax(dense)), True),
        "softmax Dense, then a logits Dense": (keras.Model(inputs, keras.layers.Dense(4)(
            keras.layers.Dense(4, activation="softmax")(features))), False),
        "logits": (keras.Model(inputs, dense), False),
        "logits cast to float32 (an op)": (keras.Model(inputs, keras.ops.cast(dense, "float32")), False),
        "log-softmax op": (keras.Model(inputs, keras.ops.log_softmax(dense)), False),
        "softmax, then divided (an op)": (keras.Model(inputs, keras.ops.softmax(dense) / 1.0), True),
        "Sequential with a Softmax layer": (keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                                              keras.layers.Dense(4), keras.layers.Softmax()]), True),
    }


@pytest.mark.parametrize("name", list(heads()))
def test_probabilities_are_read_from_the_graph(name, tmp_path):
    model, probabilities = heads()[name]
    assert outputs_probabilities(model) is probabilities
    assert classification_loss(model).get_config()["from_logits"] is not probabilities
    path = tmp_path / "model.keras"  # the legacy .h5 format does not keep ops in a graph
    model.save(path)
    assert outputs_probabilities(load_classifier(path)[0]) is probabilities


def test_a_classifier_at_chance_is_warned_about_in_python_too(tmp_path, npz_dataset):
    # From a notebook a wrong pixel range or class order would otherwise go unnoticed: a Python warning says it.
    from cladec_cli.cladec import train_decoder
    from cladec_cli.errors import CladecWarning
    from conftest import quadrant_classifier

    rolled = quadrant_classifier()
    rolled.get_layer("logits").set_weights([np.roll(np.eye(4, dtype=np.float32) * 10, 1, axis=1), np.zeros(4)])
    data = load_dataset(npz_dataset)
    settings = TrainSettings(epochs=0, batch_size=32, verbose=0)
    with pytest.warns(CladecWarning, match=r"about chance for 4 classes: unless it is untrained, check that "
                                           r"`pixel_range` \(0,1\), `resize` and the order of the classes"):
        train_decoder(rolled, None, data, -1, 0.0, settings, tmp_path / "d.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CladecWarning)
        train_decoder(quadrant_classifier(), None, data, -1, 0.0, settings, tmp_path / "right.h5")
    # Nor for a classifier whose record says it was left untrained.
    with warnings.catch_warnings():
        warnings.simplefilter("error", CladecWarning)
        train_decoder(rolled, {"epochs": 0}, data, -1, 0.0, settings, tmp_path / "untrained.h5")


def _nested_head(h):
    inputs = keras.Input(h.shape[1:])
    return keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3)(inputs)), name="head")(h)


@pytest.mark.parametrize("step, name", [
    (lambda p: keras.ops.clip(p, 1e-7, 1.0), "clip"),  # clipped logits would pass no gradient
    (lambda p: keras.ops.log(p), "log"),  # a log of logits is NaN
    (lambda p: keras.layers.Activation("relu", name="after")(p), "after"),
])
def test_no_logits_are_made_up_behind_a_step_that_changes_the_softmaxs_values(step, name):
    from cladec_cli.classifier import logits_model

    inputs = keras.Input((4,))
    model = keras.Model(inputs, step(keras.layers.Dense(3, activation="softmax")(inputs)), name="classifier")
    with pytest.raises(UsageError, match=rf"cannot find the logits in front of 'classifier''s softmax \({name}(_\d+)? "
                                         r"is neither the softmax nor a step that passes its values on unchanged\)"):
        logits_model(model)


def test_the_logits_in_front_of_tensorflows_own_softmax_function():
    tf = pytest.importorskip("tensorflow")
    from cladec_cli.classifier import logits_model

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Activation(tf.nn.softmax)(keras.layers.Dense(3)(inputs)))  # softmax_v2
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits_model(model).predict(x, verbose=0))),
                               model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head", [
    lambda h: keras.layers.Dense(3, activation="softmax")(h),
    lambda h: keras.layers.Softmax()(keras.layers.Dense(3)(h)),
    lambda h: keras.layers.Activation("softmax")(keras.layers.Dense(3)(h)),
    lambda h: keras.ops.softmax(keras.layers.Dense(3)(h)),  # an operation, not a layer: not in model.layers
    lambda h: keras.Sequential([keras.layers.Dense(3, activation="softmax")], name="head")(h),
    _nested_head,
    lambda h: keras.layers.Reshape((3,))(keras.layers.Dropout(0.5)(keras.layers.Dense(3, activation="softmax")(h))),
    lambda h: keras.ops.reshape(keras.ops.softmax(keras.layers.Dense(3)(h)), (-1, 3)),
])
@pytest.mark.parametrize("wrapped", [False, True], ids=["alone", "wrapped"])
def test_the_logits_in_front_of_every_kind_of_softmax(head, wrapped):
    """Also where the softmax is inside a nested model, follows weightless steps, or the whole classifier
    is wrapped in another model; the classifier's graph is left as it was."""
    from cladec_cli.classifier import logits_model
    from cladec_cli.custom_objects import every_operation

    inputs = keras.Input((4,))
    model = keras.Model(inputs, head(keras.layers.Dense(5, activation="relu")(inputs)), name="classifier")
    if wrapped:
        outer = keras.Input((4,))
        model = keras.Model(outer, model(outer), name="wrapper")

    def nodes(m):
        return {id(operation): len(operation._inbound_nodes) for operation in [m, *every_operation(m)]}

    before = nodes(model)
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    logits = logits_model(model).predict(x, verbose=0)
    assert nodes(model) == before
    assert not np.allclose(logits.sum(axis=1), 1.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits)), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
