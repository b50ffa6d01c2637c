"""Whether Keras' HDF5 format gives a model back as it was: the parts its loader drops, found before any
work, a saved file loaded back and run once, and a loaded file compared with the config it was saved with."""

import inspect

import numpy as np

from cladec_cli.errors import ArtifactError, UsageError, first_line

# Keras' HDF5 loader keeps an `axis` of one dimension only and drops any other
# (keras/src/legacy/saving/saving_utils.py, model_from_config).
_KEPT_AXES = 1


def dropped_parts(model):
    """'name (axis (1, 2))' for each layer or operation of `model`, nested models included, whose config
    Keras' HDF5 loader would not restore: it keeps an axis of one dimension only and drops any other
    (several, or none), so that the loaded layer takes its default axis instead, and reduces or
    normalises over another."""
    from cladec_cli.custom_objects import every_operation

    found = []
    for operation in every_operation(model):
        try:
            config = operation.get_config()
        except (NotImplementedError, TypeError):
            continue  # a class without a config of its own is saved by name only
        if "axis" not in config:
            continue
        axis = config["axis"]
        if isinstance(axis, int) or (isinstance(axis, (list, tuple)) and len(axis) == _KEPT_AXES):
            continue
        if _as_tuple(axis) != _as_tuple(_default_axis(type(operation))):
            found.append(f"{operation.name} (axis {_as_tuple(axis)})")
    return found


_NO_DEFAULT = object()


def _default_axis(cls):
    """The axis `cls` takes when its config gives none (`_NO_DEFAULT` where it must be given)."""
    parameter = inspect.signature(cls.__init__).parameters.get("axis")
    return _NO_DEFAULT if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _as_tuple(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def check_savable(model, what):
    """Refuse, before any work, a model that an HDF5 file would not give back: `what` names it in the
    message ("the RefAE of layer pool")."""
    dropped = dropped_parts(model)
    if dropped:
        raise UsageError(f"{what} cannot be saved as HDF5, the format cladec writes: Keras' HDF5 loader keeps a "
                         f"single axis only and would drop that of {', '.join(dropped)}, giving back another model; "
                         "compute that step over one axis at a time, or with a layer made for it (a mean over "
                         "an image's height and width: GlobalAveragePooling2D)")


def check_loads_back(path, model, custom_objects, what):
    """Load the HDF5 file `path`, just written from `model`, with `custom_objects`, and compare its outputs
    with `model`'s on two random images; raise `ArtifactError`, naming the file `what`, where it does not
    load or computes otherwise."""
    import keras

    try:
        loaded = keras.models.load_model(path, compile=False, safe_mode=False, custom_objects=custom_objects)
    except Exception as e:  # Keras raises many types for configs it cannot rebuild
        raise ArtifactError(f"{what} would not load back from HDF5, the format cladec writes: "
                            f"{first_line(e)}") from e
    images = _probe(model)
    expected, found = (keras.tree.flatten(m.predict(images, verbose=0)) for m in (model, loaded))
    if len(found) != len(expected) or not all(
            e.shape == f.shape and np.allclose(e, f, rtol=1e-4, atol=1e-5) for e, f in zip(expected, found)):
        raise ArtifactError(f"{what} would load back from HDF5, the format cladec writes, computing something "
                            "else: Keras' HDF5 loader does not restore every layer's or operation's settings; "
                            "write the model's keras.ops calls as layers")


def _probe(model):
    """Two random images of `model`'s input shape and dtype."""
    shape, dtype = (2, *model.inputs[0].shape[1:]), model.inputs[0].dtype
    rng = np.random.default_rng(0)
    if "int" in str(dtype):
        return rng.integers(0, 256, shape).astype(dtype)
    return rng.random(shape, dtype=np.float32)


def dropped_in_config(config):
    """[(name, axis)] for each layer or operation of an HDF5 file's model `config` (nested models
    included) whose axis Keras' loader drops: one of several dimensions, or none."""
    from cladec_cli.custom_objects import every_config

    found = []
    for entry in every_config(config):
        settings = entry.get("config")
        if isinstance(settings, dict) and "axis" in settings:
            axis = settings["axis"]
            if not isinstance(axis, (int, float)) and not (isinstance(axis, list) and len(axis) == _KEPT_AXES):
                found.append((settings.get("name"), axis))
    return found


def changed_on_loading(config, model):
    """'name (axis (1, 2), read back as -1)' for each layer or operation that an HDF5 file's model
    `config` gives an axis that the `model` loaded from it does not have (`dropped_in_config`)."""
    from cladec_cli.custom_objects import every_operation

    dropped = dropped_in_config(config)
    if not dropped:  # nearly every file: no layer's config is read
        return []
    loaded = {}
    for operation in every_operation(model):
        try:
            loaded.setdefault(operation.name, []).append(operation.get_config().get("axis"))
        except Exception:  # a user's get_config that fails: nothing to compare, and the model did load
            continue
    return [f"{name} (axis {shown_axis(axis)}, read back as {shown_axis(loaded[name][0])})" for name, axis in dropped
            if name in loaded and all(_comparable(axis) != _comparable(found) for found in loaded[name])]


def _comparable(axis):
    """An axis as one value: a tuple, an int, or None for none (saved as null or as [])."""
    if isinstance(axis, (list, tuple)):
        return tuple(axis) if len(axis) > 1 else (int(axis[0]) if axis else None)
    return axis


def shown_axis(axis):
    """An axis as messages give it: (1, 2), -1 or none."""
    value = _comparable(axis)
    return "none" if value is None else value
