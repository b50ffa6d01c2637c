"""Atomic writes: nothing half-written, nothing overwritten by accident, the usual file mode."""

import os
import stat

import keras
import pytest

from cladec_cli import artifacts
from cladec_cli.errors import UsageError


def test_atomic_write_leaves_no_temporary_files_and_usual_mode(tmp_path):
    target = tmp_path / "out" / "table.md"
    artifacts.write_text(target, "hello\n")
    assert target.read_text() == "hello\n"
    assert os.listdir(target.parent) == ["table.md"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_failure_inside_the_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(target, overwrite=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_existing_file_needs_overwrite(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(UsageError, match="`overwrite`"):
        artifacts.write_json(target, {"a": 1})
    artifacts.write_json(target, {"a": float("nan")}, overwrite=True)
    assert target.read_text().split() == ["{", '"a":', "null", "}"]


def test_provenance_takes_numpy_values(tmp_path):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    record = artifacts.save_model(model, tmp_path / "m.h5", {"kind": "test", "limit": np.int64(300),
                                                              "lr": np.float32(0.5), "shape": np.array([2, 1])})
    _, loaded = artifacts.load_model(tmp_path / "m.h5")
    assert (loaded["limit"], loaded["lr"], loaded["shape"]) == (300, 0.5, [2, 1])
    assert artifacts.json_safe({"a": np.float64("nan"), "b": np.int8(3)}) == {"a": None, "b": 3}
    assert record["limit"] == 300


def _model_with_keras_classes_outside_its_layers():
    """LayerScale (keras.applications' ConvNeXt) and `a + b` on tensors (an `Add` operation, not the Add
    layer): an HDF5 file names both by their class name alone, and Keras alone cannot load it back."""
    import keras
    from keras.src.applications.convnext import LayerScale

    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = LayerScale(0.5, 4)(x) + inputs
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))


def test_keras_own_classes_outside_its_layers_are_recorded_and_found_on_loading(tmp_path):
    import keras

    path = tmp_path / "m.h5"
    modules, _ = _saved_and_loaded(_model_with_keras_classes_outside_its_layers(), path)
    assert modules == {"LayerScale": "keras.src.applications.convnext",
                       "keras.src.ops.numpy.Add": "keras.src.ops.numpy"}
    with pytest.raises(Exception):
        keras.models.load_model(path, compile=False)


def _saved_and_loaded(model, path):
    """Save `model` as a cladec classifier file at `path` and load it back; the `class_modules` it records,
    and the loaded model, which must predict what `model` does."""
    import numpy as np

    artifacts.save_model(model, path, {"kind": "classifier"})
    loaded, _ = artifacts.load_model(path, kind="classifier")
    x = np.random.default_rng(0).random((2, *model.inputs[0].shape[1:]), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    return artifacts.inspect(path)["class_modules"], loaded


def _model_with_operations_and_layers_of_one_name():
    """`a + b` and `a * b` on tensors (the `Add` and `Multiply` operations) beside the Add and Multiply
    layers, in the model and in a nested one: an HDF5 file names both kinds by their class name alone."""
    import keras

    inner_in = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(2, 3, padding="same")(inner_in)
    inner = keras.Model(inner_in, keras.layers.Multiply()([h * inner_in, h]), name="inner")
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    x = keras.layers.Add()([x + inputs, inner(x)])
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))


def test_operations_and_layers_of_one_name_load_back_as_they_were(tmp_path):
    modules, loaded = _saved_and_loaded(_model_with_operations_and_layers_of_one_name(), tmp_path / "m.h5")
    assert modules == {"keras.src.ops.numpy.Add": "keras.src.ops.numpy",
                       "keras.src.ops.numpy.Multiply": "keras.src.ops.numpy"}
    kinds = sorted(type(op).__module__.rsplit(".", 1)[-1] + "." + type(op).__name__
                   for op in [*loaded.operations, *loaded.get_layer("inner").operations]
                   if type(op).__name__ in ("Add", "Multiply"))
    assert kinds == ["add.Add", "multiply.Multiply", "numpy.Add", "numpy.Multiply"]


def test_files_that_name_an_operation_by_its_class_name_alone_still_load(tmp_path):
    import h5py
    import json
    import keras
    import numpy as np

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs + inputs))
    path = tmp_path / "before.h5"
    model.save(path)
    with h5py.File(path, "a") as f:  # as cladec wrote them before it qualified such names
        group = f.require_group(artifacts.GROUP)
        group.attrs["kind"], group.attrs["class_modules"] = '"classifier"', json.dumps({"Add": "keras.src.ops.numpy"})
    loaded, _ = artifacts.load_model(path, kind="classifier")
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_a_file_of_another_tool_names_the_keras_module_that_defines_an_unknown_class(tmp_path):
    from cladec_cli.errors import ArtifactError

    path = tmp_path / "own.h5"
    _model_with_keras_classes_outside_its_layers().save(path)
    with pytest.raises(ArtifactError, match=r"\(LayerScale\); give the module that defines them: "
                                            r"--custom-objects keras\.src\.applications\.convnext "):
        artifacts.load_model(path)


@pytest.mark.parametrize("step, said", [
    (lambda h: keras.ops.relu(h), r"it holds keras\.ops calls on the model's tensors \(Relu\)"),
    (lambda h: h * 0.5, r"it seems to hold arithmetic on the model's tensors \(a \* 0\.5\)")])
def test_a_users_hdf5_file_with_operations_is_sent_to_the_keras_format(tmp_path, step, said):
    from cladec_cli.errors import ArtifactError

    inputs = keras.Input((4, 4, 1))
    h = step(keras.layers.Conv2D(2, 3, padding="same")(inputs))
    path = tmp_path / "theirs.h5"
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(h))).save(path)
    with pytest.raises(ArtifactError, match=said + r".*save the model as \.keras \(model\.save\('model\.keras'\)\)"):
        artifacts.load_model(path)


class Doubled(keras.layers.Layer):
    """A layer of a notebook's own, registered nowhere."""

    def call(self, x):
        return 2 * x


def test_a_model_with_a_layer_of_a_notebooks_own_is_saved_and_tried_with_it(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Doubled(name="doubled")(inputs) + inputs))
    artifacts.save_model(model, tmp_path / "m.h5", {"kind": "classifier"})
    assert artifacts.inspect(tmp_path / "m.h5")["class_modules"] == {
        "Doubled": __name__, "keras.src.ops.numpy.Add": "keras.src.ops.numpy"}
