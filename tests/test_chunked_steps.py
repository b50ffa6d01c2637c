"""Chunked training steps: several batches per compiled call train exactly as one batch per call."""

import keras
import numpy as np
import pytest

from cladec_cli import chunked_steps, runtime
from cladec_cli.classifier import build_classifier, fit_classifier
from cladec_cli.cladec import train_decoder
from cladec_cli.data.datasets import load_dataset
from cladec_cli.data.feed import ArrayFeed
from cladec_cli.training import TrainSettings, compile_model, fit, start


@pytest.fixture(scope="module")
def tiny(npz_dataset):
    return load_dataset(npz_dataset)


def trained_classifier(tiny, steps, epochs=2, xla="auto", deterministic=None):
    settings = TrainSettings(epochs=epochs, batch_size=32, seed=5, verbose=0, steps_per_execution=steps,
                             precision="float32", xla=xla, deterministic=deterministic)
    keras.utils.set_random_seed(5)
    model = build_classifier(tiny.image_shape, tiny.n_classes)
    history = fit_classifier(model, tiny.train, settings)
    return model, history


def test_chunks_train_like_single_batches(tiny):
    # 240 training images in batches of 32: chunks of 3 batches leave a last chunk of 2 full batches
    # and one of 16 images, so the remainder path is taken too.
    single, single_history = trained_classifier(tiny, 1)
    chunked, chunked_history = trained_classifier(tiny, 3)
    # One optimizer step per batch (8 an epoch), not one per chunk.
    assert int(chunked.optimizer.iterations) == int(single.optimizer.iterations) == 2 * 8
    np.testing.assert_allclose(single_history["loss"], chunked_history["loss"], rtol=1e-5)
    # A conv bias in front of BatchNorm gets a zero gradient up to rounding, which Adam blows up to
    # full steps; BatchNorm's moving mean follows it and cancels it. Those two differ by compilation
    # under XLA; every other weight, BatchNorm's moving variance included, must match, and so must
    # the outputs.
    for variable, a, b in zip(single.weights, single.get_weights(), chunked.get_weights()):
        if not variable.path.endswith(("conv/bias", "moving_mean")):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=variable.path)
    images = tiny.test.images[:64].astype("float32")
    np.testing.assert_allclose(single.predict(images, verbose=0), chunked.predict(images, verbose=0), atol=1e-2)


@pytest.mark.parametrize("alpha, cache", [(0.0, "no"), (0.99, "yes")])
def test_a_chunked_decoder_matches_the_unchunked_one(tmp_path, setup, alpha, cache):
    classifier, provenance, tiny = setup
    losses = []
    for steps in (1, 4):
        settings = TrainSettings(epochs=1, batch_size=32, seed=2, verbose=0, steps_per_execution=steps)
        _, record = train_decoder(classifier, provenance, tiny, -1, alpha, settings, tmp_path / f"d{steps}.h5",
                                  cache_codes=cache)
        losses.append(record["metrics"]["test_rec_loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_fused_decoders_log_each_ones_training_loss_in_chunks_as_without(tmp_path, setup):
    """Several outputs, each with its own loss: the chunk's logs (Keras' metrics under TensorFlow) give
    each decoder's training loss as unchunked training does."""
    from cladec_cli.cladec import train_decoders

    classifier, provenance, tiny = setup
    trained = []
    for steps in (1, 4):
        settings = TrainSettings(epochs=2, batch_size=32, seed=2, verbose=0, steps_per_execution=steps)
        outs = [tmp_path / f"s{steps}_{i}.h5" for i in (1, 2)]
        trained.append([record["metrics"] for _, record in train_decoders(classifier, provenance, tiny, [-1, -2], 0.0,
                                                                             settings, outs)])
    for single, chunked in zip(*trained):
        assert single["train_loss"] == pytest.approx(chunked["train_loss"], rel=1e-4)
        assert single["test_rec_loss"] == pytest.approx(chunked["test_rec_loss"], rel=1e-4)
    assert trained[0][0]["train_loss"] != pytest.approx(trained[0][1]["train_loss"], rel=1e-3)  # two decoders' own


@pytest.mark.skipif(keras.backend.backend() != "tensorflow" or runtime.current_device().is_gpu,
                    reason="TensorFlow's chunks loop inside XLA on a CPU")
def test_under_tensorflow_with_xla_on_a_cpu_keras_loops_over_the_steps(tiny):
    # A chunk's loop compiled by XLA:CPU took about 1 s a call against 16 ms a step.
    model, _ = trained_classifier(tiny, 3, epochs=1, xla="on", deterministic=False)
    assert "train_step" not in vars(model)  # not chunked
    assert model.steps_per_execution == 3
    assert int(model.optimizer.iterations) == 8


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's chunks loop inside XLA")
@pytest.mark.parametrize("images", [40, 44])
def test_under_tensorflow_on_a_gpu_chunks_loop_inside_xla_and_train_like_single_batches(monkeypatch, images):
    """The GPU path (XLA's rolled loop), run on this CPU by pretending it is a GPU. An epoch ending in a
    shorter batch (44 images) is left to Keras' loop: XLA would pad that batch with zeros in a chunk."""
    monkeypatch.setattr(runtime, "current_device", lambda: runtime.Device("GPU", "GPU:0 (pretend)", 9.0))
    rng = np.random.default_rng(0)
    x, y = rng.random((images, 6, 6, 1), np.float32), rng.integers(0, 3, images)
    trained = []
    for steps in (1, 3):
        settings = TrainSettings(epochs=2, batch_size=8, seed=1, verbose=0, steps_per_execution=steps,
                                 precision="float32", xla="on", deterministic=False)
        start(settings)  # determinism off, as a GPU run has it: Keras compiles without XLA under it
        model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                                  keras.layers.Dense(3)])
        data = ArrayFeed(x, y, 8, shuffle=True, seed=1)
        compile_model(model, settings, data, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        trained.append((model, fit(model, data, settings)))
    (single, single_history), (chunked, chunked_history) = trained
    if images == 40:
        assert "train_step" in vars(chunked) and chunked.steps_per_execution == 1 and chunked.jit_compile
    else:
        assert "train_step" not in vars(chunked) and chunked.steps_per_execution == 3 and chunked.jit_compile
    assert int(chunked.optimizer.iterations) == int(single.optimizer.iterations) == 2 * 5 + 2 * (images == 44)
    np.testing.assert_allclose(single_history["loss"], chunked_history["loss"], rtol=1e-5)
    for a, b in zip(single.get_weights(), chunked.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data is TensorFlow's")
def test_under_tensorflow_chunks_come_through_tf_data_without_autotuning(tiny, monkeypatch):
    import tensorflow as tf

    fed = []
    keras_fit = keras.Model.fit

    def spy(model, data, *args, **kwargs):
        fed.append(data)
        return keras_fit(model, data, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    model, _ = trained_classifier(tiny, 3, epochs=1)
    assert isinstance(fed[0], tf.data.Dataset) and fed[0].options().autotune.enabled is False
    # 240 images: chunks of 3 batches of 32, the last of 48 images.
    assert [len(x) for x, _ in fed[0]] == [96, 96, 48]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's chunks loop in a tf.while_loop")
def test_under_tensorflow_keras_own_step_is_traced_once_and_a_models_own_step_keeps_its_logs(tiny, monkeypatch):
    traced = []
    tensorflow_chunked = chunked_steps._tensorflow_chunked

    def counting(step, batch_size, metrics_result=None):
        return tensorflow_chunked(lambda data: traced.append(metrics_result is not None) or step(data), batch_size,
                                  metrics_result)

    monkeypatch.setattr(chunked_steps, "_tensorflow_chunked", counting)
    trained_classifier(tiny, 3, epochs=1)
    assert traced and all(traced)
    with_metrics = len(traced)

    class OwnStep(keras.Model):  # a train_step of its own: its logs come from it, so its last step runs apart
        def train_step(self, data):
            return {**super().train_step(data), "own": 1.0}

    inputs = keras.Input(tiny.image_shape)
    model = OwnStep(inputs, keras.layers.Dense(tiny.n_classes)(keras.layers.Flatten()(inputs)))
    settings = TrainSettings(epochs=1, batch_size=32, seed=5, steps_per_execution=3, verbose=0)
    data = tiny.train.dataset(32, shuffle=True, seed=5)
    compile_model(model, settings, data, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    traced.clear()
    history = fit(model, data, settings)
    assert traced and not any(traced) and len(traced) == 2 * with_metrics
    assert history["own"] == [1.0]


def test_chunk_feed_serves_the_same_items_in_the_same_order():
    x = np.arange(50, dtype=np.float32)[:, None]
    feed = ArrayFeed(x, x, 4, shuffle=True, seed=3, start_epoch=2)
    chunks = feed.in_chunks(3)
    assert len(chunks) == 5
    batches = np.concatenate([feed[i][0] for i in range(len(feed))])
    in_chunks = np.concatenate([chunks[i][0] for i in range(len(chunks))])
    np.testing.assert_array_equal(batches, in_chunks)


def test_install_replaces_a_train_function_made_before():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((4, 2)), np.zeros((4, 1)), verbose=0)
    assert model.train_function is not None
    chunked_steps.install(model, 2, on_gpu=False)
    assert model.train_function is None


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="device-resident chunks are for JAX")
def test_chunks_on_the_device_hold_the_same_items():
    import jax

    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20)
    feed = ArrayFeed(x, y, 4, shuffle=True, seed=1)
    on_device = feed.in_chunks(2, on_device=True)
    assert isinstance(on_device.inputs, jax.Array)
    np.testing.assert_array_equal(np.asarray(on_device[1][0]), np.concatenate([feed[2][0], feed[3][0]]))
    np.testing.assert_array_equal(np.asarray(on_device[1][1]), np.concatenate([feed[2][1], feed[3][1]]))


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="device-resident chunks are for JAX")
def test_training_from_device_resident_chunks_matches(tiny, monkeypatch):
    # The device-resident path is taken on GPUs; JAX's CPU device runs the same code.
    single, single_history = trained_classifier(tiny, 1)
    monkeypatch.setattr(runtime, "current_device", lambda: runtime.Device("GPU", "GPU:0 (pretend)", 9.0))
    resident, resident_history = trained_classifier(tiny, 3)
    np.testing.assert_allclose(single_history["loss"], resident_history["loss"], rtol=1e-5)
    assert int(resident.optimizer.iterations) == int(single.optimizer.iterations)
