"""Helpers for training several models in one pass."""

import keras
import numpy as np
import pytest

from cladec_cli.errors import UsageError
from cladec_cli.fused import model_history, one_output_each, renamed, seeded


def test_model_history_weighs_a_models_own_outputs():
    history = {"loss": [9.0, 7.0], "rec_1_loss": [2.0, 1.0], "ce_1_loss": [4.0, 3.0], "rec_2_loss": [5.0, 4.0]}
    assert model_history(history, {"rec_1": 0.5, "ce_1": 0.25}) == {"loss": [2.0, 1.25]}
    assert model_history(history, {"rec_2": 1.0}) == {"loss": [5.0, 4.0]}
    # A model with one output has only Keras' total.
    assert model_history({"loss": [3.0]}, {"rec_1": 1.0}) == {"loss": [3.0]}
    assert model_history({}, {"rec_1": 1.0}) == {"loss": []}


def test_seeded_builds_start_alike():
    first = seeded(5, lambda: keras.initializers.GlorotUniform()((4, 3)))
    keras.initializers.GlorotUniform()((4, 3))  # moves the random state on
    again = seeded(5, lambda: keras.initializers.GlorotUniform()((4, 3)))
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))


def test_renamed_model_shares_layers_and_config():
    inputs = keras.Input((4,), name="code")
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs), name="decoder_3")
    copy = renamed(model, "decoder")
    assert copy.name == "decoder"
    assert copy.get_layer("d") is model.get_layer("d")
    config = model.get_config()
    assert copy.get_config() == {**config, "name": "decoder"}


def test_one_output_each(tmp_path):
    assert one_output_each(["a", "b"], [tmp_path / "a.h5", str(tmp_path / "b.h5")]) == [tmp_path / "a.h5",
                                                                                      tmp_path / "b.h5"]
    with pytest.raises(UsageError, match="2 layers but 1 output"):
        one_output_each(["a", "b"], [tmp_path / "a.h5"])
    with pytest.raises(UsageError, match="same file"):
        one_output_each(["a", "b"], [tmp_path / "a.h5", tmp_path / "a.h5"])
