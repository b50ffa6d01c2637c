"""A keras.applications model end to end: MobileNetV2 (weights=None, saved as .keras) on an image
folder, with its own pixel range [-1, 1]: layers, train-decoder, train-refae and explain."""

import json

import keras
import numpy as np
import pytest

from cladec_cli.data.datasets import load_dataset
from conftest import invoke, read_group
from image_files import write_image_folder

TRAIN = ("--epochs", 1, "--batch-size", 8, "-q")


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("mobilenet")
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4)
    model.save(root / "mobilenet.keras")
    images = write_image_folder(root / "images", classes=("a", "b", "c", "d"), n_per_class=5, size=32)
    return root / "mobilenet.keras", f"folder:{images}"


def test_mobilenet_v2_end_to_end(mobilenet, tmp_path):
    classifier, dataset = mobilenet
    found = json.loads(invoke("layers", "--classifier", classifier, "--json").stdout)
    names = [row["name"] for row in found]
    assert found[-1] == {"index": -1, "name": "predictions", "shape": [4]}
    assert found[-3] == {"index": -3, "name": "out_relu", "shape": [1, 1, 1280]}
    assert names[0] == "Conv1_relu" and "Conv1" not in names and "bn_Conv1" not in names  # pre-activations left out
    assert "block_5_add" in names

    decoder, refae = tmp_path / "dec.h5", tmp_path / "refae.h5"
    common = ("--classifier", classifier, "--layer", "block_5_add", "--dataset", dataset, "--pixel-range", "-1,1")
    for command, out in (("train-decoder", decoder), ("train-refae", refae)):
        record = json.loads(invoke(command, *common, "--out", out, *TRAIN, "--json").stdout)
        assert record["pixel_range"] == "-1,1" and record["layer_shape"] == [4, 4, 16]
        assert np.isfinite(record["metrics"]["test_rec_loss"])
    assert read_group(refae)["pixel_range"] == "-1,1"

    arrays, grid = tmp_path / "arrays.npz", tmp_path / "grid.png"
    invoke("explain", "--classifier", classifier, "--decoder", decoder, "--refae", refae, "--dataset", dataset,
           "--indices", "0,1,2,3", "--out", grid, "--save-arrays", arrays, "-q")
    saved = np.load(arrays)
    for key in ("original", "cladec", "refae", "difference"):
        assert saved[key].shape == (4, 32, 32, 3), key
        assert 0.0 <= saved[key].min() and saved[key].max() <= 1.0, key
    originals = load_dataset(dataset, image_shape=(32, 32, 3)).test.arrays()[0][:4]
    np.testing.assert_allclose(saved["original"], originals, atol=1e-6)
    model = keras.models.load_model(classifier, compile=False)
    expected = model.predict(originals * 2 - 1, verbose=0).argmax(1)  # what MobileNetV2 sees: [-1, 1]
    np.testing.assert_array_equal(saved["pred_original"], expected)
    assert grid.stat().st_size > 0
