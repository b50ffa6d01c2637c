"""Models that Keras' HDF5 format would not give back as they were are refused before any work, and a
written file that loads back otherwise is never kept."""

import re

import keras
import numpy as np
import pytest
from keras import layers

from cladec_cli import artifacts
from cladec_cli.errors import ArtifactError, UsageError
from cladec_cli.hdf5_fidelity import check_loads_back, dropped_parts


def mean_over_height_and_width():
    """A mean over two axes written as `keras.ops.mean`, whose axis Keras' HDF5 loader drops."""
    inputs = keras.Input((8, 8, 2))
    h = layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    h = keras.ops.mean(h, axis=(1, 2))
    return keras.Model(inputs, layers.Dense(4, name="scores")(h))


def normalised_over_an_image():
    """LayerNormalization over height, width and channels, inside a nested model."""
    inputs = keras.Input((8, 8, 2))
    inner = keras.Sequential([keras.Input((8, 8, 2)), layers.LayerNormalization(axis=[1, 2, 3], name="norm")],
                             name="inner")
    return keras.Model(inputs, layers.Dense(4)(layers.Flatten()(inner(inputs))))


@pytest.mark.parametrize("build", [mean_over_height_and_width, normalised_over_an_image])
def test_the_premise_keras_hdf5_does_not_give_these_back(tmp_path, build):
    model = build()
    model.save(tmp_path / "plain.h5")
    x = np.random.default_rng(0).random((2, 8, 8, 2), dtype=np.float32)
    try:
        loaded = keras.models.load_model(tmp_path / "plain.h5", compile=False)
    except Exception:
        return  # refused on loading, far from where the file was written
    assert not np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("build, part", [(mean_over_height_and_width, r"mean(_\d+)? \(axis \(1, 2\)\)"),
                                         (normalised_over_an_image, r"norm \(axis \(1, 2, 3\)\)")])
def test_an_axis_of_several_dimensions_is_refused_and_nothing_written(tmp_path, build, part):
    model = build()
    (found,) = dropped_parts(model)
    assert re.fullmatch(part, found)  # an operation's name counts the operations made before it
    with pytest.raises(UsageError, match=r"cannot be saved as HDF5.*would drop that of " + part):
        artifacts.save_model(model, tmp_path / "m.h5", {"kind": "classifier"})
    assert list(tmp_path.iterdir()) == []


def test_one_axis_and_operations_without_an_axis_are_kept():
    inputs = keras.Input((8, 8, 2))
    h = layers.BatchNormalization(axis=-1)(layers.Conv2D(3, 3)(inputs))
    h = keras.ops.mean(keras.ops.relu(h) * 0.5, axis=1)
    model = keras.Model(inputs, layers.Dense(4)(layers.Flatten()(h)))
    assert dropped_parts(model) == []


def test_a_file_that_computes_otherwise_or_does_not_load_is_an_error(tmp_path):
    one, other = (keras.Sequential([keras.Input((3,)), layers.Dense(2, kernel_initializer=init)])
                  for init in ("zeros", "ones"))
    one.save(tmp_path / "one.h5")
    check_loads_back(tmp_path / "one.h5", one, {}, "one.h5")
    with pytest.raises(ArtifactError, match="other.h5 would load back from HDF5.*computing something else"):
        check_loads_back(tmp_path / "one.h5", other, {}, "other.h5")
    (tmp_path / "broken.h5").write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="broken.h5 would not load back from HDF5"):
        check_loads_back(tmp_path / "broken.h5", one, {}, "broken.h5")


def test_saving_tries_files_with_operations_before_keeping_them(tmp_path, monkeypatch):
    from cladec_cli import hdf5_fidelity

    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2)(inputs + inputs))
    tried = []
    monkeypatch.setattr(hdf5_fidelity, "check_loads_back", lambda path, *a: tried.append(path) or
                        (_ for _ in ()).throw(ArtifactError("m.h5 would load back from HDF5 computing else")))
    with pytest.raises(ArtifactError):
        artifacts.save_model(model, tmp_path / "m.h5", {"kind": "classifier"})
    assert len(tried) == 1 and not (tmp_path / "m.h5").exists()
    monkeypatch.undo()
    artifacts.save_model(model, tmp_path / "m.h5", {"kind": "classifier"})
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(artifacts.load_model(tmp_path / "m.h5")[0].predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6)


def test_an_axis_of_none_where_the_layer_takes_another_by_default_is_dropped_too():
    inputs = keras.Input((4, 3))
    model = keras.Model(inputs, layers.Normalization(axis=None, mean=0.5, variance=2.0, name="scaled")(inputs))
    assert dropped_parts(model) == ["scaled (axis ())"]  # Normalization keeps None as ()
    unreduced = keras.Model(inputs, keras.ops.sum(inputs, axis=None))  # None is the default: kept
    assert dropped_parts(unreduced) == []


def test_a_distributed_training_saves_without_trying_the_file(tmp_path, monkeypatch):
    """Loading a model and predicting are collective steps there, which the chief cannot take alone."""
    from cladec_cli import distribute, hdf5_fidelity

    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2)(inputs + inputs))
    tried = []
    monkeypatch.setattr(hdf5_fidelity, "check_loads_back", lambda path, *a: tried.append(path))
    monkeypatch.setattr(distribute, "active", lambda: True)
    artifacts.save_model(model, tmp_path / "m.h5", {"kind": "classifier"})
    assert tried == [] and (tmp_path / "m.h5").exists()


def _adapted(normalization):
    normalization.adapt(np.random.default_rng(0).random((8, 6, 6, 4), dtype=np.float32))
    return normalization


def _users_hdf5_file(tmp_path, step):
    """A model of `step` saved by plain Keras as HDF5, as a user's own classifier file would be."""
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, layers.Dense(3, name="scores")(layers.Flatten()(step(inputs))))
    model.save(tmp_path / "users.h5")
    return model, tmp_path / "users.h5"


@pytest.mark.parametrize("step, said", [
    (lambda h: layers.Softmax(axis=[1, 2], name="spatial")(h), r"spatial \(axis \(1, 2\), read back as -1\)"),
    pytest.param(lambda h: layers.LayerNormalization(axis=[1, 2], center=False, scale=False, name="norm")(h),
                 r"norm \(axis \(1, 2\), read back as -1\)",
                 marks=pytest.mark.skipif(keras.backend.backend() == "torch",
                                          reason="Keras' PyTorch backend runs no LayerNormalization over leading axes")),
])
def test_a_file_that_keras_loads_as_another_model_is_refused(tmp_path, step, said):
    model, path = _users_hdf5_file(tmp_path, step)
    x = np.random.default_rng(0).random((2, 6, 6, 4), dtype=np.float32)
    plain = keras.models.load_model(path, compile=False)  # the premise: Keras loads it without a word
    assert not np.allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ArtifactError, match=r"cannot load .*users.h5 as it was saved: Keras' HDF5 loader keeps an axis "
                                            r"of one dimension only and gives back " + said + r".*save the model as \.keras"):
        artifacts.load_model(path)


@pytest.mark.parametrize("step, said", [
    (lambda h: layers.LayerNormalization(axis=[1, 2, 3], name="norm")(h), r"norm \(axis \(1, 2, 3\)\)"),
    (lambda h: _adapted(layers.Normalization(axis=None, name="scaled"))(h), r"scaled \(axis none\)"),
])
def test_a_file_whose_weights_no_longer_fit_says_why(tmp_path, step, said):
    _, path = _users_hdf5_file(tmp_path, step)
    with pytest.raises(ArtifactError, match=r"dropped that of " + said + r", so that its weights no longer fit "
                                            r"\(Shape mismatch.*save the model as \.keras"):
        artifacts.load_model(path)


def test_a_file_written_by_cladec_before_it_refused_such_models_is_refused_on_loading(tmp_path, monkeypatch):
    from cladec_cli import hdf5_fidelity

    monkeypatch.setattr(hdf5_fidelity, "check_savable", lambda model, what: None)
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, layers.UnitNormalization(axis=[1, 2], name="unit")(inputs))
    artifacts.save_model(model, tmp_path / "refae.h5", {"kind": "refae"})
    with pytest.raises(ArtifactError, match=r"unit \(axis \(1, 2\), read back as -1\).*HDF5, the format cladec "
                                            r"writes, cannot hold such a step: .* and train this model again"):
        artifacts.load_model(tmp_path / "refae.h5", kind="refae")


def test_files_with_one_axis_or_none_by_default_load(tmp_path):
    inputs = keras.Input((6, 6, 4))
    h = layers.Softmax(axis=[-1], name="channels")(layers.LayerNormalization(axis=[3])(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(layers.Flatten()(h)))
    model.save(tmp_path / "m.h5")
    loaded, _ = artifacts.load_model(tmp_path / "m.h5")
    x = np.random.default_rng(0).random((2, 6, 6, 4), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
