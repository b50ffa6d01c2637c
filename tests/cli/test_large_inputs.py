"""A model whose input is large for the dataset's images: images that would take too much memory fitted
to it are held as they come and fitted batch by batch, with the results of images held fitted."""

import json

import h5py
import keras
import numpy as np
import pytest

from cladec_cli import memory
from conftest import invoke, synthetic_images
from test_any_model import residual_classifier

TRAIN = ("--epochs", 1, "--batch-size", 16)


@pytest.fixture(scope="module")
def rgb48_classifier(tmp_path_factory):
    """A 48x48 RGB classifier, to explain on the 32x32 gray npz dataset."""
    path = tmp_path_factory.mktemp("rgb48") / "resnetish.h5"
    model = residual_classifier()
    x, y = synthetic_images(32, size=48, channels=3)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x / 255.0, y, epochs=1, batch_size=16, verbose=0)
    model.save(path)
    return path


def _weights(path):
    with h5py.File(path, "r") as f:
        found = []
        f.visititems(lambda name, item: found.append((name, item[()])) if isinstance(item, h5py.Dataset) else None)
    return found


def test_a_decoder_trained_on_images_fitted_batch_by_batch_is_the_one_images_held_fitted_give(
        monkeypatch, tmp_path, rgb48_classifier, npz_dataset):
    args = ("train-decoder", "--classifier", rgb48_classifier, "--layer", "res_out", "--dataset", npz_dataset,
            *TRAIN, "--json", "--out")
    held = invoke(*args, tmp_path / "held.h5")
    assert "fitted batch by batch" not in held.stderr
    monkeypatch.setattr(memory, "hold_limit", lambda: 0)
    batched = invoke(*args, tmp_path / "batched.h5")
    assert ("note: the 320 " + npz_dataset + " images would take 0.0 GB fitted to 48x48x3, more than the 0.0 GB "
            "that data held whole may take here") in batched.stderr
    a, b = json.loads(held.stdout), json.loads(batched.stdout)
    assert b["metrics"]["test_rec_loss"] == pytest.approx(a["metrics"]["test_rec_loss"], rel=1e-6)
    for (name_a, value_a), (name_b, value_b) in zip(_weights(tmp_path / "held.h5"), _weights(tmp_path / "batched.h5"),
                                                    strict=True):
        assert name_a == name_b
        np.testing.assert_allclose(value_b, value_a, rtol=1e-6, atol=1e-7, err_msg=name_a)


def test_batchnorm_statistics_from_data_name_why_they_cannot_be_had(monkeypatch, tmp_path, rgb48_classifier,
                                                                     npz_dataset):
    monkeypatch.setattr(memory, "hold_limit", lambda: 0)
    result = invoke("train-refae", "--classifier", rgb48_classifier, "--layer", "res_out", "--dataset", npz_dataset,
                    *TRAIN, "--bn-statistics", "data", "--out", tmp_path / "refae.h5", expect=2)
    assert ("--bn-statistics data: BatchNorm statistics from data need a dataset held in memory; in this one its "
            "images are fitted to the model batch by batch, being too large to hold fitted (a smaller --limit holds "
            "it)") in result.stderr
    assert not (tmp_path / "refae.h5").exists()


def test_reproduce_refuses_acc_eval_statistics_from_data_it_cannot_have_before_writing_anything(
        monkeypatch, tmp_path, npz_dataset):
    monkeypatch.setattr(memory, "hold_limit", lambda: 0)
    result = invoke("reproduce", "table4", "--dataset", npz_dataset, "--runs", 1, *TRAIN, "--eval-bn-statistics",
                    "data", "--out", tmp_path / "table4", expect=2)
    assert "fitted batch by batch" in result.stderr
    assert ("--eval-bn-statistics data: BatchNorm statistics from data need a dataset held in memory; in this one "
            "its images are fitted to the model batch by batch") in result.stderr
    assert not (tmp_path / "table4").exists()
