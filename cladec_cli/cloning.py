"""Fresh copies of Keras models: the same architecture, each layer built anew from its configuration."""

import keras

from cladec_cli.layers import is_submodel


def clone_layer(layer):
    """A fresh layer of `layer`'s configuration, Lambda layers included (see below)."""
    config = layer.get_config()
    if isinstance(layer, keras.layers.Lambda):
        # The function is already loaded (the file was trusted, or the model built here): copying it
        # runs no code from a file, so Keras' safe mode, which refuses Lambda configs, does not apply.
        return keras.layers.Lambda.from_config(config, safe_mode=False)
    return layer.__class__.from_config(config)


def clone_graph(model, replace=None):
    """A newly built model of `model`'s architecture, nested functional and Sequential models included;
    `replace(layer)`, where given and not None, is the layer put in a layer's place.

    Each nested model's layers are built under its name, so their variables' paths name it: Keras' HDF5
    format keys a layer's weights by those paths, and could not hold two nested models whose layers bear
    the same names (two streams built by one function) otherwise."""
    def clone(layer):
        if is_submodel(layer):
            # Keras' PyTorch backend names a variable's parameter by its path, and PyTorch refuses dots
            # (keras.applications names MobileNetV2 `mobilenetv2_1.00_224`).
            with keras.name_scope(layer.name.replace(".", "_")):
                return keras.models.clone_model(layer, clone_function=clone)
        replaced = replace(layer) if replace is not None else None
        return clone_layer(layer) if replaced is None else replaced

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
