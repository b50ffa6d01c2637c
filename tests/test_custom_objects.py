"""Making a user's custom layers known to Keras from the module that defines them."""

import sys
import textwrap

import keras
import numpy as np
import pytest

from cladec_cli.custom_objects import load_custom_objects, unknown_classes
from cladec_cli.errors import UsageError

MODULE = '''
import keras


class Doubled(keras.layers.Layer):
    """Not registered: known to Keras by its name only once the module is given."""

    def call(self, x):
        return x * 2.0


def halved(x):
    return x * 0.5


_private = 1
'''


@pytest.fixture
def restored():
    """Keras' custom objects, the imported modules and the module search path as they were before the test."""
    objects, modules, path = dict(keras.saving.get_custom_objects()), set(sys.modules), list(sys.path)
    yield
    keras.saving.get_custom_objects().clear()
    keras.saving.get_custom_objects().update(objects)
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


def test_a_modules_classes_and_functions_become_known_to_keras(tmp_path, restored):
    path = tmp_path / "cladec_test_doubling.py"
    path.write_text(MODULE)
    assert load_custom_objects(path) == ["Doubled", "halved"]
    doubled = keras.saving.get_custom_objects()["Doubled"]
    inputs = keras.Input((3,))
    model = keras.Model(inputs, doubled()(inputs))
    model.save(tmp_path / "m.h5")
    loaded = keras.models.load_model(tmp_path / "m.h5", compile=False)
    np.testing.assert_allclose(loaded.predict(np.ones((1, 3), np.float32), verbose=0), 2.0)


def test_a_modules_helper_named_as_a_keras_function_leaves_keras_its_own(tmp_path, restored):
    path = tmp_path / "cladec_test_helpers.py"
    path.write_text("def relu(x):\n    return x * 0\n\n\ndef scaled(x):\n    return x * 3\n")
    assert load_custom_objects(path) == ["scaled"]
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="relu", kernel_initializer="ones")(inputs))
    model.save(tmp_path / "m.h5")
    loaded = keras.models.load_model(tmp_path / "m.h5", compile=False)
    np.testing.assert_allclose(loaded.predict(np.ones((1, 2), np.float32), verbose=0), [[2.0, 2.0]])


def test_an_unregistered_class_a_file_needs_is_named(tmp_path, restored):
    from cladec_cli import artifacts
    from cladec_cli.errors import ArtifactError, for_cli

    path = tmp_path / "cladec_test_unregistered.py"
    path.write_text(MODULE)
    doubled = keras.saving.get_custom_objects()  # made known only to save the model
    load_custom_objects(path)
    inputs = keras.Input((3,))
    keras.Model(inputs, doubled["Doubled"]()(inputs)).save(tmp_path / "m.h5")
    for name in ("Doubled", "halved"):
        del doubled[name]  # as a new process would not know it
    with pytest.raises(ArtifactError) as refused:
        artifacts.load_model(tmp_path / "m.h5")
    assert "classes that Keras does not know (Doubled); give the module that defines them: --custom-objects" in \
        for_cli(refused.value)


def test_a_module_is_found_by_name_from_the_working_folder(tmp_path, monkeypatch, restored):
    (tmp_path / "cladec_test_halving.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert "halved" in load_custom_objects("cladec_test_halving")


@pytest.mark.parametrize("spec, source, said", [
    ("missing.py", None, "--custom-objects missing.py: no such file"),
    ("cladec_no_such_module", None, "no module of that name can be imported from"),
    ("failing.py", "raise RuntimeError('boom')", "importing it failed: RuntimeError: boom"),
    ("importing.py", "import cladec_no_such_dependency", "importing it failed: No module named"),
    ("script.py", "import sys\nsys.exit(2)", "importing it failed: SystemExit: 2"),
    ("json.py", "x = 1", "a module named json is already imported"),
    ("multiline.py", "raise ValueError('first\\nsecond')", "importing it failed: ValueError: first"),
])
def test_a_module_that_cannot_be_imported_is_refused_in_one_line(tmp_path, monkeypatch, restored, spec, source,
                                                                said):
    from cladec_cli.errors import for_cli

    monkeypatch.chdir(tmp_path)
    if source:
        (tmp_path / spec).write_text(textwrap.dedent(source))
    with pytest.raises(UsageError) as refused:
        load_custom_objects(spec)
    assert said in for_cli(refused.value) and "\n" not in str(refused.value)


def test_unknown_classes_are_those_keras_does_not_define():
    config = {"module": "keras", "class_name": "Functional", "config": {"layers": [
        {"module": "keras.layers", "class_name": "Conv2D", "registered_name": None},
        {"module": "mylayers", "class_name": "ScaledReLU", "registered_name": "mylab>ScaledReLU"},
        {"class_name": "mylab>Gate"},  # as Keras' HDF5 format records a registered class
        {"module": "mylayers", "class_name": "ScaledReLU", "registered_name": "mylab>ScaledReLU"},
    ]}}
    assert unknown_classes(config) == ["mylab>ScaledReLU", "mylab>Gate"]
