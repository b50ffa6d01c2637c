"""Fresh copies of Keras models: the same architecture, each layer built anew from its configuration."""

import keras

from cladec_cli.layers import is_submodel


def clone_layer(layer, dtype=None):
    """A fresh layer of `layer`'s configuration, Lambda layers included (see below), computing in `dtype`
    (a dtype policy name) where given."""
    config = layer.get_config()
    if dtype is not None:
        config["dtype"] = dtype
    if isinstance(layer, keras.layers.Lambda):
        # The function is already loaded (the file was trusted, or the model built here): copying it
        # runs no code from a file, so Keras' safe mode, which refuses Lambda configs, does not apply.
        return keras.layers.Lambda.from_config(config, safe_mode=False)
    return layer.__class__.from_config(config)


def _output_layers(model):
    """The layers whose outputs are `model`'s, looked for inside nested models too."""
    found = set()
    for tensor in model.outputs:
        layer = tensor._keras_history[0]
        found |= _output_layers(layer) if is_submodel(layer) else {layer}
    return found


def _mixed_policy_fits(layer):
    """Whether a copy of `layer` may compute under a mixed global policy: a built-in Keras layer other than
    Lambda, computing in float32 or a mixed policy. A Lambda or a layer of one's own may combine its inputs
    with float32 constants, which low-precision inputs would not match."""
    return type(layer).__module__.startswith("keras.") and not isinstance(layer, keras.layers.Lambda) and \
        (layer.dtype_policy.name == "float32" or layer.dtype_policy.name.startswith("mixed_"))


def clone_graph(model, compute=False):
    """A newly built model of `model`'s architecture, nested functional and Sequential models included.

    With `compute`, a copy computes under the global dtype policy where that is a mixed one (`--precision`)
    in every built-in layer but those giving the model's outputs, which compute in float32 (as the
    classifiers built here do): a layer's configuration names the policy it was built under, float32 for a
    model trained or saved in full precision. Without it, each layer keeps its own policy.

    Each nested model's layers are built under its name, so their variables' paths name it: Keras' HDF5
    format keys a layer's weights by those paths, and could not hold two nested models whose layers bear
    the same names (two streams built by one function) otherwise."""
    policy = keras.mixed_precision.global_policy().name
    mixed = compute and policy.startswith("mixed_")
    outputs = _output_layers(model) if mixed else set()

    def clone(layer):
        if is_submodel(layer):
            # Keras' PyTorch backend names a variable's parameter by its path, and PyTorch refuses dots
            # (keras.applications names MobileNetV2 `mobilenetv2_1.00_224`).
            with keras.name_scope(layer.name.replace(".", "_")):
                return keras.models.clone_model(layer, clone_function=clone)
        if mixed and _mixed_policy_fits(layer):
            return clone_layer(layer, "float32" if layer in outputs else policy)
        return clone_layer(layer)

    return keras.models.clone_model(model, clone_function=clone)


def has_clashing_weight_paths(model):
    """Whether two weights of one of `model`'s layers share a path, so that Keras' HDF5 format cannot
    save it."""
    return any(len({w.path for w in layer.weights}) < len(layer.weights) for layer in model.layers)


def savable(model):
    """`model`, or where Keras' HDF5 format could not save it (`has_clashing_weight_paths`), a copy with
    its weights built by `clone_graph`."""
    if not has_clashing_weight_paths(model):
        return model
    copy = clone_graph(model)
    copy.set_weights(model.get_weights())
    return copy
