"""BatchNorm moving statistics from data: inference-mode activations come out normalised."""

import keras
import numpy as np
import pytest
from keras.ops import convert_to_numpy

from cladec_cli.architectures import build_classifier
from cladec_cli.batchnorm import batchnorm_layers, statistics_from_data
from conftest import invoke, read_group, synthetic_images


def assert_normalised(model, images):
    """Every BatchNorm directly in `model` turns its inputs over `images` into mean beta, std gamma."""
    for layer in [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]:
        out = convert_to_numpy(keras.Model(model.inputs[0], layer.output)(images, training=False))
        out = out.reshape(-1, out.shape[-1])
        gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
        np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-3)
        busy = layer.moving_variance.numpy() > 1e-2  # epsilon 1e-3 shrinks near-constant channels
        np.testing.assert_allclose(out.var(axis=0)[busy], np.square(gamma)[busy], rtol=0.1)


def test_statistics_from_data_normalise_every_batchnorm_in_inference_mode():
    keras.utils.set_random_seed(0)
    model = build_classifier((32, 32, 1), 4)
    images = synthetic_images(300)[0].astype("float32") / 255.0
    assert statistics_from_data(model, images, batch_size=128) == 5
    for layer in batchnorm_layers(model):
        assert float(np.abs(layer.moving_mean.numpy()).max()) > 0  # no longer the initial 0
    assert_normalised(model, images)  # gamma 1, beta 0 when untrained: mean 0, variance 1


def test_statistics_from_data_do_not_count_the_padding_of_a_shorter_last_batch():
    def statistics(batch_size):
        keras.utils.set_random_seed(0)
        model = build_classifier((32, 32, 1), 4)
        statistics_from_data(model, images, batch_size=batch_size)
        return [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in batchnorm_layers(model)]

    images = synthetic_images(300)[0].astype("float32") / 255.0
    for (mean, variance), (whole_mean, whole_variance) in zip(statistics(128), statistics(300)):
        np.testing.assert_allclose(mean, whole_mean, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(variance, whole_variance, rtol=1e-4, atol=1e-6)


def test_statistics_from_data_reach_batchnorm_inside_a_nested_model():
    keras.utils.set_random_seed(0)
    inner = build_classifier((32, 32, 1), 4)
    inputs = keras.Input((32, 32, 1))
    outer = keras.Model(inputs, inner(keras.layers.Rescaling(2.0)(inputs)))
    images = synthetic_images(300)[0].astype("float32") / 255.0
    assert statistics_from_data(outer, images, batch_size=128) == 5
    assert_normalised(inner, images * 2.0)


def test_train_classifier_records_batchnorm_statistics_from_data(tmp_path, npz_dataset):
    invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 0, "--bn-statistics", "data", "-q",
           "--out", tmp_path / "data.h5")
    invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 0, "-q", "--out", tmp_path / "moving.h5")
    assert read_group(tmp_path / "data.h5")["bn_statistics"] == "data"
    assert read_group(tmp_path / "moving.h5")["bn_statistics"] == "moving"
    data = keras.models.load_model(tmp_path / "data.h5", compile=False)
    moving = keras.models.load_model(tmp_path / "moving.h5", compile=False)
    assert np.abs(data.get_layer("block1_bn").moving_mean.numpy()).max() > 0
    assert np.all(moving.get_layer("block1_bn").moving_mean.numpy() == 0)


def test_statistics_from_data_are_refused_for_streamed_splits_naming_the_option_that_chose_them(tmp_path):
    from cladec_cli.batchnorm import check_choice
    from cladec_cli.data.split import Split
    from cladec_cli.errors import UsageError, for_cli

    held = Split(np.zeros(2, np.int64), (4, 4, 1), images=np.zeros((2, 4, 4, 1), np.float32))
    streamed = Split(np.zeros(2, np.int64), (4, 4, 1), paths=np.array([str(tmp_path / "a.png")] * 2))
    check_choice("data", held)
    check_choice("moving", held, streamed)
    with pytest.raises(UsageError) as refused:
        check_choice("data", held, streamed, name="eval_bn_statistics")
    assert for_cli(refused.value).startswith("--eval-bn-statistics data: BatchNorm statistics from data need a "
                                             "dataset held in memory")


def _mobilenet_in_a_sequential_model():
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35)
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(2.0, offset=-1.0), base,
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dropout(0.5), keras.layers.Dense(4)])


@pytest.mark.parametrize("build", [lambda: build_classifier((32, 32, 1), 4), _mobilenet_in_a_sequential_model],
                         ids=["paper", "mobilenet-nested"])
def test_one_sweep_sets_the_statistics_that_a_model_cut_at_each_batchnorm_gives(build, monkeypatch):
    from cladec_cli import memory

    def statistics(hold_limit):
        monkeypatch.setattr(memory, "hold_limit", lambda: hold_limit)
        keras.utils.set_random_seed(0)
        model = build()
        set_layers = statistics_from_data(model, images, batch_size=64)
        return set_layers, [(convert_to_numpy(layer.moving_mean), convert_to_numpy(layer.moving_variance))
                            for layer in batchnorm_layers(model)]

    channels = build().inputs[0].shape[-1]
    images = np.repeat(synthetic_images(150)[0].astype("float32") / 255.0, channels, axis=-1)
    swept_count, swept = statistics(2 ** 40)
    cut_count, cut = statistics(0)
    assert swept_count == cut_count == len(swept) > 4
    for (mean, variance), (cut_mean, cut_variance) in zip(swept, cut):
        np.testing.assert_allclose(mean, cut_mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(variance, cut_variance, rtol=1e-4, atol=1e-5)
        assert float(np.abs(mean).max()) > 0
