"""HDF5 model files written by Keras 2 (tf_keras 2.21, made by tests/keras2_files/make.py) load as the model
Keras 2 computed, where Keras 3 alone refuses them."""

import copy
from pathlib import Path

import keras
import numpy as np
import pytest

from cladec_cli import artifacts
from cladec_cli.errors import ArtifactError
from cladec_cli.keras2_files import upgraded, written_by_keras2
from conftest import invoke

FILES = Path(__file__).parent / "keras2_files"


def test_the_premise_keras_3_alone_refuses_the_file():
    with pytest.raises(Exception, match="DepthwiseConv2D|SeparableConv2D|Conv2DTranspose|RandomFlip|SpatialDropout2D|/"):
        keras.models.load_model(FILES / "keras2_cnn.h5", compile=False)


def test_a_keras_2_file_loads_as_keras_2_computed_it():
    model, _ = artifacts.load_model(FILES / "keras2_cnn.h5")
    expected = np.load(FILES / "keras2_cnn_predictions.npz")
    np.testing.assert_allclose(model.predict(expected["x"], verbose=0), expected["y"], rtol=1e-5, atol=1e-6)
    names = [layer.name for layer in model.layers]
    assert "block1_depthwise" in names and "block2_separable" in names and not any("/" in n for n in names)


def test_a_keras_2_base_model_nested_in_a_model_with_a_head_loads_as_keras_2_computed_it():
    """Keras 2 numbered the calls of a model built on its own input from 1; its names have slashes too."""
    with pytest.raises(Exception):
        keras.models.load_model(FILES / "keras2_nested.h5", compile=False)
    model, _ = artifacts.load_model(FILES / "keras2_nested.h5")
    expected = np.load(FILES / "keras2_nested_predictions.npz")
    np.testing.assert_allclose(model.predict(expected["x"], verbose=0), expected["y"], rtol=1e-5, atol=1e-6)
    assert [layer.name for layer in model.get_layer("base_v1").layers][1:] == ["stem_conv", "stem_depthwise"]


def test_keras_2s_hard_sigmoid_which_keras_3_computes_otherwise_is_refused():
    with pytest.raises(ArtifactError, match=r"written by Keras 2 and uses hard_sigmoid in gate \(hard_sigmoid\), "
                                            r"which Keras 3 computes otherwise"):
        artifacts.load_model(FILES / "keras2_hard_sigmoid.h5")


def test_cladec_explains_a_keras_2_file(tmp_path, npz_dataset):
    path = FILES / "keras2_cnn.h5"
    listed = invoke("layers", "--classifier", path).output
    assert "block1_depthwise" in listed and "augment_flip" not in listed  # augmentation is not explained
    invoke("train-decoder", "--classifier", path, "--layer", "block2_separable", "--dataset", npz_dataset,
           "--epochs", 1, "--batch-size", 16, "--out", tmp_path / "d.h5", "-q")
    invoke("explain", "--classifier", path, "--decoder", tmp_path / "d.h5", "--count", 2, "--out", tmp_path / "g.png",
           "-q")
    assert (tmp_path / "g.png").stat().st_size > 0


def _config(class_name, **settings):
    return {"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": class_name, "name": settings.get("name", "x"), "config": {"name": "x", **settings}}]}}


def test_only_settings_keras_2_computed_the_same_with_are_dropped():
    config = _config("Conv2DTranspose", filters=4, groups=1, kernel_size=3)
    new, changes = upgraded(config)
    assert "groups" not in new["config"]["layers"][0]["config"] and changes == ["x: groups"]
    assert "groups" in config["config"]["layers"][0]["config"]  # the given config is left as it was
    grouped = _config("Conv2DTranspose", filters=4, groups=2, kernel_size=3)  # groups Keras 3 cannot do: kept
    assert upgraded(copy.deepcopy(grouped)) == (grouped, [])
    assert upgraded(_config("Conv2D", filters=4, groups=1)) == (_config("Conv2D", filters=4, groups=1), [])


def test_slashes_in_names_give_way_to_underscores_where_the_config_names_layers():
    layers = [{"class_name": "InputLayer", "name": "in/put", "config": {"name": "in/put"}, "inbound_nodes": []},
              {"class_name": "Dense", "name": "a/b", "config": {"name": "a/b", "note": "a/b"},
               "inbound_nodes": [[["in/put", 0, 0, {}]]]},
              {"class_name": "Dense", "name": "a_b", "config": {"name": "a_b"}, "inbound_nodes": [[["a/b", 0, 0, {}]]]}]
    config = {"class_name": "Functional", "config": {"name": "m", "layers": layers, "input_layers": [["in/put", 0, 0]],
                                                     "output_layers": [["a_b", 0, 0]]}}
    new, changes = upgraded(config)
    entries = new["config"]["layers"]
    assert [(e["name"], e["config"]["name"]) for e in entries] == [("in_put", "in_put"), ("a_b_1", "a_b_1"),
                                                                   ("a_b", "a_b")]
    assert entries[1]["inbound_nodes"] == [[["in_put", 0, 0, {}]]] and entries[2]["inbound_nodes"] == [[["a_b_1", 0, 0, {}]]]
    assert new["config"]["input_layers"] == [["in_put", 0, 0]] and new["config"]["output_layers"] == [["a_b", 0, 0]]
    assert entries[1]["config"]["note"] == "a/b"  # a string that is no reference to a layer stays
    assert sorted(changes) == ["a/b -> a_b_1", "in/put -> in_put"]


def test_only_files_of_keras_2_are_upgraded():
    assert written_by_keras2("2.15.0") and written_by_keras2(b"2.21.0")
    assert not written_by_keras2("3.15.1") and not written_by_keras2(None)


def test_a_keras_2_file_with_what_keras_3_has_not_says_what_to_do():
    with pytest.raises(ArtifactError, match=r"keras2_tf_function.h5 as a Keras model: it was written by Keras 2 and "
                                            r"holds TFOpLambda, which Keras 3 has not; build the model with Keras 3's "
                                            r"layers .*load the file's weights into it"):
        artifacts.load_model(FILES / "keras2_tf_function.h5")


def test_a_layer_keras_cannot_build_is_named_with_the_reason_not_its_config(tmp_path):
    import h5py
    import json

    path = tmp_path / "grouped.h5"
    inputs = keras.Input((6, 6, 2))
    keras.Model(inputs, keras.layers.Conv2DTranspose(2, 3, name="up")(inputs)).save(path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Conv2DTranspose":
                layer["config"]["groups"] = 2
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
    with pytest.raises(ArtifactError, match=r"Keras cannot build its Conv2DTranspose layer: Unrecognized keyword "
                                            r"arguments passed to Conv2DTranspose: \{'groups': 2\}$"):
        artifacts.load_model(path)
