"""`cladec explain`: PNG grids for test images, a class, or the user's own files."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from cladec_cli.grid import layout_for
from cladec_cli.explain import grid_rows
from conftest import invoke, synthetic_images

TILE_SHAPE = (32, 32, 1)


def explain(trained, out, *args, refae=True, expect=0):
    extra = ("--refae", trained["refae"]) if refae else ()
    return invoke("explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"], *extra,
                  "--out", out, "-q", *args, expect=expect)


def png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_indices(trained, tmp_path):
    out = tmp_path / "grid.png"
    result = explain(trained, out, "--indices", "0,1,2", "--json")
    assert png_size(out) == layout_for(TILE_SHAPE).size(3, 4)
    summary = json.loads(result.stdout)
    assert summary["images"] == ["test #0", "test #1", "test #2"]
    assert tuple(summary["size"]) == png_size(out)


def test_class_and_count(trained, tmp_path):
    out = tmp_path / "grid.png"
    arrays = tmp_path / "arrays.npz"
    result = explain(trained, out, "--class", "top-left", "--count", 2, "--save-arrays", arrays, "--json")
    assert png_size(out) == layout_for(TILE_SHAPE).size(2, 4)
    assert json.loads(result.stdout)["images"] == ["test #0", "test #4"]  # labels cycle 0, 1, 2, 3
    with np.load(arrays) as saved:
        np.testing.assert_array_equal(saved["labels"], [0, 0])


def test_save_arrays(trained, tmp_path):
    out, arrays = tmp_path / "grid.png", tmp_path / "arrays.npz"
    explain(trained, out, "--indices", "3,0,5", "--save-arrays", arrays)
    with np.load(arrays) as saved:
        for key in ("original", "cladec", "refae", "difference"):
            assert saved[key].shape == (3, 32, 32, 1), key
            assert saved[key].dtype == np.float32
            assert saved[key].min() >= 0 and saved[key].max() <= 1
        np.testing.assert_allclose(saved["difference"], np.abs(saved["cladec"] - saved["refae"]), atol=1e-6)
        np.testing.assert_array_equal(saved["labels"], [3, 0, 1])
        for key in ("pred_original", "pred_cladec", "pred_refae"):
            assert saved[key].shape == (3,)
        assert not np.allclose(saved["original"][0], saved["original"][1])


def test_without_refae(trained, tmp_path):
    out, arrays = tmp_path / "grid.png", tmp_path / "arrays.npz"
    explain(trained, out, "--indices", "0,1", "--save-arrays", arrays, refae=False)
    assert png_size(out) == layout_for(TILE_SHAPE).size(2, 2)
    with np.load(arrays) as saved:
        assert "refae" not in saved.files and "difference" not in saved.files
        assert saved["cladec"].shape == (2, 32, 32, 1)


def test_own_images(trained, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "RGB").save(folder / "b.png")
    Image.fromarray(np.full((32, 32), 200, np.uint8), "L").save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    out, arrays = tmp_path / "grid.png", tmp_path / "arrays.npz"
    result = explain(trained, out, "--images", folder, "--save-arrays", arrays, "--json")
    assert png_size(out) == layout_for(TILE_SHAPE).size(3, 4)
    assert json.loads(result.stdout)["images"] == ["a.png", "b.png", "c.png"]
    with np.load(arrays) as saved:
        assert saved["original"].shape == (3, 32, 32, 1)
        assert "labels" not in saved.files
        assert saved["names"].tolist() == ["a.png", "b.png", "c.png"]
        np.testing.assert_allclose(saved["original"][2], 200 / 255, atol=1e-6)
    # One file named outright is one row.
    one = explain(trained, tmp_path / "one.png", "--images", folder / "c.png", "--save-arrays", tmp_path / "c.npz",
                  "--json")
    assert json.loads(one.stdout)["images"] == ["c.png"] and png_size(tmp_path / "one.png") == \
        layout_for(TILE_SHAPE).size(1, 4)
    with np.load(tmp_path / "c.npz") as saved:
        np.testing.assert_allclose(saved["original"][0], 200 / 255, atol=1e-6)
    missing = explain(trained, tmp_path / "none.png", "--images", folder / "absent.png", expect=2)
    assert f"{folder / 'absent.png'} does not exist; give a folder of image files or one image file" in missing.stderr


def test_own_images_of_every_kind_pillow_opens_and_a_note_of_the_files_skipped(trained, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    gray = np.full((32, 32), 120, np.uint8)
    Image.fromarray(gray, "L").save(folder / "a.png")
    Image.fromarray(gray, "L").save(folder / "b.tif")
    Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB").save(folder / "c.webp", lossless=True)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0")
    out = tmp_path / "grid.png"
    result = invoke("explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                    "--images", folder, "--out", out, "--json")
    assert json.loads(result.stdout)["images"] == ["a.png", "b.tif", "c.webp"]
    assert f"note: skipped 1 file of no image kind in {folder}: notes.txt" in result.stderr.splitlines()
    (folder / "d.png").write_bytes(b"not png at all")
    failed = invoke("explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                    "--images", folder, "--out", tmp_path / "other.png", "-q", expect=2)
    assert failed.stderr.strip().splitlines() == [
        f"cladec: error: cannot read image {folder / 'd.png'}: Pillow cannot decode it (UnidentifiedImageError; it "
        f"begins with b'not png '); replace it or remove it"]
    assert not (tmp_path / "other.png").exists()


def test_images_of_other_data_are_noted_and_predictions_take_the_classifiers_class_names(trained, tmp_path,
                                                                                         monkeypatch):
    from cladec_cli import explain as explain_module

    named = []
    grid_rows_of = explain_module.grid_rows
    monkeypatch.setattr(explain_module, "grid_rows", lambda *args, **kwargs: named.append(
        (args[1], args[-1])) or grid_rows_of(*args, **kwargs))
    x, y = synthetic_images(16)
    other = tmp_path / "other.npz"
    np.savez(other, x_train=x, y_train=y, x_test=x, y_test=y, class_names=np.array(["w", "x", "y", "z"]))
    ours = ["top-left", "top-right", "bottom-left", "bottom-right"]
    for args in (("--indices", "0"), ("--prototypes",)):
        result = invoke("explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                        "--dataset", f"npz:{other}", *args, "--out", tmp_path / f"g{len(named)}.png")
        assert (f"note: the models were trained on {trained['dataset']}; these are images of npz:{other}"
                in result.stderr.splitlines())
    assert named == [(["w", "x", "y", "z"], ours)] * 2
    # The same data named by another path is no other data.
    recorded = Path(trained["dataset"].partition(":")[2])
    monkeypatch.chdir(recorded.parent)
    result = invoke("explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                    "--dataset", f"npz:./{recorded.name}", "--indices", "0", "--out", tmp_path / "same.png")
    assert "note:" not in result.stderr and named[-1] == (ours, None)
    arrays = {"original": x[:1] / 255.0, "cladec": x[:1] / 255.0, "pred_original": np.array([1]),
              "pred_cladec": np.array([2])}
    (_, captions), = grid_rows(arrays, ["w", "x", "y", "z"], true_labels=[3],
                               predicted_names=["top-left", "top-right", "bottom-left", "bottom-right"])
    assert captions == ["true: z\npred: top-right", "pred: bottom-left"]


def test_own_images_are_resized_as_the_classifiers_data(trained, tmp_path):
    classifier = tmp_path / "nearest.h5"
    shutil.copy(trained["classifier"], classifier)
    with h5py.File(classifier, "a") as f:  # the same weights, trained on nearest-resized data
        f["cladec"].attrs["resize"] = json.dumps("nearest")
    small = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    (tmp_path / "mine").mkdir()
    Image.fromarray(small, "L").save(tmp_path / "mine" / "a.png")
    arrays = tmp_path / "arrays.npz"
    invoke("explain", "--classifier", classifier, "--decoder", trained["decoder"], "--images", tmp_path / "mine",
           "--out", tmp_path / "grid.png", "--save-arrays", arrays, "-q")
    upscaled = small.repeat(2, axis=0).repeat(2, axis=1) / 255.0  # nearest, not bilinear
    np.testing.assert_allclose(np.load(arrays)["original"][0, ..., 0], upscaled, atol=1e-6)


def test_empty_image_folder(trained, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "grid.png"
    result = explain(trained, out, "--images", tmp_path / "empty", expect=2)
    assert "no image files" in result.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def other_classifier(trained, tmp_path_factory):
    """A classifier of the same architecture and data but another seed (untrained: quick)."""
    path = tmp_path_factory.mktemp("other") / "classifier.h5"
    invoke("train-classifier", "--dataset", trained["dataset"], "--epochs", 0, "--seed", 1, "-q", "--out", path)
    return path


@pytest.mark.parametrize("refae", [False, True], ids=["decoder", "refae"])
def test_decoder_of_another_classifier_is_refused(trained, other_classifier, tmp_path, refae):
    out = tmp_path / "grid.png"
    args = ["explain", "--classifier", other_classifier, "--decoder", trained["decoder"], "--indices", "0",
            "--out", out, "-q"]
    if refae:  # a matching decoder, a foreign RefAE
        invoke("train-decoder", "--classifier", other_classifier, "--layer", -2, "--epochs", 0, "--batch-size", 32,
               "-q", "--out", tmp_path / "own.h5")
        args[4] = tmp_path / "own.h5"
        args += ["--refae", trained["refae"]]
    result = invoke(*args, expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cladec: error:")
    assert "another classifier" in lines[0]
    assert str(trained["refae"] if refae else trained["decoder"]) in lines[0]
    assert not out.exists()
    assert not list(tmp_path.glob("*.png"))


def test_attribution_maps_beside_cladec(trained, tmp_path):
    out, arrays = tmp_path / "grid.png", tmp_path / "arrays.npz"
    explain(trained, out, "--indices", "0,1", "--method", "gradcam", "--method", "saliency", "--method", "occlusion",
            "--save-arrays", arrays)
    assert png_size(out) == layout_for(TILE_SHAPE).size(2, 4 + 3)
    with np.load(arrays) as saved:
        for key in ("gradcam", "saliency", "occlusion"):
            assert saved[key].shape == (2, 32, 32) and saved[key].min() >= 0 and saved[key].max() == 1.0, key


def test_ridge_decoder_beside_cladec(trained, tmp_path, setup):
    out, arrays = tmp_path / "grid.png", tmp_path / "arrays.npz"
    explain(trained, out, "--indices", "0,1,2", "--method", "ridge", "--method", "gradcam", "--save-arrays", arrays,
            refae=False)
    assert png_size(out) == layout_for(TILE_SHAPE).size(3, 2 + 2)
    classifier, _, dataset = setup
    with np.load(arrays) as saved:
        assert saved["ridge"].shape == saved["original"].shape and 0 <= saved["ridge"].min() <= saved["ridge"].max() <= 1
        assert not np.allclose(saved["ridge"], saved["cladec"])
        # Each picture is captioned with what the classifier makes of it.
        assert list(saved["pred_ridge"]) == list(classifier.predict(saved["ridge"], verbose=0).argmax(axis=1))


def test_attribution_methods_match_the_library():
    from cladec_cli.cli.options import ATTRIBUTION_METHODS, DECODING_METHODS
    from cladec_cli.methods import ATTRIBUTIONS, DECODINGS

    assert ATTRIBUTION_METHODS == ATTRIBUTIONS
    assert DECODING_METHODS == DECODINGS


def test_prototypes_one_row_per_class(trained, tmp_path):
    out, arrays = tmp_path / "prototypes.png", tmp_path / "arrays.npz"
    result = explain(trained, out, "--prototypes", "--save-arrays", arrays, "--json")
    assert json.loads(result.stdout)["classes"] == ["top-left", "top-right", "bottom-left", "bottom-right"]
    assert png_size(out) == layout_for(TILE_SHAPE).size(4, 4)
    with np.load(arrays) as saved:
        assert saved["cladec"].shape == saved["refae"].shape == saved["original"].shape == (4, 32, 32, 1)
        np.testing.assert_array_equal(saved["labels"], [0, 1, 2, 3])
        # The class mean of the synthetic data is bright in the class's own quadrant.
        quadrant_means = saved["original"][:, :, :, 0].reshape(4, 2, 16, 2, 16).mean(axis=(2, 4)).reshape(4, 4)
        assert quadrant_means.argmax(axis=1).tolist() == [0, 1, 2, 3]
    explain(trained, out, "--prototypes", "--class", "top-left", "--overwrite", expect=2)


def test_contrast_strip(trained, tmp_path, monkeypatch):
    from cladec_cli import contrast as contrast_module

    drawn = []
    render = contrast_module.render_grid
    monkeypatch.setattr(contrast_module, "render_grid", lambda rows, *args: drawn.append(rows) or render(rows, *args))
    out = tmp_path / "contrast.png"
    result = invoke("contrast", "--classifier", trained["classifier"], "--decoder", trained["decoder"], "--index", 0,
                    "--to-class", "bottom-right", "--steps", 4, "--out", out, "--json")
    summary = json.loads(result.stdout)
    assert summary["mix"] == [0, 1 / 3, 2 / 3, 1] and len(summary["classes"]) == 4
    assert png_size(out) == layout_for(TILE_SHAPE).size(1, 4 + 2)
    # The start is captioned with its true class (test image 0 is of class top-left) and the prediction.
    (_, captions), = drawn[0]
    assert captions[0].startswith("true: top-left\npred: ") and captions[-1] == "nearest of the class"
    missing = invoke("contrast", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                     "--to-class", "bottom-right", "--out", tmp_path / "x.png", expect=2)
    assert "--index or --image" in missing.output and not (tmp_path / "x.png").exists()


def test_several_layers_side_by_side(trained, setup, tmp_path):
    logits_decoder = tmp_path / "cladec_L-1.h5"
    invoke("train-decoder", "--classifier", trained["classifier"], "--layer", -1, "--epochs", 1, "--batch-size", 32,
           "-q", "--out", logits_decoder)
    out = tmp_path / "layers.png"
    result = invoke("explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                    "--decoder", logits_decoder, "--indices", "0,1", "--out", out, "--json")
    summary = json.loads(result.stdout)
    assert len(summary["layers"]) == 2 and summary["layers"][0] != summary["layers"][1]
    assert png_size(out) == layout_for(TILE_SHAPE).size(2, 1 + 2)  # original, then ClaDec per layer
    with_refae = invoke("explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                        "--decoder", logits_decoder, "--refae", trained["refae"], "--indices", "0",
                        "--out", tmp_path / "bad.png", expect=2)
    assert "one RefAE per decoder" in with_refae.output and not (tmp_path / "bad.png").exists()
    # The logits are the classifier's output: what follows them is nothing, and contrast starts there too.
    contrast = json.loads(invoke("contrast", "--classifier", trained["classifier"], "--decoder", logits_decoder,
                                 "--index", 0, "--to-class", "bottom-right", "--steps", 3,
                                 "--out", tmp_path / "contrast.png", "--json").stdout)
    classifier, _, data = setup
    sees = data.class_names[int(np.argmax(classifier.predict(data.test.subset([0]).arrays()[0], verbose=0)))]
    assert len(contrast["classes"]) == 3 and contrast["classes"][0] == sees


def test_contrast_needs_one_readable_start(trained, tmp_path):
    result = invoke("contrast", "--classifier", trained["classifier"], "--decoder", trained["decoder"], "--index", 0,
                    "--to-class", "top-left", "--image", tmp_path / "none.png", "--out", tmp_path / "x.png", expect=2)
    assert "--index or --image" in result.output
    missing = invoke("contrast", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                     "--image", tmp_path / "none.png", "--to-class", "top-left", "--out", tmp_path / "x.png", expect=2)
    assert "is not a file" in missing.output and "Traceback" not in missing.output


def test_image_choices_that_contradict_each_other_are_refused(trained, tmp_path):
    out = tmp_path / "grid.png"
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.full((32, 32), 200, np.uint8), "L").save(mine / f"{name}.png")
    for args, words in ((("--indices", "0", "--class", "top-left"), "--indices names the images itself; leave out "
                                                                    "--class and --count"),
                        (("--indices", "0,1", "--count", "3"), "--indices names the images itself"),
                        (("--indices", ""), "--indices names no image"),
                        (("--images", mine, "--class", "top-left"), "--images explains your own files")):
        result = explain(trained, out, *args, expect=2)
        assert words in result.stderr and result.stderr.count("\n") == 1 and not out.exists()
    assert json.loads(explain(trained, out, "--images", mine, "--count", 2, "--json").stdout)["images"] == \
        ["a.png", "b.png"]
    fewer = explain(trained, tmp_path / "few.png", "--class", "top-left", "--count", 1000, "--json")
    assert len(json.loads(fewer.stdout)["images"]) == 20
    assert "the test split has 20 images of class top-left, fewer than --count 1000" in fewer.stderr


def test_resize_fits_your_own_images_without_contradicting_the_training_images(trained, tmp_path):
    # The classifier's images were fitted bilinearly; --resize nearest with your own files fits those files.
    mine = tmp_path / "mine"
    mine.mkdir()
    Image.fromarray(np.full((16, 16), 200, np.uint8), "L").save(mine / "a.png")
    explain(trained, tmp_path / "g.png", "--images", mine, "--method", "ridge", "--resize", "nearest")
    invoke("contrast", "--classifier", trained["classifier"], "--decoder", trained["decoder"], "--image",
           mine / "a.png", "--to-class", "top-left", "--steps", 2, "--resize", "nearest", "-q",
           "--out", tmp_path / "c.png")
    assert (tmp_path / "g.png").exists() and (tmp_path / "c.png").exists()
    # Without your own files, a contradicting --resize is refused.
    refused = explain(trained, tmp_path / "x.png", "--resize", "nearest", expect=2)
    assert "--resize nearest differs from the classifier's bilinear" in refused.stderr


def test_contrast_towards_the_class_already_seen_says_so(trained, tmp_path):
    args = ("contrast", "--classifier", trained["classifier"], "--decoder", trained["decoder"], "--index", 1,
            "--steps", 2)
    seen = json.loads(invoke(*args, "--to-class", "top-left", "--out", tmp_path / "a.png", "--json").stdout)["classes"][0]
    other = "top-left" if seen != "top-left" else "top-right"
    assert "already sees" not in invoke(*args, "--to-class", other, "--out", tmp_path / "b.png").stderr
    result = invoke(*args, "--to-class", seen, "--out", tmp_path / "c.png")
    assert f"warning: the classifier already sees test1 as {seen}" in result.stderr


def test_attribution_maps_that_are_zero_everywhere_are_noted(tmp_path, npz_dataset):
    # Every class's logit falls as the ReLU layer's activations rise: Grad-CAM, which keeps what raises the
    # predicted class's score, is zero everywhere.
    import keras

    inputs = keras.Input((32, 32, 1))
    conv = keras.layers.Conv2D(2, 3, activation="relu", name="conv", bias_initializer="ones")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(conv)
    falling = keras.layers.Dense(4, name="logits", kernel_initializer=keras.initializers.Constant(-1.0),
                                 bias_initializer=keras.initializers.Constant([0.0, 0.1, 0.2, 0.3]))
    path = tmp_path / "falling.keras"
    keras.Model(inputs, falling(pooled)).save(path)
    decoder = tmp_path / "d.h5"
    invoke("train-decoder", "--classifier", path, "--dataset", npz_dataset, "--layer", "conv", "--epochs", 0, "-q",
           "--out", decoder)
    said = invoke("explain", "--classifier", path, "--decoder", decoder, "--indices", "0,1,2", "--method", "gradcam",
                  "--out", tmp_path / "g.png").stderr
    assert ("note: zero everywhere, so drawn black: Grad-CAM for 3 of 3 images (nothing the method looks at raises "
            "the predicted class's score)") in said
