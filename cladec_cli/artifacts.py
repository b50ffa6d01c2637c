"""Model files: one HDF5 file per model, provenance as attributes of its `cladec` group, atomic writes."""

import contextlib
import datetime
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np

from cladec_cli import __version__, distribute
from cladec_cli.errors import ArtifactError, UsageError, first_line, option

GROUP = "cladec"
KINDS = {
    "classifier": "classifier",
    "cladec_decoder": "ClaDec decoder",
    "refae": "reference autoencoder (RefAE)",
    "eval_classifier": "evaluation classifier",
}


def check_output(path, overwrite=False, suffixes=None):
    """Refuse an output that exists (unless `overwrite`), has the wrong suffix or lies in a folder that
    cannot be written (checked by writing a file there, before any work); create its folder."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{path}: output must end in {' or '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} already exists; pass {option('overwrite')} to replace it")
    if path.exists() and path.is_dir():
        raise UsageError(f"{path} is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise UsageError(f"cannot write {path}: the folder {path.parent} refuses new files ({e.strerror or e})") from None
    return path


@contextlib.contextmanager
def atomic_path(path, overwrite=False):
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it."""
    path = check_output(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if path.exists() and not overwrite:
            raise UsageError(f"{path} appeared while this command ran; pass {option('overwrite')} to replace it")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes private files; outputs get the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text, overwrite=False):
    """Write a text file atomically."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


def plain(value):
    """A NumPy scalar or array as the Python number or list JSON takes (`json.dumps`' `default`)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def json_safe(data):
    """`data` with NaN and infinities replaced by None (null), so the JSON is standard, and NumPy
    values by Python ones."""
    if isinstance(data, (np.generic, np.ndarray)):
        data = data.tolist()
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def write_json(path, data, overwrite=False):
    """Write standard JSON atomically, indented for people."""
    write_text(path, json.dumps(json_safe(data), indent=2, sort_keys=True) + "\n", overwrite)


def weights_digest(model):
    """SHA-256 over a model's weights, in order: identifies a trained model independent of its file."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight))
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def base_provenance(kind):
    """Fields every artifact records."""
    return {
        "kind": kind,
        "tool": "cladec",
        "tool_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def save_model(model, path, provenance, overwrite=False):
    """Save `model` as HDF5 with `provenance` (plus its weights digest), atomically (by the chief alone in
    a multi-worker training)."""
    path = Path(path)
    if path.suffix.lower() != ".h5":
        raise UsageError(f"{path}: models are saved as HDF5, the file name must end in .h5")
    from cladec_cli.cloning import savable
    from cladec_cli.custom_objects import saved_classes, with_saved_class_names
    from cladec_cli.hdf5_fidelity import check_loads_back, check_savable
    from cladec_cli.precision import float32_copy

    record = dict(provenance, digest=weights_digest(model))
    if classes := saved_classes(model):
        record["class_modules"] = {name: cls.__module__ for name, cls in classes.items()}
    # Every worker of a multi-worker training makes the copy: making variables is a collective step.
    copy = savable(float32_copy(model))
    check_savable(copy, str(path))
    if not distribute.writes_files():
        return record  # a non-chief worker of a distributed training: the chief writes the file
    with atomic_path(path, overwrite) as tmp, _quiet_absl():
        copy.save(tmp, include_optimizer=False)
        with h5py.File(tmp, "a") as f:
            if classes and with_saved_class_names(config := json.loads(f.attrs["model_config"]), copy):
                f.attrs["model_config"] = json.dumps(config)
            group = f.require_group(GROUP)
            for key, value in record.items():
                group.attrs[key] = json.dumps(value, default=plain)
        # Classes that Keras' HDF5 loader finds by name only when given them: try the file before it is kept
        # (not in a distributed training, where loading a model and predicting are steps of every worker).
        if classes and not distribute.active():
            check_loads_back(tmp, copy, classes, str(path))
    return record


@contextlib.contextmanager
def _quiet_absl():
    """Keras warns through absl that HDF5 is a legacy format; HDF5 is this tool's chosen format."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_provenance(path):
    """The provenance stored in a model file, {} for files made by other tools."""
    path = Path(path)
    if not h5py.is_hdf5(path):
        return {}
    with h5py.File(path, "r") as f:
        if GROUP not in f:
            return {}
        return {key: json.loads(value) for key, value in f[GROUP].attrs.items()}


def unrecorded_kind(path):
    """What a readable file without cladec's provenance is, in words: a Keras model, or an HDF5 file that
    holds no model (weights alone, such as a training backup's, or other data)."""
    path = Path(path)
    if path.suffix.lower() == ".keras":
        return "Keras model without cladec provenance"
    with h5py.File(path, "r") as f:
        if "model_config" in f.attrs:
            return "Keras model without cladec provenance"
    return "HDF5 file without a model (weights alone, or other data)"


def _is_keras_archive(path):
    """Whether `path` is a zip archive laid out as a .keras model file (whatever its name)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "config.json" in archive.namelist()


def foreign_format(path):
    """What a TensorFlow model format other than Keras' model files is at `path`, and what to do with
    it (Keras 3 reads .keras and .h5 model files only); None for anything else."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent if path.name == "saved_model.pb" else None
    if folder is not None and (folder / "saved_model.pb").is_file():
        return (f"{folder} is a TensorFlow SavedModel folder, which Keras 3 cannot load as a model: load it with the "
                "Keras that wrote it (tf.keras, or tf_keras) and save the model as .h5 (model.save('model.h5'))")
    prefix = path.with_suffix("") if path.suffix == ".index" or ".data-" in path.suffix else path
    if not path.is_dir() and Path(f"{prefix}.index").is_file():
        return (f"{prefix} is a TensorFlow checkpoint, which holds weights but no architecture: build the model, load "
                "them into it (model.load_weights) and save it as .keras or .h5")
    return None


def check_readable(path):
    path = Path(path)
    if foreign := foreign_format(path):
        raise ArtifactError(foreign)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist")
    if path.is_dir():
        raise ArtifactError(f"{path} is a folder, not a model file")
    if path.suffix.lower() == ".keras":
        if not zipfile.is_zipfile(path):
            raise ArtifactError(f"{path} is not a valid .keras file (truncated or corrupt?)")
    elif not h5py.is_hdf5(path):
        if _is_keras_archive(path):  # Keras picks the format by the name's ending
            raise ArtifactError(f"{path} is a zip archive, as a .keras model file is; Keras reads one only by "
                                f"that name: rename it to {path.with_suffix('.keras').name}")
        raise ArtifactError(f"{path} is not an HDF5 model file (truncated or corrupt?)")
    return path


def inspect(path):
    """The provenance of a model file, without loading the model."""
    path = check_readable(path)
    try:
        return read_provenance(path)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"cannot read {path}: {e}") from e


def model_config(path):
    """The architecture stored in a model file (the config of a .keras or .h5 file), {} if it has none."""
    path = Path(path)
    if path.suffix.lower() == ".keras":
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json")) if "config.json" in archive.namelist() else {}
    with h5py.File(path, "r") as f:
        config = f.attrs.get("model_config")
    if config is None:
        return {}
    return json.loads(config.decode() if isinstance(config, bytes) else config)


def code_layers(config):
    """Names of the Lambda layers in a model config, nested models included: layers that run code."""
    from cladec_cli.custom_objects import every_config

    return [entry.get("config", {}).get("name", "lambda") for entry in every_config(config)
            if entry.get("class_name") == "Lambda"]


def check_safe(path, trust=False):
    """Refuse a model file with Lambda layers unless `trust`: loading them runs code stored in the file.

    Keras' safe mode refuses such files too, but not in every Keras version for HDF5 files.
    """
    if trust:
        return
    try:
        names = code_layers(model_config(path))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ArtifactError(f"cannot read {path}: {e}") from e
    if names:
        raise ArtifactError(f"{path} holds a Lambda layer ({', '.join(names)}), which runs code stored in the "
                            f"file; pass {option('trust')} if you trust where the file comes from")


def _unknown_classes(path, message):
    """The classes of the model file at `path` that Keras does not know: from its config, or else the
    one Keras' error `message` names."""
    import keras

    from cladec_cli.custom_objects import unknown_classes, unknown_in_message

    try:
        names = unknown_classes(model_config(path))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        names = []
    known = keras.saving.get_custom_objects()
    names = [name for name in names if name not in known and name.split(">")[-1] not in known]
    named = unknown_in_message(message)
    return names or ([named] if named else [])


SAVE_AS_KERAS = "save the model as .keras (model.save('model.keras')) and give that file"
# Keras' error where an HDF5 file's `a * 0.5` on tensors comes back as the Multiply layer.
ARITHMETIC_READ_AS_LAYER = "Only input tensors may be passed as positional arguments"


def _is_operation(name):
    """Whether `name` is the class of a `keras.ops` call on a model's tensors (Relu, Mean), not a layer's."""
    import importlib
    import inspect

    import keras

    for module in ("keras.src.ops.nn", "keras.src.ops.numpy", "keras.src.ops.math", "keras.src.ops.image",
                   "keras.src.ops.core"):
        cls = getattr(importlib.import_module(module), name, None)
        if inspect.isclass(cls) and issubclass(cls, keras.src.ops.operation.Operation) and \
                not issubclass(cls, keras.layers.Layer):
            return True
    return False


def _defining_modules(unknown, recorded):
    """The modules that define the `unknown` classes, where known: as `recorded` in the file's provenance
    (`class_modules`), or Keras' applications module of that name."""
    from cladec_cli.custom_objects import keras_module_defining

    modules = [recorded.get(name) or keras_module_defining(name.split(">")[-1]) for name in unknown]
    return list(dict.fromkeys(module for module in modules if module))


def load_model(path, kind=None, trust=False):
    """Load a model file and its provenance; `kind` refuses artifacts of another kind.

    Keras' safe mode stays on, and files with Lambda layers are refused, unless `trust`.
    """
    import keras

    from cladec_cli.custom_objects import keras_own_classes
    from cladec_cli.hdf5_fidelity import changed_on_loading, dropped_in_config
    from cladec_cli.keras2_files import KERAS2_ONLY

    provenance = inspect(path)
    path = Path(path)
    found = provenance.get("kind")
    if kind and found and found != kind:
        raise ArtifactError(f"{path} is a {KINDS.get(found, found)}, not a {KINDS[kind]}")
    if kind and not found and kind != "classifier":
        raise ArtifactError(f"{path} is not a {KINDS[kind]} made by cladec (it has no cladec provenance)")
    check_safe(path, trust)
    recorded = provenance.get("class_modules") or {}
    config = {}  # the config Keras reads: an HDF5 file's, or a Keras 2 file's upgraded ({} for a .keras file)
    try:
        # An HDF5 file names a class alone: Keras' own classes outside its layers (ConvNeXt's LayerScale) are
        # given from the modules recorded at saving; a user's module is imported only by --custom-objects.
        with _as_keras3_reads(path) as (readable, config):
            model = keras.models.load_model(readable, compile=False, safe_mode=not trust,
                                            custom_objects=keras_own_classes(recorded))
    except Exception as e:  # Keras raises many types for unreadable or foreign files
        message = _keras_reason(e)
        if "safe_mode" in message:
            message = f"it holds code that runs on loading; pass {option('trust')} if you trust where it comes from"
        elif (unknown := _unknown_classes(path, message)) and not recorded and all(map(_is_operation, unknown)):
            message = (f"it holds keras.ops calls on the model's tensors ({', '.join(unknown)}), which Keras' HDF5 "
                       f"format does not restore; {SAVE_AS_KERAS}")
        elif not recorded and ARITHMETIC_READ_AS_LAYER in message:
            message = (f"it seems to hold arithmetic on the model's tensors (a * 0.5), which Keras' HDF5 format reads "
                       f"back as layers ({message}); {SAVE_AS_KERAS}")
        elif unknown and all(name in KERAS2_ONLY for name in unknown):
            message = (f"it was written by Keras 2 and holds {', '.join(unknown)}, which Keras 3 has not; build the model "
                       "with Keras 3's layers (keras.applications for its own models), load the file's weights into it "
                       "(model.load_weights(path)) and save it as .keras")
        elif unknown:
            modules = _defining_modules(unknown, recorded)
            module = " ".join(f"--custom-objects {m}" for m in modules) or "--custom-objects MODULE"
            message = (f"it uses classes that Keras does not know ({', '.join(unknown)}); give the module that "
                       f"defines them: {module} (in Python: load_custom_objects(MODULE))")
        elif dropped := [(name, axis) for name, axis in dropped_in_config(config) if f"(named {name})" in message]:
            message = (f"Keras' HDF5 loader keeps an axis of one dimension only and dropped that of "
                       f"{_listed(dropped)}, so that its weights no longer fit ({message}); {_hdf5_advice(found)}")
        elif isinstance(e, KeyError):  # a part of the file that Keras expects is missing
            message = f"it lacks the part {message} that a Keras model file holds (cut short, or written by hand?)"
        raise ArtifactError(f"cannot load {path} as a Keras model: {message}") from e
    if changed := changed_on_loading(config, model):
        raise ArtifactError(f"cannot load {path} as it was saved: Keras' HDF5 loader keeps an axis of one dimension "
                            f"only and gives back {', '.join(changed)}, a model that may compute something else; "
                            f"{_hdf5_advice(found)}")
    return model, provenance


@contextlib.contextmanager
def _as_keras3_reads(path):
    """(a file Keras 3 reads as the model at `path`, that model's config ({} for a .keras file)): for an HDF5
    file written by Keras 2 whose config Keras 3 would refuse, a temporary copy with the config
    `keras2_files.upgraded`; else `path` itself."""
    from cladec_cli.keras2_files import computed_otherwise, upgraded, written_by_keras2

    if path.suffix.lower() == ".keras":
        yield path, {}
        return
    config = model_config(path)
    with h5py.File(path, "r") as f:
        version = f.attrs.get("keras_version")
    keras2 = written_by_keras2(version)
    if keras2 and (otherwise := computed_otherwise(config)):
        raise ArtifactError(f"it was written by Keras 2 and uses hard_sigmoid in {', '.join(otherwise)}, which Keras 3 "
                            "computes otherwise (x/6 + 1/2 where Keras 2 took x/5 + 1/2), so the model would compute "
                            "something else; build the model with an activation of Keras 2's formula "
                            "(keras.ops.clip(0.2 * x + 0.5, 0, 1)), load the file's weights into it (model.load_weights) "
                            "and save it as .keras")
    new, changes = upgraded(config) if keras2 else (config, [])
    if not changes:
        yield path, config
        return
    with tempfile.TemporaryDirectory(prefix="cladec-keras2-") as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        with h5py.File(copy, "r+") as f:
            f.attrs["model_config"] = json.dumps(new)
        yield copy, new


def _keras_reason(error):
    """The line of a Keras loading error that says what went wrong: for a layer Keras could not build, the
    exception it met ("Unrecognized keyword arguments passed to X: {...}") after the class's name, not the
    config it was given."""
    text = str(error)
    built = re.search(r"Error when deserializing class '([^']+)'", text)
    met = re.search(r"Exception encountered: (.+)", text)
    if built and met:
        return f"Keras cannot build its {built.group(1)} layer: {met.group(1).strip()}"
    return first_line(error)


def _listed(dropped):
    from cladec_cli.hdf5_fidelity import shown_axis

    return ", ".join(f"{name} (axis {shown_axis(axis)})" for name, axis in dropped)


def _hdf5_advice(kind):
    """What to do with an HDF5 file that Keras gives back otherwise: a file of the user's, or one of cladec's."""
    if kind in (None, "classifier"):
        return SAVE_AS_KERAS
    return ("HDF5, the format cladec writes, cannot hold such a step: compute it in the classifier over one axis at a "
            "time, or with a layer made for it (a mean over an image's height and width: GlobalAveragePooling2D), "
            "and train this model again")
