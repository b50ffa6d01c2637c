"""BatchNorm moving statistics computed on data.

An untrained classifier's BatchNorm layers hold their initial moving mean 0 and variance 1, so in
inference mode its activations are far from what the same network gives with batch statistics.
`statistics_from_data` replaces each BatchNorm's moving mean and variance by the mean and variance of
its inputs over a split, layer after layer (each layer's inputs computed with the earlier layers'
new statistics), as inference with "population statistics" assumes.
"""

import keras
import numpy as np

from cladec_cli.layers import is_submodel

CHOICES = ("moving", "data")


def batchnorm_layers(model):
    """The BatchNormalization layers of `model` (nested models included), first to last."""
    found = []
    for layer in model.layers:
        if is_submodel(layer):
            found += batchnorm_layers(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


def statistics_from_data(model, images, batch_size=512):
    """Set every BatchNorm's moving mean and variance of `model` to those of its inputs over `images`
    ([0, 1] images as `model` takes them), in inference mode. Returns the number of layers set."""
    layers = batchnorm_layers(model)
    for layer in layers:
        axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
        if len(axes) != 1 or axes[0] not in (-1, len(layer.input.shape) - 1):
            raise ValueError(f"{layer.name}: only BatchNorm over the last axis is supported")
        probe = keras.Model(model.inputs[0], layer.input)
        total, total_sq, count = 0.0, 0.0, 0
        for start in range(0, len(images), batch_size):
            x = keras.ops.convert_to_numpy(probe(images[start:start + batch_size], training=False)).astype(np.float64)
            x = x.reshape(-1, x.shape[-1])
            total, total_sq, count = total + x.sum(axis=0), total_sq + np.square(x).sum(axis=0), count + len(x)
        mean = total / count
        variance = np.maximum(total_sq / count - np.square(mean), 0.0)
        layer.moving_mean.assign(mean.astype("float32"))
        layer.moving_variance.assign(variance.astype("float32"))
    return len(layers)
