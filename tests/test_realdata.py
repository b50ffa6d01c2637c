"""Short end-to-end runs on the real Fashion-MNIST files."""

import json

import pytest
from PIL import Image

from cladec_cli.data.datasets import load_dataset
from conftest import invoke, requires_fashion_mnist

pytestmark = [pytest.mark.realdata, requires_fashion_mnist]


def test_real_fashion_mnist_loads():
    data = load_dataset("fashion_mnist", limit=1000)
    assert data.image_shape == (32, 32, 1)
    assert len(data.train) == 1000 and len(data.test) == 1000
    assert data.class_names[8] == "Bag"
    assert 0.0 <= data.train.images.min() and data.train.images.max() <= 1.0


def test_real_data_end_to_end(tmp_path):
    clf, dec, ref = tmp_path / "classifier.h5", tmp_path / "cladec.h5", tmp_path / "refae.h5"
    result = invoke("train-classifier", "--limit", 3000, "--epochs", 1, "--batch-size", 16, "--json", "--out", clf)
    summary = json.loads(result.stdout)
    assert summary["dataset"] == "fashion_mnist" and summary["limit"] == 3000
    assert summary["metrics"]["test_accuracy"] > 0.5
    invoke("train-decoder", "--classifier", clf, "--layer", -1, "--epochs", 1, "-q", "--out", dec)
    invoke("train-refae", "--classifier", clf, "--layer", -1, "--epochs", 1, "-q", "--out", ref)
    grid = tmp_path / "bags.png"
    invoke("explain", "--classifier", clf, "--decoder", dec, "--refae", ref, "--class", "Bag", "--count", 3,
           "--out", grid)
    with Image.open(grid) as image:
        assert image.size[1] > image.size[0] / 2
