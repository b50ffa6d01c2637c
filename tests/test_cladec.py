"""ClaDec decoders: training variants, several layers in one pass, save/load round trips and provenance."""

import json
import re

import keras
import numpy as np
import pytest

from cladec_cli import artifacts
from cladec_cli.cladec import frozen_encoder, stacked, train_decoder, train_decoders, trainable_flags_kept
from cladec_cli.data.datasets import load_dataset
from cladec_cli.errors import DataError, UsageError
from cladec_cli.layers import resolve_layer
from cladec_cli.reconstruction import rec_loss
from cladec_cli.training import TrainSettings, backup_folder
from conftest import loud_classifier, read_group, small_conv_classifier, write_npz


def settings(**changes):
    return TrainSettings(**{"epochs": 1, "batch_size": 32, "seed": 0, "verbose": 0, **changes})


@pytest.fixture(scope="module")
def variants(setup, tmp_path_factory):
    """Decoders for layer -2 trained in this process: cached and uncached codes at alpha 0 and at alpha 0.99."""
    classifier, provenance, data = setup
    root = tmp_path_factory.mktemp("decoders")
    made = {}
    for key, alpha, cache in (("cached", 0.0, "yes"), ("uncached", 0.0, "no"), ("alpha", 0.99, "auto"),
                              ("alpha_uncached", 0.99, "no")):
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
    assert variants["alpha"][1]["cached_codes"] is True
    assert variants["alpha_uncached"][1]["cached_codes"] is False
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


@pytest.mark.parametrize("cached_key, uncached_key", [("cached", "uncached"), ("alpha", "alpha_uncached")])
def test_cached_and_uncached_codes_agree(variants, cached_key, uncached_key):
    cached, uncached = variants[cached_key][1]["metrics"], variants[uncached_key][1]["metrics"]
    assert cached["test_rec_loss"] == pytest.approx(uncached["test_rec_loss"], rel=1e-5)
    assert cached["train_loss"] == pytest.approx(uncached["train_loss"], rel=1e-5)


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


@pytest.fixture(scope="module")
def fused(setup, tmp_path_factory):
    """Decoders for layers -1, -2 and block4 trained in one pass, with the settings of `variants`."""
    classifier, provenance, data = setup
    root = tmp_path_factory.mktemp("fused")
    outs = [root / "logits.h5", root / "block5.h5", root / "block4.h5"]
    results = train_decoders(classifier, provenance, data, [-1, -2, "block4"], 0.0, settings(), outs,
                             cache_codes="yes")
    return results, outs


def test_fused_run_saves_one_decoder_per_layer_with_its_provenance(fused, setup):
    classifier, _, data = setup
    results, outs = fused
    expected = [("logits", -1, [4]), ("block5", -2, [1, 1, 256]), ("block4", -3, [2, 2, 128])]
    for (decoder, record), out, (name, index, shape) in zip(results, outs, expected):
        group = read_group(out)
        assert group == json.loads(json.dumps(record))
        assert (group["layer_name"], group["layer_index"], group["layer_shape"]) == (name, index, shape)
        assert group["kind"] == "cladec_decoder" and group["alpha"] == 0.0 and group["cached_codes"] is True
        assert group["classifier_digest"] == artifacts.weights_digest(classifier)
        assert group["epochs"] == 1 and group["batch_size"] == 32 and group["seed"] == 0
        assert group["metrics"]["train_loss"] > 0
        loaded = keras.models.load_model(out)
        assert group["digest"] == artifacts.weights_digest(loaded)
        assert tuple(loaded.inputs[0].shape[1:]) == tuple(shape)
        # Its own test Rec. Loss: what this saved decoder gives on the test split.
        cladec = stacked(frozen_encoder(classifier, resolve_layer(classifier, index)), loaded, "cladec")
        images = data.test.images
        assert rec_loss(images, cladec.predict(images, verbose=0)) == pytest.approx(
            group["metrics"]["test_rec_loss"], rel=1e-4)
    losses = [record["metrics"]["test_rec_loss"] for _, record in results]
    assert len(set(losses)) == 3


def test_fused_decoder_has_the_architecture_of_a_single_run(fused, variants):
    _, outs = fused
    single = keras.models.load_model(variants["cached"][2])
    assert keras.models.load_model(outs[1]).get_config() == single.get_config()


@pytest.mark.parametrize("key", ["cached", "uncached"])
def test_fused_run_matches_separate_runs(fused, variants, key):
    # Same seed, same data order and the same starting weights: on the CPU the fused decoder is the one
    # a separate run trains, so the losses agree far inside run-to-run noise.
    results, _ = fused
    single = variants[key][1]["metrics"]
    assert results[1][1]["metrics"]["test_rec_loss"] == pytest.approx(single["test_rec_loss"], rel=1e-3)
    # Keras averages a fused model's per-output losses over batches, not images: the short last batch
    # weighs a little differently than in a one-output run's total.
    assert results[1][1]["metrics"]["train_loss"] == pytest.approx(single["train_loss"], rel=1e-2)


def test_fused_run_with_alpha_matches_a_separate_run(setup, variants, tmp_path):
    classifier, provenance, data = setup
    results = train_decoders(classifier, provenance, data, [-2, "block3"], 0.99, settings(),
                             [tmp_path / "a.h5", tmp_path / "b.h5"])
    single = variants["alpha"][1]
    assert results[0][1]["alpha"] == 0.99 and results[0][1]["cached_codes"] is True
    assert results[0][1]["metrics"]["test_rec_loss"] == pytest.approx(single["metrics"]["test_rec_loss"], rel=1e-3)
    # Each decoder's training loss is (1 - alpha) * its SSE + alpha * its CE, as in a one-layer run.
    assert results[0][1]["metrics"]["train_loss"] == pytest.approx(single["metrics"]["train_loss"], rel=1e-3)


def test_fused_outputs_are_checked_before_training(setup, tmp_path):
    classifier, provenance, data = setup
    taken = tmp_path / "taken.h5"
    taken.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="already exists"):
        train_decoders(classifier, provenance, data, [-1, -2], 0.0, settings(epochs=50),
                       [tmp_path / "new.h5", taken])
    assert taken.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.h5"]
    with pytest.raises(UsageError, match="given twice"):
        train_decoders(classifier, provenance, data, [-2, "block5"], 0.0, settings(),
                       [tmp_path / "a.h5", tmp_path / "b.h5"])


class StopAtSecondEpoch(keras.callbacks.Callback):
    """Interrupts training as Ctrl-C would, once the first epoch is backed up."""

    def __init__(self, stop=True):
        super().__init__()
        self.stop, self.started = stop, []

    def on_epoch_begin(self, epoch, logs=None):
        self.started.append(epoch)
        if epoch == 1 and self.stop:
            raise KeyboardInterrupt


class LoggedKeys(keras.callbacks.Callback):
    """The keys of the logs at each epoch's end: what progress lines and the history show."""

    def __init__(self):
        super().__init__()
        self.keys = set()

    def on_epoch_end(self, epoch, logs=None):
        self.keys |= set(logs or {})


def test_progress_of_a_fused_run_names_each_loss_by_its_layer(setup, tmp_path):
    from cladec_cli.refae import train_refaes

    classifier, provenance, data = setup
    names = [resolve_layer(classifier, index).name for index in (-3, -4)]
    logged = LoggedKeys()
    outs = [tmp_path / "a.h5", tmp_path / "b.h5"]
    train_decoders(classifier, provenance, data, [-3, -4], 0.5, settings(extra_callbacks=[logged]), outs)
    assert {f"{kind}_{name}_loss" for kind in ("rec", "ce") for name in names} <= logged.keys
    logged = LoggedKeys()
    train_refaes(classifier, provenance, data, [-3, -4], settings(extra_callbacks=[logged]),
                 [tmp_path / "c.h5", tmp_path / "d.h5"])
    assert {f"rec_{name}_loss" for name in names} <= logged.keys


def test_interrupted_fused_run_resumes(setup, tmp_path):
    classifier, provenance, data = setup
    outs = [tmp_path / "a.h5", tmp_path / "b.h5"]
    backup = backup_folder(outs)
    assert backup == tmp_path / ".a+b.partial"
    stopper = StopAtSecondEpoch()
    with pytest.raises(KeyboardInterrupt):
        train_decoders(classifier, provenance, data, [-3, -4], 0.0,
                       settings(epochs=3, backup_interval=0, extra_callbacks=[stopper]), outs)
    assert backup.exists() and not any(out.exists() for out in outs)
    with pytest.raises(UsageError, match="`resume`"):
        train_decoders(classifier, provenance, data, [-3, -4], 0.0, settings(epochs=3), outs)
    stopper = StopAtSecondEpoch(stop=False)
    results = train_decoders(classifier, provenance, data, [-3, -4], 0.0,
                             settings(epochs=3, backup_interval=0, resume=True, extra_callbacks=[stopper]), outs)
    assert stopper.started == [1, 2]
    assert all(out.exists() for out in outs) and not backup.exists()
    assert [record["epochs"] for _, record in results] == [3, 3]


def test_cached_codes_with_alpha_feed_codes_and_skip_the_encoder(setup):
    from cladec_cli.cladec import _training_setup, decoder_for
    from cladec_cli.data.feed import epoch_order
    from cladec_cli.layers import resolve_layers
    from cladec_cli.losses import reconstruction_loss

    classifier, provenance, data = setup
    layers = resolve_layers(classifier, [-2, "block3"])
    for chosen in (layers[:1], layers):
        encoder = frozen_encoder(classifier, chosen if len(chosen) > 1 else chosen[0])
        decoders = [decoder_for(classifier, layer, provenance, name=f"decoder_{i}")
                    for i, layer in enumerate(chosen, start=1)]
        model, feed, losses, weights = _training_setup(classifier, encoder, decoders, data.train, settings(), 0.99,
                                                       reconstruction_loss("sse"), cache=True)
        numbers = range(1, len(chosen) + 1)
        assert [tensor.name for tensor in model.inputs] == [f"code_{i}" for i in numbers]
        assert weights == {**{f"rec_{i}": pytest.approx(0.01) for i in numbers}, **{f"ce_{i}": 0.99 for i in numbers}}
        codes, targets = feed[0]
        served = epoch_order(len(data.train), 0, 0)[:32]
        codes = codes if len(chosen) > 1 else (codes,)
        for i, layer in enumerate(chosen):
            assert codes[i].shape[1:] == tuple(layer.shape)
        for i in numbers:
            np.testing.assert_array_equal(targets[f"rec_{i}"], data.train.images[served])
            np.testing.assert_array_equal(targets[f"ce_{i}"], data.train.labels[served])


def test_under_float16_fused_decoders_are_those_trained_alone(setup, tmp_path):
    # One dynamic loss scale for a fused pass would skip every decoder's step whenever one decoder's
    # gradients overflow, so the quiet layer's decoder would train otherwise than alone.
    _, _, data = setup
    classifier = loud_classifier()
    half = settings(epochs=2, precision="float16")
    layers = ["quiet", -1]
    together = train_decoders(classifier, None, data, layers, 0.0, half, [tmp_path / "q.h5", tmp_path / "l.h5"])
    for layer, (decoder, record) in zip(layers, together):
        alone, alone_record = train_decoder(classifier, None, data, layer, 0.0, half, tmp_path / f"alone_{layer}.h5")
        assert record["runtime"]["precision"] == "float16"
        for a, b in zip(decoder.get_weights(), alone.get_weights()):
            np.testing.assert_array_equal(a, b)
        assert record["metrics"]["test_rec_loss"] == alone_record["metrics"]["test_rec_loss"]


class StopAtEpochBegin(keras.callbacks.Callback):
    """Interrupts training as Ctrl-C would at the `stop_at`-th epoch begun (counted over every model a
    callback sees, from 0; None: never), and records the epochs begun."""

    def __init__(self, stop_at=None):
        super().__init__()
        self.stop_at, self.started = stop_at, []

    def on_epoch_begin(self, epoch, logs=None):
        self.started.append(epoch)
        if len(self.started) - 1 == self.stop_at:
            raise KeyboardInterrupt


def test_an_interrupted_float16_run_keeps_its_finished_models_and_resumes_the_rest(setup, tmp_path):
    classifier, provenance, data = setup
    outs = [tmp_path / "a.h5", tmp_path / "b.h5"]

    def run(stopper, **changes):
        return train_decoders(classifier, provenance, data, [-3, -4], 0.0,
                              settings(epochs=3, precision="float16", backup_interval=0, extra_callbacks=[stopper],
                                       **changes), outs)

    with pytest.raises(KeyboardInterrupt):
        run(StopAtEpochBegin(4))  # the second model's second epoch
    assert outs[0].exists() and not outs[1].exists() and backup_folder(outs[1]).exists()
    first = outs[0].read_bytes()
    with pytest.raises(UsageError, match="`resume` to keep it"):
        run(StopAtEpochBegin())
    stopper = StopAtEpochBegin()
    results = run(stopper, resume=True)
    assert stopper.started == [1, 2]  # the first model is loaded, the second resumes after its first epoch
    assert outs[0].read_bytes() == first and outs[1].exists() and not backup_folder(outs[1]).exists()
    assert [record["epochs"] for _, record in results] == [3, 3]
    assert results[0][1] == read_group(outs[0])
    # Another setting, and the saved model is not taken for this run's.
    outs[1].unlink()
    with pytest.raises(UsageError, match="already exists"):
        run(StopAtEpochBegin(), resume=True, lr=0.5)


def test_training_puts_back_the_classifiers_trainable_flags_and_the_dtype_policy(setup, tmp_path):
    _, _, data = setup
    classifier, provenance = small_conv_classifier(), None
    classifier.get_layer(index=1).trainable = False  # a flag of the user's own, kept too
    layers = [classifier, *classifier._flatten_layers(include_self=False)]
    before = [layer.trainable for layer in layers]
    assert any(before)
    keras.mixed_precision.set_global_policy("float32")
    train_decoder(classifier, provenance, data, -2, 0.5, settings(precision="bfloat16"), tmp_path / "d.h5")
    assert [layer.trainable for layer in layers] == before
    assert keras.mixed_precision.global_policy().name == "float32"


def test_data_that_does_not_fit_the_classifier_is_refused_before_training(setup, tmp_path, npz_dataset):
    classifier, provenance, data = setup
    other_range = load_dataset(npz_dataset, pixel_range="-1,1")
    with pytest.raises(DataError, match="pixel range is -1,1 .* `pixel_range` '0,1'"):
        train_decoder(classifier, provenance, other_range, -2, 0.0, settings(), tmp_path / "d.h5")
    smaller = load_dataset(f"npz:{write_npz(tmp_path / 'small.npz', size=28)}")
    said = "28x28x1 but the classifier expects 32x32x1; load the data with load_dataset(..., image_shape=(32, 32, 1))"
    with pytest.raises(DataError, match=re.escape(said)):
        train_decoder(classifier, provenance, smaller, -2, 0.0, settings(), tmp_path / "d.h5")
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".*partial"))


def test_a_string_where_a_list_belongs_is_refused_naming_the_parameter(setup, tmp_path):
    classifier, provenance, data = setup
    with pytest.raises(UsageError, match="`layer_specs` takes a list"):
        train_decoders(classifier, provenance, data, "-1,-2", 0.0, settings(), [tmp_path / "a.h5", tmp_path / "b.h5"])
    with pytest.raises(UsageError, match="`outs` takes a list"):
        train_decoders(classifier, provenance, data, [-1, -2], 0.0, settings(), str(tmp_path / "a.h5"))
    with pytest.raises(UsageError, match="`alpha` must be a number"):
        train_decoder(classifier, provenance, data, -2, "x", settings(), tmp_path / "d.h5")
    with pytest.raises(UsageError, match="`cache_codes` must be auto, yes or no"):
        train_decoder(classifier, provenance, data, -2, 0.0, settings(), tmp_path / "d.h5", cache_codes="maybe")


def test_trainable_flags_come_back_exactly_also_for_a_layer_two_models_share():
    shared = keras.layers.Dense(2, name="shared")
    inputs = keras.Input((2,))
    a = keras.Model(inputs, shared(inputs), name="a")
    b_inputs = keras.Input((2,))
    b = keras.Model(b_inputs, keras.layers.Dense(2, name="own")(shared(b_inputs)), name="b")
    outer_inputs = keras.Input((2,))
    outer = keras.Model(outer_inputs, b(a(outer_inputs)), name="outer")
    b.trainable = False
    shared.trainable = True
    before = {layer.name: layer.trainable for layer in outer._flatten_layers()}
    weights = [(v.path, v.trainable) for v in outer.variables]
    with trainable_flags_kept(outer):
        outer.trainable = False
    assert {layer.name: layer.trainable for layer in outer._flatten_layers()} == before
    assert [(v.path, v.trainable) for v in outer.variables] == weights
    assert before["shared"] and not before["b"]


def classifier_pair():
    """A classifier with a Dropout layer and the same classifier (same weights) without it: frozen, both
    compute the same, so a decoder of either is the same decoder."""
    inputs = keras.Input((32, 32, 1))
    conv = keras.layers.Conv2D(4, 3, strides=2, name="conv")
    code = keras.layers.Conv2D(4, 3, strides=2, name="code")
    pool, logits = keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, name="logits")
    with_dropout = keras.Model(inputs, logits(pool(code(keras.layers.Dropout(0.5)(conv(inputs))))))
    without = keras.Model(inputs, logits(pool(code(conv(inputs)))))
    return with_dropout, without


@pytest.mark.parametrize("layer, alpha, cache", [("code", 0.0, "no"), ("conv", 0.5, "yes")])
def test_a_frozen_classifiers_dropout_stays_off_while_its_decoder_trains(setup, tmp_path, layer, alpha, cache):
    # Uncached codes run the encoder in every step (a Dropout before the layer); alpha > 0 runs the whole
    # classifier on each reconstruction (a Dropout after it).
    _, _, data = setup
    records = [train_decoder(classifier, None, data, layer, alpha, settings(), tmp_path / f"{i}.h5",
                             cache_codes=cache)[1] for i, classifier in enumerate(classifier_pair())]
    assert records[0]["digest"] == records[1]["digest"]
    assert records[0]["metrics"]["train_loss"] == records[1]["metrics"]["train_loss"]
