"""The data split has its own seed: models trained with other training seeds than their classifier are
tested on the classifier's test images, and options that would change the split are refused."""

import json

import h5py
import numpy as np
import pytest

from cladec_cli.data.datasets import load_dataset
from cladec_cli.data.readers import read_folder
from cladec_cli.explainer import load_explainer
from cladec_cli.reconstruction import rec_loss
from conftest import invoke
from image_files import write_image_folder

TRAIN = ("--epochs", 1, "--batch-size", 16, "-q")


def run(*args):
    return json.loads(invoke(*args, "--json").stdout)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder: dataset without train/ and test/, and a classifier trained on it with --seed 3."""
    root = tmp_path_factory.mktemp("split")
    data = write_image_folder(root / "pets", n_per_class=10, size=32)
    classifier = root / "classifier.h5"
    record = run("train-classifier", "--dataset", f"folder:{data}", "--seed", 3, *TRAIN, "--out", classifier)
    return {"data": data, "classifier": classifier, "record": record, "root": root}


def held_out(folder, split_seed=0, test_fraction=0.2):
    """Paths of the folder's test images for a split seed."""
    return sorted(read_folder(folder, test_fraction, split_seed).test.paths)


def test_the_split_seed_is_not_the_training_seed(folder):
    record = folder["record"]
    assert record["seed"] == 3
    assert (record["split_seed"], record["test_fraction"], record["limit"]) == (0, 0.2, 0)
    # The seeds 0 and 3 hold out different images, so the test below can tell which one was used.
    assert held_out(folder["data"], 0) != held_out(folder["data"], 3)
    dataset = load_dataset(f"folder:{folder['data']}")
    assert sorted(dataset.test.paths) == held_out(folder["data"], 0)


def test_decoder_and_evaluate_use_the_classifiers_test_images(folder, tmp_path):
    decoder, refae = tmp_path / "d.h5", tmp_path / "r.h5"
    dec = run("train-decoder", "--classifier", folder["classifier"], "--layer", -2, "--seed", 5, *TRAIN,
              "--out", decoder)
    run("train-refae", "--classifier", folder["classifier"], "--layer", -2, "--seed", 6, *TRAIN, "--out", refae)
    assert (dec["seed"], dec["split_seed"], dec["test_fraction"]) == (5, 0, 0.2)
    # The decoder's test Rec. Loss is measured on the classifier's test images.
    explainer = load_explainer(folder["classifier"], decoder, refae)
    test = load_dataset(f"folder:{folder['data']}", split_seed=0).test
    images, _ = test.arrays()
    assert dec["metrics"]["test_rec_loss"] == pytest.approx(
        rec_loss(images, explainer.reconstructions(images)["cladec"]), rel=1e-4)
    result = run("evaluate", "--classifier", folder["classifier"], "--decoder", decoder, "--refae", refae,
                 "--eval-epochs", 0, "--seed", 7, "--out", tmp_path / "m.json")
    assert (result["split_seed"], result["test_images"]) == (0, len(test))
    assert result["rec_loss"]["cladec"] == pytest.approx(dec["metrics"]["test_rec_loss"], rel=1e-4)
    arrays = tmp_path / "a.npz"
    invoke("explain", "--classifier", folder["classifier"], "--decoder", decoder, "--count", 3,
           "--out", tmp_path / "g.png", "--save-arrays", arrays, "-q")
    np.testing.assert_array_equal(np.load(arrays)["original"], images[:3])


@pytest.mark.parametrize("option, value, recorded", [("--split-seed", 1, "0"), ("--test-fraction", 0.5, "0.2"),
                                                     ("--limit", 5, "none")])
def test_a_split_other_than_the_classifiers_is_refused(folder, tmp_path, option, value, recorded):
    out = tmp_path / "d.h5"
    for command in (("train-decoder", "--out", out), ("train-refae", "--out", out)):
        result = invoke(*command, "--classifier", folder["classifier"], option, value, *TRAIN, expect=2)
        assert result.stderr.count("\n") == 1
        assert f"{option} {value} differs from the classifier's {recorded}" in result.stderr
    assert not out.exists()
    # Saying what the classifier recorded is fine.
    same = {"--split-seed": 0, "--test-fraction": 0.2}.get(option)
    if same is not None:
        assert run("train-decoder", "--classifier", folder["classifier"], option, same, "--epochs", 0,
                   "--out", out)["split_seed"] == 0


def test_an_explicit_split_seed_is_recorded_and_inherited(folder, tmp_path):
    classifier = tmp_path / "c.h5"
    spec = f"folder:{folder['data']}"
    record = run("train-classifier", "--dataset", spec, "--split-seed", 3, "--test-fraction", 0.3, "--limit", 20,
                 "--epochs", 0, "--out", classifier)
    assert (record["split_seed"], record["test_fraction"], record["limit"]) == (3, 0.3, 20)
    dec = run("train-decoder", "--classifier", classifier, "--epochs", 0, "--out", tmp_path / "d.h5")
    assert (dec["split_seed"], dec["test_fraction"], dec["limit"]) == (3, 0.3, 20)
    expected = load_dataset(spec, split_seed=3, test_fraction=0.3, limit=20)
    assert set(expected.test.paths) == set(held_out(folder["data"], 3, 0.3))  # 9 test images, under the limit


def test_a_classifier_from_before_the_split_seed_keeps_its_split(folder, tmp_path):
    # Such a classifier chose its folder split with its training seed.
    old = tmp_path / "old.h5"
    old.write_bytes(folder["classifier"].read_bytes())
    with h5py.File(old, "a") as f:
        for key in ("split_seed", "test_fraction"):
            del f["cladec"].attrs[key]
    dec = run("train-decoder", "--classifier", old, "--epochs", 0, "--out", tmp_path / "d.h5")
    assert (dec["split_seed"], dec["test_fraction"]) == (3, 0.2)
