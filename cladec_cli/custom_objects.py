"""A user's custom layers and functions: the Python modules that define them, made known to Keras before
model files are loaded, and the names in a model file that Keras does not know."""

import importlib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path

from cladec_cli.errors import UsageError, option

# Where Keras finds the objects a config names by a bare name; a user's object of such a name would take
# the place of Keras' own in every HDF5 file loaded afterwards (this tool's decoders use relu and sigmoid).
_KERAS_NAMESPACES = ("layers", "activations", "losses", "metrics", "initializers", "regularizers",
                     "constraints", "optimizers", "models")


def load_custom_objects(spec):
    """Import the module `spec` (a module name importable from the working folder, or the path of a .py
    file) and make the classes and functions it defines known to Keras by name, for every model loaded
    afterwards; names Keras itself defines (a helper `relu`, say) are left to Keras. Classes it registers
    with `keras.saving.register_keras_serializable` are known from the import on. Importing runs the
    module's code. Returns the names added."""
    import keras

    module = _imported(str(spec))
    defined = {name: value for name, value in vars(module).items()
               if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
               and getattr(value, "__module__", None) == module.__name__ and not _keras_defines(name)}
    keras.saving.get_custom_objects().update(defined)
    return sorted(defined)


def _keras_defines(name):
    import keras

    return any(hasattr(getattr(keras, space), name) for space in _KERAS_NAMESPACES)


def _imported(spec):
    named = f"{option('custom_objects')} {spec}"
    try:
        if spec.endswith(".py") or os.sep in spec:
            return _from_file(Path(spec), named)
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` does: modules beside the user's files
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name and (spec == e.name or spec.startswith(f"{e.name}.")):
            raise UsageError(f"{named}: no module of that name can be imported from {os.getcwd()}; give the path "
                             f"of its .py file") from None
        raise UsageError(f"{named}: importing it failed: {_first_line(e)}") from None
    except UsageError:
        raise
    except (Exception, SystemExit) as e:  # the user's code may raise anything, or exit as a script does
        raise UsageError(f"{named}: importing it failed: {type(e).__name__}: {_first_line(e)}") from None


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _from_file(path, named):
    if not path.is_file():
        raise UsageError(f"{named}: no such file")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
            return loaded
        where = getattr(loaded, "__file__", None) or "built in"
        raise UsageError(f"{named}: a module named {name} is already imported ({where}); rename the file")
    if str(path.parent.resolve()) not in sys.path:
        sys.path.append(str(path.parent.resolve()))  # for the modules it imports from beside it
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def every_config(config):
    """Every object serialized in a model config (a dict naming a class), the nested ones included, in order."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for value in config.values():
            yield from every_config(value)
    elif isinstance(config, list):
        for value in config:
            yield from every_config(value)


def unknown_classes(config):
    """Names of the classes in a model config that Keras itself does not define: those of another module,
    or registered under a package ('package>Name'), nested models included, each once."""
    found = []
    for entry in every_config(config):
        name = entry.get("registered_name") or entry.get("class_name")
        module = entry.get("module")
        if isinstance(name, str) and ((isinstance(module, str) and not module.startswith("keras")) or ">" in name):
            found.append(name)
    return list(dict.fromkeys(found))


def unknown_in_message(message):
    """The name Keras' error message says it does not know ("Unknown layer: 'Doubled'"), else None."""
    found = re.search(r"Unknown [a-z ]+: '([^']+)'", message)
    return found.group(1) if found else None


def saved_classes(model):
    """{name in the model's HDF5 config (`saved_class_name`): class} for the layers and operations of `model`
    (nested models included) that Keras would not find by their name alone, as an HDF5 file keeps them: a
    keras.applications model's own layers (ConvNeXt's LayerScale), operations written as `a + b` on a
    model's tensors (whose `Add` is not the Add layer), or a user's classes. Their modules are what a file
    records as `class_modules`; the classes are what loading a file just written from `model` needs."""
    found = {}
    for operation in every_operation(model):
        cls = type(operation)
        if not _found_by_name(cls):
            found[saved_class_name(cls)] = cls
    return found


def saved_class_name(cls):
    """The class name an HDF5 file of cladec's gives `cls`: its registered name, or, for a class of Keras'
    that Keras would not find by its name and whose name another class of Keras' has (the `Add` operation
    of `a + b` beside the Add layer), its module-qualified name, so that a model holding both loads."""
    import keras

    name = keras.saving.get_registered_name(cls)
    if cls.__module__.startswith("keras.") and not _found_by_name(cls) and _keras_defines(name):
        return f"{cls.__module__}.{cls.__name__}"
    return name


def with_saved_class_names(config, model):
    """`config`, the model config that Keras' HDF5 format wrote for `model`, with each of its operations'
    class names given by `saved_class_name`, nested models included; whether one changed."""
    import keras

    by_name = {operation.name: operation for operation in getattr(model, "operations", model.layers)}
    changed = False
    for entry in (config.get("config") or {}).get("layers") or []:
        operation = by_name.get(entry.get("name") or (entry.get("config") or {}).get("name"))
        if operation is None:
            continue
        name = saved_class_name(type(operation))
        if name != keras.saving.get_registered_name(type(operation)):
            entry["class_name"], changed = name, True
        if hasattr(operation, "layers"):
            changed |= with_saved_class_names(entry, operation)
    return changed


def every_operation(model):
    """The layers and operations of `model`, and of the models nested in it."""
    for operation in getattr(model, "operations", model.layers):
        yield operation
        if hasattr(operation, "layers"):
            yield from every_operation(operation)


def _found_by_name(cls):
    import keras

    if cls.__name__ == "Functional" and issubclass(cls, keras.Model):
        return True
    return any(getattr(getattr(keras, space), cls.__name__, None) is cls for space in _KERAS_NAMESPACES)


def keras_own_classes(modules):
    """{name: class} for the entries of `modules` (a file's `class_modules`) that Keras itself defines, in
    a module of its own (`keras.`): safe to import, unlike a user's module, which only --custom-objects
    imports."""
    found = {}
    for name, module in modules.items():
        if not module.startswith("keras."):
            continue
        try:
            cls = getattr(importlib.import_module(module), name.split(">")[-1].rsplit(".", 1)[-1])
        except (ImportError, AttributeError):
            continue
        found[name] = cls
    return found


def keras_module_defining(name):
    """The module of Keras' applications (already imported with Keras) that defines a class `name`, else None:
    what an HDF5 file of such a model, which names the class alone, needs from --custom-objects."""
    for module_name, module in sorted(sys.modules.items()):
        if module_name.startswith("keras.src.applications.") and inspect.isclass(getattr(module, name, None)):
            if getattr(module, name).__module__ == module_name:
                return module_name
    return None
