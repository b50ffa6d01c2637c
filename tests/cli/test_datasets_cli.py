"""The whole CLI workflow on other datasets: a miniature TinyImageNet (with its 4x wider architecture),
miniature MNIST IDX files with --rec-loss bce, and a `folder:` dataset streamed from disk."""

import json

import keras
import numpy as np
import pytest

from cladec_cli.data.datasets import load_dataset
from cladec_cli.explainer import load_explainer
from cladec_cli.reconstruction import rec_loss
from conftest import invoke, write_idx_dataset
from image_files import write_image_folder, write_tiny_imagenet

TRAIN = ("--epochs", 1, "--batch-size", 16, "-q", "--json")


def run(*args):
    return json.loads(invoke(*args).stdout)


def conv_filters(path):
    """{layer name: filters} of the (Transposed) convolutions in a model file."""
    model = keras.models.load_model(path, compile=False)
    return {layer.name: layer.filters for layer in model.layers if hasattr(layer, "filters")}


def measured_rec_loss(classifier, decoder, data_dir, refae=None):
    """The mean per-image SSE over the test split, recomputed from the saved files."""
    explainer = load_explainer(classifier, decoder, refae)
    dataset = load_dataset(explainer.classifier_provenance["dataset"], data_dir=data_dir,
                           image_shape=explainer.image_shape)
    images, _ = dataset.test.arrays()
    return {k: rec_loss(images, v) for k, v in explainer.reconstructions(images).items()}


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("tin")
    data = write_tiny_imagenet(root / "tiny-imagenet-200", n_train=8, n_val=4)
    return {"data": root, "classifier": root / "classifier.h5", "decoder": root / "dec.h5",
            "refae": root / "refae.h5", "root": data}


def test_tiny_imagenet_workflow(tiny_imagenet, tmp_path):
    t = tiny_imagenet
    record = run("train-classifier", "--dataset", "tiny_imagenet", "--data-dir", t["data"], *TRAIN,
                 "--out", t["classifier"])
    assert record["arch"] == "tiny_imagenet"  # the default for this dataset
    assert record["image_shape"] == [64, 64, 3]
    assert record["class_names"] == ["goldfish", "European fire salamander", "bullfrog"]
    test = load_dataset("tiny_imagenet", data_dir=t["data"]).test
    predicted = keras.models.load_model(t["classifier"]).predict(test.arrays()[0], verbose=0).argmax(axis=1)
    assert record["metrics"]["test_accuracy"] == pytest.approx(np.mean(predicted == test.labels))
    filters = conv_filters(t["classifier"])
    # Twice the conv layers per block and four times the paper's width.
    assert filters == {f"block{b}_conv{c}": w for b, w in enumerate((64, 128, 256, 512, 1024), 1) for c in (1, 2)}
    rows = json.loads(invoke("layers", "--classifier", t["classifier"], "--json").stdout)
    assert [(r["name"], r["shape"]) for r in rows[-3:]] == [("block5_relu1", [2, 2, 1024]),
                                                             ("block5", [2, 2, 1024]), ("logits", [3])]

    # The dataset and its folder come from the classifier's provenance and --data-dir.
    dec = run("train-decoder", "--classifier", t["classifier"], "--layer", "block3", "--data-dir", t["data"],
              *TRAIN, "--out", t["decoder"])
    assert dec["dataset"] == "tiny_imagenet" and dec["layer_shape"] == [8, 8, 256]
    assert dec["classifier_arch"] == "tiny_imagenet" and dec["cached_codes"] is False  # streamed split
    # The decoder is four times as wide too: 8x8 -> 16 -> 32 -> 64 with 256 and 128 hidden filters.
    assert conv_filters(t["decoder"]) == {"dec_deconv1": 256, "dec_deconv2": 128, "dec_out": 3}
    ref = run("train-refae", "--classifier", t["classifier"], "--layer", -6, "--data-dir", t["data"],
              *TRAIN, "--out", t["refae"])
    assert ref["layer_name"] == "block3"
    measured = measured_rec_loss(t["classifier"], t["decoder"], t["data"], t["refae"])
    assert measured["cladec"] == pytest.approx(dec["metrics"]["test_rec_loss"], rel=1e-4)
    assert measured["refae"] == pytest.approx(ref["metrics"]["test_rec_loss"], rel=1e-4)

    arrays = tmp_path / "a.npz"
    summary = run("explain", "--classifier", t["classifier"], "--decoder", t["decoder"], "--refae", t["refae"],
                  "--data-dir", t["data"], "--class", "bullfrog", "--count", 2, "--out", tmp_path / "g.png",
                  "--save-arrays", arrays, "--json")
    assert summary["images"] == ["test #2", "test #5"]  # the val images annotated with the third wnid
    saved = np.load(arrays)
    np.testing.assert_array_equal(saved["labels"], [2, 2])
    assert saved["original"].shape == saved["cladec"].shape == (2, 64, 64, 3)


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    write_idx_dataset(root, n_train=64, n_test=20)
    classifier = root / "classifier.h5"
    record = run("train-classifier", "--dataset", "mnist", "--data-dir", root, *TRAIN, "--out", classifier)
    return {"data": root, "classifier": classifier, "record": record}


def test_mnist_classifier_from_idx_files(mnist):
    record = mnist["record"]
    assert record["dataset"] == "mnist" and record["arch"] == "paper"
    assert record["image_shape"] == [32, 32, 1]
    assert record["class_names"] == [str(i) for i in range(10)]


def test_mnist_bce_training_reports_sse(mnist, tmp_path):
    common = ("--classifier", mnist["classifier"], "--layer", -2, "--data-dir", mnist["data"], *TRAIN)
    bce = run("train-decoder", *common, "--rec-loss", "bce", "--out", tmp_path / "bce.h5")
    sse = run("train-decoder", *common, "--out", tmp_path / "sse.h5")
    ref = run("train-refae", *common, "--rec-loss", "bce", "--out", tmp_path / "refae.h5")
    assert bce["rec_loss"] == "bce" and sse["rec_loss"] == "sse" and ref["rec_loss"] == "bce"
    measured = measured_rec_loss(mnist["classifier"], tmp_path / "bce.h5", mnist["data"], tmp_path / "refae.h5")
    # Training minimised BCE, but the reported Rec. Loss is the per-image SSE of the saved models.
    assert measured["cladec"] == pytest.approx(bce["metrics"]["test_rec_loss"], rel=1e-4)
    assert measured["refae"] == pytest.approx(ref["metrics"]["test_rec_loss"], rel=1e-4)
    # The training losses are on different scales: per-image BCE sums are far above SSE sums.
    assert bce["metrics"]["train_loss"] > 1.5 * sse["metrics"]["train_loss"]
    assert ref["metrics"]["train_loss"] > 1.5 * ref["metrics"]["test_rec_loss"]
    assert bce["metrics"]["test_rec_loss"] != sse["metrics"]["test_rec_loss"]
    info = json.loads(invoke("info", tmp_path / "bce.h5", "--json").stdout)
    assert info["rec_loss"] == "bce" and info["dataset"] == "mnist"
    summary = run("explain", "--classifier", mnist["classifier"], "--decoder", tmp_path / "bce.h5",
                  "--refae", tmp_path / "refae.h5", "--data-dir", mnist["data"], "--indices", "3",
                  "--out", tmp_path / "g.png", "--json")
    assert summary["images"] == ["test #3"]


def test_folder_dataset_streams_through_the_workflow(tmp_path):
    root = write_image_folder(tmp_path / "pets", n_per_class=10, size=32)
    spec = f"folder:{root}"
    classifier, decoder = tmp_path / "c.h5", tmp_path / "d.h5"
    record = run("train-classifier", "--dataset", spec, "--test-fraction", 0.3, *TRAIN, "--out", classifier)
    assert record["class_names"] == ["cat", "dog", "eel"] and record["image_shape"] == [32, 32, 3]
    dec = run("train-decoder", "--classifier", classifier, "--layer", "block2", "--test-fraction", 0.3,
              *TRAIN, "--out", decoder)
    assert dec["cached_codes"] is False and dec["test_fraction"] == 0.3
    explainer = load_explainer(classifier, decoder)
    images, _ = load_dataset(spec, test_fraction=0.3, image_shape=explainer.image_shape).test.arrays()
    assert dec["metrics"]["test_rec_loss"] == pytest.approx(
        rec_loss(images, explainer.reconstructions(images)["cladec"]), rel=1e-4)
    # Caching codes would need the images in memory: refused in one line, nothing written.
    result = invoke("train-decoder", "--classifier", classifier, "--layer", "block2", "--cache-codes", "yes",
                    "--test-fraction", 0.3, *TRAIN, "--out", tmp_path / "cached.h5", expect=2)
    assert "--cache-codes yes needs a dataset held in memory" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "cached.h5").exists()
    summary = run("explain", "--classifier", classifier, "--decoder", decoder, "--test-fraction", 0.3,
                  "--out", tmp_path / "g.png", "--json")
    assert len(summary["images"]) == 8  # the default count; the 30 % test split has 9 images


def test_a_test_fraction_is_refused_for_data_with_their_own_test_split(tmp_path, npz_dataset):
    split = tmp_path / "split"
    for part in ("train", "test"):
        write_image_folder(split / part, n_per_class=4, size=32)
    for spec in (npz_dataset, f"folder:{split}"):
        result = invoke("train-classifier", "--dataset", spec, "--test-fraction", 0.3, *TRAIN,
                        "--out", tmp_path / "c.h5", expect=2)
        assert result.stderr.splitlines() == [
            f"cladec: error: {spec} comes with its own test split, so --test-fraction would change nothing; it "
            "applies to image folders without train/ and test/ sub-folders"]
        assert not (tmp_path / "c.h5").exists()


def test_a_limit_below_the_number_of_classes_is_warned_about(tmp_path, npz_dataset):
    said = invoke("train-classifier", "--dataset", npz_dataset, "--limit", 3, "--epochs", 0, "--out",
                  tmp_path / "c.h5").stderr
    assert "warning: --limit 3 keeps fewer images than there are classes (4): some classes then have none" in said
    enough = invoke("train-classifier", "--dataset", npz_dataset, "--limit", 4, "--epochs", 0, "--out",
                    tmp_path / "d.h5").stderr
    assert "warning" not in enough
