"""Explaining Keras classifiers that cladec did not build: residual, branching, nested, Sequential,
non-square and gray, .h5 and .keras; refusing subclassed and multi-input models."""

import json
import re
import sys

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image

from cladec_cli.data.datasets import load_dataset
from cladec_cli.explainer import load_explainer
from cladec_cli.layers import resolve_layer
from cladec_cli.reconstruction import rec_loss
from cladec_cli.refae import build_refae
from conftest import invoke, synthetic_images, write_npz
from image_files import save_image

TRAIN = ("--epochs", 1, "--batch-size", 16, "-q")


def residual_classifier():
    """48x48 RGB, functional, with a residual Add, a two-branch Concatenate and named layers; logits out."""
    inputs = keras.Input((48, 48, 3), name="pixels")
    h = layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs)
    h = layers.BatchNormalization(name="stem_bn")(h)
    stem = layers.ReLU(name="stem_relu")(h)
    h = layers.Conv2D(8, 3, padding="same", activation="relu", name="res_conv1")(stem)
    h = layers.Conv2D(8, 3, padding="same", name="res_conv2")(h)
    h = layers.Add(name="res_add")([h, stem])
    res = layers.ReLU(name="res_out")(h)
    left = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="branch_a")(res)
    right = layers.MaxPooling2D(name="branch_b")(res)
    h = layers.Concatenate(name="merge")([left, right])
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    logits = layers.Dense(4, name="scores")(h)
    return keras.Model(inputs, logits, name="resnetish")


RESIDUAL_LAYERS = [("stem_relu", (24, 24, 8)), ("res_conv1", (24, 24, 8)), ("res_conv2", (24, 24, 8)),
                   ("res_out", (24, 24, 8)), ("branch_a", (12, 12, 8)), ("branch_b", (12, 12, 8)),
                   ("merge", (12, 12, 16)), ("pool", (16,)), ("scores", (4,))]


def nested_classifier():
    """A functional backbone used as a layer of the outer model; softmax output."""
    inner_in = keras.Input((48, 48, 3))
    h = layers.Conv2D(8, 3, strides=2, padding="same", name="conv")(inner_in)
    h = layers.ReLU(name="act")(h)
    h = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(h)
    backbone = keras.Model(inner_in, h, name="backbone")
    inputs = keras.Input((48, 48, 3))
    h = layers.Flatten(name="flat")(backbone(inputs))
    return keras.Model(inputs, layers.Dense(4, activation="softmax", name="probs")(h), name="outer")


def sequential_classifier():
    """Gray, not square (40 x 24), Sequential."""
    return keras.Sequential([
        keras.Input((40, 24, 1)),
        layers.Conv2D(8, 3, strides=2, padding="same", name="c1"),
        layers.ReLU(name="r1"),
        layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c2"),
        layers.Flatten(name="flat"),
        layers.Dense(4, name="logits"),
    ], name="seq")


def measured_rec_loss(classifier, decoder, refae, dataset):
    """{method: Rec. Loss} of saved models on the test split, recomputed."""
    explainer = load_explainer(classifier, decoder, refae)
    images, _ = load_dataset(dataset, image_shape=explainer.image_shape).test.arrays()
    return {method: rec_loss(images, recs) for method, recs in explainer.reconstructions(images).items()}


def layers_json(path):
    return layers_json_with(path)


def layers_json_with(path, *options):
    return [(row["name"], row["index"], tuple(row["shape"]))
            for row in json.loads(invoke("layers", "--classifier", path, *options, "--json").stdout)]


def one_line_error(result):
    lines = [line for line in result.output.strip().splitlines() if line.startswith("cladec: error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def rgb48(tmp_path_factory):
    """`npz:` spec of 48x48 RGB images, 4 classes."""
    return f"npz:{write_npz(tmp_path_factory.mktemp('rgb48') / 'rgb48.npz', 48, 16, size=48, channels=3)}"


@pytest.fixture(scope="module")
def residual(tmp_path_factory, rgb48):
    """The residual classifier, trained briefly with model.fit and saved as .h5, plus its ClaDec and RefAE."""
    root = tmp_path_factory.mktemp("residual")
    model = residual_classifier()
    x, y = synthetic_images(32, size=48, channels=3)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x / 255.0, y, epochs=1, batch_size=16, verbose=0)
    paths = {"classifier": root / "resnetish.h5", "decoder": root / "dec.h5", "refae": root / "refae.h5",
             "root": root, "dataset": rgb48}
    model.save(paths["classifier"])
    decoder = json.loads(invoke("train-decoder", "--classifier", paths["classifier"], "--layer", "res_out",
                                "--dataset", rgb48, "--out", paths["decoder"], *TRAIN, "--json").stdout)
    refae = json.loads(invoke("train-refae", "--classifier", paths["classifier"], "--layer", -6,
                              "--dataset", rgb48, "--out", paths["refae"], *TRAIN, "--json").stdout)
    return {**paths, "decoder_record": decoder, "refae_record": refae}


def test_layers_of_residual_model(residual):
    found = layers_json(residual["classifier"])
    n = len(RESIDUAL_LAYERS)
    assert found == [(name, i - n, shape) for i, (name, shape) in enumerate(RESIDUAL_LAYERS)]


def test_train_decoder_and_refae_on_residual_layer(residual):
    for kind in ("decoder", "refae"):
        record = residual[f"{kind}_record"]
        assert record["layer_name"] == "res_out" and record["layer_index"] == -6  # name and index agree
        assert record["layer_shape"] == [24, 24, 8]
        assert record["image_shape"] == [48, 48, 3]
        assert record["classifier_arch"] == "custom"
    # The recorded Rec. Loss is that of the saved files on the test images.
    measured = measured_rec_loss(residual["classifier"], residual["decoder"], residual["refae"], residual["dataset"])
    for kind, method in (("decoder", "cladec"), ("refae", "refae")):
        assert residual[f"{kind}_record"]["metrics"]["test_rec_loss"] == pytest.approx(measured[method], rel=1e-4)
    decoder = keras.models.load_model(residual["decoder"], compile=False)
    assert tuple(decoder.inputs[0].shape[1:]) == (24, 24, 8)  # from the layer's output shape
    assert tuple(decoder.outputs[0].shape[1:]) == (48, 48, 3)  # to the model's input shape
    refae = keras.models.load_model(residual["refae"], compile=False)
    assert tuple(refae.inputs[0].shape[1:]) == (48, 48, 3) and tuple(refae.outputs[0].shape[1:]) == (48, 48, 3)
    # The RefAE's decoder is the same architecture as ClaDec's.
    assert [w.shape for w in refae.get_layer("decoder").weights] == [w.shape for w in decoder.weights]


def test_refae_is_a_fresh_copy_of_the_graph_up_to_the_layer(residual):
    classifier = keras.models.load_model(residual["classifier"], compile=False)
    refae = build_refae(classifier, resolve_layer(classifier, "res_out"))
    encoder = refae.get_layer("refae_encoder")
    x = np.random.default_rng(0).random((2, 48, 48, 3), np.float32)
    assert encoder(x).shape == (2, 24, 24, 8)
    kinds = {type(layer).__name__ for layer in encoder._flatten_layers(include_self=False)}
    assert {"Add", "Conv2D", "BatchNormalization", "ReLU"} <= kinds
    assert not kinds & {"Concatenate", "Dense", "GlobalAveragePooling2D"}  # nothing after the layer
    mine = {w.path.split("/")[-2] + "/" + w.path.split("/")[-1]: np.asarray(w) for w in encoder.trainable_weights}
    theirs = classifier.get_layer("res_conv1").kernel
    copied = [k for k in mine if k.startswith("res_conv1/kernel")]
    assert copied and mine[copied[0]].shape == tuple(theirs.shape)
    assert not np.allclose(mine[copied[0]], np.asarray(theirs))  # re-initialised, not copied
    assert all(w.trainable for w in encoder.weights if "moving" not in w.path)


def test_a_layer_hidden_by_its_block_is_reported_with_the_convention_of_its_index(residual, tmp_path):
    result = invoke("train-decoder", "--classifier", residual["classifier"], "--layer", "stem", "--dataset",
                    residual["dataset"], "--out", tmp_path / "d.h5", "--epochs", 1, "--batch-size", 16)
    assert "layer stem (-12 under --layer-convention layers)" in result.output
    assert ("stem", -12, (24, 24, 8)) in layers_json_with(residual["classifier"], "--layer-convention", "layers")


def test_explain_residual_model(residual, tmp_path):
    out, arrays = tmp_path / "grid.png", tmp_path / "arrays.npz"
    result = invoke("explain", "--classifier", residual["classifier"], "--decoder", residual["decoder"],
                    "--refae", residual["refae"], "--dataset", residual["dataset"], "--indices", "0,5,6",
                    "--out", out, "--save-arrays", arrays, "--json")
    assert json.loads(result.stdout)["images"] == ["test #0", "test #5", "test #6"]
    with Image.open(out) as image:
        # 48 px images upscaled 3x to 144 px tiles: four columns, three rows with header, captions and gaps.
        assert image.format == "PNG" and image.size == (4 * 144 + 5 * 6, 36 + 3 * (144 + 30 + 6) + 6)
    saved = np.load(arrays)
    for key in ("original", "refae", "cladec", "difference"):
        assert saved[key].shape == (3, 48, 48, 3), key
        assert 0.0 <= saved[key].min() and saved[key].max() <= 1.0
    np.testing.assert_allclose(saved["difference"], np.abs(saved["cladec"] - saved["refae"]), atol=1e-6)
    np.testing.assert_array_equal(saved["labels"], [0, 1, 2])
    assert saved["pred_original"].shape == (3,)


def test_contrast_inside_a_residual_block_is_refused_before_any_warning(residual, tmp_path):
    decoder = tmp_path / "conv1.h5"
    invoke("train-decoder", "--classifier", residual["classifier"], "--layer", "res_conv1",
           "--dataset", residual["dataset"], "--out", decoder, *TRAIN)
    explainer = load_explainer(residual["classifier"], decoder)
    image = load_dataset(residual["dataset"], image_shape=explainer.image_shape).test.images[:1]
    seen = int(explainer.classify(image)[0])  # the class it already sees: the case that warns
    result = invoke("contrast", "--classifier", residual["classifier"], "--decoder", decoder, "--index", 0,
                    "--to-class", seen, "--out", tmp_path / "c.png", expect=2)
    assert "warning" not in result.stderr
    assert "from res_add on" in one_line_error(result)
    assert not (tmp_path / "c.png").exists()


def test_explain_own_images_are_resized(residual, tmp_path):
    folder = tmp_path / "mine"
    save_image(folder / "a_gray.png", np.full((30, 20, 1), 128, np.uint8))
    save_image(folder / "b_wide.jpg", np.full((60, 100, 3), 250, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    arrays = tmp_path / "own.npz"
    result = invoke("explain", "--classifier", residual["classifier"], "--decoder", residual["decoder"],
                    "--images", folder, "--out", tmp_path / "own.png", "--save-arrays", arrays, "--json")
    assert json.loads(result.stdout)["images"] == ["a_gray.png", "b_wide.jpg"]
    original = np.load(arrays)["original"]
    assert original.shape == (2, 48, 48, 3)
    np.testing.assert_allclose(original[0], 128 / 255, atol=1e-5)  # gray -> RGB, same value everywhere
    assert original[1].min() > 0.95
    assert np.load(arrays)["cladec"].shape == (2, 48, 48, 3)


def test_decoder_for_vector_layer_of_48px_model(residual, tmp_path):
    out = tmp_path / "logits.h5"
    record = json.loads(invoke("train-decoder", "--classifier", residual["classifier"], "--layer", "-1",
                               "--dataset", residual["dataset"], "--out", out, *TRAIN, "--json").stdout)
    assert record["layer_name"] == "scores" and record["layer_shape"] == [4]
    decoder = keras.models.load_model(out, compile=False)
    assert tuple(decoder.inputs[0].shape[1:]) == (4,) and tuple(decoder.outputs[0].shape[1:]) == (48, 48, 3)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_layers_accepts_h5_and_keras(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    residual_classifier().save(path)
    assert [name for name, _, _ in layers_json(path)] == [name for name, _ in RESIDUAL_LAYERS]
    assert "res_out" in invoke("layers", "--classifier", path).output


def test_the_layers_table_keeps_its_columns_for_long_nested_names(tmp_path):
    inner = keras.Input((8, 8, 1))
    backbone = keras.Model(inner, layers.Conv2D(2, 3, name="expanded_conv_depthwise_relu")(inner),
                           name="mobilenetv2_0.35_32_backbone")
    inputs = keras.Input((8, 8, 1))
    keras.Model(inputs, layers.Dense(3, name="scores")(layers.Flatten()(backbone(inputs)))).save(tmp_path / "m.keras")
    header, *rows = invoke("layers", "--classifier", tmp_path / "m.keras").output.rstrip().splitlines()
    assert len(rows) == 2 and rows[0].split()[1] == "mobilenetv2_0.35_32_backbone/expanded_conv_depthwise_relu"
    assert {row.index(shape) for row, shape in zip(rows, ("6x6x2", "3"))} == {header.index("shape")}


def test_nested_sub_model(tmp_path, rgb48):
    path = tmp_path / "nested.h5"
    nested_classifier().save(path)
    assert layers_json(path) == [("backbone/act", -3, (24, 24, 8)), ("backbone/conv2", -2, (12, 12, 8)),
                                 ("probs", -1, (4,))]
    record = json.loads(invoke("train-decoder", "--classifier", path, "--layer", "backbone/act", "--alpha", 0.5,
                               "--dataset", rgb48, "--out", tmp_path / "dec.h5", *TRAIN, "--json").stdout)
    assert record["layer_name"] == "backbone/act" and record["alpha"] == 0.5
    assert record["metrics"]["test_rec_loss"] == pytest.approx(
        measured_rec_loss(path, tmp_path / "dec.h5", None, rgb48)["cladec"], rel=1e-4)
    record = json.loads(invoke("train-refae", "--classifier", path, "--layer", "backbone/act", "--dataset", rgb48,
                               "--out", tmp_path / "refae.h5", *TRAIN, "--json").stdout)
    assert record["layer_index"] == -3
    arrays = tmp_path / "a.npz"
    invoke("explain", "--classifier", path, "--decoder", tmp_path / "dec.h5", "--refae", tmp_path / "refae.h5",
           "--dataset", rgb48, "--count", 2, "--out", tmp_path / "g.png", "--save-arrays", arrays,
           "--method", "gradcam", "-q")
    assert np.load(arrays)["cladec"].shape == (2, 48, 48, 3)
    assert np.load(arrays)["gradcam"].shape == (2, 48, 48)


def test_a_classifier_wrapped_whole_in_another_model_gets_attributions(tmp_path, rgb48):
    """The softmax inside the nested model: Grad-CAM and saliency take the logits in front of it."""
    inputs = keras.Input((48, 48, 3))
    path = tmp_path / "wrapped.keras"
    keras.Model(inputs, nested_classifier()(inputs), name="wrapper").save(path)
    invoke("train-decoder", "--classifier", path, "--layer", "outer/backbone/act", "--dataset", rgb48,
           "--out", tmp_path / "dec.h5", *TRAIN)
    arrays = tmp_path / "a.npz"
    invoke("explain", "--classifier", path, "--decoder", tmp_path / "dec.h5", "--dataset", rgb48, "--count", 2,
           "--out", tmp_path / "g.png", "--save-arrays", arrays, "--method", "gradcam", "--method", "saliency", "-q")
    saved = np.load(arrays)
    assert saved["gradcam"].shape == saved["saliency"].shape == (2, 48, 48)
    assert np.isfinite(saved["saliency"]).all() and saved["saliency"].max() > 0


def two_stream_classifier():
    """Two streams built by one function, so that their layers bear the same names, joined by a Concatenate."""
    def stream(name):
        inner = keras.Input((48, 48, 3))
        h = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv1")(inner)
        return keras.Model(inner, layers.Conv2D(4, 3, strides=2, padding="same", name="conv2")(h), name=name)

    inputs = keras.Input((48, 48, 3))
    h = layers.Concatenate(name="merge")([stream("stream_a")(inputs), stream("stream_b")(inputs)])
    return keras.Model(inputs, layers.Dense(4, name="scores")(layers.GlobalAveragePooling2D()(h)), name="two")


def test_refaes_of_two_streams_whose_layers_bear_the_same_names_are_saved(tmp_path, rgb48):
    path = tmp_path / "two.keras"
    two_stream_classifier().save(path)
    invoke("train-refae", "--classifier", path, "--layer", "merge,stream_b/conv2", "--dataset", rgb48,
           "--out-dir", tmp_path, *TRAIN)
    invoke("train-decoder", "--classifier", path, "--layer", "merge", "--dataset", rgb48,
           "--out", tmp_path / "dec.h5", *TRAIN)
    saved = sorted(tmp_path.glob("refae*.h5"))
    assert len(saved) == 2
    for refae in saved:
        assert keras.models.load_model(refae, compile=False).outputs[0].shape[1:] == (48, 48, 3)
    merge = next(r for r in saved if json.loads(invoke("info", r, "--json").stdout)["layer_name"] == "merge")
    recorded = json.loads(invoke("info", merge, "--json").stdout)["metrics"]["test_rec_loss"]
    assert recorded == pytest.approx(measured_rec_loss(path, tmp_path / "dec.h5", merge, rgb48)["refae"], rel=1e-4)


CUSTOM_LAYERS = """
import keras


@keras.saving.register_keras_serializable(package="cladec_test")
class ScaledReLU(keras.layers.Layer):
    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, x):
        return keras.ops.relu(x) * self.scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
"""


@pytest.fixture
def custom_layer_classifier(tmp_path):
    """A classifier with a registered custom layer, saved as .h5, and the .py file that defines the layer;
    Keras forgets the layer again afterwards, as a new process would not know it."""
    module = tmp_path / "cladec_test_scaled.py"
    module.write_text(CUSTOM_LAYERS)
    known = dict(keras.saving.get_custom_objects())
    namespace = {}
    exec(compile(CUSTOM_LAYERS, str(module), "exec"), namespace)
    inputs = keras.Input((48, 48, 3))
    h = namespace["ScaledReLU"](1.5, name="scaled")(layers.Conv2D(4, 3, strides=2, name="conv")(inputs))
    model = keras.Model(inputs, layers.Dense(4, name="scores")(layers.GlobalAveragePooling2D()(h)))
    model.save(tmp_path / "custom.h5")
    keras.saving.get_custom_objects().clear()
    keras.saving.get_custom_objects().update(known)
    yield tmp_path / "custom.h5", module
    keras.saving.get_custom_objects().clear()
    keras.saving.get_custom_objects().update(known)
    sys.modules.pop("cladec_test_scaled", None)


def test_custom_layers_are_loaded_from_the_module_given(tmp_path, rgb48, custom_layer_classifier):
    path, module = custom_layer_classifier
    said = one_line_error(invoke("layers", "--classifier", path, expect=2))
    assert "classes that Keras does not know (cladec_test>ScaledReLU)" in said and "--custom-objects" in said
    assert "scaled" in [name for name, _, _ in layers_json_with(path, "--custom-objects", module)]
    for command, out in (("train-decoder", "dec.h5"), ("train-refae", "refae.h5")):
        invoke(command, "--classifier", path, "--layer", "scaled", "--dataset", rgb48, "--out", tmp_path / out,
               "--custom-objects", module, *TRAIN)
    invoke("explain", "--classifier", path, "--decoder", tmp_path / "dec.h5", "--refae", tmp_path / "refae.h5",
           "--dataset", rgb48, "--count", 2, "--out", tmp_path / "g.png", "--custom-objects", module, "-q")
    assert (tmp_path / "g.png").is_file()


def test_sequential_gray_non_square_keras_file(tmp_path):
    path = tmp_path / "seq.keras"
    sequential_classifier().save(path)
    assert layers_json(path) == [("r1", -3, (20, 12, 8)), ("c2", -2, (10, 6, 8)), ("logits", -1, (4,))]
    # 32x32 gray images, fitted to the classifier's 40x24 input.
    dataset = f"npz:{write_npz(tmp_path / 'gray.npz', 32, 8)}"
    dec, refae = tmp_path / "dec.h5", tmp_path / "refae.h5"
    trained = invoke("train-decoder", "--classifier", path, "--layer", "c2", "--dataset", dataset, "--out", dec,
                     *TRAIN[:-1])
    fitted = (f"note: the {dataset} images (32x32x1) are resized (bilinear) from 32x32 to 40x24 to fit the model's "
              f"input 40x24x1")
    assert trained.stderr.count(fitted) == 1
    invoke("train-refae", "--classifier", path, "--layer", -2, "--dataset", dataset, "--out", refae, *TRAIN)
    assert tuple(keras.models.load_model(dec, compile=False).outputs[0].shape[1:]) == (40, 24, 1)
    arrays = tmp_path / "a.npz"
    quiet = invoke("explain", "--classifier", path, "--decoder", dec, "--refae", refae, "--dataset", dataset,
                   "--count", 2, "--out", tmp_path / "g.png", "--save-arrays", arrays, "--method", "gradcam", "-q")
    assert "note:" not in quiet.stderr
    saved = np.load(arrays)
    assert saved["original"].shape == saved["cladec"].shape == saved["refae"].shape == (2, 40, 24, 1)
    assert saved["gradcam"].shape == (2, 40, 24) and saved["gradcam"].max() > 0
    invoke("contrast", "--classifier", path, "--decoder", dec, "--dataset", dataset, "--index", 0,
           "--to-class", "bottom-right", "--steps", 3, "--out", tmp_path / "c.png", "-q")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_a_classifier_without_a_record_is_measured_on_the_decoders_data(tmp_path):
    """Your own classifier records no dataset: the other commands take the images the decoder was
    trained on (dataset, split, resize) and refuse options or a RefAE that contradict them."""
    path = tmp_path / "seq.keras"
    sequential_classifier().save(path)
    dataset = f"npz:{write_npz(tmp_path / 'gray.npz', 32, 8)}"
    dec, refae = tmp_path / "dec.h5", tmp_path / "refae.h5"
    recorded = json.loads(invoke("train-decoder", "--classifier", path, "--layer", -1, "--dataset", dataset,
                                 "--resize", "nearest", "--out", dec, *TRAIN, "--json").stdout)
    invoke("train-refae", "--classifier", path, "--layer", -1, "--dataset", dataset, "--out", refae, *TRAIN)
    result = json.loads(invoke("evaluate", "--classifier", path, "--decoder", dec, "--eval-epochs", 0,
                               "--out", tmp_path / "e.json", "--json").stdout)
    assert result["rec_loss"]["cladec"] == pytest.approx(recorded["metrics"]["test_rec_loss"], rel=1e-4)
    other_split = invoke("evaluate", "--classifier", path, "--decoder", dec, "--eval-epochs", 0, "--split-seed", 1,
                         "--out", tmp_path / "e2.json", expect=2)
    assert "--split-seed 1 differs from the decoder's 0" in one_line_error(other_split)
    mixed = invoke("explain", "--classifier", path, "--decoder", dec, "--refae", refae, "--count", 2,
                   "--out", tmp_path / "g.png", expect=2)
    assert "trained on other images than the decoder (resize bilinear against nearest)" in one_line_error(mixed)
    assert not (tmp_path / "e2.json").exists() and not (tmp_path / "g.png").exists()


def test_a_classifier_with_both_a_plus_b_and_the_add_layer_gets_a_refae_that_loads(tmp_path, npz_dataset):
    """`h + x` on tensors is an `Add` operation, not the Add layer; a RefAE's copy of a graph holding both
    is saved so that it loads, and is measured."""
    inputs = keras.Input((32, 32, 1))
    h = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    h = layers.Add()([layers.Conv2D(4, 3, padding="same")(h) + h, h])
    h = layers.MaxPooling2D(4, name="pooled")(h)
    model = keras.Model(inputs, layers.Dense(4)(layers.Flatten()(h)))
    path, refae, dec = tmp_path / "both.keras", tmp_path / "refae.h5", tmp_path / "dec.h5"
    model.save(path)
    common = ("--classifier", path, "--layer", "pooled", "--dataset", npz_dataset)
    invoke("train-refae", *common, "--out", refae, *TRAIN)
    invoke("train-decoder", *common, "--out", dec, *TRAIN)
    result = json.loads(invoke("evaluate", "--classifier", path, "--decoder", dec, "--refae", refae,
                               "--eval-epochs", 1, "--out", tmp_path / "e.json", "--json").stdout)
    assert np.isfinite(result["rec_loss"]["refae"]) and 0 <= result["acc_eval"]["refae"] <= 1


def test_copies_of_a_classifier_that_hdf5_would_change_are_refused_before_training(tmp_path, npz_dataset):
    """`keras.ops.mean` over height and width: Keras' HDF5 loader drops its axis, so a RefAE encoder or an
    Acc Eval classifier holding it would come back as another model; layers before it are fine."""
    inputs = keras.Input((32, 32, 1))
    h = layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(inputs)
    h = layers.Dense(8, name="features")(keras.ops.mean(h, axis=(1, 2)))
    path = tmp_path / "mean.keras"
    keras.Model(inputs, layers.Dense(4)(h)).save(path)
    common = ("--classifier", path, "--dataset", npz_dataset)
    refused = invoke("train-refae", *common, "--layer", "features", "--out", tmp_path / "r.h5", *TRAIN, expect=2)
    assert one_line_error(refused).startswith("cladec: error: the RefAE of layer features cannot be saved as HDF5")
    assert re.search(r"would drop that of mean(_\d+)? \(axis \(1, 2\)\)", refused.stderr)
    for precision in ("float32", "float16"):  # float16 trains layers one after another: refused before the first
        several = invoke("train-refae", *common, "--layer", "conv,features", "--precision", precision,
                         "--out-dir", tmp_path / "several", *TRAIN, expect=2)
        assert "the RefAE of layer features cannot be saved as HDF5" in one_line_error(several)
        assert not (tmp_path / "several").exists() or not any((tmp_path / "several").iterdir())
    invoke("train-refae", *common, "--layer", "conv", "--out", tmp_path / "r.h5", *TRAIN)
    invoke("train-decoder", *common, "--layer", "conv", "--out", tmp_path / "d.h5", *TRAIN)
    kept = invoke("evaluate", "--classifier", path, "--decoder", tmp_path / "d.h5", "--eval-epochs", 1,
                  "--keep-eval-models", tmp_path / "eval", "--out", tmp_path / "e.json", expect=2)
    assert one_line_error(kept).startswith("cladec: error: --keep-eval-models: the Acc Eval classifiers, copies of the "
                                           "classifier, cannot be saved as HDF5")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "several") == ["d.h5", "eval", "mean.keras", "r.h5"]
    assert list((tmp_path / "eval").iterdir()) == []


@keras.saving.register_keras_serializable(package="cladec_tests")
class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flat = layers.Flatten()
        self.dense = layers.Dense(4)

    def call(self, x):
        return self.dense(self.flat(x))


def test_subclassed_model_is_refused(tmp_path, npz_dataset):
    model = Subclassed()
    model(np.zeros((1, 32, 32, 1), np.float32))
    path = tmp_path / "sub.keras"
    model.save(path)
    for args in (("layers",), ("train-decoder", "--dataset", npz_dataset, "--out", tmp_path / "d.h5")):
        line = one_line_error(invoke(*args, "--classifier", path, expect=2))
        assert "no functional graph" in line and "subclassed" in line
    assert not (tmp_path / "d.h5").exists()


def test_a_classifier_of_gray_images_without_a_channel_axis_is_explained(tmp_path, npz_dataset):
    """Keras' own Fashion-MNIST tutorial builds its model on (28, 28) inputs: cladec gives it (H, W, 1) images."""
    inputs = keras.Input((32, 32))
    h = layers.Dense(8, activation="relu", name="hidden")(layers.Flatten()(inputs))
    original = keras.Model(inputs, layers.Dense(4, name="scores")(h), name="tutorial")
    path = tmp_path / "mlp.keras"
    original.save(path)
    assert [row[:2] for row in layers_json(path)] == [("tutorial/hidden", -2), ("tutorial/scores", -1)]
    invoke("train-decoder", "--classifier", path, "--layer", "hidden", "--dataset", npz_dataset,
           "--out", tmp_path / "d.h5", *TRAIN)
    arrays = tmp_path / "a.npz"
    invoke("explain", "--classifier", path, "--decoder", tmp_path / "d.h5", "--count", 2, "--out", tmp_path / "g.png",
           "--save-arrays", arrays, "--method", "saliency", "-q")
    saved = np.load(arrays)
    assert saved["cladec"].shape == (2, 32, 32, 1) and saved["saliency"].max() > 0
    from cladec_cli.classifier import load_classifier

    classifier, _ = load_classifier(path)
    images = np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(classifier.predict(images, verbose=0), original.predict(images[..., 0], verbose=0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, hint", [((1024,), "a Reshape in front"),
                                         ((None, None, 1), "keras.Input(shape=(H, W, C))")])
def test_a_model_without_a_fixed_image_input_is_refused(tmp_path, npz_dataset, shape, hint):
    inputs = keras.Input(shape)
    h = layers.GlobalAveragePooling2D()(inputs) if len(shape) == 3 else layers.Flatten()(inputs)
    path = tmp_path / "m.keras"
    keras.Model(inputs, layers.Dense(4, name="logits")(h)).save(path)
    for args in (("layers",), ("train-decoder", "--dataset", npz_dataset, "--out", tmp_path / "d.h5")):
        line = one_line_error(invoke(*args, "--classifier", path, expect=2))
        assert f"takes inputs of shape {shape}" in line and hint in line
    assert not (tmp_path / "d.h5").exists()


@pytest.mark.parametrize("sigmoid", [lambda h: layers.Dense(4, activation="sigmoid")(h),
                                     lambda h: layers.Activation("sigmoid")(layers.Dense(4)(h)),
                                     lambda h: keras.ops.sigmoid(layers.Dense(4)(h))])
def test_a_sigmoid_over_the_classes_is_refused_where_its_cross_entropy_is_needed(tmp_path, npz_dataset, sigmoid):
    inputs = keras.Input((32, 32, 1))
    path = tmp_path / "multilabel.keras"
    keras.Model(inputs, sigmoid(layers.Flatten()(layers.Conv2D(2, 3, name="conv")(inputs)))).save(path)
    decoder = tmp_path / "d.h5"
    train = ("train-decoder", "--classifier", path, "--dataset", npz_dataset, "--layer", "conv", "--epochs", 0, "-q")
    line = one_line_error(invoke(*train, "--alpha", 0.5, "--out", decoder, expect=2))
    assert "ends in a sigmoid, which scores each class on its own" in line
    assert "or do without it (--alpha 0; --eval-epochs 0)" in line and not decoder.exists()
    # Without the cross-entropy its decoders train and are measured as any other's.
    invoke(*train, "--out", decoder)
    metrics = tmp_path / "m.json"
    line = one_line_error(invoke("evaluate", "--classifier", path, "--decoder", decoder, "--out", metrics, expect=2))
    assert "ends in a sigmoid" in line and not metrics.exists()
    invoke("evaluate", "--classifier", path, "--decoder", decoder, "--eval-epochs", 0, "-q", "--out", metrics)
    assert "rec_loss" in json.loads(metrics.read_text())


def test_two_input_model_is_refused(tmp_path, npz_dataset):
    a, b = keras.Input((32, 32, 1), name="a"), keras.Input((32, 32, 1), name="b")
    h = layers.Flatten()(layers.Concatenate()([a, b]))
    path = tmp_path / "two.h5"
    keras.Model([a, b], layers.Dense(4)(h)).save(path)
    for args in (("layers",), ("train-refae", "--dataset", npz_dataset, "--out", tmp_path / "r.h5")):
        line = one_line_error(invoke(*args, "--classifier", path, expect=2))
        assert "2 inputs" in line
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.parametrize("head, said", [(layers.Conv2D(4, 1), "outputs shape (32, 32, 4)"),
                                        (layers.Dense(1, activation="sigmoid"), "one output unit")])
def test_a_model_without_one_score_per_class_is_refused(tmp_path, npz_dataset, head, said):
    inputs = keras.Input((32, 32, 1))
    h = inputs if isinstance(head, layers.Conv2D) else layers.Flatten()(inputs)
    path = tmp_path / "m.keras"
    keras.Model(inputs, head(h)).save(path)
    for args in (("layers",), ("train-decoder", "--dataset", npz_dataset, "--out", tmp_path / "d.h5")):
        line = one_line_error(invoke(*args, "--classifier", path, expect=2))
        assert said in line
    assert not (tmp_path / "d.h5").exists()
