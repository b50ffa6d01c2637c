"""HDF5 model files written by Keras 2 (tf.keras, tf_keras), read by Keras 3.

Keras 2 wrote settings into its HDF5 configs that Keras 3's layers refuse, so that plain
`keras.models.load_model` fails on many such files: every DepthwiseConv2D (MobileNet, EfficientNet),
SeparableConv2D (Xception, NASNet), Conv2DTranspose, recurrent layer, augmentation layer and
SpatialDropout, layer names with a slash (DenseNet's `conv1/conv`, MobileNetV3's `Conv/BatchNorm`), and
every call of a nested model built on its own inputs (a base model behind a head), which Keras 2 numbered
from 1. `upgraded` rewrites such a config into one Keras 3 builds the same model from; the weights, which
Keras' HDF5 loader reads layer by layer in order, are untouched. `computed_otherwise` names what Keras 3
would build but compute otherwise (Keras 2's hard_sigmoid).
"""

import copy

from cladec_cli.custom_objects import every_config

ANY = object()  # a setting Keras 2 wrote but did not compute with, whatever its value

# Settings Keras 2 wrote and Keras 3 refuses, with the value Keras 2 computed with.
_LEFT_OVER = {
    # Keras 2's depthwise, separable and transposed convolutions inherit `groups` from Conv.
    "DepthwiseConv1D": {"groups": 1},
    "DepthwiseConv2D": {"groups": 1},
    "Conv1DTranspose": {"groups": 1},
    "Conv2DTranspose": {"groups": 1},
    "Conv3DTranspose": {"groups": 1},
    # ... and a separable one the kernel settings of Conv, which its depthwise_/pointwise_ ones replace.
    "SeparableConv1D": {"groups": 1, "kernel_initializer": ANY, "kernel_regularizer": ANY, "kernel_constraint": ANY},
    "SeparableConv2D": {"groups": 1, "kernel_initializer": ANY, "kernel_regularizer": ANY, "kernel_constraint": ANY},
    "SimpleRNN": {"time_major": False},
    "LSTM": {"time_major": False},
    "GRU": {"time_major": False},
    "ConvLSTM1D": {"time_major": False},
    "ConvLSTM2D": {"time_major": False},
    "ConvLSTM3D": {"time_major": False},
    # Keras 3's SpatialDropout layers take no `trainable` (they have no weights) and set their noise shape.
    "SpatialDropout1D": {"trainable": ANY, "noise_shape": None},
    "SpatialDropout2D": {"trainable": ANY, "noise_shape": None},
    "SpatialDropout3D": {"trainable": ANY, "noise_shape": None},
}
_AUGMENTATION = ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
                 "RandomCrop", "RandomHeight", "RandomWidth", "RandomBrightness")
for _name in _AUGMENTATION:
    _LEFT_OVER[_name] = {"rng_type": ANY}  # Keras 2's choice of random generator


# Classes of Keras 2 that Keras 3 has not: TensorFlow functions called on a model's tensors (MobileNetV3's
# hard sigmoid), and layers it dropped.
KERAS2_ONLY = ("TFOpLambda", "SlicingOpLambda", "ThresholdedReLU", "LocallyConnected1D", "LocallyConnected2D")


def written_by_keras2(version):
    """Whether an HDF5 file's `keras_version` attribute (str or bytes, or None) names Keras 2."""
    if isinstance(version, bytes):
        version = version.decode()
    return isinstance(version, str) and version.startswith("2.")


def upgraded(config):
    """(a copy of a Keras 2 HDF5 model `config` that Keras 3 builds, [what changed]); `config` itself
    where nothing needs to change. A setting is dropped only with the value Keras 2 computed with, so
    that the model stays the same; a call of a nested model is numbered as Keras 3 counts it; a layer
    name with a slash, which Keras 3 refuses, gets an underscore instead, wherever the config refers to
    that layer."""
    new = copy.deepcopy(config)
    changes = []
    for entry in every_config(new):
        settings = entry.get("config")
        if not isinstance(settings, dict):
            continue
        for key, kept in _LEFT_OVER.get(entry.get("class_name"), {}).items():
            if key in settings and (kept is ANY or settings[key] == kept):
                del settings[key]
                changes.append(f"{settings.get('name', entry['class_name'])}: {key}")
    changes += _renumber_nested_calls(new)
    renamed = _slashless_names(new)
    if renamed:
        _rename(new, renamed)
        changes += [f"{old} -> {name}" for old, name in renamed.items()]
    return (new, changes) if changes else (config, [])


def computed_otherwise(config):
    """'layer (hard_sigmoid)' for each layer of a Keras 2 model `config` that uses `hard_sigmoid`, which
    Keras 2 computed as x/5 + 1/2 and Keras 3 computes as x/6 + 1/2 (both clipped to [0, 1])."""
    return [f"{entry['config'].get('name')} (hard_sigmoid)" for entry in every_config(config)
            if isinstance(entry.get("config"), dict)
            and "hard_sigmoid" in (entry["config"].get("activation"), entry["config"].get("recurrent_activation"))]


_FUNCTIONAL = ("Functional", "Model")


def _renumber_nested_calls(config):
    """Number the calls of nested models from 0, as Keras 3 does, where Keras 2 numbered them from 1 (its
    node 0 of a model built on its own inputs is that construction); in place. Returns what changed."""
    changes = []
    for entry in every_config(config):
        settings = entry.get("config")
        if entry.get("class_name") not in _FUNCTIONAL or not isinstance(settings, dict) \
                or not isinstance(settings.get("layers"), list):
            continue
        nested = {layer["config"]["name"] for layer in settings["layers"] if _built_on_its_inputs(layer)}
        for reference in _references([[layer.get("inbound_nodes") for layer in settings["layers"]],
                                      settings.get("output_layers")]):
            if reference[0] in nested and reference[1] > 0:
                reference[1] -= 1
                changes.append(f"call {reference[1] + 1} of {reference[0]}: {reference[1]}")
    return changes


def _built_on_its_inputs(layer):
    """Whether a layer entry is a model that Keras 2 built on inputs of its own before calling it."""
    if layer.get("class_name") in _FUNCTIONAL:
        return True
    inner = (layer.get("config") or {}).get("layers") if layer.get("class_name") == "Sequential" else None
    return bool(inner) and inner[0].get("class_name") == "InputLayer"


def _references(value):
    """The [layer name, node index, tensor index, ...] lists in a config's inbound nodes, inputs or outputs."""
    if isinstance(value, list):
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int) and isinstance(value[2], int):
            yield value
        else:
            for item in value:
                yield from _references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _references(item)


def _slashless_names(config):
    """{name: new name} for the layer names in `config` with a slash, each new name unused before."""
    names = {entry["config"]["name"] for entry in every_config(config)
             if isinstance(entry.get("config"), dict) and isinstance(entry["config"].get("name"), str)}
    renamed = {}
    for name in sorted(n for n in names if "/" in n):
        new, i = name.replace("/", "_"), 1
        while new in names:
            new, i = f"{name.replace('/', '_')}_{i}", i + 1
        names.add(new)
        renamed[name] = new
    return renamed


def _rename(config, renamed):
    """Rename layers in place where a config names them: their own names, and references to them in
    inbound nodes, inputs and outputs."""
    for entry in every_config(config):
        settings = entry.get("config")
        if entry.get("name") in renamed:
            entry["name"] = renamed[entry["name"]]
        if not isinstance(settings, dict):
            continue
        if settings.get("name") in renamed:
            settings["name"] = renamed[settings["name"]]
        for reference in _references([entry.get("inbound_nodes"), settings.get("input_layers"),
                                      settings.get("output_layers")]):
            if reference[0] in renamed:
                reference[0] = renamed[reference[0]]
