"""The pixel range a classifier expects, and the classifier wrapped so that it takes [0, 1] images.

Data pipelines, reconstructions, Rec. Loss and grids stay in [0, 1]; only the classifier (and the
encoders cut from it) see their own range, through a Rescaling layer in front of them.
"""

import keras
import numpy as np

from cladec_cli.data.names import PIXEL_RANGES
from cladec_cli.errors import UsageError

DEFAULT = "0,1"


def check_pixel_range(pixel_range):
    """`pixel_range` itself when it is one of PIXEL_RANGES, else a UsageError."""
    if pixel_range not in PIXEL_RANGES:
        raise UsageError(f"unknown pixel range {pixel_range!r}; choose one of {', '.join(PIXEL_RANGES)}")
    return pixel_range


def bounds(pixel_range):
    """'-1,1' -> (-1.0, 1.0)."""
    low, high = check_pixel_range(pixel_range).split(",")
    return float(low), float(high)


def to_range(images, pixel_range):
    """[0, 1] image arrays mapped to `pixel_range`, as float32."""
    low, high = bounds(pixel_range)
    return (low + np.asarray(images, np.float32) * (high - low)).astype(np.float32)


def rescaled(images, pixel_range):
    """A symbolic [0, 1] image tensor mapped to `pixel_range` by a Rescaling layer (unchanged for 0,1)."""
    low, high = bounds(pixel_range)
    if (low, high) == (0.0, 1.0):
        return images
    return keras.layers.Rescaling(high - low, offset=low, name="pixel_range")(images)


def in_range(model, pixel_range, name=None):
    """`model` behind a Rescaling layer that maps [0, 1] images to `pixel_range`; `model` itself for
    [0, 1] (on a float input: `float_input`). The wrapper shares the model's weights; `training=False`
    reaches the model inside."""
    model = float_input(model)
    if check_pixel_range(pixel_range) == DEFAULT:
        return model
    inputs = keras.Input(shape=tuple(model.inputs[0].shape[1:]), name="image")
    return keras.Model(inputs, model(rescaled(inputs, pixel_range)), name=name or f"{model.name}_in_range")


def float_input(model):
    """`model`, or where it takes integer images (a uint8 Input, its own or a nested model's), its layers
    on float32 Inputs, sharing their weights. Keras casts what reaches an integer Input to its dtype, and
    no gradient passes that cast: not the classification loss of reconstructions (alpha above 0), nor a
    saliency map's. On whole pixel values both compute the same."""
    if not _takes_integers(model):
        return model

    def clone(layer):
        return float_input(layer) if _takes_integers(layer) else layer

    def floating(tensor):
        dtype = "float32" if "int" in str(tensor.dtype) else tensor.dtype
        return keras.Input(shape=tuple(tensor.shape[1:]), dtype=dtype, name="float_image")

    # A functional model's inputs as it was built (a list of one, or the tensor); a Sequential's first.
    structure = model.inputs[0] if isinstance(model, keras.Sequential) else model.input
    inputs = keras.tree.map_structure(floating, structure) if "int" in str(model.inputs[0].dtype) else None
    return keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)


def _takes_integers(layer):
    """Whether `layer` is a model with an integer Input, its own or a nested model's."""
    from cladec_cli.layers import is_submodel

    if not is_submodel(layer):
        return False
    return "int" in str(layer.inputs[0].dtype) or any(_takes_integers(inner) for inner in layer.layers)
